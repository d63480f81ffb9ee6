package ui

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

func TestLineDiff(t *testing.T) {
	tests := map[string]struct{ a, b, want string }{
		"same":           {"x\ny", "x\ny", " x  y"},
		"added":          {"x\nz", "x\ny\nz", " x +y  z"},
		"removed":        {"x\ny\nz", "x\nz", " x -y  z"},
		"changed":        {"a\nb\nc", "a\nB\nc", " a -b +B  c"},
		"all new":        {"", "a", "- +a"},
		"several blocks": {"1\n2\n3\n4\n5", "1\nX\n3\n5\nY", " 1 -2 +X  3 -4  5 +Y"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, l := range lineDiff(strings.Split(tt.a, "\n"), strings.Split(tt.b, "\n")) {
				got = append(got, string(l.Op)+l.Text)
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("got %q, want %q", s, tt.want)
			}
		})
	}
}

func TestArgumentsKeepOrderAndNumbers(t *testing.T) {
	args := arguments(json.RawMessage(`{"z": 1.50, "a": "two\nlines", "m": [1, {"k": 9007199254740993}], "e": "\u200b"}`))
	var got []string
	for _, a := range args {
		got = append(got, fmt.Sprintf("%s=%q json=%v hidden=%v", a.Name, a.Value, a.JSON, a.Hidden))
	}
	want := []string{
		`z="1.50" json=true hidden=false`,
		`a="two\nlines" json=false hidden=false`,
		`m="[\n  1,\n  {\n    \"k\": 9007199254740993\n  }\n]" json=true hidden=false`,
		`e="\u200b" json=false hidden=true`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, raw := range []string{`"[redacted]"`, `[1,2]`, `{"a":`, ``} {
		if got := arguments(json.RawMessage(raw)); got != nil {
			t.Errorf("arguments(%s) = %v, want nil: not an object to split", raw, got)
		}
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/approvals/X?a=b":     "/approvals/X?a=b",
		"":                     "/",
		"https://evil.example": "/",
		"//evil.example/x":     "/",
		`/\evil.example`:       "/",
		"approvals":            "/",
		"/\t/evil.example":     "/",
		"/\n/evil.example":     "/",
		"/\r\n/evil.example":   "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                                  "0s",
		45*time.Second + time.Millisecond*600:         "46s",
		3*time.Minute + 5*time.Second:                 "3m 05s",
		2*time.Hour + 10*time.Minute + 59*time.Second: "2h 10m",
	} {
		if got := duration(d); got != want {
			t.Errorf("duration(%s) = %q, want %q", d, got, want)
		}
	}
}

// An approved call says whether it ran or waits for the agent's retry,
// and one that lapsed says it never ran.
func TestOutcomeSaysWhetherTheCallRan(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 1, 0, 0, time.UTC)
	approved := func(edit func(*broker.Approval)) *broker.Approval {
		a := &broker.Approval{Status: broker.StatusApproved, DecidedBy: "bob", DecidedAt: at, RetryUntil: at.Add(19 * time.Minute)}
		edit(a)
		return a
	}
	for name, tc := range map[string]struct {
		a    *broker.Approval
		want string
	}{
		"waited": {approved(func(a *broker.Approval) { a.CallerWaiting = true }),
			"Already decided by bob at 2026-11-20 10:01:00 UTC: approved."},
		"released": {approved(func(a *broker.Approval) { a.ReleasedAt = at.Add(time.Minute) }),
			"Already decided by bob at 2026-11-20 10:01:00 UTC: approved."},
		"nobody waiting": {approved(func(*broker.Approval) {}),
			"Already decided by bob at 2026-11-20 10:01:00 UTC: approved. It runs when the agent calls again (until 2026-11-20 10:20:00 UTC); otherwise it lapses."},
		"lapsed": {approved(func(a *broker.Approval) {
			a.Status, a.Note = broker.StatusLapsed, "the agent did not call again by 2026-11-20T10:20:00Z"
		}),
			"Approved by bob at 2026-11-20 10:01:00 UTC, but the call never ran: the agent did not call again by 2026-11-20T10:20:00Z."},
	} {
		if got := outcome(tc.a, "alice"); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}
