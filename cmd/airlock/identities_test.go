package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/notifiers/slack/slacktest"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/ui"
)

func TestIdentitiesConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"bot": "xoxb-1", "app": "xapp-1"})
	slackSection := "slack:\n  bot_token_file: " + filepath.Join(dir, "bot") + "\n  app_token_file: " + filepath.Join(dir, "app") + "\n  channel: C0APPROVALS\n"
	tests := map[string]struct{ yaml, want string }{
		"unknown key":              {"identities:\n  alice:\n    emails: [a@example.com]\n", `line 3: unknown key "emails"`},
		"one identity, two":        {"identities:\n  alice: {oauth: [a@example.com]}\n  bob: {oauth: [a@example.com]}\n", "config: identities.bob.oauth[0]: a@example.com is also identities.alice.oauth[0]; one identity is one person"},
		"one token, two":           {"identities:\n  alice: {tokens: [laptop]}\n  bob: {tokens: [ci, laptop]}\n", "identities.bob.tokens[1]: laptop is also identities.alice.tokens[0]"},
		"names that share a start": {"identities:\n  al: {web: [a@example.com]}\n  al.x: {web: [a@example.com]}\n", "identities.al.x.web[0]: a@example.com is also identities.al.web[0]"},
		"one slack user, two":      {"identities:\n  alice: {slack: [U0A]}\n  bob: {slack: [U0A]}\n", "identities.bob.slack[0]: U0A is also identities.alice.slack[0]"},
		"not a slack user":         {"identities:\n  alice: {slack: ['@alice']}\n", `identities.alice.slack[0]: "@alice" is not a Slack user ID`},
		"empty identity":           {"identities:\n  alice: {web: ['']}\n", `identities.alice.web[0]: "" must be an identity`},
		"no identity":              {"identities:\n  alice: {}\n", "identities.alice: lists no identity"},
		"another's name":           {"identities:\n  alice: {tokens: [bob]}\n  bob: {web: [bob@example.com]}\n", "identities.alice.tokens[0]: bob is the name of another person"},
		"slack prefix":             {"identities:\n  'slack:U0A': {web: [a@example.com]}\n", `identities.slack:U0A: a person's name must not start with "slack:"`},
		"slack.identities disagrees": {slackSection + "  identities: {bob: U0A}\nidentities:\n  alice: {slack: [U0A]}\n",
			"slack.identities.bob: U0A is also identities.alice.slack[0]; one Slack account is one person"},
		"slack.identities names an identity": {slackSection + "  identities: {alice@example.com: U0A}\nidentities:\n  alice: {web: [alice@example.com]}\n",
			"slack.identities.alice@example.com: alice@example.com is identities.alice's; list U0A under identities.alice.slack instead"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestIdentitiesBuildPeople(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"bot": "xoxb-1", "app": "xapp-1"})
	cfg, err := loadConfig(writeConfig(t, `
ui: {approver: ops@example.com}
slack:
  bot_token_file: `+filepath.Join(dir, "bot")+`
  app_token_file: `+filepath.Join(dir, "app")+`
  channel: C0APPROVALS
  identities: {alice: U0ALICE, carol: U0CAROL}
identities:
  alice:
    oauth: [alice@example.com]
    web: [alice@example.com]
    slack: [U0ALICE, W0ALICE]
    tokens: [alice, alice-laptop]
    os: [alice]
  ops:
    web: [ops@example.com]
`))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.people()
	for _, kv := range [][3]string{
		{"oauth", "alice@example.com", "alice"}, {"web", "alice@example.com", "alice"}, {"slack", "U0ALICE", "alice"},
		{"slack", "W0ALICE", "alice"}, {"token", "alice-laptop", "alice"}, {"token", "alice", "alice"}, {"os", "alice", "alice"},
		{"slack", "U0CAROL", "carol"}, {"web", "ops@example.com", "ops"},
		{"token", "alice@example.com", ""}, {"web", "alice-laptop", ""}, {"oauth", "", ""},
	} {
		if got := p.Person(kv[0], kv[1]); got != kv[2] {
			t.Errorf("Person(%q, %q) = %q, want %q", kv[0], kv[1], got, kv[2])
		}
	}
	if got := cfg.slackIdentities(); !slices.Equal(got["alice"], []string{"U0ALICE", "W0ALICE"}) || !slices.Equal(got["carol"], []string{"U0CAROL"}) || len(got) != 2 {
		t.Errorf("Slack identities = %v", got)
	}
	// A login link and the admin token stay one person: ui.approver's.
	if got := cfg.adminIdentity(); got != "ops" {
		t.Errorf("admin identity = %q, want ops", got)
	}
	if cfg, err := loadConfig(""); err != nil || cfg.people() != nil || cfg.adminIdentity() != "" {
		t.Errorf("without identities: people %v, admin %q, err %v", cfg.people(), cfg.adminIdentity(), err)
	}
}

