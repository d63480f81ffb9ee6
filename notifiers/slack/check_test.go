package slack_test

import (
	"context"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/notifiers/slack"
	"github.com/airlock-mcp/airlock/notifiers/slack/slacktest"
)

func TestSelfTest(t *testing.T) {
	tests := map[string]struct {
		setup func(s *slacktest.Server, c *slack.Config)
		// want maps a check's name to the start of its detail; a "!"
		// prefix means the check must fail, a "?" that it was skipped.
		want map[string]string
	}{
		"all good": {
			func(s *slacktest.Server, c *slack.Config) {
				c.Approvers = slack.Approvers{Users: []string{bob}, Groups: []string{approvers}}
			},
			map[string]string{
				"bot token": "works: bot @airlock in workspace Airlock Test", "scopes": "chat:write, users:read, usergroups:read",
				"channel C0APPROVALS": "posted a test message", "approver U0BOB": "@bob", "approver group S0APPROVERS": "readable",
				"identity alice": "@alice", "identity tester": "@tester", "socket mode": "Slack offered a connection",
				"signing secret": "set;",
			},
		},
		"wrong bot token": {
			func(_ *slacktest.Server, c *slack.Config) {
				c.BotToken = "xoxb-wrong"
				c.Approvers = slack.Approvers{Users: []string{bob}, Groups: []string{approvers}}
			},
			map[string]string{"bot token": "!Slack said invalid_auth; use the Bot User OAuth Token", "socket mode": "Slack offered",
				"scopes": "?not checked: needs a working bot token", "channel C0APPROVALS": "?not checked: needs a working bot token",
				"approver U0BOB": "?not checked", "approver group S0APPROVERS": "?not checked", "identity alice": "?not checked",
				"signing secret": "set;"},
		},
		"Slack unreachable": {
			// Slack answers auth.test with a server error, which the
			// notifier would retry: the self test asks once and says so.
			func(s *slacktest.Server, c *slack.Config) {
				s.Fail("auth.test", slacktest.Fault{Status: 503}, slacktest.Fault{Status: 503}, slacktest.Fault{Status: 503})
			},
			map[string]string{"bot token": "!slack: auth.test:", "scopes": "?not checked: Slack could not be reached",
				"channel C0APPROVALS": "?not checked: Slack could not be reached", "socket mode": "?not checked: Slack could not be reached",
				"signing secret": "set;"},
		},
		"missing scope": {
			func(s *slacktest.Server, c *slack.Config) {
				s.SetScopes("chat:write")
				c.Approvers = slack.Approvers{Groups: []string{approvers}}
			},
			map[string]string{"scopes": "!missing users:read, usergroups:read", "approver group S0APPROVERS": "!Slack said missing_scope (needs usergroups:read)"},
		},
		"not invited": {
			func(_ *slacktest.Server, c *slack.Config) { c.Channel = secops },
			map[string]string{"channel C0SECOPS": "!Slack said not_in_channel; invite the app to the channel: type /invite @airlock"},
		},
		"bad approvers": {
			func(_ *slacktest.Server, c *slack.Config) {
				c.Approvers = slack.Approvers{Users: []string{guest, "U0NOBODY"}, Groups: []string{"S0NOPE"}}
			},
			map[string]string{"approver U0GUEST": "!a guest", "approver U0NOBODY": "!Slack said user_not_found", "approver group S0NOPE": "!Slack said no_such_subteam"},
		},
		"a person with two accounts": {
			func(_ *slacktest.Server, c *slack.Config) {
				c.Identities["alice"] = []string{alice, "U0NOBODY"}
			},
			map[string]string{"identity alice (U0ALICE)": "@alice", "identity alice (U0NOBODY)": "!Slack said user_not_found", "identity tester": "@tester"},
		},
		"app token is a bot token": {
			func(_ *slacktest.Server, c *slack.Config) { c.AppToken = slacktest.BotToken },
			map[string]string{"socket mode": "!Slack said not_allowed_token_type"},
		},
		"signing secret mangled": {
			func(_ *slacktest.Server, c *slack.Config) { c.SigningSecret = "not-a-secret" },
			map[string]string{"signing secret": "!does not look like a signing secret"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newSlack(t)
			s.Listen()
			cfg := config(s)
			cfg.APIURL = s.APIURL()
			cfg.AppToken = slacktest.AppToken
			tc.setup(s, &cfg)
			checks := newNotifier(t, cfg).SelfTest(context.Background())
			got := map[string]slack.Check{}
			for _, c := range checks {
				got[c.Name] = c
			}
			for name, want := range tc.want {
				c, ok := got[name]
				fail, skip := strings.HasPrefix(want, "!"), strings.HasPrefix(want, "?")
				want = strings.TrimLeft(want, "!?")
				if !ok || c.Skipped != skip || (!skip && c.OK == fail) || !strings.HasPrefix(c.Detail, want) {
					t.Errorf("check %q = %+v, want ok=%v skipped=%v and detail starting %q", name, c, !fail && !skip, skip, want)
				}
			}
			if name == "Slack unreachable" {
				if n := len(s.Calls("auth.test")); n != 1 {
					t.Errorf("auth.test was tried %d times, want once", n)
				}
			}
			if name == "all good" {
				for _, c := range checks {
					if !c.OK {
						t.Errorf("check %+v failed", c)
					}
				}
				if m := s.Messages(); len(m) != 1 || !strings.Contains(m[0].Text, "Airlock is connected") {
					t.Errorf("test message: %+v", m)
				}
			}
		})
	}
}
