package broker_test

import (
	"encoding/json"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

func TestShowArguments(t *testing.T) {
	args := `{"path":"/srv/x","content":"secret","auth":{"token":"t0k","user":"bob"},"n":9007199254740993,"list":["a","b"]}`
	tests := map[string]struct {
		redact []string
		want   string
		hid    bool
	}{
		"nothing to hide keeps the bytes": {nil, args, false},
		"one key":                         {[]string{"arguments.content"}, `{"path":"/srv/x","content":"[redacted]","auth":{"token":"t0k","user":"bob"},"n":9007199254740993,"list":["a","b"]}`, true},
		"nested key":                      {[]string{"arguments.auth.token"}, `{"path":"/srv/x","content":"secret","auth":{"token":"[redacted]","user":"bob"},"n":9007199254740993,"list":["a","b"]}`, true},
		"array element":                   {[]string{"arguments.list.1"}, `{"path":"/srv/x","content":"secret","auth":{"token":"t0k","user":"bob"},"n":9007199254740993,"list":["a","[redacted]"]}`, true},
		"a whole object":                  {[]string{"arguments.auth"}, `{"path":"/srv/x","content":"secret","auth":"[redacted]","n":9007199254740993,"list":["a","b"]}`, true},
		"everything":                      {[]string{"arguments.path", "arguments"}, `"[redacted]"`, true},
		"a path that leads nowhere":       {[]string{"arguments.missing.deeper", "arguments.path.x", "arguments.list.7", "input.path"}, args, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			a := &broker.Approval{Arguments: json.RawMessage(args), Decision: policy.Decision{Redact: tt.redact}}
			got, hid := a.ShowArguments()
			if string(got) != tt.want || hid != tt.hid {
				t.Errorf("got  %s (hid %v)\nwant %s (hid %v)", got, hid, tt.want, tt.hid)
			}
			if string(a.Arguments) != args {
				t.Errorf("the approval's arguments changed: %s", a.Arguments)
			}
		})
	}
}

func FuzzShowArguments(f *testing.F) {
	f.Add(`{"a":{"b":[1,{"c":2}]}}`, "arguments.a.b.1.c")
	f.Add(`[1,2]`, "arguments.0")
	f.Fuzz(func(t *testing.T, args, path string) {
		if !json.Valid([]byte(args)) {
			return // the gate refuses such calls before they are held
		}
		a := &broker.Approval{Arguments: json.RawMessage(args), Decision: policy.Decision{Redact: []string{path}}}
		out, _ := a.ShowArguments()
		if !json.Valid(out) {
			t.Fatalf("redacting %q in %s gave invalid JSON %s", path, args, out)
		}
	})
}
