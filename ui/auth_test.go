package ui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/ui"
)

func TestPagesNeedSignIn(t *testing.T) {
	h := newHarness(t)
	a := h.addApproval(nil)
	c := h.anonymous()
	for _, path := range []string{"/", "/approvals/" + a.ID, "/approvals/" + a.ID + "/status", "/pending/table", "/events",
		"/history", "/history/1", "/policy", "/nowhere"} {
		resp, _ := c.get(path)
		wantStatus(t, resp, http.StatusSeeOther)
		if loc := resp.Header.Get("Location"); loc != "/login?next="+url.QueryEscape(path) {
			t.Errorf("%s: sent to %q", path, loc)
		}
	}
	for _, path := range []string{"/approvals/" + a.ID + "/decision", "/policy"} {
		resp, doc := c.post(path, url.Values{"verdict": {"approve"}, "input": {"{}"}})
		wantStatus(t, resp, http.StatusUnauthorized)
		if got := text(doc.Find("h1")); got != "Sign in first" {
			t.Errorf("POST %s: %q", path, got)
		}
	}
	if stored, _ := h.Broker.Approval(context.Background(), a.ID); stored.Status != broker.StatusPending {
		t.Errorf("an anonymous post changed the approval: %s", stored.Status)
	}
	resp, doc := c.get("/login")
	wantStatus(t, resp, http.StatusOK)
	if got := text(doc.Find("main")); !strings.Contains(got, "airlock login") || strings.Contains(got, a.ID) || strings.Contains(got, "write") {
		t.Errorf("login page: %s", got)
	}
	if doc.Find("nav").Length() != 0 {
		t.Error("the login page shows the navigation")
	}
}

func TestLoginLink(t *testing.T) {
	h := newHarness(t, func(o *ui.Options) { o.Approver = "alice" })
	link, err := h.ui.NewLoginLink(h.srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	if link.Approver != "alice" || !strings.HasPrefix(link.URL, h.srv.URL+"/login?token=") {
		t.Fatalf("link = %+v", link)
	}
	c := h.anonymous()
	resp, _ := c.get(link.URL)
	wantStatus(t, resp, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Errorf("after sign-in, sent to %q: the token must leave the address bar", loc)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies: %v", cookies)
	}
	ck := cookies[0]
	_, port, _ := strings.Cut(strings.TrimPrefix(h.srv.URL, "http://"), ":")
	if ck.Name != "airlock_session_"+port || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/" {
		t.Errorf("session cookie = %+v", ck)
	}
	if strings.Contains(ck.Value, strings.TrimPrefix(link.URL, h.srv.URL+"/login?token=")) {
		t.Error("the session cookie is the link's token")
	}
	_, doc := c.get("/")
	if got := text(doc.Find(".who strong")); got != "alice" {
		t.Errorf("signed in as %q", got)
	}
	resp, _ = c.get("/login")
	wantStatus(t, resp, http.StatusSeeOther)

	// A link works once.
	resp, doc = h.anonymous().get(link.URL)
	wantStatus(t, resp, http.StatusForbidden)
	if got := text(doc.Find(".alert")); !strings.Contains(got, "expired or was already used") {
		t.Errorf("a used link: %q", got)
	}

	// And not after an hour.
	late, _ := h.ui.NewLoginLink(h.srv.URL, "bob")
	h.clock.add(ui.LinkTTL + time.Second)
	resp, _ = h.anonymous().get(late.URL)
	wantStatus(t, resp, http.StatusForbidden)

	// Sessions end too.
	h.clock.add(ui.DefaultSessionTTL)
	resp, _ = c.get("/")
	wantStatus(t, resp, http.StatusSeeOther)
}

func TestLogout(t *testing.T) {
	h := newHarness(t)
	c := h.signIn("")
	resp, _ := c.post("/logout", nil)
	wantStatus(t, resp, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/login" {
		t.Errorf("sent to %q", loc)
	}
	resp, _ = c.get("/")
	wantStatus(t, resp, http.StatusSeeOther)
}

func TestSecureCookieBehindTLS(t *testing.T) {
	h := newHarness(t, func(o *ui.Options) { o.PublicURL = "https://airlock.example.com" })
	link, _ := h.ui.NewLoginLink("http://ignored", "")
	if !strings.HasPrefix(link.URL, "https://airlock.example.com/login?token=") {
		t.Fatalf("link = %s", link.URL)
	}
	resp, _ := h.anonymous().get(h.srv.URL + strings.TrimPrefix(link.URL, "https://airlock.example.com"))
	wantStatus(t, resp, http.StatusSeeOther)
	if ck := resp.Cookies(); len(ck) != 1 || !ck[0].Secure || ck[0].Name != "airlock_session" {
		t.Errorf("cookie = %+v", ck)
	}
	if _, err := ui.New(ui.Options{Broker: h.Broker, Policy: h.engine, PublicURL: "https://airlock.example.com/ui"}); err == nil {
		t.Error("a public URL with a path was accepted")
	}
}

