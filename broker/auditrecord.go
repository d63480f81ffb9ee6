package broker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// The audit log's records: what each says, how they are chained, and how a
// store checks the chain. Building and writing them is in audit.go.

// AuditQuery selects audit records. Zero fields select everything.
type AuditQuery struct {
	Server     string
	Tool       string
	Event      string // an Event, or a prefix ending in "." such as "approval."
	Actor      string // who decided (an approver), or "airlock"
	ApprovalID string
	// Before returns only records with a smaller sequence number.
	Before uint64
	// After returns only records with a larger sequence number, oldest
	// first: for following the log.
	After uint64
	// Limit caps the result; 0 means 100.
	Limit int
}

// Matches reports whether r passes the query's filters (not Before, After
// or Limit).
func (q AuditQuery) Matches(r *AuditRecord) bool {
	if q.Event != "" {
		if q.Event[len(q.Event)-1] == '.' {
			if len(r.Event) < len(q.Event) || string(r.Event[:len(q.Event)]) != q.Event {
				return false
			}
		} else if string(r.Event) != q.Event {
			return false
		}
	}
	return (q.Server == "" || q.Server == r.Server) && (q.Tool == "" || q.Tool == r.Tool) &&
		(q.Actor == "" || q.Actor == r.Actor) && (q.ApprovalID == "" || q.ApprovalID == r.ApprovalID)
}

// Event names what an audit record records.
type Event string

const (
	EventAllowed  Event = "call.allowed"  // the policy (or a grant) let the call through
	EventDenied   Event = "call.denied"   // the policy refused the call (also when it failed closed)
	EventRefused  Event = "call.refused"  // Airlock refused the call: malformed arguments, or a held call over a limit
	EventHeld     Event = "call.held"     // the call waits for approval
	EventReleased Event = "call.released" // an approved call was forwarded
	EventBlocked  Event = "call.blocked"  // an approved call was not forwarded: its tool changed

	EventVote      Event = "approval.vote"      // an approval toward a quorum not yet reached
	EventApproved  Event = "approval.approved"  // quorum reached
	EventRejected  Event = "approval.denied"    // an approver said no
	EventExpired   Event = "approval.expired"   // nobody decided in time
	EventWithdrawn Event = "approval.withdrawn" // the caller went away
	EventAbandoned Event = "approval.abandoned" // the broker restarted while it waited
	EventLapsed    Event = "approval.lapsed"    // approved, but never run: the agent did not call again in time

	EventTokenCreated   Event = "token.created"   // an agent or approver token was made
	EventTokenRevoked   Event = "token.revoked"   // a token was revoked
	EventRequestRefused Event = "request.refused" // the door refused a request to an MCP endpoint (rate-limited)
)

