package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-mcp/airlock/broker"
)

// auditHead is the last record of the chain: what the next one links to.
type auditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// entry is an audit record sealed in a transaction and its encoding.
type entry struct {
	rec  *broker.AuditRecord
	data []byte
}

// sealAudit seals copies of the records (skipping nil ones) onto the
// chain as it stands in t and encodes them, changing nothing yet: putAudit
// stores them.
func (t *txn) sealAudit(recs ...*broker.AuditRecord) ([]entry, error) {
	if !slices.ContainsFunc(recs, func(r *broker.AuditRecord) bool { return r != nil }) {
		return nil, nil // no need to read the chain's head, nor to trust it
	}
	if !t.loaded {
		// Once per transaction, however many records it appends.
		head, err := lastRecord(t.Tx)
		if err != nil {
			return nil, err
		}
		t.head, t.loaded = head, true
	}
	es, _, err := seal(t.head, recs)
	return es, err
}

// lastRecord reads the head of the chain as the database has it.
func lastRecord(tx *bolt.Tx) (auditHead, error) {
	var head auditHead
	k, v := tx.Bucket(bucketAudit).Cursor().Last()
	if k == nil {
		return head, nil
	}
	if err := json.Unmarshal(v, &head); err != nil {
		return head, fmt.Errorf("boltstore: the last audit record (key %x) is unreadable, so nothing can be chained to it: %w", k, err)
	}
	if len(k) != 8 || binary.BigEndian.Uint64(k) != head.Seq {
		return head, fmt.Errorf("boltstore: the last audit record says it is %d but is stored under key %x", head.Seq, k)
	}
	return head, nil
}

// seal seals copies of recs (skipping nil ones) onto the chain after head,
// encodes them, and returns the new head.
func seal(head auditHead, recs []*broker.AuditRecord) ([]entry, auditHead, error) {
	out := make([]entry, 0, len(recs))
	for _, r := range recs {
		if r == nil {
			continue
		}
		c := *r
		data, err := c.SealJSON(head.Seq+1, head.Hash)
		if err != nil {
			return nil, head, fmt.Errorf("boltstore: encode audit record: %w", err)
		}
		out = append(out, entry{&c, data})
		head = auditHead{c.Seq, c.Hash}
	}
	return out, head, nil
}

