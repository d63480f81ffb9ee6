package slack

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	slackgo "github.com/slack-go/slack"
)

// RequiredScopes are the bot token scopes Airlock uses: posting and
// updating messages, and looking up people and user groups to decide who
// may approve.
var RequiredScopes = []string{"chat:write", "users:read", "usergroups:read"}

// Check is one finding of SelfTest.
type Check struct {
	Name string // what was checked
	OK   bool
	// Skipped says the check could not be made (Detail says why): it is
	// neither passed nor failed.
	Skipped bool
	Detail  string // what Slack said, and what to do about it
}

// selfTestReach bounds SelfTest's first call: a Slack that cannot be
// reached is said once, quickly, rather than after every retry.
const selfTestReach = 5 * time.Second

// SelfTest checks the configuration against Slack as far as Slack lets it
// be checked: the tokens, the bot's scopes, the channel (by posting a test
// message there), and the configured approvers and identities. It is
// `airlock slack test`.
func (n *Notifier) SelfTest(ctx context.Context) []Check {
	var out []Check
	add := func(name string, err error, ok, fix string) {
		c := Check{Name: name, OK: err == nil, Detail: ok}
		if err != nil {
			c.Detail = slackError(err) + fixFor(err, fix)
		}
		out = append(out, c)
	}

	// One attempt, not the notifier's retries: the person running the
	// test waits for this answer.
	reach, cancel := context.WithTimeout(ctx, selfTestReach)
	auth, err := n.api.AuthTestContext(reach)
	cancel()
	if err != nil {
		err = fmt.Errorf("slack: auth.test: %w", err)
		add("bot token", err, "", "; use the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page")
		_, answered := errors.AsType[slackgo.SlackErrorResponse](err)
		why := "not checked: needs a working bot token"
		if !answered {
			why = "not checked: Slack could not be reached"
		}
		for _, name := range n.checkNames() {
			out = append(out, Check{Name: name, Skipped: true, Detail: why})
		}
		if answered {
			return append(out, n.appTokenCheck(ctx)...) // the app token is checked on its own
		}
		if n.hasAppToken {
			out = append(out, Check{Name: "socket mode", Skipped: true, Detail: why})
		}
		return append(out, n.secretCheck()...)
	}
	add("bot token", nil, fmt.Sprintf("works: bot @%s in workspace %s", auth.User, auth.Team), "")
	out = append(out, n.scopeCheck())

	err = n.call(ctx, "chat.postMessage", func(ctx context.Context) error {
		_, _, err := n.api.PostMessageContext(ctx, n.channel,
			slackgo.MsgOptionText("Airlock is connected: approval requests for held tool calls will appear in this channel. (A test message from `airlock slack test`.)", false))
		return err
	})
	fix := ""
	if se, ok := errors.AsType[slackgo.SlackErrorResponse](err); ok {
		switch se.Err {
		case "not_in_channel":
			fix = fmt.Sprintf("; invite the app to the channel: type /invite @%s in it", auth.User)
		case "channel_not_found":
			fix = "; check the channel ID (channel details, at the bottom), and invite the app if the channel is private"
		}
	}
	add("channel "+n.channel, err, "posted a test message", fix)

	for _, u := range n.defaults.Users {
		out = append(out, n.personCheck(ctx, "approver "+u, u))
	}
	for _, g := range n.defaults.Groups {
		_, err := n.directory.group(ctx, g)
		add("approver group "+g, err, "readable", "; check the user group ID (it starts with S)")
	}
	for _, a := range n.accounts {
		out = append(out, n.personCheck(ctx, a.check(n.accounts), a.id))
	}
	return append(out, n.appTokenCheck(ctx)...)
}

// checkNames are the names of the checks that need a working bot token,
// in the order SelfTest makes them.
func (n *Notifier) checkNames() []string {
	names := []string{"scopes", "channel " + n.channel}
	for _, u := range n.defaults.Users {
		names = append(names, "approver "+u)
	}
	for _, g := range n.defaults.Groups {
		names = append(names, "approver group "+g)
	}
	for _, a := range n.accounts {
		names = append(names, a.check(n.accounts))
	}
	return names
}

func (n *Notifier) scopeCheck() Check {
	n.scopesMu.Lock()
	granted := n.scopes
	n.scopesMu.Unlock()
	if granted == nil {
		return Check{Name: "scopes", OK: true, Detail: "Slack did not list them; the checks below use each one"}
	}
	var missing []string
	have := strings.Split(*granted, ",")
	for i := range have {
		have[i] = strings.TrimSpace(have[i])
	}
	for _, s := range RequiredScopes {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return Check{Name: "scopes", Detail: "missing " + strings.Join(missing, ", ") +
			"; add them under OAuth & Permissions → Bot Token Scopes, then reinstall the app"}
	}
	return Check{Name: "scopes", OK: true, Detail: strings.Join(RequiredScopes, ", ")}
}

func (n *Notifier) personCheck(ctx context.Context, name, id string) Check {
	u, err := n.directory.user(ctx, id)
	if err != nil {
		return Check{Name: name, Detail: slackError(err) + fixFor(err, "; check the user ID (profile → ⋮ → Copy member ID)")}
	}
	switch {
	case u.Deleted:
		return Check{Name: name, Detail: "the account is deactivated; it cannot approve"}
	case u.IsBot || u.IsAppUser:
		return Check{Name: name, Detail: "a bot; it cannot approve"}
	case u.IsRestricted || u.IsUltraRestricted:
		return Check{Name: name, Detail: "a guest; guests cannot approve"}
	}
	return Check{Name: name, OK: true, Detail: "@" + u.Name}
}

var signingSecretPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (n *Notifier) appTokenCheck(ctx context.Context) []Check {
	var out []Check
	if n.hasAppToken {
		err := n.call(ctx, "apps.connections.open", func(ctx context.Context) error {
			_, _, err := n.api.StartSocketModeContext(ctx)
			return err
		})
		c := Check{Name: "socket mode", OK: err == nil, Detail: "Slack offered a connection"}
		if err != nil {
			c.Detail = slackError(err) + fixFor(err, "; turn Socket Mode on (Settings → Socket Mode) and use an app-level token (xapp-…) with connections:write")
		}
		out = append(out, c)
	}
	return append(out, n.secretCheck()...)
}

// secretCheck checks the signing secret's form; it needs no call to Slack.
func (n *Notifier) secretCheck() []Check {
	var out []Check
	if n.secret != "" {
		c := Check{Name: "signing secret", OK: true, Detail: "set; Slack's requests to /slack/interactivity are checked against it"}
		if !signingSecretPattern.MatchString(n.secret) {
			c = Check{Name: "signing secret", Detail: "does not look like a signing secret (32 hexadecimal characters, under Basic Information → App Credentials)"}
		}
		out = append(out, c)
	}
	return out
}

// fixFor is fix when Slack answered, and advice about reaching Slack when
// it did not.
func fixFor(err error, fix string) string {
	if _, ok := errors.AsType[slackgo.SlackErrorResponse](err); ok {
		return fix
	}
	return "; Airlock could not get an answer from Slack: check the network, any proxy, and api_url"
}

// slackError says what Slack answered, without anything secret: Slack's
// error code, or the failure to reach it.
func slackError(err error) string {
	if se, ok := errors.AsType[slackgo.SlackErrorResponse](err); ok {
		msg := "Slack said " + se.Err
		if se.Needed != "" {
			msg += " (needs " + se.Needed + ")"
		}
		return msg
	}
	return err.Error()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
