package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

// page is what the layout needs to know about every page.
type page struct {
	Title string // before " · Airlock" in the window title
	Nav   string // the path of the active navigation entry
	User  string // the signed-in approver; empty when nobody is
	// Live names the live updates app.js runs: "pending" (the list), or
	// "approval" for the approval LiveID.
	Live   string
	LiveID string
}

// navItem is one entry of the navigation bar. Adding a page is adding a
// line to nav.
type navItem struct{ Name, Path string }

var nav = []navItem{
	{"Pending", "/"},
	{"History", "/history"},
	{"Grants", "/grants"},
	{"Policy", "/policy"},
}

func (s *Server) pageFor(r *http.Request, title, navPath string) page {
	who, _ := s.signedIn(r)
	return page{Title: title, Nav: navPath, User: who}
}

// windowTitle puts the count of waiting calls first, where a browser tab
// shows it.
func windowTitle(p page) string {
	return p.Title + " · Airlock"
}

func pendingTitle(n int) string {
	if n == 0 {
		return "Pending"
	}
	return fmt.Sprintf("(%d) Pending", n)
}

// requester says who asked and how that was established, in the words
// the CLI and Slack use too.
func requester(a *broker.Approval) string { return a.Principal.Describe() }

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func isoTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// duration formats d for people: "45s", "3m 05s", "2h 10m".
func duration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func timeLeft(a *broker.Approval, now time.Time) string {
	if !now.Before(a.ExpiresAt) {
		return "expired"
	}
	return duration(a.ExpiresAt.Sub(now))
}

func riskClass(risk string) string {
	switch risk {
	case "low", "medium", "high", "critical":
		return "badge risk-" + risk
	}
	return "badge"
}

func riskText(risk string) string {
	if risk == "" {
		return "unrated"
	}
	return risk
}

func statusClass(s broker.Status) string { return "badge status-" + string(s) }

// outcome says in one sentence what became of an approval, from the point
// of view of the person reading it; "" while it is pending.
func outcome(a *broker.Approval, user string) string {
	at := timeText(a.DecidedAt)
	note := ""
	if a.Note != "" {
		note = ": " + a.Note
	}
	switch a.Status {
	case broker.StatusPending:
		return ""
	case broker.StatusApproved, broker.StatusDenied:
		verb := pastTense(broker.Approve)
		if a.Status == broker.StatusDenied {
			verb = pastTense(broker.Deny)
		}
		said := ""
		if a.Note != "" {
			said = fmt.Sprintf(" (%q)", a.Note)
		}
		text := fmt.Sprintf("Already decided by %s at %s: %s%s.", a.DecidedBy, at, verb, said)
		if a.DecidedBy == user {
			text = fmt.Sprintf("You %s this call at %s%s.", verb, at, said)
		}
		if a.Status == broker.StatusApproved && !a.Awaited() {
			// Its client was told to call again (or waits at another
			// replica, which only that one knows): it has not run.
			text += fmt.Sprintf(" It runs when the agent calls again (until %s); otherwise it lapses.", timeText(a.RetryUntil))
		}
		return text
	case broker.StatusExpired:
		return fmt.Sprintf("Expired at %s%s.", at, note)
	case broker.StatusWithdrawn:
		return fmt.Sprintf("Withdrawn at %s%s.", at, note)
	case broker.StatusAbandoned:
		return fmt.Sprintf("Abandoned at %s%s.", at, note)
	case broker.StatusLapsed:
		return fmt.Sprintf("Approved by %s at %s, but the call never ran%s.", a.DecidedBy, at, note)
	}
	return fmt.Sprintf("Ended (%s) at %s%s.", a.Status, at, note)
}

func pastTense(v broker.Verdict) string {
	if v == broker.Deny {
		return "denied"
	}
	return "approved"
}

// voteText says who voted how, where and when.
func voteText(v broker.Vote) string {
	s := fmt.Sprintf("%s %s via %s at %s", v.Approver, pastTense(v.Verdict), v.Channel, timeText(v.At))
	if v.Reason != "" {
		s += fmt.Sprintf(" (%q)", v.Reason)
	}
	return s
}

// permission says what user may do with a pending approval, and why not.
type permission struct {
	Approve, Deny bool
	// Grant says they may also make an "always allow" with their approval:
	// the policy allows one, and their vote completes the quorum.
	Grant bool
	Why   string
}

// mayVote asks the broker's own rules (Approval.CheckVote) what user may
// do, so that the page offers what a vote would be allowed.
func mayVote(a *broker.Approval, user string, now time.Time) permission {
	if a.Status != broker.StatusPending {
		return permission{}
	}
	vote := func(v broker.Verdict, g *broker.GrantRequest) error {
		return a.CheckVote(broker.Vote{Approver: user, Channel: "web", Verdict: v, Grant: g}, now)
	}
	approve, deny := vote(broker.Approve, nil), vote(broker.Deny, nil)
	p := permission{Approve: approve == nil, Deny: deny == nil}
	if choices := a.GrantChoices(); p.Approve && len(choices) > 0 {
		p.Grant = vote(broker.Approve, &broker.GrantRequest{Scope: choices[0].Scope}) == nil
	}
	for _, err := range []error{deny, approve} {
		if ve, ok := errors.AsType[*broker.VoteError](err); ok {
			p.Why = refusalText(ve, a, user)
			break
		}
	}
	return p
}