// putAudit stores records sealed by sealAudit and moves the head.
func (t *txn) putAudit(es []entry) error {
	b := t.Bucket(bucketAudit)
	for _, e := range es {
		if err := put(b, seqKey(e.rec.Seq), e.data); err != nil {
			return err
		}
		t.head = auditHead{e.rec.Seq, e.rec.Hash}
	}
	return nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// AppendAudit appends records to the audit log in order and seals the
// caller's records in place. They are durable when it returns: in the
// audit journal, or in the database when other writes share the commit.
func (s *Store) AppendAudit(ctx context.Context, recs ...*broker.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	for _, r := range recs {
		if r == nil {
			return errors.New("boltstore: append audit: nil record")
		}
	}
	w := auditWrite(recs)
	if err := s.submit(ctx, w); err != nil {
		return err
	}
	for i, e := range w.sealed {
		*recs[i] = *e.rec
	}
	return nil
}

// auditWrite appends recs: through the journal, or in a transaction.
func auditWrite(recs []*broker.AuditRecord) *write {
	w := newWrite(nil)
	w.audit = recs
	w.apply = func(t *txn) (err error) {
		if w.sealed, err = t.sealAudit(recs...); err != nil {
			return err
		}
		return t.putAudit(w.sealed)
	}
	return w
}

// flushJournal moves journaled records into the database, so that a read
// of the audit log sees them.
func (s *Store) flushJournal(ctx context.Context) error {
	if s.journaled.Load() == 0 {
		return nil
	}
	return s.write(ctx, func(*txn) error { return nil })
}

// Audit lists records newest first, or oldest first after q.After.
func (s *Store) Audit(ctx context.Context, q broker.AuditQuery) ([]*broker.AuditRecord, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	if err := s.flushJournal(ctx); err != nil {
		return nil, err
	}
	var out []*broker.AuditRecord
	// A read-only store's unmoved journal records follow the database's:
	// newest first they come before it, oldest first after it.
	fromJournal := func(ascending bool) {
		if ascending {
			for _, e := range s.unmoved {
				if len(out) < limit && e.rec.Seq > q.After && q.Matches(e.rec) {
					out = append(out, e.rec)
				}
			}
			return
		}
		for _, e := range slices.Backward(s.unmoved) {
			if len(out) < limit && (q.Before == 0 || e.rec.Seq < q.Before) && q.Matches(e.rec) {
				out = append(out, e.rec)
			}
		}
	}
	if q.After == 0 {
		fromJournal(false)
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		var k, v []byte
		next := c.Prev
		switch {
		case q.After > 0:
			k, v = c.Seek(seqKey(q.After + 1))
			next = c.Next
		case q.Before > 0:
			if k, _ = c.Seek(seqKey(q.Before)); k != nil {
				k, v = c.Prev()
			} else {
				k, v = c.Last()
			}
		default:
			k, v = c.Last()
		}
		for ; k != nil && len(out) < limit; k, v = next() {
			r := new(broker.AuditRecord)
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("boltstore: decode audit record %x: %w", k, err)
			}
			if q.Matches(r) {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if q.After > 0 {
		fromJournal(true)
	}
	return out, nil
}

// VerifyAudit checks the whole chain in one read transaction: every record
// in sequence, linked to the one before, with the hash of its contents, and
// stored under its own sequence number.
func (s *Store) VerifyAudit(ctx context.Context) (broker.AuditVerification, error) {
	var res broker.AuditVerification
	if err := s.flushJournal(ctx); err != nil {
		return res, err
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var v broker.Verifier
		c := tx.Bucket(bucketAudit).Cursor()
		for k, data := c.First(); k != nil; k, data = c.Next() {
			if v.Result().Records%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("boltstore: verify audit: %w", err)
				}
			}
			r, ok := v.CheckJSON(data)
			if !ok {
				break
			}
			if len(k) != 8 || binary.BigEndian.Uint64(k) != r.Seq {
				res = broker.BrokenAt(r.Seq, fmt.Sprintf("record %d is stored under key %x", r.Seq, k))
				return nil
			}
		}
		if v.Result().OK {
			for _, e := range s.unmoved {
				if !v.Check(e.rec) {
					break
				}
			}
		}
		res = v.Result()
		if !res.OK {
			return nil
		}
		if s.torn != nil && s.torn.Records > 0 {
			// What a read-write open would cut off and note (keepCut).
			res = broker.AuditVerification{Records: res.Records, BrokenSeq: res.Records + 1, Problem: fmt.Sprintf(
				"the audit journal %s%s is damaged after its last intact record: %d intact records (sequence numbers %d to %d) follow the damage and cannot be read in order",
				s.path, journalSuffix, s.torn.Records, s.torn.FirstSeq, s.torn.LastSeq)}
			return nil
		}
		// The chain holds, but records a damaged journal lost are not in
		// it: the records after the cut took their numbers.
		cuts, err := journalCuts(tx)
		if err != nil || len(cuts) == 0 {
			return err
		}
		cut := cuts[0]
		problem := fmt.Sprintf("the audit journal was damaged on %s: %d acknowledged records after record %d (sequence numbers %d to %d) were cut off into %s and are not in the log; the records after %d are later ones",
			cut.At.Format(time.RFC3339), cut.Records, cut.AfterSeq, cut.FirstSeq, cut.LastSeq, cut.File, cut.AfterSeq)
		if len(cuts) > 1 {
			problem += fmt.Sprintf(" (%d more cuts follow)", len(cuts)-1)
		}
		res = broker.AuditVerification{Records: res.Records, BrokenSeq: cut.AfterSeq + 1, Problem: problem}
		return nil
	})
	return res, err
}
