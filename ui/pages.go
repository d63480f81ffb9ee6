package ui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

const (
	pendingLimit    = 1000 // more than anyone reads; the count in the title stays right up to here
	historyPageSize = 50
	// keepAliveInterval spaces comments on an idle event stream, so that
	// proxies keep it open and a signed-out browser's stream ends.
	keepAliveInterval = 20 * time.Second
)

// pendingView is the list of calls waiting for a decision.
type pendingView struct {
	List []*broker.Approval
	Now  time.Time
}

func (s *Server) pendingView(w http.ResponseWriter, r *http.Request) (pendingView, bool) {
	list, err := s.broker.Approvals(r.Context(), broker.ApprovalQuery{Status: []broker.Status{broker.StatusPending}, Limit: pendingLimit})
	if err != nil {
		s.internal(w, r, "listing pending approvals", err)
		return pendingView{}, false
	}
	// Most urgent first: the one that expires soonest.
	slices.SortStableFunc(list, func(a, b *broker.Approval) int { return a.ExpiresAt.Compare(b.ExpiresAt) })
	return pendingView{List: list, Now: s.now()}, true
}

func (s *Server) pending(w http.ResponseWriter, r *http.Request, who string) {
	v, ok := s.pendingView(w, r)
	if !ok {
		return
	}
	p := page{Title: pendingTitle(len(v.List)), Nav: "/", User: who, Live: "pending"}
	s.render(w, r, http.StatusOK, pendingPage(p, v))
}

// pendingTable is the list alone, which the page fetches when an event
// says it changed.
func (s *Server) pendingTable(w http.ResponseWriter, r *http.Request, who string) {
	v, ok := s.pendingView(w, r)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, pendingPage(page{User: who}, v), "pending")
}

// events streams "held", "updated" and "decided" events to the page,
// each with the approval's id, server, tool and status: enough to refresh
// and to notify, and nothing the policy might have redacted.
func (s *Server) events(w http.ResponseWriter, r *http.Request, _ string) {
	ch, stop := s.broker.Subscribe()
	defer stop()
	summary := func(a *broker.Approval) any {
		return map[string]any{"id": a.ID, "server": a.Server, "tool": a.Tool, "status": a.Status}
	}
	// A page whose session ended stops hearing about approvals at its
	// next keep-alive; it then reloads and meets the sign-in page.
	signedIn := func() bool { _, ok := s.signedIn(r); return ok }
	broker.StreamEvents(w, r, ch, s.done, keepAliveInterval, summary, signedIn)
}

// detailView is everything the approval page shows.
type detailView struct {
	A       *broker.Approval
	Now     time.Time
	User    string
	Outcome string
	May     permission
	Args    []argument // nil when the arguments are not an object
	RawArgs string
	// Tool definition, as text to show.
	Annotations, InputSchema, OutputSchema string
	DescriptionHidden                      bool
	// Hidden warns of hidden characters anywhere the approver reads
	// (broker.Approval.HiddenWarning).
	Hidden string
	// Suspicious says why the definition cannot be read one way only;
	// RawDefinition is then the tool exactly as the server listed it.
	Suspicious, RawDefinition string
	Diff                      []diffLine
	// Error is why a decision just made here was refused; Reason keeps
	// what the person typed.
	Error, Reason string
}

func (s *Server) detail(a *broker.Approval, who string) detailView {
	shown, _ := a.ShowArguments()
	v := detailView{A: a, Now: s.now(), User: who, Outcome: outcome(a, who), May: mayVote(a, who, s.now()),
		Args: arguments(shown), RawArgs: indent(shown), Diff: definitionDiff(a), Hidden: a.HiddenWarning()}
	if d := a.Definition; d != nil {
		v.Annotations, v.InputSchema, v.OutputSchema = canonical(d.Annotations), canonical(d.InputSchema), canonical(d.OutputSchema)
		v.DescriptionHidden = broker.HasHiddenChars(d.Description)
		if d.Suspicious != "" {
			v.Suspicious, v.RawDefinition = d.Suspicious, indent(d.Raw)
		}
	}
	return v
}

func approvalPageFor(v detailView) page {
	return page{Title: v.A.Tool + " on " + v.A.Server, Nav: "/", User: v.User, Live: "approval", LiveID: v.A.ID}
}

