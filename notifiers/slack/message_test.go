package slack_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/notifiers/slack"
	"github.com/airlock-mcp/airlock/notifiers/slack/slacktest"
	"github.com/airlock-mcp/airlock/policy"
)

// hostileArguments try everything Slack could act on: mentions, a
// disguised link, formatting, an emoji, a code fence to break out of, and
// a secret the policy hides.
const hostileArguments = `{"path":"/srv/data/report.md",` +
	`"content":"<!channel> <@U0BOB> *urgent*: see <https://evil.example|the docs> :fire: ` + "```" + `rm -rf /` + "```" + ` & done",` +
	`"auth":{"token":"s3cret","user":"svc"},"mode":420,"ratio":1.50}`

func fixture() *broker.Approval {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	return &broker.Approval{
		ID: "06FHQ2B0Y5CJ3ZKM", Status: broker.StatusPending,
		Server: "filesystem", Tool: "write_file",
		Arguments: json.RawMessage(hostileArguments),
		Principal: broker.Principal{ID: "tester", Source: "os"},
		Client:    broker.ClientInfo{Name: "claude-code *bold* <!here>", Version: "2.1"},
		Decision: policy.Decision{
			Action: policy.Hold, Reason: "write_file may change or destroy data; asked by <@U0MALLORY>", Risk: policy.RiskHigh,
			Approvers: policy.Approvers{SlackGroups: []string{approvers}, SlackUsers: []string{bob}, Users: []string{"carol"}},
			Redact:    []string{"arguments.auth.token"},
		},
		RequestedAt: at,
		ExpiresAt:   at.Add(10 * time.Minute),
	}
}

func TestMessageGolden(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 3, 0, 0, time.UTC)
	tests := map[string]func(a *broker.Approval){
		"request": func(*broker.Approval) {},
		"vote": func(a *broker.Approval) {
			a.Decision.Quorum = 2
			a.Votes = []broker.Vote{{Approver: "alice", Channel: "slack", Verdict: broker.Approve, At: at}}
		},
		"approved": func(a *broker.Approval) {
			a.Decision.Quorum = 2
			a.Votes = []broker.Vote{
				{Approver: "alice", Channel: "slack", Verdict: broker.Approve, At: at},
				{Approver: "bob", Channel: "web", Verdict: broker.Approve, At: at},
			}
			a.Status, a.DecidedBy, a.DecidedAt, a.CallerWaiting = broker.StatusApproved, "bob", at, true
		},
		// Its client was told "pending" and has not called again.
		"approved_unawaited": func(a *broker.Approval) {
			a.Votes = []broker.Vote{{Approver: "bob", Channel: "web", Verdict: broker.Approve, At: at}}
			a.Status, a.DecidedBy, a.DecidedAt, a.RetryUntil = broker.StatusApproved, "bob", at, a.ExpiresAt.Add(10*time.Minute)
		},
		"lapsed": func(a *broker.Approval) {
			a.Votes = []broker.Vote{{Approver: "bob", Channel: "web", Verdict: broker.Approve, At: at}}
			a.Status, a.DecidedBy, a.DecidedAt, a.Note = broker.StatusLapsed, "bob", at, "the agent did not call again by 2026-11-20T10:20:00Z"
		},
		"denied": func(a *broker.Approval) {
			a.Votes = []broker.Vote{{Approver: "slack:" + bob, Channel: "slack", Verdict: broker.Deny, Reason: "not on a Friday <!here>", At: at}}
			a.Status, a.DecidedBy, a.DecidedAt, a.Note = broker.StatusDenied, "slack:"+bob, at, "not on a Friday <!here>"
		},
		"expired": func(a *broker.Approval) {
			a.Status, a.DecidedBy, a.DecidedAt, a.Note = broker.StatusExpired, broker.Airlock, a.ExpiresAt, "no decision within 10m0s"
		},
		"withdrawn": func(a *broker.Approval) {
			a.Status, a.DecidedBy, a.DecidedAt, a.Note = broker.StatusWithdrawn, broker.Airlock, at, "the caller went away"
		},
		"abandoned": func(a *broker.Approval) {
			a.Status, a.DecidedBy, a.DecidedAt, a.Note = broker.StatusAbandoned, broker.Airlock, at, "Airlock restarted while the call waited"
		},
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			s := newSlack(t)
			n := newNotifier(t, config(s))
			a := fixture()
			ref, err := n.Notify(context.Background(), a)
			if err != nil {
				t.Fatal(err)
			}
			mutate(a)
			a.Messages = map[string]json.RawMessage{slack.Name: ref}
			if err := n.Update(context.Background(), a); err != nil {
				t.Fatal(err)
			}
			m := s.Messages()[0]
			golden(t, name, m, "")
			checkInert(t, m)
			if p := m.Params; p.Get("unfurl_links") != "false" || p.Get("unfurl_media") != "false" {
				t.Errorf("unfurling not disabled: %v", p)
			}
		})
	}
}

// checkInert fails if anything that came with the call could act in Slack:
// a mention, a special mention, a link, or an escape from the code block,
// in text Slack reads as mrkdwn. (Slack shows plain_text as it is.)
func checkInert(t *testing.T, m slacktest.Message) {
	t.Helper()
	md := m.Mrkdwn() + m.Text
	for _, bad := range []string{"<!channel>", "<!here>", "<@U0MALLORY>", "<https://evil", "```rm", "*bold*"} {
		if strings.Contains(md, bad) {
			t.Errorf("mrkdwn contains %q, which Slack would act on", bad)
		}
	}
	if strings.Contains(m.AllText(), "s3cret") {
		t.Error("a redacted value is in the message")
	}
}