// AuditRecord is one entry of the append-only, hash-chained audit log.
type AuditRecord struct {
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Event Event     `json:"event"`

	// The call.
	Server          string `json:"server,omitempty"`
	Tool            string `json:"tool,omitempty"`
	ArgumentsDigest string `json:"arguments_digest,omitempty"`
	Principal       string `json:"principal,omitempty"`
	PrincipalSource string `json:"principal_source,omitempty"`
	// PrincipalGroups, ClientID and Person say more of who asked: the
	// principal's groups, the OAuth client, the person config maps the
	// identity to. Omitted when empty, so records sealed before the fields
	// existed hash as they did.
	PrincipalGroups []string `json:"principal_groups,omitempty"`
	ClientID        string   `json:"client_id,omitempty"`
	Person          string   `json:"person,omitempty"`
	Client          string   `json:"client,omitempty"`
	Session         string   `json:"session,omitempty"`

	// What the policy said.
	DecisionID     string `json:"decision_id,omitempty"`
	PolicyRevision string `json:"policy_revision,omitempty"`
	Risk           string `json:"risk,omitempty"`
	Reason         string `json:"reason,omitempty"`
	// Ref is the reference id the client was shown, when there was one.
	Ref string `json:"ref,omitempty"`

	ApprovalID string `json:"approval_id,omitempty"`
	GrantID    string `json:"grant_id,omitempty"`

	// Who did it: the approver, or "airlock".
	Actor   string `json:"actor,omitempty"`
	Channel string `json:"channel,omitempty"`
	// ActorAs is the name the actor gave with the admin token (Vote.As).
	ActorAs string `json:"actor_as,omitempty"`
	// Approvers who said yes, for an approval's outcome.
	Approvers []string `json:"approvers,omitempty"`
	// Wait is how long a held call waited, in milliseconds.
	WaitMS int64 `json:"wait_ms,omitempty"`
	// Late marks the record of a call that ran while audit writes failed,
	// written once they succeeded again. Omitted when false, so records
	// sealed before the field existed hash as they did.
	Late bool `json:"late,omitempty"`

	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// Seal chains r to the record before it: it sets r's sequence number and
// previous hash, and computes r's own hash over everything else. Stores
// call it in the transaction that appends r.
func (r *AuditRecord) Seal(seq uint64, prevHash string) {
	r.SealJSON(seq, prevHash) // a struct of strings and numbers cannot fail to encode
}

// SealJSON seals r like Seal and returns r's JSON encoding, for stores that
// keep records as JSON. It encodes once: the hash covers the encoding with
// an empty "hash", and since Hash is the last field the sealed encoding
// differs only in the closing bytes.
func (r *AuditRecord) SealJSON(seq uint64, prevHash string) ([]byte, error) {
	r.Seq, r.PrevHash, r.Hash = seq, prevHash, ""
	r.Time = r.Time.UTC()
	data, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	r.Hash = hex.EncodeToString(sum[:])
	open := data[:len(data)-len(emptyHashTail)+len(`"hash":"`)]
	out := make([]byte, 0, len(data)+len(r.Hash))
	out = append(append(append(out, open...), r.Hash...), `"}`...)
	return out, nil
}

// emptyHashTail ends every unsealed record's encoding.
const emptyHashTail = `"hash":""}`

func (r *AuditRecord) computeHash() string {
	c := *r
	c.Hash = ""
	data, _ := json.Marshal(&c) // a struct of strings and numbers cannot fail
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// AuditVerification is the result of checking the audit chain.
type AuditVerification struct {
	Records uint64 `json:"records"`
	OK      bool   `json:"ok"`
	// BrokenSeq is the first record that fails the check, and Problem says
	// how; both are empty when OK.
	BrokenSeq uint64 `json:"broken_seq,omitempty"`
	Problem   string `json:"problem,omitempty"`
}

// BrokenAt is the verification of a chain whose records before seq hold
// and whose record seq fails as problem says: for the checks a store makes
// itself (where a record is stored, where the chain ends).
func BrokenAt(seq uint64, problem string) AuditVerification {
	return AuditVerification{Records: seq - 1, BrokenSeq: seq, Problem: problem}
}

// Verifier checks records handed to it in sequence order; stores use it to
// implement VerifyAudit.
type Verifier struct {
	prev   string
	result AuditVerification
}

// Check takes the next record and reports whether the chain still holds.
func (v *Verifier) Check(r *AuditRecord) bool {
	if v.result.BrokenSeq != 0 {
		return false
	}
	want := v.result.Records + 1
	switch {
	case r.Seq != want:
		v.fail(want, "sequence number %d where %d was expected (a record is missing or inserted)", r.Seq, want)
	case r.PrevHash != v.prev:
		v.fail(r.Seq, "previous hash does not match the record before it")
	case r.computeHash() != r.Hash:
		v.fail(r.Seq, "hash does not match the record's contents (it was changed)")
	default:
		v.prev = r.Hash
		v.result.Records++
		return true
	}
	return false
}

// CheckJSON is Check for a record as a store keeps it, its JSON: data must
// decode, and be the record's own encoding byte for byte. JSON that decodes
// to a sealed record but reads otherwise (a key in other case, a second
// "actor") would show whoever reads the stored bytes (SQL, a file) what
// the chain does not vouch for. It returns the record, nil when data does
// not decode.
func (v *Verifier) CheckJSON(data []byte) (*AuditRecord, bool) {
	if v.result.BrokenSeq != 0 {
		return nil, false
	}
	want := v.result.Records + 1
	// A store's own bytes; re-encoding below is what holds them to the
	// record the hash covers.
	r := new(AuditRecord)
	if err := json.Unmarshal(data, r); err != nil {
		v.fail(want, "record %d is not valid JSON (%v)", want, err)
		return nil, false
	}
	if enc, err := json.Marshal(r); err != nil || !bytes.Equal(enc, data) {
		v.fail(want, "record %d is stored as bytes that are not its own encoding (they were changed)", want)
		return r, false
	}
	return r, v.Check(r)
}

func (v *Verifier) fail(seq uint64, format string, args ...any) {
	v.result.BrokenSeq = seq
	v.result.Problem = fmt.Sprintf(format, args...)
}

// Result returns the verification so far.
func (v *Verifier) Result() AuditVerification {
	r := v.result
	r.OK = r.BrokenSeq == 0
	return r
}