// loadApproval reads the approval named in the path, answering the
// request itself when it cannot.
func (s *Server) loadApproval(w http.ResponseWriter, r *http.Request) (*broker.Approval, bool) {
	id := r.PathValue("id")
	a, err := s.broker.Approval(r.Context(), id)
	switch {
	case errors.Is(err, broker.ErrNotFound):
		s.renderError(w, r, http.StatusNotFound, "No such approval", "There is no approval "+id+".")
		return nil, false
	case err != nil:
		s.internal(w, r, "reading an approval", err)
		return nil, false
	}
	return a, true
}

func (s *Server) approval(w http.ResponseWriter, r *http.Request, who string) {
	a, ok := s.loadApproval(w, r)
	if !ok {
		return
	}
	v := s.detail(a, who)
	s.render(w, r, http.StatusOK, approvalPage(approvalPageFor(v), v))
}

// approvalStatus is the status part of the page alone, which the page
// fetches when an event says the approval changed.
func (s *Server) approvalStatus(w http.ResponseWriter, r *http.Request, who string) {
	a, ok := s.loadApproval(w, r)
	if !ok {
		return
	}
	v := s.detail(a, who)
	s.render(w, r, http.StatusOK, approvalPage(approvalPageFor(v), v), "status")
}

// vote records the signed-in person's verdict, then shows the approval
// again: it says who decided, whoever it was. The broker judges the vote;
// this only puts its refusal in the page's words.
func (s *Server) vote(w http.ResponseWriter, r *http.Request, who string) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusBadRequest, "Bad request", "The decision form could not be read.")
		return
	}
	a, ok := s.loadApproval(w, r)
	if !ok {
		return
	}
	verdict := broker.Verdict(r.PostForm.Get("verdict"))
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	var grant *broker.GrantRequest
	if scope := r.PostForm.Get("grant_scope"); scope != "" {
		ttl, err := time.ParseDuration(r.PostForm.Get("grant_ttl"))
		if err != nil || ttl <= 0 {
			s.renderError(w, r, http.StatusBadRequest, "Bad request", "The grant's duration could not be read.")
			return
		}
		grant = &broker.GrantRequest{Scope: scope, TTL: policy.Duration(ttl), Anyone: r.PostForm.Get("grant_anyone") != ""}
	}
	refuse := func(status int, msg string, a *broker.Approval) {
		v := s.detail(a, who)
		v.Error, v.Reason = msg, reason
		s.render(w, r, status, approvalPage(approvalPageFor(v), v))
	}
	now, err := s.broker.Vote(r.Context(), a.ID, broker.Vote{Approver: who, Channel: "web", Verdict: verdict, Reason: reason, Grant: grant})
	if err == nil {
		http.Redirect(w, r, "/approvals/"+url.PathEscape(a.ID), http.StatusSeeOther)
		return
	}
	ve, ok := errors.AsType[*broker.VoteError](err)
	switch {
	case !ok:
		s.internal(w, r, "recording a decision", err)
	case ve.Code == broker.VoteNotFound:
		s.renderError(w, r, http.StatusNotFound, "No such approval", "There is no approval "+a.ID+".")
	default:
		if now == nil {
			now = a
		}
		refuse(voteStatus(ve.Code), refusalText(ve, now, who), now)
	}
}