func TestMessageStaysWithinSlackLimits(t *testing.T) {
	tests := map[string]func(a *broker.Approval){
		"huge arguments": func(a *broker.Approval) {
			a.Arguments = json.RawMessage(`{"content":"` + strings.Repeat("<&>", 20000) + `"}`)
		},
		"astral characters": func(a *broker.Approval) {
			a.Arguments = json.RawMessage(`{"content":"` + strings.Repeat("😀", 5000) + `"}`)
			a.Decision.Reason = strings.Repeat("𝔞", 5000)
		},
		"long everything": func(a *broker.Approval) {
			a.Tool = strings.Repeat("t", 500)
			a.Server = strings.Repeat("s", 500)
			a.Principal.ID = strings.Repeat("p&", 2000)
			a.Client.Name = strings.Repeat("c", 5000)
			for i := range 300 {
				a.Decision.Approvers.SlackUsers = append(a.Decision.Approvers.SlackUsers, "U0"+strings.Repeat("X", i%30+3))
			}
			a.Note = strings.Repeat("n", 10000)
			a.Status, a.DecidedBy = broker.StatusDenied, "slack:"+bob
		},
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			s := newSlack(t)
			n := newNotifier(t, config(s))
			a := fixture()
			mutate(a)
			// The fake refuses what Slack would refuse.
			if _, err := n.Notify(context.Background(), a); err != nil {
				t.Fatal(err)
			}
			if name == "huge arguments" && !strings.Contains(s.Messages()[0].AllText(), "more characters not shown") {
				t.Error("truncated arguments are not marked as such")
			}
		})
	}
}

func TestMessageWithoutUIURL(t *testing.T) {
	s := newSlack(t)
	cfg := config(s)
	cfg.UIURL = ""
	n := newNotifier(t, cfg)
	if _, err := n.Notify(context.Background(), fixture()); err != nil {
		t.Fatal(err)
	}
	if text := s.Messages()[0].AllText(); !strings.Contains(text, "`airlock approve 06FHQ2B0Y5CJ3ZKM`") || strings.Contains(text, "/approvals/") {
		t.Errorf("without a UI URL the message should say how to decide from the CLI:\n%s", text)
	}
}

// A policy's channel is used when the bot can post there, and the default
// channel when it cannot.
func TestMessageChannel(t *testing.T) {
	s := newSlack(t)
	s.AddChannel("C0OPEN", true)
	n := newNotifier(t, config(s))
	a := fixture()
	a.Decision.Channel = "C0OPEN"
	if _, err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	a.Decision.Channel = secops // the bot was not invited
	if _, err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	ms := s.Messages()
	if len(ms) != 2 || ms[0].Channel != "C0OPEN" || ms[1].Channel != channel {
		t.Errorf("posted to %v", ms)
	}
}

// Hidden characters in what the agent or the server chose — here the
// tool's name and an argument's name — are flagged, and a suspicious
// definition says why the call is held.
func TestMessageFlagsHiddenCharactersAndSuspiciousTools(t *testing.T) {
	s := newSlack(t)
	n := newNotifier(t, config(s))
	a := fixture()
	a.Tool = "write\u200b_file"
	a.Arguments = json.RawMessage(`{"pa\u202eth":"/srv/x"}`)
	a.Definition = &broker.ToolDefinition{Name: a.Tool, Suspicious: `the server lists this tool with "Annotations" for "annotations"`}
	if _, err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	all := s.Messages()[0].AllText()
	for _, want := range []string{"Invisible or direction-changing characters in the tool's name and argument names", `"Annotations" for "annotations"`} {
		if !strings.Contains(all, want) {
			t.Errorf("the message does not say %q:\n%s", want, all)
		}
	}
}

// The message says who asked and how that was established, as the CLI and
// the web pages do (broker.Principal.Describe), with what the identity
// provider chose escaped like anything else the requester controls.
func TestMessageSaysWhoAsked(t *testing.T) {
	for want, p := range map[string]broker.Principal{
		"*Requested by*\nci-bot (token)":                                  {ID: "ci-bot", Source: "token", Groups: []string{"ci"}},
		"*Requested by*\nalice@example.com (OAuth, client claude-code)":   {ID: "alice@example.com", Source: "oauth", ClientID: "claude-code"},
		"*Requested by*\nanonymous":                                       {Source: "anonymous"},
		"*Requested by*\n&lt;!channel&gt; (OAuth, client &lt;@U0BOB&gt;)": {ID: "<!channel>", Source: "oauth", ClientID: "<@U0BOB>"},
		"*Requested by*\n<@U0TESTER> · tester (OS user)":                  {ID: "tester", Source: "os"},
	} {
		s := newSlack(t)
		n := newNotifier(t, config(s))
		a := fixture()
		a.Principal = p
		if _, err := n.Notify(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		if all := s.Messages()[0].AllText(); !strings.Contains(all, want) {
			t.Errorf("%+v: the message does not say %q:\n%s", p, want, all)
		}
	}
}
