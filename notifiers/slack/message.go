package slack

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	slackgo "github.com/slack-go/slack"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

// Interaction identifiers: the message's buttons and the deny dialog. A
// new button needs an id here, and cases in parseInteraction and
// Notifier.handle.
const (
	blockDecide   = "airlock_decide"
	actionApprove = "airlock_approve"
	actionDeny    = "airlock_deny"
	actionGrant   = "airlock_grant"
	callbackDeny  = "airlock_deny_reason"
	callbackGrant = "airlock_grant_choice"
	blockReason   = "reason"
	actionReason  = "reason"
	blockScope    = "scope"
	actionScope   = "scope"
	blockTTL      = "ttl"
	actionTTL     = "ttl"
)

// Slack IDs that are safe to put inside <…> in mrkdwn. Anything else from a
// policy or a payload is shown escaped, and can never match a person.
var (
	userIDPattern    = regexp.MustCompile(`^[UW][A-Z0-9]{2,40}$`)
	groupIDPattern   = regexp.MustCompile(`^S[A-Z0-9]{2,40}$`)
	channelIDPattern = regexp.MustCompile(`^[CGD][A-Z0-9]{2,40}$`)
)

// IsUserID reports whether s is a Slack user ID (U… or W…).
func IsUserID(s string) bool { return userIDPattern.MatchString(s) }

// IsGroupID reports whether s is a Slack user group ID (S…).
func IsGroupID(s string) bool { return groupIDPattern.MatchString(s) }

// IsChannelID reports whether s is a Slack channel ID (C…, G… or D…).
func IsChannelID(s string) bool { return channelIDPattern.MatchString(s) }

// message is what Airlock posts for an approval, in every state.
type message struct {
	// text is the notification's text (and what screen readers say).
	text   string
	blocks []slackgo.Block
}

func plain(s string) *slackgo.TextBlockObject {
	return slackgo.NewTextBlockObject(slackgo.PlainTextType, s, false, false)
}

// mrkdwn is for text Airlock composes. Verbatim stops Slack from turning
// bare URLs and channel names into links; what came with the call is
// escaped or put in plain text before it gets here.
func mrkdwn(s string) *slackgo.TextBlockObject {
	return slackgo.NewTextBlockObject(slackgo.MarkdownType, s, false, true)
}

func section(t *slackgo.TextBlockObject) *slackgo.SectionBlock {
	return slackgo.NewSectionBlock(t, nil, nil)
}

// render lays out the message for a as it stands: a request with buttons
// while it is pending, the outcome once it is decided.
func (n *Notifier) render(a *broker.Approval) message {
	what := a.Tool + " on " + a.Server
	title := statusTitles[a.Status]
	if title == "" {
		title = string(a.Status)
	}
	header, _ := truncate(title+": "+what, headerBudget)
	blocks := []slackgo.Block{
		slackgo.NewHeaderBlock(plain(header)),
		slackgo.NewSectionBlock(nil, n.fields(a), nil),
	}
	reason := a.Decision.Reason
	if reason == "" {
		reason = "the policy gave no reason"
	}
	reason, _ = truncate("Held because: "+reason, reasonBudget)
	blocks = append(blocks, section(plain(reason)))
	if len(a.PreviousDefinition) > 0 {
		blocks = append(blocks, section(mrkdwn(":warning: *This tool's definition changed since Airlock first saw it.* "+
			"Compare the two in the web UI before you approve.")))
	}
	if w := a.HiddenWarning(); w != "" {
		blocks = append(blocks, section(mrkdwn(":warning: *"+escape(w)+"*")))
	}
	if d := a.Definition; d != nil && d.Suspicious != "" {
		why, _ := truncate("Airlock holds every call to this tool: "+d.Suspicious+". Open the web UI to see the definition as the server listed it.", reasonBudget)
		blocks = append(blocks, section(plain(why)))
	}
	blocks = append(blocks, section(mrkdwn(argumentsText(a))), n.context(a))
	if a.Status == broker.StatusPending {
		if a.Approvals() > 0 {
			blocks = append(blocks, section(mrkdwn(fmt.Sprintf(":ballot_box_with_ballot: Approved so far by %s: *%d of %d*",
				n.approvers(a), a.Approvals(), a.Quorum()))))
		}
		blocks = append(blocks, decideButtons(a))
	} else {
		blocks = append(blocks, n.outcome(a)...)
	}
	return message{
		text:   fmt.Sprintf("%s: %s (ref %s)", title, escape(what), a.ID),
		blocks: blocks,
	}
}

