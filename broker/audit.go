package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// callRecord describes a call and the policy's decision about it.
func callRecord(ev Event, c *Call, in *policy.Input, d policy.Decision) *AuditRecord {
	return &AuditRecord{
		Time:            in.Time,
		Event:           ev,
		Server:          c.Server,
		Tool:            c.Tool,
		ArgumentsDigest: in.ArgumentsDigest,
		Principal:       c.Principal.ID,
		PrincipalSource: c.Principal.Source,
		PrincipalGroups: c.Principal.Groups,
		ClientID:        c.Principal.ClientID,
		Person:          c.Principal.Person,
		Client:          clientLabel(c.Client),
		Session:         c.Session,
		DecisionID:      d.ID,
		PolicyRevision:  d.Revision,
		Risk:            d.Risk,
		Reason:          d.Reason,
		Ref:             d.ID,
		GrantID:         d.Grant,
		Actor:           "policy",
	}
}

func clientLabel(ci ClientInfo) string {
	if ci.Version == "" {
		return ci.Name
	}
	return ci.Name + "/" + ci.Version
}

// outcomeRecord records how an approval ended or moved.
func outcomeRecord(ev Event, a *Approval) *AuditRecord {
	r := approvalRecord(ev, a)
	r.Time = a.DecidedAt
	r.Actor = a.DecidedBy
	r.Reason = a.Note
	if len(a.Votes) > 0 {
		last := a.Votes[len(a.Votes)-1]
		r.Channel = last.Channel
		if ev == EventVote {
			r.Time, r.Actor, r.Reason = last.At, last.Approver, last.Reason
		}
		if last.Approver == r.Actor {
			r.ActorAs = last.As
		}
	}
	for _, v := range a.Votes {
		if v.Verdict == Approve {
			r.Approvers = append(r.Approvers, v.Approver)
		}
	}
	if !a.DecidedAt.IsZero() {
		r.WaitMS = a.DecidedAt.Sub(a.RequestedAt).Milliseconds()
	}
	return r
}

// callOutcome records what became of an approved call.
func callOutcome(ev Event, a *Approval, reason string, at time.Time) *AuditRecord {
	r := approvalRecord(ev, a)
	r.Time = at
	r.Actor = Airlock
	r.Reason = reason
	return r
}

func approvalRecord(ev Event, a *Approval) *AuditRecord {
	return &AuditRecord{
		Event:           ev,
		Server:          a.Server,
		Tool:            a.Tool,
		ArgumentsDigest: a.ArgumentsDigest,
		Principal:       a.Principal.ID,
		PrincipalSource: a.Principal.Source,
		PrincipalGroups: a.Principal.Groups,
		ClientID:        a.Principal.ClientID,
		Person:          a.Principal.Person,
		Client:          clientLabel(a.Client),
		Session:         a.Session,
		DecisionID:      a.Decision.ID,
		PolicyRevision:  a.Decision.Revision,
		Risk:            a.Decision.Risk,
		ApprovalID:      a.ID,
		Ref:             a.ID,
	}
}

// record appends r to the audit log, logging a failure (the log line is
// the last trace of the event).
func (b *Broker) record(r *AuditRecord) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := b.store.AppendAudit(ctx, r)
	if err != nil {
		b.log.Error("audit write failed", "event", r.Event, "server", r.Server, "tool", r.Tool, "ref", r.Ref, "err", err)
		b.auditFailed(nil, err)
	}
	return err
}

// recordAsync appends the record of a call that goes ahead in the
// background, so that the write's fsync overlaps the upstream's work; the
// channel yields the outcome, which the call's result waits for. A failed
// write keeps r to be written late (auditFailed).
func (b *Broker) recordAsync(r *AuditRecord) <-chan error {
	done := make(chan error, 1)
	b.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := b.store.AppendAudit(ctx, r)
		if err != nil {
			b.log.Error("audit write failed", "event", r.Event, "server", r.Server, "tool", r.Tool, "ref", r.Ref, "err", err)
			b.auditFailed(r, err)
		}
		done <- err
	})
	return done
}

// NewRef returns a reference id that links what a user sees to the log.
func NewRef() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
