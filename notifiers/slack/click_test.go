package slack

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

const clickPayload = `{"type":"block_actions","user":{"id":"U0ALICE","username":"alice","team_id":"T0"},` +
	`"container":{"type":"message","message_ts":"1700000000.000001","channel_id":"C0APPROVALS"},` +
	`"trigger_id":"1.2.trigger","channel":{"id":"C0APPROVALS"},` +
	`"actions":[{"action_id":"airlock_approve","block_id":"airlock_decide","value":"06FHQ2B0Y5CJ3ZKM","type":"button"}]}`

const submitPayload = `{"type":"view_submission","user":{"id":"U0ALICE"},` +
	`"view":{"callback_id":"airlock_deny_reason","private_metadata":"{\"approval\":\"06FHQ2B0Y5CJ3ZKM\",\"channel\":\"C0APPROVALS\",\"ts\":\"1700000000.000001\"}",` +
	`"state":{"values":{"reason":{"reason":{"type":"plain_text_input","value":"  not today  "}}}}}}`

func TestParseInteraction(t *testing.T) {
	in, err := parseInteraction([]byte(clickPayload))
	if err != nil {
		t.Fatal(err)
	}
	want := interaction{kind: actionApprove, user: "U0ALICE", approvalID: "06FHQ2B0Y5CJ3ZKM", channel: "C0APPROVALS",
		messageTS: "1700000000.000001", triggerID: "1.2.trigger"}
	if *in != want {
		t.Errorf("click = %+v", *in)
	}
	in, err = parseInteraction([]byte(submitPayload))
	if err != nil {
		t.Fatal(err)
	}
	if in.kind != callbackDeny || in.reason != "not today" || in.channel != "C0APPROVALS" || in.approvalID != "06FHQ2B0Y5CJ3ZKM" {
		t.Errorf("submission = %+v", *in)
	}
	// A blank reason is the broker's to refuse (ErrNoReason), so that the
	// denier is told why nothing was decided.
	in, err = parseInteraction([]byte(strings.Replace(submitPayload, `"  not today  "`, `" \n "`, 1)))
	if err != nil || in.kind != callbackDeny || in.reason != "" {
		t.Errorf("a blank reason: %+v %v", in, err)
	}

	refused := map[string]struct {
		payload string
		ignored bool
	}{
		"not json":             {`{`, false},
		"no user":              {strings.Replace(clickPayload, `"U0ALICE"`, `""`, 1), false},
		"user not an id":       {strings.Replace(clickPayload, `"U0ALICE"`, `"<!channel>"`, 1), false},
		"approval not an id":   {strings.Replace(clickPayload, `"06FHQ2B0Y5CJ3ZKM"`, `"../x"`, 1), false},
		"no channel":           {strings.ReplaceAll(clickPayload, `"C0APPROVALS"`, `""`), false},
		"another app's button": {strings.Replace(clickPayload, `"airlock_decide"`, `"other"`, 1), true},
		"unknown action":       {strings.Replace(clickPayload, `"airlock_approve"`, `"airlock_launch"`, 1), true},
		"other payload type":   {strings.Replace(clickPayload, `"block_actions"`, `"shortcut"`, 1), true},
		"other dialog":         {strings.Replace(submitPayload, `"airlock_deny_reason"`, `"other"`, 1), true},
		"no reason field":      {strings.Replace(submitPayload, `"reason":{"reason"`, `"reason":{"other"`, 1), false},
		"long reason":          {strings.Replace(submitPayload, `"  not today  "`, `"`+strings.Repeat("x", maxReason+1)+`"`, 1), false},
		"bad dialog state":     {strings.Replace(submitPayload, `"private_metadata":"{`, `"private_metadata":"[`, 1), false},
	}
	for name, tc := range refused {
		t.Run(name, func(t *testing.T) {
			_, err := parseInteraction([]byte(tc.payload))
			if err == nil || errors.Is(err, errIgnored) != tc.ignored {
				t.Errorf("err = %v, want ignored=%v", err, tc.ignored)
			}
		})
	}
}

// FuzzParseInteraction feeds the parser what an attacker who got past the
// signature check, or a confused Slack, might send. It must never panic,
// and what it accepts must be safe to act on and to show.
func FuzzParseInteraction(f *testing.F) {
	f.Add([]byte(clickPayload))
	f.Add([]byte(submitPayload))
	f.Add([]byte(strings.Replace(clickPayload, "airlock_approve", "airlock_deny", 1)))
	f.Add([]byte(`{"type":"block_actions","actions":[]}`))
	f.Add([]byte(`{"type":"view_submission","view":{"state":{"values":{"reason":null}}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := parseInteraction(data)
		if err != nil {
			if in != nil {
				t.Fatal("an error with an interaction")
			}
			return
		}
		if !userIDPattern.MatchString(in.user) || !approvalIDPattern.MatchString(in.approvalID) ||
			!channelIDPattern.MatchString(in.channel) || !tsPattern.MatchString(in.messageTS) {
			t.Fatalf("accepted ids that are not ids: %+v", *in)
		}
		switch in.kind {
		case actionApprove, actionDeny:
			if in.reason != "" {
				t.Fatalf("a click with a reason: %+v", *in)
			}
		case callbackDeny:
			// A blank reason passes, for the broker to refuse (ErrNoReason).
			if utf8.RuneCountInString(in.reason) > maxReason || strings.TrimSpace(in.reason) != in.reason {
				t.Fatalf("reason %q", in.reason)
			}
		default:
			t.Fatalf("kind %q", in.kind)
		}
		var v any
		if json.Unmarshal(data, &v) != nil {
			t.Fatal("accepted invalid JSON")
		}
	})
}
