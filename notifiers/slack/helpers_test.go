package slack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/notifiers/slack"
	"github.com/airlock-mcp/airlock/notifiers/slack/slacktest"
	"github.com/airlock-mcp/airlock/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The fake workspace.
const (
	channel   = "C0APPROVALS"
	secops    = "C0SECOPS"
	approvers = "S0APPROVERS"

	alice   = "U0ALICE"   // approver, mapped to the Airlock identity "alice"
	bob     = "U0BOB"     // approver, unmapped: votes as slack:U0BOB
	tester  = "U0TESTER"  // the requester's Slack account, and in the group
	mallory = "U0MALLORY" // in the workspace, not an approver
	guest   = "U0GUEST"   // in the group, but a guest
	robot   = "U0ROBOT"   // in the group, but a bot
	gone    = "U0GONE"    // in the group, but deactivated
)

func newSlack(t *testing.T) *slacktest.Server {
	s := slacktest.New(t)
	s.AddChannel(channel, true)
	s.AddChannel(secops, false)
	s.AddUser(
		slacktest.User{ID: alice, Name: "alice"},
		slacktest.User{ID: bob, Name: "bob"},
		slacktest.User{ID: tester, Name: "tester"},
		slacktest.User{ID: mallory, Name: "mallory"},
		slacktest.User{ID: guest, Name: "guest", Restricted: true},
		slacktest.User{ID: robot, Name: "robot", Bot: true},
		slacktest.User{ID: gone, Name: "gone", Deleted: true},
	)
	s.AddGroup(approvers, alice, bob, tester, guest, robot, gone)
	return s
}

func config(s *slacktest.Server) slack.Config {
	return slack.Config{
		BotToken:      slacktest.BotToken,
		SigningSecret: slacktest.SigningSecret,
		Channel:       channel,
		APIURL:        s.APIURL(),
		UIURL:         "https://airlock.example.com",
		Identities:    map[string][]string{"alice": {alice}, "tester": {tester}},
		HTTPClient:    s.Client(),
		Logger:        brokertest.Logger(),
	}
}

func newNotifier(t *testing.T, cfg slack.Config) *slack.Notifier {
	t.Helper()
	n, err := slack.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// holdWrite holds calls to "write" for the approvers group, with quorum q.
func holdWrite(q int) brokertest.PolicyFunc {
	return func(in *policy.Input) policy.Decision {
		if in.Tool.Name != "write" {
			return policy.Decision{Action: policy.Allow}
		}
		return policy.Decision{Action: policy.Hold, Reason: "write may change or destroy data", Risk: policy.RiskHigh,
			Quorum: q, Approvers: policy.Approvers{SlackGroups: []string{approvers}}, Redact: []string{"arguments.secret"}}
	}
}

// harness is the core harness holding calls to "write" and posting them
// to the fake Slack, with the notifier's interactivity endpoint. Calls
// come from "tester" (the requester's Slack account is mapped to it) and
// the client "slack-test"; all in memory, so that synctest controls time.
type harness struct {
	*brokertest.Harness
	t     *testing.T
	slack *slacktest.Server
	n     *slack.Notifier
	http  http.Handler // the interactivity endpoint
}

type harnessOptions struct {
	policy    broker.Policy
	notifiers []broker.Notifier // besides Slack
	config    func(*slack.Config)
	listen    bool // serve the fake Slack on a port, for Socket Mode
	// store wraps the broker's store, to make some of it fail.
	store func(broker.Store) broker.Store
	// people is the broker's map of identities to persons.
	people broker.People
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	h := &harness{t: t, slack: newSlack(t)}
	if o.listen {
		h.slack.Listen()
	}
	cfg := config(h.slack)
	if o.config != nil {
		o.config(&cfg)
	}
	h.n = newNotifier(t, cfg)
	if o.policy == nil {
		o.policy = holdWrite(1)
	}
	var store broker.Store = brokertest.NewMemStore()
	if o.store != nil {
		store = o.store(store)
	}
	// The notifier closes after the broker, which answers the calls
	// still held when it closes.
	h.Harness = brokertest.NewHarness(t, broker.Options{
		Policy:    o.policy,
		Store:     store,
		Notifiers: append([]broker.Notifier{h.n}, o.notifiers...),
		HoldWait:  -1,
		People:    o.people,
	})
	h.Client = broker.ClientInfo{Name: "slack-test", Version: "0.1"}
	h.http = h.n.InteractivityHandler(h.Broker)
	return h
}

// released reports whether the core let the call go to the upstream.
func released(o broker.Outcome) bool { return o.Forward && o.Refusal == "" }

// message returns the one message in the channel.
func (h *harness) message() slacktest.Message {
	h.t.Helper()
	ms := h.slack.Messages()
	if len(ms) != 1 {
		h.t.Fatalf("%d messages posted, want 1", len(ms))
	}
	return ms[0]
}

// post delivers an interaction payload to the HTTP endpoint, signed now.
func (h *harness) post(payload []byte) int {
	h.t.Helper()
	rec := httptest.NewRecorder()
	h.http.ServeHTTP(rec, slacktest.InteractionRequest("/slack/interactivity", slacktest.SigningSecret, time.Now(), payload))
	return rec.Code
}

// edit changes a stored approval, as another process sharing the store
// might.
func (h *harness) edit(id string, fn func(*broker.Approval)) {
	h.t.Helper()
	if _, err := h.Store.UpdateApproval(context.Background(), id, func(a *broker.Approval) (*broker.AuditRecord, error) {
		fn(a)
		return nil, nil
	}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) approval(id string) *broker.Approval {
	h.t.Helper()
	a, err := h.Broker.Approval(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// ephemerals returns what user was told privately.
func (h *harness) ephemerals(user string) []string {
	var out []string
	for _, e := range h.slack.Ephemerals() {
		if e.User == user {
			out = append(out, e.Text)
		}
	}
	return out
}

// golden compares a message with testdata/name.golden.json, after putting
// placeholders where the approval's id is.
func golden(t *testing.T, name string, m slacktest.Message, id string) {
	t.Helper()
	var blocks any
	if err := json.Unmarshal(m.Blocks, &blocks); err != nil {
		t.Fatalf("blocks: %v", err)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(map[string]any{"text": m.Text, "blocks": blocks})
	got := b.Bytes()
	if id != "" {
		got = bytes.ReplaceAll(got, []byte(id), []byte("APPROVAL_ID"))
	}
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it); got:\n%s", path, got)
	}
}