func TestLoginLinkAPI(t *testing.T) {
	h := newHarness(t)
	post := func(auth, body string) (int, map[string]string) {
		req, _ := http.NewRequest(http.MethodPost, h.url("/api/v1/login-links"), strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for _, auth := range []string{"", "Bearer wrong", testToken} {
		if code, out := post(auth, ""); code != http.StatusUnauthorized || out["error"] == "" {
			t.Errorf("Authorization %q: %d %v", auth, code, out)
		}
	}
	code, out := post("Bearer "+testToken, "")
	if code != http.StatusOK || out["approver"] != "admin" || !strings.HasPrefix(out["url"], h.srv.URL+"/login?token=") || out["expires_at"] == "" {
		t.Fatalf("default link: %d %v", code, out)
	}
	// The admin token is one person: a link in another name would let
	// them count twice towards a quorum.
	if code, out := post("Bearer "+testToken, `{"approver": "bob"}`); code != http.StatusForbidden || !strings.Contains(out["error"], "signs in as admin (ui.approver), not as bob") {
		t.Errorf("link for bob: %d %v", code, out)
	}
	code, out = post("Bearer "+testToken, `{"approver": "admin"}`)
	if code != http.StatusOK || out["approver"] != "admin" {
		t.Fatalf("link naming admin: %d %v", code, out)
	}
	c := h.anonymous()
	c.get(out["url"])
	if _, doc := c.get("/"); text(doc.Find(".who strong")) != "admin" {
		t.Error("the link does not sign in as admin")
	}
	if code, out := post("Bearer "+testToken, `{"aprover": "bob"}`); code != http.StatusBadRequest {
		t.Errorf("unknown field: %d %v", code, out)
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := newHarness(t)
	c := h.signIn("")
	_, doc := c.get("/")
	css := doc.Find("link[rel=stylesheet]").AttrOr("href", "")
	js := doc.Find("script").AttrOr("src", "")
	if !strings.HasPrefix(css, "/static/app.css?v=") || !strings.HasPrefix(js, "/static/app.js?v=") {
		t.Fatalf("assets: %q %q", css, js)
	}
	if doc.Find("script").Length() != 1 || strings.TrimSpace(doc.Find("script").Text()) != "" || doc.Find("[style]").Length() != 0 {
		t.Error("a page has inline script or style")
	}
	for _, path := range []string{"/", "/login", css, "/approvals/NOPE"} {
		resp, _ := c.get(path)
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q allows inline code", path, csp)
		}
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q", path, k, got)
			}
		}
	}
	resp, _ := c.get("/")
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("page Cache-Control = %q", got)
	}
	resp, _ = h.anonymous().get(css)
	wantStatus(t, resp, http.StatusOK)
	if got := resp.Header.Get("Cache-Control"); !strings.Contains(got, "immutable") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Errorf("a versioned asset: %q, %q", got, resp.Header.Get("Content-Type"))
	}
	resp, _ = c.get("/static/app.js")
	if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("an unversioned asset: %q", got)
	}
	resp, _ = c.get("/static/nope.js")
	wantStatus(t, resp, http.StatusNotFound)
	resp, doc = c.get("/nowhere")
	wantStatus(t, resp, http.StatusNotFound)
	if got := text(doc.Find("h1")); got != "Not found" {
		t.Errorf("404 page: %q", got)
	}
}

func TestEvents(t *testing.T) {
	h := newHarness(t)
	c := h.signIn("")
	req, _ := http.NewRequest(http.MethodGet, h.url("/events"), nil)
	resp, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := resp.Header.Get("Content-Type"); got != "text/event-stream" {
		t.Fatalf("Content-Type = %q", got)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return ""
	}
	// Stored behind the broker's back, as another replica would: the store
	// announces it.
	a := h.addApproval(func(a *broker.Approval) { a.Arguments = json.RawMessage(`{"secret":"do-not-stream"}`) })
	if ev, data := next(), next(); ev != "event: held" || !strings.Contains(data, `"id":"`+a.ID+`"`) || strings.Contains(data, "do-not-stream") {
		t.Errorf("event %q %q", ev, data)
	}
	next() // the blank line that ends it
	if _, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "bob", Channel: "test", Verdict: broker.Approve}); err != nil {
		t.Fatal(err)
	}
	if ev, data := next(), next(); ev != "event: decided" || !strings.Contains(data, `"id":"`+a.ID+`"`) ||
		!strings.Contains(data, `"status":"approved"`) || strings.Contains(data, "do-not-stream") {
		t.Errorf("event %q %q", ev, data)
	}
	// Close ends the stream, so that a server can shut down.
	h.ui.Close()
	for l := range lines {
		if l != "" {
			t.Errorf("after Close: %q", l)
		}
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Errorf("stream did not end cleanly: %v", err)
	}
}
