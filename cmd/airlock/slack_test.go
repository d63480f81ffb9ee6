package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/notifiers/slack/slacktest"
)

// slackFiles writes the fake Slack's secrets to files and returns the
// slack section that uses them.
func slackFiles(t *testing.T, s *slacktest.Server, extra string) string {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"bot":    slacktest.BotToken + "\n",
		"app":    slacktest.AppToken,
		"secret": slacktest.SigningSecret,
	})
	return fmt.Sprintf(`slack:
  bot_token_file: %s
  app_token_file: %s
  signing_secret_file: %s
  channel: C0APPROVALS
  api_url: %s
  approvers: {users: [U0ALICE]}
  identities: {alice: U0ALICE}
%s`, filepath.Join(dir, "bot"), filepath.Join(dir, "app"), filepath.Join(dir, "secret"), s.APIURL(), extra)
}

func fakeSlack(t *testing.T) *slacktest.Server {
	s := slacktest.New(t)
	s.AddChannel("C0APPROVALS", true)
	s.AddUser(slacktest.User{ID: "U0ALICE", Name: "alice"}, slacktest.User{ID: "U0BOB", Name: "bob"})
	s.Listen()
	return s
}

func TestSlackConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"bot": "xoxb-1", "app": "xapp-1", "empty": "\n", "two": "xoxb-1\nxoxb-2\n"})
	bot, app := filepath.Join(dir, "bot"), filepath.Join(dir, "app")
	base := "slack:\n  bot_token_file: " + bot + "\n  app_token_file: " + app + "\n  channel: C0APPROVALS\n"
	tests := map[string]struct{ yaml, want string }{
		"no bot token":         {"slack:\n  channel: C0APPROVALS\n  app_token_file: " + app + "\n", "slack.bot_token_file is required"},
		"no way in":            {"slack:\n  bot_token_file: " + bot + "\n  channel: C0APPROVALS\n", "set app_token_file (Socket Mode) or signing_secret_file"},
		"channel name":         {strings.Replace(base, "C0APPROVALS", "'#approvals'", 1), `slack.channel: "#approvals" is not a channel ID`},
		"bad api url":          {base + "  api_url: slack.com/api\n", "slack.api_url:"},
		"bad ui url":           {base + "  ui_url: ftp://x\n", "slack.ui_url:"},
		"bad approver":         {base + "  approvers: {users: [alice]}\n", `slack.approvers.users[0]: "alice" is not a Slack user ID`},
		"bad group":            {base + "  approvers: {groups: [U0ALICE]}\n", `slack.approvers.groups[0]: "U0ALICE" is not a Slack user group ID`},
		"bad mapping":          {base + "  identities: {alice: '@alice'}\n", `slack.identities.alice: "@alice" is not a Slack user ID`},
		"one account, two":     {base + "  identities: {alice: U0A, bob: U0A}\n", "slack.identities.bob: U0A is also slack.identities.alice"},
		"unknown key":          {base + "  chanel: C1\n", `unknown key "chanel"`},
		"missing file":         {strings.Replace(base, bot, filepath.Join(dir, "nope"), 1), "slack.bot_token_file: open "},
		"empty file":           {strings.Replace(base, bot, filepath.Join(dir, "empty"), 1), "slack.bot_token_file: " + filepath.Join(dir, "empty") + " is empty"},
		"two tokens":           {strings.Replace(base, bot, filepath.Join(dir, "two"), 1), "holds more than one line or word"},
		"tokens swapped":       {"slack:\n  bot_token_file: " + app + "\n  app_token_file: " + bot + "\n  channel: C0APPROVALS\n", "slack.bot_token_file: the token in " + app + " does not start with xoxb-; it is an app-level token"},
		"app token is a bot's": {"slack:\n  bot_token_file: " + bot + "\n  app_token_file: " + bot + "\n  channel: C0APPROVALS\n", "slack.app_token_file: the token in " + bot + " does not start with xapp-; it is a bot token"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadConfig(writeConfig(t, tc.yaml))
			if err == nil {
				_, err = newSlack(cfg, newLogger(os.Stderr, "error"))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "xoxb-1") || strings.Contains(err.Error(), "xapp-1")) {
				t.Errorf("a secret is in the error: %v", err)
			}
		})
	}
}