var statusTitles = map[broker.Status]string{
	broker.StatusPending:   "Approval needed",
	broker.StatusApproved:  "Approved",
	broker.StatusDenied:    "Denied",
	broker.StatusExpired:   "Expired",
	broker.StatusWithdrawn: "Withdrawn",
	broker.StatusAbandoned: "Abandoned",
	broker.StatusLapsed:    "Lapsed",
}

// decideButtons are the approver's choices: Approve, Deny, and "Always
// allow…" when the policy lets this hold become a grant.
func decideButtons(a *broker.Approval) *slackgo.ActionBlock {
	approve := slackgo.NewButtonBlockElement(actionApprove, a.ID, plain("Approve"))
	approve.Style = slackgo.StylePrimary
	deny := slackgo.NewButtonBlockElement(actionDeny, a.ID, plain("Deny"))
	deny.Style = slackgo.StyleDanger
	elems := []slackgo.BlockElement{approve, deny}
	if len(a.GrantChoices()) > 0 {
		elems = append(elems, slackgo.NewButtonBlockElement(actionGrant, a.ID, plain("Always allow…")))
	}
	return slackgo.NewActionBlock(blockDecide, elems...)
}

func (n *Notifier) fields(a *broker.Approval) []*slackgo.TextBlockObject {
	requester := n.requester(a.Principal)
	risk := a.Decision.Risk
	if risk == "" {
		risk = "not rated"
	}
	expires := fmt.Sprintf("%s (after %s)", slackDate(a.ExpiresAt), timeout(a))
	who := n.whoDecides(a)
	if q := a.Quorum(); q > 1 {
		who += fmt.Sprintf("\n%d different approvers needed", q)
	}
	out := []*slackgo.TextBlockObject{
		mrkdwn("*Requested by*\n" + requester),
		mrkdwn("*Risk*\n" + riskEmoji[risk] + escape(risk)),
		mrkdwn("*Expires*\n" + expires),
		mrkdwn("*Who can decide*\n" + who),
	}
	for _, f := range out {
		f.Text, _ = truncate(f.Text, fieldBudget) // only a long list of approvers can get here
	}
	return out
}

var riskEmoji = map[string]string{
	"low":      ":large_green_circle: ",
	"medium":   ":large_yellow_circle: ",
	"high":     ":large_orange_circle: ",
	"critical": ":red_circle: ",
}

// whoDecides names the approvers, as mentions, so that they are notified.
func (n *Notifier) whoDecides(a *broker.Approval) string {
	set := n.approverSet(a)
	var names []string
	for _, u := range set.users {
		names = append(names, mentionUser(u))
	}
	for _, g := range set.groups {
		if groupIDPattern.MatchString(g) {
			names = append(names, "<!subteam^"+g+">")
		} else {
			names = append(names, escape(g))
		}
	}
	for _, u := range set.names {
		names = append(names, n.person(u))
	}
	if len(names) == 0 {
		return "anyone in this channel"
	}
	return joinWithin(names, fieldBudget-100)
}