// crossChannel is the broker, the web UI and the Slack notifier built
// from one config, as serve builds them, with a fake Slack workspace.
type crossChannel struct {
	*brokertest.Harness
	t     *testing.T
	slack *slacktest.Server
	ui    *httptest.Server
	uis   *ui.Server
	hook  http.Handler // /slack/interactivity
}

// identitiesConfig is alice's identities in every channel; mapped false
// leaves them out, as a config without identities would.
func identitiesConfig(mapped bool) string {
	if !mapped {
		return ""
	}
	return `identities:
  alice:
    oauth: [00u1alice]         # her agents' OAuth subject
    web: [alice@example.com]  # her sign-in
    slack: [U0ALICE]
    tokens: [alice-laptop]
`
}

func newCrossChannel(t *testing.T, quorum int, mapped bool) *crossChannel {
	s := fakeSlack(t)
	dir := t.TempDir()
	write(t, dir, map[string]string{"bot": slacktest.BotToken, "secret": slacktest.SigningSecret})
	cfg, err := loadConfig(writeConfig(t, fmt.Sprintf(`slack:
  bot_token_file: %s
  signing_secret_file: %s
  channel: C0APPROVALS
  api_url: %s
%s`, filepath.Join(dir, "bot"), filepath.Join(dir, "secret"), s.APIURL(), identitiesConfig(mapped))))
	if err != nil {
		t.Fatal(err)
	}
	log := newLogger(os.Stderr, "error")
	n, err := newSlack(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	hold := brokertest.PolicyFunc(func(*policy.Input) policy.Decision {
		return policy.Decision{Action: policy.Hold, Reason: "writes need people", Quorum: quorum}
	})
	c := &crossChannel{t: t, slack: s}
	c.Harness = brokertest.NewHarness(t, broker.Options{Policy: hold, Notifiers: []broker.Notifier{n}, HoldWait: -1,
		AdminIdentity: cfg.adminIdentity(), People: cfg.people()})
	engine, err := policy.New(context.Background(), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(engine.Close)
	if c.uis, err = ui.New(ui.Options{Broker: c.Broker, Policy: engine, Approver: cfg.UI.Approver}); err != nil {
		t.Fatal(err)
	}
	c.ui = httptest.NewServer(c.uis)
	t.Cleanup(c.ui.Close)
	t.Cleanup(c.uis.Close)
	c.hook = n.InteractivityHandler(c.Broker)
	return c
}

// web signs a browser in as name and approves a on the page.
func (c *crossChannel) web(a *broker.Approval, name string) {
	c.t.Helper()
	link, err := c.uis.NewLoginLink(c.ui.URL, name)
	if err != nil {
		c.t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	resp, err := browser.Get(link.URL)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = browser.PostForm(c.ui.URL+"/approvals/"+a.ID+"/decision", url.Values{"verdict": {"approve"}})
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
}

// slackApprove clicks Approve on a's message as Slack user id and waits
// until Slack has told them something or the approval has their vote.
func (c *crossChannel) slackApprove(a *broker.Approval, id string) {
	c.t.Helper()
	m := c.waitMessage()
	votes := len(c.approval(a.ID).Votes)
	rec := httptest.NewRecorder()
	c.hook.ServeHTTP(rec, slacktest.InteractionRequest("/slack/interactivity", slacktest.SigningSecret, time.Now(),
		c.slack.Click(id, m, "airlock_approve")))
	if rec.Code != http.StatusOK {
		c.t.Fatalf("interactivity: %d", rec.Code)
	}
	c.until("Slack's answer to the click", func() bool {
		return len(c.told(id)) > 0 || len(c.approval(a.ID).Votes) > votes
	})
}

func (c *crossChannel) waitMessage() slacktest.Message {
	c.t.Helper()
	c.until("the approval's Slack message", func() bool { return len(c.slack.Messages()) == 1 })
	return c.slack.Messages()[0]
}

// until polls cond, a bounded number of times.
func (c *crossChannel) until(what string, cond func() bool) {
	c.t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("gave up waiting for %s", what)
}

func (c *crossChannel) told(user string) []string {
	var out []string
	for _, e := range c.slack.Ephemerals() {
		if e.User == user {
			out = append(out, e.Text)
		}
	}
	return out
}

func (c *crossChannel) approval(id string) *broker.Approval {
	c.t.Helper()
	a, err := c.Broker.Approval(context.Background(), id)
	if err != nil {
		c.t.Fatal(err)
	}
	return a
}

// The requester may not approve their own call from another channel, and
// a quorum of two is not met by one person twice, when identities says
// the accounts are one person's. Without identities, each channel's
// account is someone else, and the same steps decide the call: the
// refusals come from the mapping.
func TestIdentitiesAcrossChannels(t *testing.T) {
	tests := map[string]struct {
		requester broker.Principal
		quorum    int
		act       func(c *crossChannel, a *broker.Approval)
		refused   string // what the approver is told in Slack, when there
		// unmapped is the approval's votes without identities, when
		// they do not decide it: an unmapped Slack user is only known to
		// be different from other Slack users.
		unmapped int
	}{
		"an OAuth agent's person, on the web": {
			requester: broker.Principal{Source: "oauth", ID: "00u1alice"}, quorum: 1,
			act: func(c *crossChannel, a *broker.Approval) { c.web(a, "alice@example.com") },
		},
		"a token agent's person, in Slack": {
			requester: broker.Principal{Source: "token", ID: "alice-laptop"}, quorum: 1,
			act:     func(c *crossChannel, a *broker.Approval) { c.slackApprove(a, "U0ALICE") },
			refused: "You requested this call, so you cannot approve it.",
		},
		"an OAuth agent's person, in Slack": {
			requester: broker.Principal{Source: "oauth", ID: "00u1alice"}, quorum: 1,
			act:     func(c *crossChannel, a *broker.Approval) { c.slackApprove(a, "U0ALICE") },
			refused: "You requested this call, so you cannot approve it.",
		},
		"one person twice for a quorum of two, web then Slack": {
			requester: broker.Principal{Source: "token", ID: "ci"}, quorum: 2,
			act: func(c *crossChannel, a *broker.Approval) {
				c.web(a, "alice@example.com")
				c.slackApprove(a, "U0ALICE")
			},
			refused:  "You have already approved this call",
			unmapped: 2,
		},
	}
	for name, tc := range tests {
		for _, mapped := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/mapped=%v", name, mapped), func(t *testing.T) {
				c := newCrossChannel(t, tc.quorum, mapped)
				c.Principal = tc.requester
				done := c.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
				a := c.Held()
				tc.act(c, a)
				got := c.approval(a.ID)
				if !mapped && tc.unmapped > 0 {
					if got.Status != broker.StatusPending || len(got.Votes) != tc.unmapped {
						t.Fatalf("without identities: %s with votes %+v; Slack said %q", got.Status, got.Votes, c.told("U0ALICE"))
					}
					return
				}
				if !mapped {
					if got.Status != broker.StatusApproved {
						t.Fatalf("without identities: %s with votes %+v; Slack said %q", got.Status, got.Votes, c.told("U0ALICE"))
					}
					if o := brokertest.Wait(t, done, "the outcome"); !o.Forward {
						t.Errorf("approved, not forwarded: %+v", o)
					}
					return
				}
				if got.Status != broker.StatusPending || len(got.Votes) != tc.quorum-1 {
					t.Fatalf("alice's own approval counted: %s, votes %+v", got.Status, got.Votes)
				}
				for _, v := range got.Votes {
					if v.Approver != "alice" {
						t.Errorf("a vote under %q, not the person", v.Approver)
					}
				}
				if tc.refused != "" {
					if told := c.told("U0ALICE"); len(told) != 1 || !strings.Contains(told[0], tc.refused) {
						t.Errorf("Slack told alice %q, want %q", told, tc.refused)
					}
				}
			})
		}
	}
}

// serve's runtime gives the broker and the UI the people config names.
func TestRuntimeKnowsPeople(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	cfg, err := loadConfig(writeConfig(t, `
ui: {approver: ops@example.com}
identities:
  alice: {oauth: [00u1alice], tokens: [alice-laptop]}
  ops: {web: [ops@example.com]}
`))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := startRuntime(t.Context(), cfg, newLogger(os.Stderr, "error"), filepath.Join(t.TempDir(), "state"), nil, runtimeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.close()
	if got := rt.broker.Person("oauth", "00u1alice"); got != "alice" {
		t.Errorf("the broker's person of OAuth subject 00u1alice: %q", got)
	}
	if got := rt.broker.Person("token", "alice-laptop"); got != "alice" {
		t.Errorf("the broker's person of token alice-laptop: %q", got)
	}
	if link, err := rt.ui.NewLoginLink("http://127.0.0.1:7420", ""); err != nil || link.Approver != "ops" {
		t.Errorf("a login link signs in as %q (%v), want the person ops", link.Approver, err)
	}
}
