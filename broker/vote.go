package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A person votes; the policy decides. Every channel (the API and the CLI
// on it, the web UI, Slack, any added later) records a person's verdict
// through Broker.Vote, and every rule about who may vote, and when, is
// here, so that no channel can let through what another refuses.

// VoteCode says, in a word a channel can switch on, why a vote was
// refused, or that it counted but its grant was not stored. The codes are
// stable: the API returns them, and docs/api.md lists them.
type VoteCode string

const (
	// VoteNotFound: there is no such approval.
	VoteNotFound VoteCode = "not_found"
	// VoteAlreadyDecided: the approval is no longer pending; the error
	// says how it ended, who ended it and when.
	VoteAlreadyDecided VoteCode = "already_decided"
	// VoteExpired: the approval's time ran out, even if Airlock has not
	// marked it expired yet.
	VoteExpired VoteCode = "expired"
	// VoteNotApprover: the policy names who may decide (approvers.users),
	// and the voter is not one of them.
	VoteNotApprover VoteCode = "not_an_approver"
	// VoteSelfApproval: the voter asked for the call, and may only deny it.
	VoteSelfApproval VoteCode = "self_approval"
	// VoteAlreadyVoted: the voter has approved already; a quorum needs
	// different people, whichever channel each votes in.
	VoteAlreadyVoted VoteCode = "already_voted"
	// VoteNotGrantable: the "always allow" asked for is not one the policy
	// made grantable for this call, or does not come with the approval
	// that completes the quorum.
	VoteNotGrantable VoteCode = "not_grantable"
	// VoteBad: the vote itself is malformed (no voter, a verdict other
	// than approve or deny, a denial without a reason, a negative
	// max_uses).
	VoteBad VoteCode = "bad_vote"
	// VoteGrantNotStored is not a refusal: the vote counted and the call
	// is approved (and released), but the grant that came with it could
	// not be stored. Vote returns the approval with it.
	VoteGrantNotStored VoteCode = "grant_not_stored"
)

// VoteError is what Vote returns when a vote does not (entirely) count:
// one type for every channel to map to its own words.
type VoteError struct {
	Code VoteCode
	// Msg says what happened, for a person; channels may say it their own
	// way from the other fields.
	Msg string
	// Status, By and At are how, by whom and when the approval ended, for
	// VoteAlreadyDecided; for VoteExpired, At is when its time ran out.
	Status Status
	By     string
	At     time.Time
	// Ref links a VoteGrantNotStored to the log line that says why.
	Ref string
	// Err is the finer reason (ErrSelfApproval, ErrGrantScope, a
	// *DecidedError, the store's error, ...), for errors.Is and errors.As.
	Err error
}

func (e *VoteError) Error() string { return e.Msg }
func (e *VoteError) Unwrap() error { return e.Err }

// VoteCodeOf is err's VoteCode, or "" when err is no VoteError (the store
// failed, say).
func VoteCodeOf(err error) VoteCode {
	if ve, ok := errors.AsType[*VoteError](err); ok {
		return ve.Code
	}
	return ""
}

// The finer reasons of refusals, under their VoteError.
var (
	ErrSelfApproval = errors.New("the requester cannot approve their own call")
	ErrAlreadyVoted = errors.New("this approver has already approved; quorum needs different people")
	ErrNoApprover   = errors.New("a vote needs the approver's identity")
	ErrBadVerdict   = errors.New(`verdict must be "approve" or "deny"`)
	ErrNoReason     = errors.New("a denial needs a reason: the agent reads it")
	ErrNotApprover  = errors.New("not an approver for this call")
	ErrExpired      = errors.New("the time for a decision has run out")
	ErrGrantVerdict = errors.New("a grant can only come with an approval")
)

func refusal(code VoteCode, err error) *VoteError {
	return &VoteError{Code: code, Msg: err.Error(), Err: err}
}

// Vote records a person's verdict on an approval: one compare-and-set in
// one transaction, so the first decision wins. It returns the approval as
// it stands after the vote, and:
//
//   - nil when the vote counted (and its grant, if it asked for one, was
//     stored);
//   - a *VoteError with a refusal code when nothing changed; the approval
//     returned is then the one the vote was refused on (nil for
//     VoteNotFound);
//   - a *VoteError with code VoteGrantNotStored when the vote counted, the
//     call is approved and released, but its "always allow" could not be
//     stored: both results are set, and the channel must say both;
//   - another error when the store failed: nothing is known to have
//     changed, and the approval is nil.
//
// Channels check what only they can know before calling it (a Slack
// account's membership of slack_users or slack_groups) and say so with
// v.Authorized.
func (b *Broker) Vote(ctx context.Context, id string, v Vote) (*Approval, error) {
	v.At = b.now()
	var g *Grant
	var seen *Approval
	grantID := newApprovalID(v.At)
	if v.Grant != nil {
		// The held call is released as soon as the approval is stored, and
		// its agent may call again at once: the grant must be in by the
		// time the call's result is out (release waits for this).
		stored := make(chan struct{})
		b.grantsStoring.Store(id, stored)
		defer func() {
			b.grantsStoring.CompareAndDelete(id, stored)
			close(stored)
		}()
	}
	a, err := b.store.UpdateApproval(ctx, id, func(a *Approval) (*AuditRecord, error) {
		seen = a
		var ve *VoteError
		if g, ve = a.check(v, v.At); ve != nil {
			return nil, ve
		}
		a.apply(v)
		if a.Status == StatusApproved {
			a.RetryUntil = a.ExpiresAt.Add(b.retryWindow)
			// Known here only when this replica holds the call. A retry
			// that joins after this still runs it, and its release
			// updates the messages that said it would wait for one.
			a.CallerWaiting = b.callerWaits(id)
		}
		if g != nil {
			g.ID = grantID
			a.GrantID = g.ID
		}
		ev := EventVote
		switch a.Status {
		case StatusApproved:
			ev = EventApproved
		case StatusDenied:
			ev = EventRejected
		}
		return outcomeRecord(ev, a), nil
	})
	if err != nil {
		if ve, ok := errors.AsType[*VoteError](err); ok {
			return seen, ve
		}
		if errors.Is(err, ErrNotFound) {
			return nil, &VoteError{Code: VoteNotFound, Msg: "no approval " + id, Err: err}
		}
		return nil, err
	}
	b.metrics.Decision(v.Channel, string(v.Verdict))
	b.log.Info("vote recorded", "approval_id", id, "approver", v.Approver, "channel", v.Channel, "verdict", v.Verdict, "status", a.Status)
	b.settled(a)
	if g != nil {
		if err := b.storeGrant(context.WithoutCancel(ctx), g); err != nil {
			ref := NewRef()
			b.log.Error("storing a grant failed", "ref", ref, "approval_id", id, "err", err)
			// The approval must not name a grant that does not exist; if
			// even this fails, the grant id leads nowhere (Grant says
			// not found), which grants nothing.
			if cleared, err := b.store.UpdateApproval(context.WithoutCancel(ctx), id, func(a *Approval) (*AuditRecord, error) {
				if a.GrantID == g.ID {
					a.GrantID = ""
				}
				return nil, nil
			}); err == nil {
				a = cleared
			}
			return a, &VoteError{Code: VoteGrantNotStored, Status: a.Status, Ref: ref, Err: err,
				Msg: fmt.Sprintf("the call was approved, but the grant could not be stored (ref %s)", ref)}
		}
	}
	return a, nil
}

// CheckVote says whether v would count on a at now, with the VoteError
// Vote would return, or nil. It changes nothing: channels use it to offer
// only the actions a person may take, and Vote checks again, in the
// transaction that records the vote. A denial's reason is the one rule it
// leaves out: channels ask before the person has written it, and Vote
// refuses a denial without one.
func (a *Approval) CheckVote(v Vote, now time.Time) error {
	if _, ve := a.checkRules(v, now, false); ve != nil {
		return ve
	}
	return nil
}

// check is every rule a vote must pass, in one place; it returns the grant
// the vote asks for, built and checked against what the policy allows. It
// changes nothing.
func (a *Approval) check(v Vote, now time.Time) (*Grant, *VoteError) {
	return a.checkRules(v, now, true)
}

// checkRules is check, with a denial's reason asked for or not (for
// CheckVote's probes).
func (a *Approval) checkRules(v Vote, now time.Time, needReason bool) (*Grant, *VoteError) {
	if a.Status != StatusPending {
		de := &DecidedError{Status: a.Status, By: a.DecidedBy, At: a.DecidedAt}
		return nil, &VoteError{Code: VoteAlreadyDecided, Msg: de.Error(), Status: a.Status, By: a.DecidedBy, At: a.DecidedAt, Err: de}
	}
	if !a.ExpiresAt.IsZero() && !now.Before(a.ExpiresAt) {
		// The timer that marks it expired may not have run yet (or ran
		// in another process): the time is up all the same.
		return nil, &VoteError{Code: VoteExpired, At: a.ExpiresAt, Err: ErrExpired,
			Msg: fmt.Sprintf("%v at %s", ErrExpired, a.ExpiresAt.UTC().Format(time.RFC3339))}
	}
	if strings.TrimSpace(v.Approver) == "" {
		return nil, refusal(VoteBad, ErrNoApprover)
	}
	if v.Verdict != Approve && v.Verdict != Deny {
		return nil, refusal(VoteBad, ErrBadVerdict)
	}
	// approvers.users names Airlock identities. A channel that checked
	// lists only it can read (Slack's) has checked these names as well.
	if users := a.Decision.Approvers.Users; len(users) > 0 && !v.Authorized && !slices.Contains(users, v.Approver) {
		return nil, refusal(VoteNotApprover, fmt.Errorf("%w: the policy names who may decide it (%s), and this decision is %s's", ErrNotApprover, strings.Join(users, ", "), v.Approver))
	}
	if v.Verdict == Approve {
		// Identities from different systems are only compared when they
		// are the same string: config maps people across them. An
		// anonymous requester is nobody's identity.
		if v.Approver == a.Principal.ID || (a.Principal.Person != "" && v.Approver == a.Principal.Person) {
			return nil, refusal(VoteSelfApproval, ErrSelfApproval)
		}
		if slices.ContainsFunc(a.Votes, func(o Vote) bool { return o.Approver == v.Approver && o.Verdict == Approve }) {
			return nil, refusal(VoteAlreadyVoted, ErrAlreadyVoted)
		}
	}
	if v.Verdict == Deny {
		if v.Grant != nil {
			return nil, refusal(VoteNotGrantable, ErrGrantVerdict)
		}
		// One rule for every channel: the agent is told who denied its
		// call and why, and "why" must say something. (Last, so that a
		// voter who may not deny at all is told that first.)
		if needReason && strings.TrimSpace(v.Reason) == "" {
			return nil, refusal(VoteBad, ErrNoReason)
		}
		return nil, nil
	}
	if v.Grant == nil {
		return nil, nil
	}
	// "Always allow": checked before the vote counts, so that a refused
	// grant leaves the approval as it was.
	if approvals(append(slices.Clip(a.Votes), v)) < a.Quorum() {
		return nil, refusal(VoteNotGrantable, ErrGrantQuorum)
	}
	return grantFrom(a, *v.Grant, v.Approver, now)
}

// apply counts a vote that passed check: the approval's state machine for
// people.
func (a *Approval) apply(v Vote) {
	a.Votes = append(a.Votes, v)
	switch {
	case v.Verdict == Deny:
		// One no is enough.
		a.settle(StatusDenied, v.Approver, v.At, v.Reason)
	case a.Approvals() >= a.Quorum():
		a.settle(StatusApproved, v.Approver, v.At, v.Reason)
	}
}
