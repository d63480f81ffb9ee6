package broker

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// Status is where an approval is in its life. Pending changes once, to
// any other; approved changes once more, to lapsed, when its call was not
// run in time (ReleasedAt stays zero). Every other one is final.
type Status string

const (
	StatusPending   Status = "pending"
	StatusApproved  Status = "approved"  // enough approvers said yes
	StatusDenied    Status = "denied"    // an approver said no
	StatusExpired   Status = "expired"   // nobody decided within the timeout
	StatusWithdrawn Status = "withdrawn" // the caller cancelled or went away
	StatusAbandoned Status = "abandoned" // the broker stopped while it waited
	StatusLapsed    Status = "lapsed"    // approved, but the agent did not call again in time to run it
)

// Statuses lists every status, for the channels that offer them as
// filters and for validating a query.
var Statuses = []Status{StatusPending, StatusApproved, StatusDenied, StatusExpired, StatusWithdrawn, StatusAbandoned, StatusLapsed}

// Verdict is what an approver says.
type Verdict string

const (
	Approve Verdict = "approve"
	Deny    Verdict = "deny"
)

// Approval is a held tools/call and what people said about it.
type Approval struct {
	ID     string `json:"id"` // time-sortable; also the reference shown to the client
	Status Status `json:"status"`

	Server          string          `json:"server"`
	Tool            string          `json:"tool"`
	Arguments       json.RawMessage `json:"arguments"`
	ArgumentsDigest string          `json:"arguments_digest"`
	// ToolFingerprint binds the approval to the tool's definition: a call
	// whose tool changed while it waited is not released.
	ToolFingerprint string          `json:"tool_fingerprint"`
	Definition      *ToolDefinition `json:"definition,omitempty"`
	// PreviousDefinition is the tool as first seen for its server, when it
	// has changed since: what an approver compares the current one with.
	PreviousDefinition json.RawMessage `json:"previous_definition,omitempty"`
	Principal          Principal       `json:"principal"`
	Client             ClientInfo      `json:"client"`
	Session            string          `json:"session"`
	// Holder names the replica (Options.Replica) whose client waits for
	// the call: the one process that can release it. Approvals stored
	// before replicas had names have none.
	Holder string `json:"holder,omitempty"`

	// Decision is the policy's decision to hold the call: reason, risk,
	// approvers, quorum, timeout, redaction and what may be granted.
	Decision policy.Decision `json:"decision"`

	RequestedAt time.Time `json:"requested_at"`
	ExpiresAt   time.Time `json:"expires_at"`

	Votes []Vote `json:"votes,omitempty"`
	// DecidedBy and DecidedAt say who ended the approval and when: the
	// approver whose vote decided it, or "airlock" for an expiry, a
	// withdrawal or an abandonment.
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// Note is what the decider said (a denial's reason), or what ended the
	// approval otherwise. The policy's reason for holding the call is
	// Decision.Reason.
	Note string `json:"note,omitempty"`
	// ReleasedAt is set when the approved call was forwarded: an approval
	// releases one call, once.
	ReleasedAt time.Time `json:"released_at,omitzero"`
	// RetryUntil is set with an approval: until then an identical retry
	// of the call runs it (the call's client may have been told "pending"
	// and gone); after it, an approval not yet released lapses. It is
	// ExpiresAt plus the approved retry window.
	RetryUntil time.Time `json:"retry_until,omitzero"`
	// CallerWaiting says the call's client was known to be waiting for it
	// when it was approved, so that it ran at once. Only the replica that
	// holds the call knows: false means "it runs when the agent calls
	// again", unless ReleasedAt says it ran.
	CallerWaiting bool `json:"caller_waiting,omitempty"`
	// GrantID is the "always allow" the approver made with the approval.
	GrantID string `json:"grant_id,omitempty"`

	// Messages holds each notifier's reference to the message it sent
	// (a Slack channel and timestamp, say), so that the message can be
	// updated with the outcome, even after a restart.
	Messages map[string]json.RawMessage `json:"messages,omitempty"`
}

