package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrNotFound reports an id the store does not know.
var ErrNotFound = errors.New("not found")

// Store keeps the broker's state: approvals, grants, the audit log, the
// tool definitions first seen for each server, and the records of tokens
// (never a token itself).
//
// The contract, which brokertest.TestStore checks for every
// implementation:
//   - Every method that changes state commits it in one transaction and
//     makes it durable before returning. A decision acknowledged to an
//     approver is never lost.
//   - UpdateApproval (and UpdateGrant) serializes concurrent updates of one
//     record: fn sees the stored record and its changes are committed only
//     if nothing changed it in between, so a compare-and-set in fn holds.
//   - The audit log is append-only. Each record is sealed into a hash chain
//     (AuditRecord.Seal) in the transaction that appends it, with sequence
//     numbers 1, 2, 3… without gaps. Once stored, the caller's record is
//     sealed in place too, so the caller learns its sequence number.
//   - Every change to an approval that is stored (CreateApproval, and an
//     UpdateApproval whose fn succeeded) is announced to the functions
//     given to WatchApprovals, once it is durable and before the method
//     that made it returns; a change that is not stored is announced to
//     nobody. Through it a held call can learn that its approval was
//     decided, whoever decided it.
//   - The same holds for grants (CreateGrant, UpdateGrant) and the
//     functions given to WatchGrants: through it every broker sharing the
//     store keeps the grants it checks calls against current.
//   - A store that several processes share (PostgreSQL) announces the
//     changes each of them makes to every other, once each, never an
//     older state of a record after a newer one, soon after they are
//     durable; a lost notification delays a change, never loses it.
//   - Methods are safe for concurrent use; returned values are copies the
//     caller may keep and change.
type Store interface {
	// CreateApproval stores a new approval and appends rec (if not nil) to
	// the audit log, atomically.
	CreateApproval(ctx context.Context, a *Approval, rec *AuditRecord) error
	// UpdateApproval runs fn on the stored approval and stores what fn
	// made of it, together with the audit record fn returns (if any), in
	// one transaction. If fn returns an error, nothing is stored and
	// UpdateApproval returns that error. An unknown id is ErrNotFound.
	UpdateApproval(ctx context.Context, id string, fn func(*Approval) (*AuditRecord, error)) (*Approval, error)
	// Approval returns one approval, or ErrNotFound.
	Approval(ctx context.Context, id string) (*Approval, error)
	// Approvals lists approvals, newest first.
	Approvals(ctx context.Context, q ApprovalQuery) ([]*Approval, error)
	// WatchApprovals calls f with the approval as stored after every
	// change to an approval (CreateApproval and UpdateApproval) by any
	// writer that shares the store, until ctx is done. It returns at once.
	// For a change made through this Store value, f has been called
	// before the method that made the change returns. Calls for one
	// approval come in the order of its changes. f must return quickly
	// and must not call the store (implementations may call it with locks
	// held, in the goroutine that commits). f gets a copy it may keep.
	//
	// Once ctx is done, f is not called again; a call already under way
	// may still finish. WatchApprovals returns an error, and watches
	// nothing, when the store is closed or f is nil; closing the store
	// ends every watch.
	WatchApprovals(ctx context.Context, f func(*Approval)) error

	// AppendAudit appends records to the audit log in order.
	AppendAudit(ctx context.Context, recs ...*AuditRecord) error
	// Audit lists records, newest first.
	Audit(ctx context.Context, q AuditQuery) ([]*AuditRecord, error)
	// VerifyAudit checks the whole hash chain.
	VerifyAudit(ctx context.Context) (AuditVerification, error)

	// CreateGrant stores a new grant and appends rec (if not nil) to the
	// audit log, atomically.
	CreateGrant(ctx context.Context, g *Grant, rec *AuditRecord) error
	// UpdateGrant is UpdateApproval for grants: fn's changes and its audit
	// record are stored in one transaction, or nothing is.
	UpdateGrant(ctx context.Context, id string, fn func(*Grant) (*AuditRecord, error)) (*Grant, error)
	// Grant returns one grant, or ErrNotFound.
	Grant(ctx context.Context, id string) (*Grant, error)
	// Grants lists grants, newest first. Listing the active ones stays
	// cheap however many have ended.
	Grants(ctx context.Context, q GrantQuery) ([]*Grant, error)
	// WatchGrants is WatchApprovals for grants: f gets the grant as stored
	// after every change to a grant (CreateGrant and UpdateGrant), with the
	// same rules.
	WatchGrants(ctx context.Context, f func(*Grant)) error

	// SeenTool records a tool's definition the first time the tool is seen
	// for its server and returns the first record: the given one, or the
	// one stored before.
	SeenTool(ctx context.Context, t *ToolRecord) (*ToolRecord, error)

	// CreateToken stores a new token's record (never its secret) and
	// appends rec (if not nil) to the audit log, atomically. A name held
	// by a token not revoked is an error wrapping ErrTokenExists.
	CreateToken(ctx context.Context, t *Token, rec *AuditRecord) error
	// UpdateToken is UpdateApproval for tokens.
	UpdateToken(ctx context.Context, id string, fn func(*Token) (*AuditRecord, error)) (*Token, error)
	// Token returns one token by id, or ErrNotFound.
	Token(ctx context.Context, id string) (*Token, error)
	// Tokens lists every token, newest first.
	Tokens(ctx context.Context) ([]*Token, error)
	// TokenGeneration is a number that changes once a change to a token
	// made through this Store value is durable, before the method that
	// made it returns, and, in a store other processes share, soon after
	// one of them changed a token. The broker reads it at every request
	// that carries a token, to know its cached records are current: it
	// must be cheap (an atomic load).
	TokenGeneration() uint64

	// Lease records that replica (a process of the broker, or a wrap
	// that reaches the broker through another: see Call.Holder) is alive
	// for ttl from now, by the store's clock (the database's, for a store
	// processes share), and returns the leases the store keeps: every
	// replica's that has not run out, replica's among them, and those
	// that ran out in the last day, so that the broker can tell when a
	// dead replica was last alive. The broker renews its lease every
	// ttl/3 and abandons the pending approvals whose Holder's lease is not
	// live, since nobody waits for them.
	Lease(ctx context.Context, replica string, ttl time.Duration) ([]Lease, error)

	Close() error
}

// A Lease is a replica's claim to be alive, as Store.Lease returns it.
type Lease struct {
	Replica string
	// Renewed is when the replica last renewed it: the last moment it is
	// known to have been alive.
	Renewed time.Time
	// Live says the lease has not run out, by the store's clock.
	Live bool
}

// ApprovalQuery selects approvals. Zero fields select everything.
type ApprovalQuery struct {
	Status []Status
	Server string
	Tool   string
	// Before returns only approvals with a smaller id: the last id of one
	// page fetches the next.
	Before string
	// Limit caps the result; 0 means 100.
	Limit int
}

// Matches reports whether a passes the query's filters (not Before or
// Limit), for stores that filter in Go.
func (q ApprovalQuery) Matches(a *Approval) bool {
	if len(q.Status) > 0 && !containsStatus(q.Status, a.Status) {
		return false
	}
	return (q.Server == "" || q.Server == a.Server) && (q.Tool == "" || q.Tool == a.Tool)
}

func containsStatus(ss []Status, s Status) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// ToolRecord is a tool's definition as first seen for a server.
type ToolRecord struct {
	Server      string          `json:"server"`
	Tool        string          `json:"tool"`
	Fingerprint string          `json:"fingerprint"`
	FirstSeen   time.Time       `json:"first_seen"`
	Definition  json.RawMessage `json:"definition"`
}