// voteStatus is the HTTP status of a page that refuses a vote.
func voteStatus(c broker.VoteCode) int {
	switch c {
	case broker.VoteAlreadyDecided, broker.VoteExpired:
		return http.StatusConflict
	case broker.VoteBad:
		return http.StatusBadRequest
	case broker.VoteNotApprover, broker.VoteSelfApproval, broker.VoteAlreadyVoted, broker.VoteNotGrantable:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError // grant_not_stored: approved, but not all done
}

// refusalText says to user, signed in here, why their vote on a did not
// (entirely) count.
func refusalText(ve *broker.VoteError, a *broker.Approval, user string) string {
	switch ve.Code {
	case broker.VoteExpired:
		return fmt.Sprintf("Too late: the time for a decision ran out at %s; the call will not run.", timeText(ve.At))
	case broker.VoteNotApprover:
		return fmt.Sprintf("The policy names who may decide this call: %s. You are signed in as %s.", strings.Join(a.Decision.Approvers.Users, ", "), user)
	case broker.VoteSelfApproval:
		return "You asked for this call, so someone else must approve it."
	case broker.VoteAlreadyVoted:
		return fmt.Sprintf("You have approved; %d more approvals from other people are needed.", a.Quorum()-a.Approvals())
	case broker.VoteNotGrantable:
		return "Nothing was decided: " + sentence(ve.Msg)
	case broker.VoteBad:
		if errors.Is(ve, broker.ErrBadVerdict) {
			return `The verdict must be "approve" or "deny".`
		}
		if errors.Is(ve, broker.ErrNoReason) {
			// The broker's rule for every channel, in this page's words.
			return "Say why you deny the call: the agent reads the reason."
		}
		return "Nothing was decided: " + sentence(ve.Msg)
	case broker.VoteGrantNotStored:
		return fmt.Sprintf("You approved the call and it goes ahead, but the \"always allow\" could not be stored, so calls like it will still ask (ref %s).", ve.Ref)
	}
	return sentence(ve.Msg) // already decided: by whom, when, how
}

// sentence turns an error message into a sentence to show.
func sentence(msg string) string {
	if msg == "" {
		return ""
	}
	return strings.ToUpper(msg[:1]) + msg[1:] + "."
}

// historyFilter is the History page's form.
type historyFilter struct {
	Server, Tool, Outcome, Approver string
}

func (f historyFilter) values() url.Values {
	v := url.Values{}
	for k, x := range map[string]string{"server": f.Server, "tool": f.Tool, "outcome": f.Outcome, "approver": f.Approver} {
		if x != "" {
			v.Set(k, x)
		}
	}
	return v
}

// option is one choice of a select.
type option struct{ Value, Label string }

// outcomes are the History page's outcome filter: audit events, or
// "approval." for every way an approval ended.
var outcomes = []option{
	{"", "any"},
	{string(broker.EventAllowed), "allowed by policy"},
	{string(broker.EventDenied), "denied by policy"},
	{string(broker.EventHeld), "held"},
	{"approval.", "any decision"},
	{string(broker.EventApproved), "approved"},
	{string(broker.EventRejected), "denied by a person"},
	{string(broker.EventVote), "approval vote"},
	{string(broker.EventExpired), "expired"},
	{string(broker.EventWithdrawn), "withdrawn"},
	{string(broker.EventAbandoned), "abandoned"},
	{string(broker.EventLapsed), "lapsed (approved, never run)"},
	{string(broker.EventReleased), "released"},
	{string(broker.EventBlocked), "blocked (tool changed)"},
	{string(broker.EventRefused), "refused (bad arguments)"},
}

type historyView struct {
	Records []*broker.AuditRecord
	Filter  historyFilter
	Servers []string
	// Older and Newest are links to the next page and back to the first;
	// empty when there is none.
	Older, Newest string
}

func (s *Server) history(w http.ResponseWriter, r *http.Request, who string) {
	q := r.URL.Query()
	f := historyFilter{Server: q.Get("server"), Tool: q.Get("tool"), Outcome: q.Get("outcome"), Approver: q.Get("approver")}
	p := page{Title: "History", Nav: "/history", User: who}
	if !slices.ContainsFunc(outcomes, func(o option) bool { return o.Value == f.Outcome }) {
		s.render(w, r, http.StatusBadRequest, errorPage(p, "Bad filter", "There is no outcome "+strconv.Quote(f.Outcome)+".", ""))
		return
	}
	var before uint64
	if b := q.Get("before"); b != "" {
		var err error
		if before, err = strconv.ParseUint(b, 10, 64); err != nil {
			s.render(w, r, http.StatusBadRequest, errorPage(p, "Bad page", "before must be a record number.", ""))
			return
		}
	}
	recs, err := s.broker.Audit(r.Context(), broker.AuditQuery{Server: f.Server, Tool: f.Tool, Event: f.Outcome,
		Actor: f.Approver, Before: before, Limit: historyPageSize + 1})
	if err != nil {
		s.internal(w, r, "reading the audit log", err)
		return
	}
	v := historyView{Filter: f}
	if len(recs) > historyPageSize {
		recs = recs[:historyPageSize]
		next := f.values()
		next.Set("before", strconv.FormatUint(recs[len(recs)-1].Seq, 10))
		v.Older = "/history?" + next.Encode()
	}
	if before != 0 {
		v.Newest = "/history?" + f.values().Encode()
	}
	v.Records = recs
	v.Servers = s.broker.Servers()
	slices.Sort(v.Servers)
	s.render(w, r, http.StatusOK, historyPage(p, v))
}

// record shows one audit record with every field, for rows without an
// approval to show.
func (s *Server) record(w http.ResponseWriter, r *http.Request, who string) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		s.notFound(w, r, who)
		return
	}
	recs, err := s.broker.Audit(r.Context(), broker.AuditQuery{Before: seq + 1, Limit: 1})
	if err != nil {
		s.internal(w, r, "reading the audit log", err)
		return
	}
	if len(recs) == 0 || recs[0].Seq != seq {
		s.notFound(w, r, who)
		return
	}
	p := page{Title: fmt.Sprintf("Record %d", seq), Nav: "/history", User: who}
	s.render(w, r, http.StatusOK, recordPage(p, recs[0]))
}