func TestDefaultUIURL(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:7420": "http://127.0.0.1:7420",
		"localhost:80":   "http://localhost:80",
		"127.0.0.1:0":    "",
		"0.0.0.0:7420":   "",
		"[::]:7420":      "",
		":7420":          "",
	} {
		if got := defaultUIURL(listen); got != want {
			t.Errorf("defaultUIURL(%q) = %q, want %q", listen, got, want)
		}
	}
	// Messages link where browsers reach Airlock: Slack's own setting,
	// else the UI's, else the listener.
	cfg := &Config{Listen: "127.0.0.1:7420", Slack: &SlackConfig{}}
	for _, tc := range []struct{ slack, ui, want string }{
		{"", "", "http://127.0.0.1:7420"},
		{"", "https://airlock.example.com", "https://airlock.example.com"},
		{"https://slack-links.example.com", "https://airlock.example.com", "https://slack-links.example.com"},
	} {
		cfg.Slack.UIURL, cfg.UI.URL = tc.slack, tc.ui
		if got := slackUIURL(cfg); got != tc.want {
			t.Errorf("slack.ui_url %q, ui.url %q: links to %q, want %q", tc.slack, tc.ui, got, tc.want)
		}
	}
}

func TestSlackTestCommand(t *testing.T) {
	s := fakeSlack(t)
	out, _, err := run(t, "", "slack", "test", "-c", writeConfig(t, slackFiles(t, s, "")))
	if err != nil {
		t.Fatalf("slack test: %v\n%s", err, out)
	}
	for _, want := range []string{"ok    bot token: works: bot @airlock", "ok    channel C0APPROVALS: posted a test message",
		"ok    approver U0ALICE: @alice", "ok    socket mode:", "ok    signing secret:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	s.AddChannel("C0PRIVATE", false)
	s.SetScopes("chat:write", "users:read")
	out, _, err = run(t, "", "slack", "test", "-c", writeConfig(t, strings.Replace(slackFiles(t, s, ""), "C0APPROVALS", "C0PRIVATE", 1)))
	if cliExitCode(err) != 1 || !strings.Contains(err.Error(), "2 Slack checks failed") {
		t.Errorf("exit %d, err %v", cliExitCode(err), err)
	}
	for _, want := range []string{"FAIL  scopes: missing usergroups:read", "FAIL  channel C0PRIVATE: Slack said not_in_channel; invite the app"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	if _, _, err := run(t, "", "slack", "test", "-c", writeConfig(t, "")); err == nil || !strings.Contains(err.Error(), "no slack section") {
		t.Errorf("without a slack section: %v", err)
	}
}

// airlock serve with Slack: a held call is posted, approved over Socket
// Mode, and the next one denied through the signed HTTP endpoint.
func TestServeWithSlack(t *testing.T) {
	s := fakeSlack(t)
	base, stderr := startServe(t, slackFiles(t, s, "")+`servers:
  t:
    command: env
    args: ["AIRLOCK_TEST_ROLE=server", "AIRLOCK_TEST_SERVER=echo", "`+os.Args[0]+`"]
`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitSocket(ctx); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	cs := httpSession(t, base+"/mcp/t")
	call := func() <-chan string {
		out := make(chan string, 1)
		go func() {
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"path": "/x"}})
			if err != nil {
				out <- err.Error()
				return
			}
			out <- res.Content[0].(*mcp.TextContent).Text
		}()
		return out
	}
	message := func(n int) slacktest.Message {
		t.Helper()
		for len(s.Messages()) < n {
			if ctx.Err() != nil {
				t.Fatalf("no message %d\n%s", n, stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return s.Messages()[n-1]
	}

	done := call()
	m := message(1)
	if !strings.Contains(m.Mrkdwn(), "http://"+strings.TrimPrefix(base, "http://")+"/approvals/") {
		t.Errorf("no link to the broker's UI:\n%s", m.Mrkdwn())
	}
	if _, err := s.Deliver(ctx, s.Click("U0ALICE", m, "airlock_approve")); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got != `wrote {"path":"/x"}` {
		t.Fatalf("approved call returned %q\n%s", got, stderr)
	}

	done = call()
	m = message(2)
	post := func(payload []byte) {
		t.Helper()
		resp, err := http.DefaultClient.Do(slacktest.InteractionRequest(base+"/slack/interactivity", slacktest.SigningSecret, time.Now(), payload))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("interactivity answered %d", resp.StatusCode)
		}
	}
	post(s.Click("U0ALICE", m, "airlock_deny"))
	for len(s.Views()) == 0 {
		if ctx.Err() != nil {
			t.Fatalf("no deny dialog\n%s", stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	post(s.Submit("U0ALICE", s.Views()[0], map[string]string{"reason": "not this file"}))
	if got := <-done; !strings.Contains(got, "denied by alice: not this file") {
		t.Fatalf("denied call returned %q", got)
	}
	for !strings.Contains(s.Messages()[1].Mrkdwn(), "*Denied* by <@U0ALICE> (alice)") {
		if ctx.Err() != nil {
			t.Fatalf("message not updated:\n%s", s.Messages()[1].Mrkdwn())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(stderr.String(), slacktest.BotToken) || strings.Contains(stderr.String(), slacktest.AppToken) {
		t.Error("a token is in the log")
	}
}
