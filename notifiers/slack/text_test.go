package slack

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

func TestPrettyArguments(t *testing.T) {
	tests := map[string]struct {
		args, want string
		redact     []string
		hid        bool
	}{
		"order and numbers kept": {
			args: `{"z":1.50,"a":[1,2e3],"m":null,"b":true}`,
			want: "{\n  \"z\": 1.50,\n  \"a\": [\n    1,\n    2e3\n  ],\n  \"m\": null,\n  \"b\": true\n}",
		},
		"nested path": {
			args:   `{"auth":{"token":"x","user":"u"},"token":"top"}`,
			redact: []string{"arguments.auth.token"},
			want:   "{\n  \"auth\": {\n    \"token\": \"[redacted]\",\n    \"user\": \"u\"\n  },\n  \"token\": \"top\"\n}",
			hid:    true,
		},
		"object and array values": {
			args:   `{"content":{"a":[1,{"b":2}]},"keep":[{"s":1},{"s":2}]}`,
			redact: []string{"arguments.content", "arguments.keep.1.s"},
			want:   "{\n  \"content\": \"[redacted]\",\n  \"keep\": [\n    {\n      \"s\": 1\n    },\n    {\n      \"s\": \"[redacted]\"\n    }\n  ]\n}",
			hid:    true,
		},
		"everything": {
			args:   `{"a":1}`,
			redact: []string{"arguments"},
			want:   `"[redacted]"`,
			hid:    true,
		},
		"absent path": {
			args:   `{"a":1}`,
			redact: []string{"arguments.b", "input.a"},
			want:   "{\n  \"a\": 1\n}",
		},
		"backticks cannot close the code block": {
			args: "{\"cmd\":\"```x```\"}",
			want: "{\n  \"cmd\": \"\\u0060\\u0060\\u0060x\\u0060\\u0060\\u0060\"\n}",
		},
		"html characters stay readable": {
			args: `{"s":"<a & b>"}`,
			want: "{\n  \"s\": \"<a & b>\"\n}",
		},
		"no arguments": {args: ``, want: `{}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, hid, err := prettyArguments(&broker.Approval{Arguments: json.RawMessage(tc.args), Decision: policy.Decision{Redact: tc.redact}})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || hid != tc.hid {
				t.Errorf("got %q (hid %v), want %q (hid %v)", got, hid, tc.want, tc.hid)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	if s, cut := truncate("hello", 5); s != "hello" || cut != 0 {
		t.Errorf("no cut needed: %q %d", s, cut)
	}
	if s, cut := truncate("hello world", 6); s != "hello…" || cut != 6 {
		t.Errorf("cut: %q %d", s, cut)
	}
	// An astral character counts twice, as Slack may count it.
	if s, cut := truncate("😀😀😀", 4); s != "😀…" || cut != 2 {
		t.Errorf("astral: %q %d", s, cut)
	}
	// Escaping happens before counting, and never splits an entity.
	if s, cut := truncateEscaped("a<b", 4); s != "a" || cut != 2 {
		t.Errorf("escaped: %q %d", s, cut)
	}
	if s, cut := truncateEscaped("a<b", 6); s != "a&lt;b" || cut != 0 {
		t.Errorf("escaped fits: %q %d", s, cut)
	}
	if got := units(strings.Repeat("😀", 10)); got != 20 {
		t.Errorf("units = %d", got)
	}
}
