package broker_test

import (
	"encoding/json"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

func TestShownArguments(t *testing.T) {
	args := `{"path":"/srv/x","content":"secret","auth":{"token":"t0k","user":"bob"},"n":9007199254740993,"list":["a","b"]}`
	tests := map[string]struct {
		redact []string
		want   string
	}{
		"nothing to hide keeps the bytes": {nil, args},
		"one key":                         {[]string{"arguments.content"}, `{"auth":{"token":"t0k","user":"bob"},"content":"[redacted]","list":["a","b"],"n":9007199254740993,"path":"/srv/x"}`},
		"nested key":                      {[]string{"arguments.auth.token"}, `{"auth":{"token":"[redacted]","user":"bob"},"content":"secret","list":["a","b"],"n":9007199254740993,"path":"/srv/x"}`},
		"array element":                   {[]string{"arguments.list.1"}, `{"auth":{"token":"t0k","user":"bob"},"content":"secret","list":["a","[redacted]"],"n":9007199254740993,"path":"/srv/x"}`},
		"a whole object":                  {[]string{"arguments.auth"}, `{"auth":"[redacted]","content":"secret","list":["a","b"],"n":9007199254740993,"path":"/srv/x"}`},
		"everything":                      {[]string{"arguments.path", "arguments"}, `"[redacted]"`},
		"a path that leads nowhere":       {[]string{"arguments.missing.deeper", "arguments.path.x", "arguments.list.7"}, `{"auth":{"token":"t0k","user":"bob"},"content":"secret","list":["a","b"],"n":9007199254740993,"path":"/srv/x"}`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			a := &broker.Approval{Arguments: json.RawMessage(args), Decision: policy.Decision{Redact: tt.redact}}
			if got := string(a.ShownArguments()); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if string(a.Arguments) != args {
				t.Errorf("the approval's arguments changed: %s", a.Arguments)
			}
		})
	}
}

func FuzzShownArguments(f *testing.F) {
	f.Add(`{"a":{"b":[1,{"c":2}]}}`, "arguments.a.b.1.c")
	f.Add(`[1,2]`, "arguments.0")
	f.Fuzz(func(t *testing.T, args, path string) {
		if !json.Valid([]byte(args)) {
			return // the gate refuses such calls before they are held
		}
		a := &broker.Approval{Arguments: json.RawMessage(args), Decision: policy.Decision{Redact: []string{path}}}
		out := a.ShownArguments()
		if !json.Valid(out) {
			t.Fatalf("redacting %q in %s gave invalid JSON %s", path, args, out)
		}
	})
}
