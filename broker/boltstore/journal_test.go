package boltstore

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-mcp/airlock/broker"
)

// crashCopy copies the store's files as a crash would leave them: the
// journal holding what was appended since the last move into the database.
func crashCopy(t *testing.T, s *Store) string {
	t.Helper()
	dir := t.TempDir()
	for _, suffix := range []string{"", journalSuffix} {
		data, err := os.ReadFile(s.path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "airlock.db"+suffix), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "airlock.db")
}

func appendN(t *testing.T, s *Store, n int) {
	t.Helper()
	for range n {
		if err := s.AppendAudit(t.Context(), &broker.AuditRecord{Event: broker.EventAllowed, Tool: "read_file"}); err != nil {
			t.Fatal(err)
		}
	}
}

func verifyRecords(t *testing.T, s *Store, want uint64) {
	t.Helper()
	if v, err := s.VerifyAudit(t.Context()); err != nil || !v.OK || v.Records != want {
		t.Errorf("VerifyAudit = %+v, %v; want %d good records", v, err, want)
	}
}

// Records only in the journal when the process died are in the database
// after the next open, and the journal is empty.
func TestJournalRecoveredAtOpen(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendN(t, s, 3)
	if err := s.flushJournal(t.Context()); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 5) // these stay in the journal
	if s.journaled.Load() != 5 {
		t.Fatalf("%d records journaled, want 5", s.journaled.Load())
	}
	path := crashCopy(t, s)
	r := openTest(t, path)
	verifyRecords(t, r, 8)
	if fi, err := os.Stat(path + journalSuffix); err != nil || fi.Size() != 0 {
		t.Errorf("journal after open: %v, %v; want it empty", fi.Size(), err)
	}
}

