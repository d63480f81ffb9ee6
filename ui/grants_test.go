package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/chromedp/chromedp"

	"github.com/airlock-mcp/airlock/broker"
)

// "Always allow" on the approval page offers what the policy allows,
// approves the call and makes the grant; the Grants page lists it and
// revokes it.
func TestAlwaysAllowAndGrantsPage(t *testing.T) {
	h := newHarness(t)
	c := h.signIn("")
	done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/a", "content": "one"})
	a := h.Held()

	_, doc := c.get("/approvals/" + a.ID)
	form := doc.Find("form.grant")
	if form.Length() != 1 {
		t.Fatal("no Always allow form")
	}
	var scopes, ttls []string
	form.Find("#grant_scope option").Each(func(_ int, o *goquery.Selection) { scopes = append(scopes, o.AttrOr("value", "")) })
	form.Find("#grant_ttl option").Each(func(_ int, o *goquery.Selection) { ttls = append(ttls, o.AttrOr("value", "")) })
	if strings.Join(scopes, ",") != "exact,tool" || strings.Join(ttls, ",") != "15m0s,1h0m0s,8h0m0s" {
		t.Errorf("offered scopes %v and durations %v", scopes, ttls)
	}

	resp, _ := c.post("/approvals/"+a.ID+"/decision", url.Values{"verdict": {"approve"}, "grant_scope": {"everything"}, "grant_ttl": {"1h"}})
	wantStatus(t, resp, http.StatusForbidden)
	resp, _ = c.post("/approvals/"+a.ID+"/decision", url.Values{"verdict": {"approve"}, "grant_scope": {"exact"}, "grant_ttl": {"1h0m0s"}})
	wantStatus(t, resp, http.StatusSeeOther)
	if o := outcome(t, done); !released(o) {
		t.Fatalf("the approved call: %+v, want it released", o)
	}
	got, _ := h.Broker.Approval(context.Background(), a.ID)
	if got.GrantID == "" {
		t.Fatal("no grant was made")
	}
	if o := outcome(t, h.Call(context.Background(), "write", map[string]any{"path": "/srv/a", "content": "one"})); !released(o) {
		t.Fatalf("the same call after the grant: %+v, want it released", o)
	}

	_, doc = c.get("/grants")
	row := doc.Find("#grant-" + got.GrantID)
	if row.Length() != 1 || !strings.Contains(text(row), "exact the same arguments") || !strings.Contains(text(row), "agent (token)") ||
		!strings.Contains(text(row), "admin") || !strings.Contains(text(row), "1") {
		t.Fatalf("grants page row: %q", text(row))
	}
	resp, _ = c.post("/grants/"+got.GrantID+"/revoke", url.Values{})
	wantStatus(t, resp, http.StatusSeeOther)
	_, doc = c.get("/grants")
	if doc.Find("#grant-"+got.GrantID).Length() != 0 {
		t.Error("a revoked grant is still listed as active")
	}
	_, doc = c.get("/grants?all=1")
	if row := doc.Find("#grant-" + got.GrantID); !strings.Contains(text(row), "revoked") {
		t.Errorf("every grant: %q", text(row))
	}
	recs, _ := h.Broker.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventGrantRevoked)})
	if len(recs) != 1 || recs[0].Actor != broker.AdminIdentity {
		t.Errorf("revocation audit: %+v", recs)
	}
	// The next such call waits again.
	h.Call(context.Background(), "write", map[string]any{"path": "/srv/a", "content": "one"})
	h.Held()
}

// In a real browser: Always allow from the approval page makes the grant
// the Grants page shows, and Revoke there ends it.
func TestBrowserAlwaysAllowAndRevoke(t *testing.T) {
	h := newHarness(t)
	tab := newTab(t)
	signInBrowser(t, h, tab)
	done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/b", "content": "two"})
	a := h.Held()
	do(t, tab, chromedp.Navigate(h.url("/approvals/"+a.ID)), chromedp.WaitVisible(chromedp.CSS("form.grant")),
		chromedp.SetValue(chromedp.CSS("#grant_scope"), "tool"),
		chromedp.Click(chromedp.CSS("form.grant button")),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-final="true"]`)))
	if o := outcome(t, done); !released(o) {
		t.Fatalf("the approved call: %+v, want it released", o)
	}
	got, _ := h.Broker.Approval(context.Background(), a.ID)
	row := "#grant-" + got.GrantID
	do(t, tab, chromedp.Click(chromedp.CSS(`nav a[href="/grants"]`)), chromedp.WaitVisible(chromedp.CSS(row)))
	if txt := run(t, tab, chromedp.Text(chromedp.CSS(row))); !strings.Contains(txt, "any arguments") {
		t.Errorf("grant row: %q", txt)
	}
	do(t, tab, chromedp.Click(chromedp.CSS(row+" button")), chromedp.WaitVisible(chromedp.CSS("p.empty")))
	g, _ := h.Broker.Grants(context.Background(), broker.GrantQuery{Status: []broker.GrantStatus{broker.GrantRevoked}})
	if len(g) != 1 || g[0].ID != got.GrantID {
		t.Errorf("revoked grants: %+v", g)
	}

}
