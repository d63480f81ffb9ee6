package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/ui"
)

// harness is the UI in front of the core harness (a broker on an
// in-memory store, a policy that holds calls to "write"), on one HTTP
// server with the login-link API, as `airlock serve` has it. Calls come
// from the principal "agent" with the client "ui-test-agent", and are
// held through the core as the relay would hand them over, without MCP.
type harness struct {
	*brokertest.Harness
	t      *testing.T
	engine *policy.Engine
	ui     *ui.Server
	srv    *httptest.Server
	clock  *clock
}

// holdWrites holds "write", offering exact and tool grants as the default
// library does and honouring them, and allows everything else.
func holdWrites(in *policy.Input) policy.Decision {
	if in.Tool.Name == "write" {
		if len(in.Grants) > 0 {
			return policy.Decision{Action: policy.Allow, Reason: "granted", Grant: in.Grants[0].ID}
		}
		return policy.Decision{Action: policy.Hold, Reason: "writes need a person", Risk: policy.RiskHigh, Quorum: 1,
			Grantable: &policy.Grantable{Scopes: []string{policy.ScopeExact, policy.ScopeTool}, MaxTTL: policy.Duration(8 * time.Hour)}}
	}
	return policy.Decision{Action: policy.Allow, Reason: "reads pass"}
}

func newHarness(t *testing.T, configure ...func(*ui.Options)) *harness {
	t.Helper()
	return newHarnessWith(t, broker.Options{}, configure...)
}

// newHarnessWith is newHarness with a broker configured by bo (its
// policy and hold wait are the harness's).
func newHarnessWith(t *testing.T, bo broker.Options, configure ...func(*ui.Options)) *harness {
	t.Helper()
	h := &harness{t: t, clock: &clock{}}
	h.clock.set(time.Now())
	bo.Policy, bo.HoldWait = brokertest.PolicyFunc(holdWrites), -1
	h.Harness = brokertest.NewHarness(t, bo)
	h.Principal = broker.Principal{ID: "agent", Source: "token"}
	h.Client = broker.ClientInfo{Name: "ui-test-agent", Version: "1"}
	var err error
	h.engine, err = policy.New(context.Background(), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.engine.Close)
	opts := ui.Options{Broker: h.Broker, Policy: h.engine, Now: h.clock.now}
	for _, c := range configure {
		c(&opts)
	}
	h.ui, err = ui.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", h.ui)
	mux.Handle("POST /api/v1/login-links", h.ui.LoginLinkHandler(testToken))
	h.srv = httptest.NewServer(mux)
	// Cleanups run last first: live streams end, then the server stops,
	// and then the harness's broker answers the calls still held.
	t.Cleanup(h.srv.Close)
	t.Cleanup(h.ui.Close)
	return h
}

const testToken = "test-admin-token"

// clock is a settable time for the UI.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time           { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)          { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration)      { c.ns.Add(int64(d)) }
func (h *harness) url(path string) string { return h.srv.URL + path }

// outcome waits for a call's outcome.
func outcome(t *testing.T, ch <-chan broker.Outcome) broker.Outcome {
	t.Helper()
	return brokertest.Wait(t, ch, "the call's outcome")
}

// released reports whether the core let the call go to the upstream.
func released(o broker.Outcome) bool { return o.Forward && o.Refusal == "" }

var approvalSeq atomic.Int64

// addApproval stores a pending approval as the broker would, changed by
// edit, for pages that need a particular one.
func (h *harness) addApproval(edit func(*broker.Approval)) *broker.Approval {
	h.t.Helper()
	now := time.Now().UTC()
	a := &broker.Approval{
		ID:              fmt.Sprintf("01TEST%010d", approvalSeq.Add(1)),
		Status:          broker.StatusPending,
		Server:          "test",
		Tool:            "write",
		Arguments:       json.RawMessage(`{"path":"/srv/x","content":"hello"}`),
		ArgumentsDigest: "sha256:test",
		ToolFingerprint: "sha256:tool",
		Definition: &broker.ToolDefinition{Name: "write", Description: "Write a file.",
			Annotations: json.RawMessage(`{"destructiveHint":true}`), InputSchema: json.RawMessage(`{"type":"object"}`)},
		Principal:   broker.Principal{ID: "agent", Source: "token"},
		Client:      broker.ClientInfo{Name: "ui-test-agent", Version: "1"},
		Session:     "session-1",
		Decision:    policy.Decision{Action: policy.Hold, Reason: "writes need a person", Risk: policy.RiskHigh, Quorum: 1, ID: "decision-1", Revision: "revision-1"},
		RequestedAt: now.Add(-time.Minute),
		ExpiresAt:   now.Add(9 * time.Minute),
	}
	if edit != nil {
		edit(a)
	}
	if err := h.Store.CreateApproval(context.Background(), a, &broker.AuditRecord{Time: now, Event: broker.EventHeld,
		Server: a.Server, Tool: a.Tool, Principal: a.Principal.ID, ApprovalID: a.ID, Reason: a.Decision.Reason}); err != nil {
		h.t.Fatal(err)
	}
	return a
}

// client is a browser stand-in: a cookie jar, and redirects left for the
// test to see.
type client struct {
	h *harness
	c *http.Client
}

func (h *harness) anonymous() *client {
	jar, _ := cookiejar.New(nil)
	return &client{h: h, c: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// signIn signs a new client in with a login link, as approver ("" for
// the default).
func (h *harness) signIn(approver string) *client {
	h.t.Helper()
	link, err := h.ui.NewLoginLink(h.srv.URL, approver)
	if err != nil {
		h.t.Fatal(err)
	}
	c := h.anonymous()
	resp, _ := c.do(http.MethodGet, link.URL, nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		h.t.Fatalf("login link: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return c
}

// do sends a request and parses the answer as HTML.
func (c *client) do(method, target string, form url.Values, header http.Header) (*http.Response, *goquery.Document) {
	c.h.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = c.h.url(target)
	}
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		c.h.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		c.h.t.Fatal(err)
	}
	return resp, doc
}

func (c *client) get(path string) (*http.Response, *goquery.Document) {
	c.h.t.Helper()
	return c.do(http.MethodGet, path, nil, nil)
}

func (c *client) post(path string, form url.Values) (*http.Response, *goquery.Document) {
	c.h.t.Helper()
	return c.do(http.MethodPost, path, form, nil)
}

// text is the element's text with runs of white space made one space.
func text(s *goquery.Selection) string { return strings.Join(strings.Fields(s.Text()), " ") }

func wantStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want)
	}
}
