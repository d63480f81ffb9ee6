package slack_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/airlock-mcp/airlock/broker"
)

// The deny dialog's reason is a required field, and a denial submitted
// with a blank one (white space passes Slack's check) is refused by the
// broker's rule: the denier is told why nothing was decided, the call
// still waits, and a denial with a reason then counts.
func TestDenyInSlackNeedsAReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		h.post(h.slack.Click(bob, h.message(), "airlock_deny"))
		synctest.Wait()
		views := h.slack.Views()
		if len(views) != 1 {
			t.Fatalf("views opened: %+v", views)
		}
		var view struct {
			Blocks []struct {
				Type     string `json:"type"`
				BlockID  string `json:"block_id"`
				Optional bool   `json:"optional"`
			} `json:"blocks"`
		}
		if err := json.Unmarshal(views[0].View, &view); err != nil {
			t.Fatal(err)
		}
		required := false
		for _, b := range view.Blocks {
			required = required || b.Type == "input" && b.BlockID == "reason" && !b.Optional
		}
		if !required {
			t.Errorf("the deny dialog's reason is not a required input: %s", views[0].View)
		}

		if code := h.post(h.slack.Submit(bob, views[0], map[string]string{"reason": " \n "})); code != http.StatusOK {
			t.Fatalf("submission answered %d", code)
		}
		synctest.Wait()
		const told = "Nothing was decided: say why you deny the call, the agent reads the reason. Click Deny again (ref "
		if e := h.ephemerals(bob); len(e) != 1 || !strings.HasPrefix(e[0], told+a.ID+")") {
			t.Errorf("bob was told %q, want %q", e, told)
		}
		if got := h.approval(a.ID); got.Status != broker.StatusPending || len(got.Votes) != 0 {
			t.Fatalf("after a blank reason: %s with %d votes", got.Status, len(got.Votes))
		}

		h.post(h.slack.Submit(bob, views[0], map[string]string{"reason": "not on a Friday"}))
		if r := <-done; r.Forward || !strings.Contains(r.Refusal, "not on a Friday") {
			t.Fatalf("the call returned %+v", r)
		}
	})
}