// joinWithin joins names with commas until the budget runs out, and says
// how many it left out: cutting a mention in half would break the message.
func joinWithin(names []string, budget int) string {
	var b strings.Builder
	for i, s := range names {
		if i > 0 && units(b.String())+units(s)+2 > budget {
			fmt.Fprintf(&b, " and %d more", len(names)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s)
	}
	return b.String()
}

func mentionUser(id string) string {
	if userIDPattern.MatchString(id) {
		return "<@" + id + ">"
	}
	return escape(id)
}

// person shows an Airlock identity: a mention when Airlock knows the
// person's Slack account, the name otherwise.
// requester says who asked and how that was established, in the words of
// every channel (Principal.Describe), after a mention when config ties the
// requester's person (or, failing that, its name) to a Slack user.
func (n *Notifier) requester(p broker.Principal) string {
	s := escape(p.Describe())
	for _, who := range []string{p.Person, p.ID} {
		if u, ok := n.slackUser[who]; ok && who != "" {
			return "<@" + u + "> · " + s
		}
	}
	return s
}

func (n *Notifier) person(id string) string {
	if u, ok := strings.CutPrefix(id, slackIdentityPrefix); ok {
		return mentionUser(u)
	}
	if u, ok := n.slackUser[id]; ok {
		return "<@" + u + "> (" + escape(id) + ")"
	}
	if id == "" {
		return "unknown"
	}
	return escape(id)
}

// voter shows who cast a vote, and where when it was not in Slack.
func (n *Notifier) voter(v broker.Vote) string {
	s := n.person(v.Approver)
	if where := channelNames[v.Channel]; where != "" {
		s += " " + where
	}
	return s
}

var channelNames = map[string]string{"web": "in the web UI", "cli": "with the CLI", "api": "through the API"}

// approvers lists everyone who approved so far.
func (n *Notifier) approvers(a *broker.Approval) string {
	var names []string
	for _, v := range a.Votes {
		if v.Verdict == broker.Approve {
			names = append(names, n.voter(v))
		}
	}
	return joinWithin(names, 1000)
}

func argumentsText(a *broker.Approval) string {
	pretty, hid, err := prettyArguments(a)
	if err != nil {
		return "*Arguments*\n_Airlock could not show them; open the approval in the web UI._"
	}
	title := "*Arguments*"
	if hid {
		title += " (values the policy hides from approvers show as \"" + broker.Redacted + "\")"
	}
	body, cut := truncateEscaped(pretty, argumentsBudget)
	text := title + "\n```\n" + body + "\n```"
	if cut > 0 {
		text += fmt.Sprintf("\n_%d more characters not shown; the web UI has the whole call._", cut)
	}
	return text
}

func (n *Notifier) context(a *broker.Approval) *slackgo.ContextBlock {
	var elems []slackgo.MixedElement
	if a.Client.Name != "" {
		c, _ := truncate(strings.TrimSpace("Client: "+a.Client.Name+" "+a.Client.Version), 300)
		elems = append(elems, plain(c))
	}
	ref := "Ref `" + escape(a.ID) + "`"
	if n.uiURL != "" {
		link := n.uiURL + "/approvals/" + url.PathEscape(a.ID)
		ref += " · <" + escape(link) + "|Open in Airlock>"
	} else {
		ref += " · or `airlock approve " + escape(a.ID) + "`"
	}
	elems = append(elems, mrkdwn(ref))
	return slackgo.NewContextBlock("", elems...)
}

// outcome replaces the buttons once the approval is decided.
func (n *Notifier) outcome(a *broker.Approval) []slackgo.Block {
	at := slackDate(a.DecidedAt)
	var line string
	note := ""
	switch a.Status {
	case broker.StatusApproved:
		line = fmt.Sprintf(":white_check_mark: *Approved* by %s, %s", n.approvers(a), at)
		if a.Quorum() > 1 {
			line += fmt.Sprintf(" (%d of %d)", a.Approvals(), a.Quorum())
		}
		if !a.Awaited() {
			// Its client was told to call again, or waits at a replica
			// that did not decide: it has not run, and may never.
			line += fmt.Sprintf(". It runs when the agent calls again (until %s); otherwise it lapses.", slackDate(a.RetryUntil))
		}
	case broker.StatusDenied:
		by := n.person(a.DecidedBy)
		for _, v := range a.Votes {
			if v.Verdict == broker.Deny {
				by = n.voter(v)
			}
		}
		line = fmt.Sprintf(":no_entry: *Denied* by %s, %s", by, at)
		if a.Note != "" {
			note = "Reason: " + a.Note
		}
	case broker.StatusExpired:
		line = fmt.Sprintf(":hourglass: *Expired*: nobody decided within %s.", timeout(a))
	case broker.StatusWithdrawn:
		line = ":leftwards_arrow_with_hook: *Withdrawn* before anyone decided, " + at
		note = a.Note
	case broker.StatusAbandoned:
		line = ":black_square_for_stop: *Abandoned*, " + at
		note = a.Note
	case broker.StatusLapsed:
		line = fmt.Sprintf(":zzz: *Lapsed*: approved by %s, %s, but the call never ran.", n.approvers(a), at)
		note = a.Note
	default:
		line = "*" + escape(string(a.Status)) + "*"
	}
	blocks := []slackgo.Block{section(mrkdwn(line))}
	if note != "" {
		// What a person typed is shown as typed.
		t, _ := truncate(note, reasonBudget)
		blocks = append(blocks, section(plain(t)))
	}
	return blocks
}

// timeout is how long the approval waits, as a policy writes it: "10m".
func timeout(a *broker.Approval) string {
	return policy.Duration(a.ExpiresAt.Sub(a.RequestedAt).Round(time.Second)).String()
}

// slackDate shows t in each reader's own time zone, with UTC for clients
// that cannot.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} at {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

// denyDialog asks a denier why; the agent reads the answer.
func denyDialog(a *broker.Approval, metadata string) slackgo.ModalViewRequest {
	what, _ := truncate(a.Tool+" on "+a.Server, 500)
	input := slackgo.NewPlainTextInputBlockElement(plain("For example: not on production"), actionReason)
	input.Multiline = true
	input.MaxLength = maxReason
	return slackgo.ModalViewRequest{
		Type:            slackgo.VTModal,
		CallbackID:      callbackDeny,
		Title:           plain("Deny this call"),
		Submit:          plain("Deny"),
		Close:           plain("Cancel"),
		PrivateMetadata: metadata,
		Blocks: slackgo.Blocks{BlockSet: []slackgo.Block{
			section(plain("Deny " + what + " (ref " + a.ID + ")? The agent is told who denied it and why.")),
			slackgo.NewInputBlock(blockReason, plain("Reason"), nil, input),
		}},
	}
}

// maxReason bounds a denier's reason, which the agent and the audit read.
const maxReason = 500

// grantDialog asks an approver how far an "always allow" should reach and
// for how long, within what the policy allows; submitting it also approves
// this call. It is the confirmation the issue asks for.
func grantDialog(a *broker.Approval, metadata string) slackgo.ModalViewRequest {
	var scopes []*slackgo.OptionBlockObject
	for _, c := range a.GrantChoices() {
		label, _ := truncate(c.Label, 70)
		scopes = append(scopes, slackgo.NewOptionBlockObject(c.Scope, plain(label), nil))
	}
	var ttls []*slackgo.OptionBlockObject
	for _, d := range a.GrantDurations() {
		ttls = append(ttls, slackgo.NewOptionBlockObject(policy.Duration(d).String(), plain(broker.HumanDuration(d)), nil))
	}
	scopeMenu := slackgo.NewOptionsSelectBlockElement(slackgo.OptTypeStatic, plain("Choose what to allow"), actionScope, scopes...)
	scopeMenu.InitialOption = scopes[0]
	ttlMenu := slackgo.NewOptionsSelectBlockElement(slackgo.OptTypeStatic, plain("Choose how long"), actionTTL, ttls...)
	ttlMenu.InitialOption = ttls[min(1, len(ttls)-1)]
	what, _ := truncate(a.Tool+" on "+a.Server, 500)
	return slackgo.ModalViewRequest{
		Type:            slackgo.VTModal,
		CallbackID:      callbackGrant,
		Title:           plain("Always allow"),
		Submit:          plain("Approve and allow"),
		Close:           plain("Cancel"),
		PrivateMetadata: metadata,
		Blocks: slackgo.Blocks{BlockSet: []slackgo.Block{
			section(plain("Approve " + what + " (ref " + a.ID + "), and let later calls like it through without asking, for " +
				forRequester(a.Principal) + ". Every grant expires, and can be revoked in the web UI or with `airlock grants revoke`.")),
			slackgo.NewInputBlock(blockScope, plain("Allow"), nil, scopeMenu),
			slackgo.NewInputBlock(blockTTL, plain("For"), nil, ttlMenu),
		}},
	}
}

// forRequester names whom a grant covers, in plain text.
// forRequester is whom a grant for the requester covers: that identity,
// established the same way.
func forRequester(p broker.Principal) string {
	if p.ID == "" && (p.Source == "" || p.Source == broker.SourceAnonymous) {
		return "anonymous callers only (every caller without an identity)"
	}
	return p.Describe() + " only"
}