// A lone caller commits its own appends; once the journal is due, the
// writer goroutine moves it into the database without anyone reading.
func TestJournalMovedWhenDue(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendN(t, s, checkpointRecords+3)
	deadline := time.Now().Add(10 * time.Second)
	for s.journaled.Load() >= checkpointRecords {
		if time.Now().After(deadline) {
			t.Fatalf("%d records still journaled; the journal was never moved", s.journaled.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	verifyRecords(t, s, checkpointRecords+3)
}

// A crash in the middle of a write leaves a torn frame, which was never
// acknowledged: it is cut off, and what came before is kept.
func TestJournalTornTailCutOff(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendN(t, s, 4)
	path := crashCopy(t, s)
	f, err := os.OpenFile(path+journalSuffix, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := appendFrame(nil, []byte(`{"seq":5,"event":"allowed"`))[:20]
	f.Write(torn)
	f.Close()
	r := openTest(t, path)
	verifyRecords(t, r, 4)
	appendN(t, r, 1)
	verifyRecords(t, r, 5)
	// What was cut off is kept for a person to look at: it could have been
	// damage with good records behind it.
	copies, _ := filepath.Glob(path + journalSuffix + ".cut-*")
	if len(copies) != 1 {
		t.Fatalf("copies of the cut bytes: %v", copies)
	}
	if got, _ := os.ReadFile(copies[0]); string(got) != string(torn) {
		t.Errorf("the copy holds %q, want the torn frame %q", got, torn)
	}
}

// A record the journal could not read back is refused, not written: it
// would be lost, with every record after it, at the next open.
func TestJournalRefusesOversizedRecord(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendN(t, s, 1)
	err := s.AppendAudit(t.Context(), &broker.AuditRecord{Event: broker.EventAllowed, Client: strings.Repeat("<", maxFrame/6+1)})
	if err == nil || !strings.Contains(err.Error(), "over the journal's limit") {
		t.Fatalf("AppendAudit of an oversized record = %v", err)
	}
	appendN(t, s, 1)
	r := openTest(t, crashCopy(t, s))
	verifyRecords(t, r, 2)
}

// Writes without an audit record do not read the chain's head, so a
// damaged last record does not stop approvals from being stored.
func TestWritesWithoutRecordIgnoreTheChain(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendN(t, s, 1)
	if err := s.flushJournal(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Put(seqKey(1), []byte("not json")) }); err != nil {
		t.Fatal(err)
	}
	s.headKnown = false
	if err := s.CreateApproval(t.Context(), approval("01NOREC", broker.StatusPending), nil); err != nil {
		t.Errorf("CreateApproval without a record = %v", err)
	}
	if err := s.AppendAudit(t.Context(), &broker.AuditRecord{Event: broker.EventAllowed}); err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Errorf("AppendAudit after a damaged record = %v; want it refused", err)
	}
}

// A journal that does not continue the database's chain (another store's,
// or damaged in the middle) stops the open with a message saying what to do.
func TestJournalFromElsewhereRefused(t *testing.T) {
	a := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendN(t, a, 2)
	if err := a.flushJournal(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	for range 3 {
		if err := b.AppendAudit(t.Context(), &broker.AuditRecord{Event: broker.EventDenied, Tool: "rm"}); err != nil {
			t.Fatal(err)
		}
	}
	path := crashCopy(t, a)
	journal, err := os.ReadFile(b.path + journalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+journalSuffix, journal, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "record 1 is not the audit log's record 1") || !strings.Contains(err.Error(), "move the journal aside") {
		t.Fatalf("Open = %v", err)
	}

	// Only b's third record: a gap after a's second.
	j, recs, _, err := openJournal(b.path + journalSuffix)
	if err != nil || len(recs) != 3 {
		t.Fatalf("reading b's journal: %d records, %v", len(recs), err)
	}
	j.f.Close()
	if err := os.WriteFile(path+journalSuffix, appendFrame(nil, recs[2].data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "record 3 does not follow record 2") {
		t.Fatalf("Open = %v", err)
	}
}

// When the journal cannot be written, the records are refused (the caller
// withholds the call's result) and nothing half-written stays behind: the
// database's own writes go on, and the chain stays whole.
func TestJournalWriteFailureRefuses(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendN(t, s, 2)
	good := s.journal.f
	broken, err := os.Open(s.path + journalSuffix) // read-only: writes fail
	if err != nil {
		t.Fatal(err)
	}
	s.journal.f = broken
	err = s.AppendAudit(t.Context(), &broker.AuditRecord{Event: broker.EventAllowed})
	if err == nil || !strings.Contains(err.Error(), "audit journal") {
		t.Fatalf("AppendAudit with an unwritable journal = %v", err)
	}
	s.journal.f = good
	broken.Close()
	if err := s.CreateApproval(t.Context(), approval("01FAIL", broker.StatusPending), &broker.AuditRecord{Event: broker.EventHeld}); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 1)
	verifyRecords(t, s, 4)
}

// Damage in the middle of the journal cuts off acknowledged records with
// it; verify says so, naming the copy, after every restart.
func TestJournalDamageMidFileReported(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendN(t, s, 2)
	if err := s.flushJournal(t.Context()); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 3) // records 3, 4 and 5, in the journal only
	path := crashCopy(t, s)
	data, err := os.ReadFile(path + journalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	// Scribble on record 4's payload: 3 stays, 4 is damaged, 5 is intact.
	first := frameHeader + int(binary.LittleEndian.Uint32(data))
	data[first+frameHeader+2] ^= 0xff
	if err := os.WriteFile(path+journalSuffix, data, 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(r *Store) {
		t.Helper()
		v, err := r.VerifyAudit(t.Context())
		copies, _ := filepath.Glob(path + journalSuffix + ".cut-*")
		if err != nil || v.OK || v.BrokenSeq != 4 || len(copies) != 1 ||
			!strings.Contains(v.Problem, "after record 3") || !strings.Contains(v.Problem, copies[0]) || !strings.Contains(v.Problem, "sequence numbers 5 to 5") {
			t.Errorf("VerifyAudit = %+v, %v; want the cut after record 3 reported with its copy %v", v, err, copies)
		}
	}
	r, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	check(r)
	appendN(t, r, 1)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = openTest(t, path) // after a restart, too
	check(r)
}