// Vote is one approver's verdict.
type Vote struct {
	Approver string `json:"approver"`
	Channel  string `json:"channel"` // web, slack, cli, api
	// Realm is set when the approver has no Airlock identity, only an
	// account in the channel they decided in; it is that Channel ("slack"
	// for a Slack user that slack.identities does not map). Such an
	// approver is someone other than the others of the same realm, but may
	// be anyone else: see Approvals.
	Realm   string  `json:"realm,omitempty"`
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason,omitempty"`
	// As is the name a decision made with the admin token gave (airlock
	// approve --as): recorded, never counted. Until approvers have
	// identities of their own, the admin token is one person.
	As string    `json:"as,omitempty"`
	At time.Time `json:"at"`
	// Authorized says the channel has checked the approver against every
	// list of approvers the policy named, including those only it can read
	// (Slack's slack_users and slack_groups). Without it, a policy's
	// approvers.users must name the approver.
	Authorized bool `json:"-"`
	// Grant asks for an "always allow" along with an approval. It is
	// recorded on the approval as GrantID, not kept in the vote.
	Grant *GrantRequest `json:"-"`
}

// Quorum is how many distinct approvers must approve: the policy's quorum,
// at least one.
func (a *Approval) Quorum() int { return max(a.Decision.Quorum, 1) }

// Approvals counts the people known to be different who said yes so far.
// Airlock identities (the admin token, web sign-ins, mapped Slack users)
// are different people when they are different names, and so are the
// accounts of one realm (Slack users without an Airlock identity). But an
// unmapped Slack account may belong to anyone who decided under an Airlock
// name outside Slack (the admin token, a web sign-in), so each such name
// may stand for one of those accounts: they are not added up. A name that
// voted in the realm's own channel (a mapped Slack user) has its account
// there already, and stands for no other.
func (a *Approval) Approvals() int {
	return approvals(a.Votes)
}

func approvals(votes []Vote) int {
	named := map[string]string{}             // Airlock identity → the channel of its approval
	accounts := map[string]map[string]bool{} // realm → its unmapped approvers
	for _, v := range votes {
		switch {
		case v.Verdict != Approve:
		case v.Realm == "":
			named[v.Approver] = v.Channel
		default:
			if accounts[v.Realm] == nil {
				accounts[v.Realm] = map[string]bool{}
			}
			accounts[v.Realm][v.Approver] = true
		}
	}
	extra := 0
	for realm, accts := range accounts {
		elsewhere := 0 // names that may be one of this realm's accounts
		for _, ch := range named {
			if ch != realm {
				elsewhere++
			}
		}
		extra = max(extra, len(accts)-elsewhere)
	}
	return len(named) + extra
}

// DecidedError reports a change to an approval that is no longer pending:
// the first decision stands. A refused vote carries one under a VoteError
// with code VoteAlreadyDecided.
type DecidedError struct {
	Status Status
	By     string
	At     time.Time
}

func (e *DecidedError) Error() string {
	if e.By == "" || e.By == Airlock {
		return fmt.Sprintf("already %s at %s", e.Status, e.At.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("already decided by %s at %s (%s)", e.By, e.At.UTC().Format(time.RFC3339), e.Status)
}

// Airlock is the actor recorded when Airlock itself ends an approval.
const Airlock = "airlock"

// end finishes a pending approval without a person: expired, withdrawn or
// abandoned.
func (a *Approval) end(s Status, reason string, at time.Time) error {
	if a.Status != StatusPending {
		return &DecidedError{Status: a.Status, By: a.DecidedBy, At: a.DecidedAt}
	}
	a.settle(s, Airlock, at, reason)
	return nil
}

// lapse ends an approved call that was never run: nobody can release it
// any more. DecidedBy and DecidedAt keep who approved it and when.
func (a *Approval) lapse(reason string) error {
	if a.Status != StatusApproved || !a.ReleasedAt.IsZero() {
		return &DecidedError{Status: a.Status, By: a.DecidedBy, At: a.DecidedAt}
	}
	a.Status, a.Note = StatusLapsed, reason
	return nil
}

// Awaited says whether an approved call ran or runs at once (its client
// was waiting, or it was released) rather than when its agent calls
// again.
func (a *Approval) Awaited() bool { return a.CallerWaiting || !a.ReleasedAt.IsZero() }

func (a *Approval) settle(s Status, by string, at time.Time, note string) {
	a.Status, a.DecidedBy, a.DecidedAt, a.Note = s, by, at, note
}

// newApprovalID returns a time-sortable id: 48 bits of milliseconds and
// 32 random bits, in Crockford base32 (the order of the strings is the
// order of the times).
func newApprovalID(now time.Time) string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:])
	return crockford(b[:])
}

const crockfordAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func crockford(b []byte) string {
	var out []byte
	var acc uint64
	bits := 0
	for _, c := range b {
		acc = acc<<8 | uint64(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out = append(out, crockfordAlphabet[(acc>>bits)&31])
		}
	}
	if bits > 0 {
		out = append(out, crockfordAlphabet[(acc<<(5-bits))&31])
	}
	return string(out)
}