// policyView is the Policy page: what is loaded, and the evaluate form.
type policyView struct {
	Status   policy.Status
	Input    string
	Decision string // the decision as JSON, once evaluated
	Action   policy.Action
	Error    string
}

// sampleInput prefills the evaluate form with a call the default policy
// holds.
const sampleInput = `{
  "server": {"name": "filesystem"},
  "tool": {"name": "write_file", "annotations": {"destructiveHint": true}},
  "arguments": {"path": "/srv/data/report.txt", "content": "hello"},
  "principal": {"id": "alice", "source": "os"}
}`

const maxPolicyInput = 1 << 20

func (s *Server) policyPage(w http.ResponseWriter, r *http.Request, who string) {
	p := page{Title: "Policy", Nav: "/policy", User: who}
	s.render(w, r, http.StatusOK, policyPage(p, policyView{Status: s.policy.Status(), Input: sampleInput}))
}

func (s *Server) evaluate(w http.ResponseWriter, r *http.Request, who string) {
	p := page{Title: "Policy", Nav: "/policy", User: who}
	v := policyView{Status: s.policy.Status()}
	r.Body = http.MaxBytesReader(w, r.Body, maxPolicyInput+64<<10)
	if err := r.ParseForm(); err != nil {
		v.Error = "The input is too large or could not be read."
		s.render(w, r, http.StatusBadRequest, policyPage(p, v))
		return
	}
	v.Input = r.PostForm.Get("input")
	d, err := s.policy.DecideJSON(r.Context(), []byte(v.Input))
	if err != nil {
		v.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, policyPage(p, v))
		return
	}
	v.Decision, v.Action = marshalIndent(d), d.Action
	s.render(w, r, http.StatusOK, policyPage(p, v))
}

// grantsView is the Grants page's content.
type grantsView struct {
	Grants []*broker.Grant
	All    bool
	Now    time.Time
}

func (s *Server) grantsPage(w http.ResponseWriter, r *http.Request, who string) {
	v := grantsView{All: r.URL.Query().Get("all") != "", Now: s.now()}
	q := broker.GrantQuery{Limit: 1000}
	if !v.All {
		q.Status = []broker.GrantStatus{broker.GrantActive}
	}
	grants, err := s.broker.Grants(r.Context(), q)
	if err != nil {
		s.internal(w, r, "listing grants", err)
		return
	}
	v.Grants = grants
	s.render(w, r, http.StatusOK, grantsPage(page{Title: "Grants", Nav: "/grants", User: who}, v))
}

func (s *Server) revokeGrant(w http.ResponseWriter, r *http.Request, who string) {
	_, err := s.broker.RevokeGrant(r.Context(), r.PathValue("id"), who)
	switch {
	case err == nil, errors.Is(err, broker.ErrGrantNotActive):
		// Ended already, by someone or by time: the list says how.
		http.Redirect(w, r, "/grants", http.StatusSeeOther)
	case errors.Is(err, broker.ErrNotFound):
		s.renderError(w, r, http.StatusNotFound, "No such grant", "There is no grant "+r.PathValue("id")+".")
	default:
		s.internal(w, r, "revoking a grant", err)
	}
}
