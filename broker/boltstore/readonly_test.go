package boltstore

import (
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

func openReadOnlyTest(t *testing.T, path string) *Store {
	t.Helper()
	r, err := Open(path, Options{ReadOnly: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// A store a broker left (its journal holding records a crash kept from
// the database) reads read-only, journal included, and neither file
// changes: nothing replayed, nothing cut.
func TestReadOnlyReadsTheJournalAndChangesNothing(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendN(t, s, 3)
	if err := s.flushJournal(t.Context()); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 2) // records 4 and 5, in the journal only
	path := crashCopy(t, s)
	before := brokertest.DirState(t, filepath.Dir(path))

	r := openReadOnlyTest(t, path)
	if n, torn := r.Unmoved(); n != 2 || torn != 0 {
		t.Errorf("Unmoved = %d, %d; want 2 records, no torn bytes", n, torn)
	}
	verifyRecords(t, r, 5)
	seqs := func(q broker.AuditQuery) []uint64 {
		recs, err := r.Audit(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, rec := range recs {
			out = append(out, rec.Seq)
		}
		return out
	}
	for name, tc := range map[string]struct {
		q    broker.AuditQuery
		want []uint64
	}{
		"newest":       {broker.AuditQuery{Limit: 3}, []uint64{5, 4, 3}},
		"all":          {broker.AuditQuery{}, []uint64{5, 4, 3, 2, 1}},
		"after":        {broker.AuditQuery{After: 2, Limit: 10}, []uint64{3, 4, 5}},
		"after, few":   {broker.AuditQuery{After: 1, Limit: 2}, []uint64{2, 3}},
		"before":       {broker.AuditQuery{Before: 5, Limit: 2}, []uint64{4, 3}},
		"before, db":   {broker.AuditQuery{Before: 3}, []uint64{2, 1}},
		"journal only": {broker.AuditQuery{After: 4}, []uint64{5}},
	} {
		if got := seqs(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Audit(%+v) = %v, want %v", name, tc.q, got, tc.want)
		}
	}
	if err := r.AppendAudit(t.Context(), &broker.AuditRecord{Event: broker.EventAllowed}); !errors.Is(err, errReadOnly) {
		t.Errorf("AppendAudit on a read-only store: %v, want %v", err, errReadOnly)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if after := brokertest.DirState(t, filepath.Dir(path)); !maps.Equal(before, after) {
		t.Errorf("the state directory changed: files before %q, after %q", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
}

// A journal damaged after record 3, with record 5 intact behind it: the
// read-only open cuts nothing and saves no copy, and verify reports the
// damage a read-write open would have noted.
func TestReadOnlyReportsJournalDamage(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendN(t, s, 2)
	if err := s.flushJournal(t.Context()); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 3)
	path := crashCopy(t, s)
	data, err := os.ReadFile(path + journalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	first := frameHeader + int(binary.LittleEndian.Uint32(data))
	data[first+frameHeader+2] ^= 0xff
	if err := os.WriteFile(path+journalSuffix, data, 0o600); err != nil {
		t.Fatal(err)
	}
	before := brokertest.DirState(t, filepath.Dir(path))
	r := openReadOnlyTest(t, path)
	if n, torn := r.Unmoved(); n != 1 || torn != len(data)-first {
		t.Errorf("Unmoved = %d, %d; want 1 record and %d torn bytes", n, torn, len(data)-first)
	}
	v, err := r.VerifyAudit(t.Context())
	if err != nil || v.OK || v.BrokenSeq != 4 || !strings.Contains(v.Problem, "sequence numbers 5 to 5") {
		t.Errorf("VerifyAudit = %+v, %v; want the damage after record 3 reported", v, err)
	}
	r.Close()
	if after := brokertest.DirState(t, filepath.Dir(path)); !maps.Equal(before, after) {
		t.Errorf("the state directory changed: files before %q, after %q", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
}

// While the writer holds the file, a read-only open waits, then fails
// saying so.
func TestReadOnlyWhileWriterRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "airlock.db")
	openTest(t, path)
	_, err := Open(path, Options{ReadOnly: true, Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Errorf("Open read-only beside the writer: %v, want ErrLocked", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none.db"), Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open read-only of no file: %v, want it not to exist (and not made)", err)
	}
}
