package slack

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	slackgo "github.com/slack-go/slack"
)

// RequiredScopes are the bot token scopes Airlock uses: posting and
// updating messages, and looking up people and user groups to decide who
// may approve.
var RequiredScopes = []string{"chat:write", "users:read", "usergroups:read"}

// Check is one finding of SelfTest.
type Check struct {
	Name   string // what was checked
	OK     bool
	Detail string // what Slack said, and what to do about it
}

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

	var auth *slackgo.AuthTestResponse
	err := n.call(ctx, "auth.test", func(ctx context.Context) error {
		var err error
		auth, err = n.api.AuthTestContext(ctx)
		return err
	})
	if err != nil {
		add("bot token", err, "", "; use the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page")
		return append(out, n.appTokenCheck(ctx)...)
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
	for _, who := range sortedKeys(n.slackUser) {
		out = append(out, n.personCheck(ctx, "identity "+who, n.slackUser[who]))
	}
	return append(out, n.appTokenCheck(ctx)...)
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

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