// argument is one top-level argument of a call, as an approver reads it:
// strings as text (a file's content keeps its lines), anything else as
// indented JSON.
type argument struct {
	Name  string
	Value string
	JSON  bool
	// Hidden is set when the value has characters that render invisibly
	// or reorder text, which could make it read differently than it acts;
	// NameHidden when the name has.
	Hidden, NameHidden bool
}

// arguments splits a call's arguments, in the order they were sent. It
// returns nil when they are not an object.
func arguments(raw json.RawMessage) []argument {
	// Tokens, not a struct: names are read exactly as sent, each one shown.
	// raw passed the gate's strict parse (no duplicates, valid UTF-8).
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out []argument
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		arg := argument{Name: name}
		var str string
		if v[0] == '"' && json.Unmarshal(v, &str) == nil {
			arg.Value = str
		} else {
			arg.Value, arg.JSON = indent(v), true
		}
		arg.Hidden = broker.HasHiddenChars(arg.Value)
		arg.NameHidden = broker.HasHiddenChars(name)
		out = append(out, arg)
	}
	return out
}

// indent pretty-prints JSON as it was sent: key order and numbers kept.
func indent(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

// canonical pretty-prints JSON with sorted keys, so that two definitions
// differ only where their content does.
func canonical(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	// Into any, not a struct: no names are matched. Duplicate names would
	// be lost, but definitions and arguments shown here passed strict reads.
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	return marshalIndent(v)
}

// marshalIndent writes v as indented JSON without escaping <, > and &:
// this text is shown, escaped by templ, not embedded in HTML as script.
func marshalIndent(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func joinOr(list []string, none string) string {
	if len(list) == 0 {
		return none
	}
	return strings.Join(list, ", ")
}

// approversText says who may decide, in words.
func approversText(a *broker.Approval) string {
	ap := a.Decision.Approvers
	var parts []string
	if len(ap.Users) > 0 {
		parts = append(parts, "users "+strings.Join(ap.Users, ", "))
	}
	if len(ap.SlackUsers) > 0 {
		parts = append(parts, "Slack users "+strings.Join(ap.SlackUsers, ", "))
	}
	if len(ap.SlackGroups) > 0 {
		parts = append(parts, "Slack groups "+strings.Join(ap.SlackGroups, ", "))
	}
	if len(parts) == 0 {
		return "anyone who can reach this page"
	}
	return strings.Join(parts, "; ")
}

// who is the person an audit record is about: the approver for an
// approval's events, the requester otherwise.
func actor(r *broker.AuditRecord) string {
	if r.Actor != "" && r.Actor != "policy" {
		return r.Actor
	}
	return ""
}

// principal is requester for an audit record. A record of no call (a
// grant's) has no requester.
func principal(r *broker.AuditRecord) string {
	if r.Principal == "" && r.PrincipalSource == "" {
		return ""
	}
	return broker.Principal{ID: r.Principal, Source: r.PrincipalSource, ClientID: r.ClientID, Person: r.Person}.Describe()
}

// recordLink is where a history row leads: its approval when it has one,
// the record itself otherwise.
func recordLink(r *broker.AuditRecord) string {
	if r.ApprovalID != "" {
		return "/approvals/" + r.ApprovalID
	}
	return fmt.Sprintf("/history/%d", r.Seq)
}

func eventClass(e broker.Event) string {
	switch e {
	case broker.EventAllowed, broker.EventApproved, broker.EventReleased:
		return "badge status-approved"
	case broker.EventDenied, broker.EventRejected, broker.EventRefused, broker.EventBlocked:
		return "badge status-denied"
	case broker.EventHeld, broker.EventVote:
		return "badge status-pending"
	}
	return "badge status-ended"
}

func approvalURL(id string) templ.SafeURL {
	return templ.SafeURL("/approvals/" + url.PathEscape(id))
}

func decisionURL(id string) templ.SafeURL {
	return templ.SafeURL("/approvals/" + url.PathEscape(id) + "/decision")
}

// short abbreviates a revision or hash to what a person compares.
func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func actionClass(a policy.Action) string {
	switch a {
	case policy.Allow:
		return "badge status-approved"
	case policy.Deny:
		return "badge status-denied"
	}
	return "badge status-pending"
}

// grantCovers says which calls a grant covers, for a person.
func grantCovers(g *broker.Grant) string {
	switch g.Scope {
	case broker.ScopeExact:
		return "the same arguments"
	case broker.ScopeArguments:
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(g.KeyArguments)) {
			parts = append(parts, k+" = "+string(g.KeyArguments[k]))
		}
		return strings.Join(parts, ", ")
	}
	return "any arguments"
}

func grantFor(g *broker.Grant) string { return g.CoversWhom() }

func grantUses(g *broker.Grant) string {
	if g.MaxUses > 0 {
		return fmt.Sprintf("%d of %d", g.Uses, g.MaxUses)
	}
	return strconv.Itoa(g.Uses)
}

func grantLeft(g *broker.Grant, now time.Time) string {
	if g.Status != broker.GrantActive {
		return string(g.Status)
	}
	return g.ExpiresAt.Sub(now).Round(time.Second).String()
}

func revokeURL(id string) templ.SafeURL {
	return templ.SafeURL("/grants/" + url.PathEscape(id) + "/revoke")
}
