package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openTest opens a store at path for the length of the test. When the test
// ends it closes the store and checks what it left on disk.
func openTest(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		checkFile(t, path)
	})
	return s
}

func TestConformance(t *testing.T) {
	brokertest.TestStore(t, func(t *testing.T) broker.Store {
		return openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	}, brokertest.StoreOptions{TamperAudit: tamper})
}

// tamper rewrites a stored record as someone with the file would, once
// the record has moved from the journal into the database.
func tamper(t *testing.T, s broker.Store, seq uint64, fn func(*broker.AuditRecord) *broker.AuditRecord) {
	if err := s.(*Store).flushJournal(t.Context()); err != nil {
		t.Fatal(err)
	}
	err := s.(*Store).db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		r := new(broker.AuditRecord)
		if err := json.Unmarshal(b.Get(seqKey(seq)), r); err != nil {
			return err
		}
		r = fn(r)
		if r == nil {
			return b.Delete(seqKey(seq))
		}
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put(seqKey(seq), data)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkFile reopens a closed database with bbolt alone and checks its
// pages and the pending index: exactly the pending approvals, each under
// its expiry.
func checkFile(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("reopening %s: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		want := map[string]bool{}
		err := tx.Bucket(bucketApprovals).ForEach(func(k, v []byte) error {
			var a broker.Approval
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("approval %s: %w", k, err)
			}
			if a.Status == broker.StatusPending {
				want[string(approvals.indexKey(&a))] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketPending).ForEach(func(k, _ []byte) error {
			if !want[string(k)] {
				t.Errorf("pending index has %x, which is no pending approval", k)
			}
			delete(want, string(k))
			return nil
		})
		for k := range want {
			t.Errorf("pending approval %s is missing from the index", k[8:])
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func approval(id string, status broker.Status) *broker.Approval {
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	return &broker.Approval{ID: id, Status: status, Server: "fs", Tool: "write_file",
		Arguments: json.RawMessage(`{"path":"/srv/data/x"}`), ArgumentsDigest: "sha256:1",
		Principal: broker.Principal{ID: "alice", Source: "token"}, RequestedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
}

func approve(who string) func(*broker.Approval) (*broker.AuditRecord, error) {
	return func(a *broker.Approval) (*broker.AuditRecord, error) {
		if a.Status != broker.StatusPending {
			return nil, &broker.DecidedError{Status: a.Status, By: a.DecidedBy, At: a.DecidedAt}
		}
		a.Status, a.DecidedBy, a.DecidedAt = broker.StatusApproved, who, a.RequestedAt.Add(time.Minute)
		return &broker.AuditRecord{Time: a.DecidedAt, Event: broker.EventApproved, ApprovalID: a.ID, Actor: who}, nil
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"01A", "01B", "01C"} {
		if err := s.CreateApproval(ctx, approval(id, broker.StatusPending), &broker.AuditRecord{Event: broker.EventHeld, ApprovalID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UpdateApproval(ctx, "01B", approve("bob")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SeenTool(ctx, &broker.ToolRecord{Server: "fs", Tool: "write_file", Fingerprint: "sha256:first"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path)
	if a, err := s.Approval(ctx, "01B"); err != nil || a.Status != broker.StatusApproved || a.DecidedBy != "bob" {
		t.Errorf("after reopening, 01B = %+v, %v; want approved by bob", a, err)
	}
	pending, err := s.Approvals(ctx, broker.ApprovalQuery{Status: []broker.Status{broker.StatusPending}})
	if err != nil || len(pending) != 2 || pending[0].ID != "01C" || pending[1].ID != "01A" {
		t.Errorf("after reopening, pending = %v, %v; want 01C and 01A", pending, err)
	}
	if r, err := s.SeenTool(ctx, &broker.ToolRecord{Server: "fs", Tool: "write_file", Fingerprint: "sha256:later"}); err != nil || r.Fingerprint != "sha256:first" {
		t.Errorf("after reopening, SeenTool = %+v, %v; want the first fingerprint", r, err)
	}
	next := &broker.AuditRecord{Event: broker.EventAllowed}
	if err := s.AppendAudit(ctx, next); err != nil || next.Seq != 5 {
		t.Errorf("after reopening, the next record got seq %d (%v), want 5", next.Seq, err)
	}
	if v, err := s.VerifyAudit(ctx); err != nil || !v.OK || v.Records != 5 {
		t.Errorf("VerifyAudit after reopening = %+v, %v", v, err)
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "airlock.db")
	s := openTest(t, path)
	// bbolt's flock belongs to the open file description, so a second
	// Open in the same process conflicts as another process would.
	start := time.Now()
	_, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Open on a locked file took %s", elapsed)
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another Airlock is probably running") {
		t.Fatalf("second Open error = %v, want ErrLocked naming %s and another Airlock", err, path)
	}
	t.Log(err)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open after the first store closed: %v", err)
	}
	s2.Close()
}

func TestOpenNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "airlock.db")
	s := openTest(t, path)
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, schemaVersion+1))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d is newer", schemaVersion+1)) {
		t.Fatalf("Open of a newer schema = %v, want an error naming the file and the version", err)
	}
	t.Log(err)
}

func TestOpenOtherFiles(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("widgets"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{foreign, garbage} {
		s, err := Open(path, Options{})
		if err == nil {
			s.Close()
			t.Errorf("Open(%s) succeeded", filepath.Base(path))
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s) error does not name the file: %v", filepath.Base(path), err)
		}
		t.Log(err)
	}
}

func TestCloseWaitsForQueuedWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	recs := make([]*broker.AuditRecord, n)
	errs := make([]error, n)
	started := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			recs[i] = &broker.AuditRecord{Event: broker.EventAllowed, Reason: fmt.Sprint(i)}
			started <- struct{}{}
			errs[i] = s.AppendAudit(context.Background(), recs[i])
		})
	}
	for range n / 2 {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	s = openTest(t, path)
	stored := map[uint64]*broker.AuditRecord{}
	all, err := s.Audit(t.Context(), broker.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		stored[r.Seq] = r
	}
	acked := 0
	for i, err := range errs {
		switch {
		case err == nil:
			acked++
			if r := stored[recs[i].Seq]; r == nil || r.Hash != recs[i].Hash {
				t.Errorf("write %d was acknowledged as seq %d but is not stored", i, recs[i].Seq)
			}
		case !errors.Is(err, errClosed):
			t.Errorf("write %d: %v, want success or errClosed", i, err)
		}
	}
	if len(stored) != acked {
		t.Errorf("%d records stored, %d acknowledged", len(stored), acked)
	}
	t.Logf("%d of %d writes made it before Close", acked, n)
}

func TestCancelledContext(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.AppendAudit(ctx, &broker.AuditRecord{Event: broker.EventAllowed}); !errors.Is(err, context.Canceled) {
		t.Errorf("AppendAudit with a cancelled context = %v", err)
	}
	if err := s.CreateApproval(ctx, approval("01A", broker.StatusPending), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateApproval with a cancelled context = %v", err)
	}
	if recs, _ := s.Audit(t.Context(), broker.AuditQuery{}); len(recs) != 0 {
		t.Errorf("a cancelled append was stored: %v", recs)
	}
	if _, err := s.Approval(t.Context(), "01A"); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("a cancelled create was stored: %v", err)
	}
}

// TestPanicInUpdate checks that a panic in fn surfaces in its caller and
// takes neither the writer nor the other writes of its group down.
func TestPanicInUpdate(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	for _, id := range []string{"01A", "01B"} {
		if err := s.CreateApproval(ctx, approval(id, broker.StatusPending), nil); err != nil {
			t.Fatal(err)
		}
	}
	var statuses []broker.Status
	if err := s.WatchApprovals(ctx, func(a *broker.Approval) { statuses = append(statuses, a.Status) }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var recovered any
	wg.Go(func() {
		defer func() { recovered = recover() }()
		s.UpdateApproval(ctx, "01A", func(a *broker.Approval) (*broker.AuditRecord, error) {
			a.Status = broker.StatusDenied
			panic("fn blew up")
		})
	})
	var others [8]error
	for i := range others {
		wg.Go(func() { others[i] = s.AppendAudit(ctx, &broker.AuditRecord{Event: broker.EventAllowed}) })
	}
	wg.Wait()
	if pe, ok := recovered.(*panicError); !ok || pe.value != "fn blew up" {
		t.Errorf("caller recovered %v, want fn's panic", recovered)
	}
	for i, err := range others {
		if err != nil {
			t.Errorf("write %d beside the panic: %v", i, err)
		}
	}
	if a, _ := s.Approval(ctx, "01A"); a.Status != broker.StatusPending {
		t.Errorf("the panicking update was stored: %s", a.Status)
	}
	if _, err := s.UpdateApproval(ctx, "01B", approve("bob")); err != nil {
		t.Errorf("the store after a panic: %v", err)
	}
	if !slices.Equal(statuses, []broker.Status{broker.StatusApproved}) {
		t.Errorf("announced %v, want only 01B's approval: not the panicking update", statuses)
	}
	if v, err := s.VerifyAudit(ctx); err != nil || !v.OK || v.Records != 9 {
		t.Errorf("VerifyAudit = %+v, %v", v, err)
	}
}

// TestSpoiledWriteRetried commits a group in which one write fails after
// changing the transaction: the others commit without its half.
func TestSpoiledWriteRetried(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	appendOne := func(reason string) *write {
		return &write{done: make(chan struct{}), apply: func(t *txn) error {
			es, err := t.sealAudit(&broker.AuditRecord{Event: broker.EventAllowed, Reason: reason})
			if err != nil {
				return err
			}
			return t.putAudit(es)
		}}
	}
	half := &write{done: make(chan struct{}), apply: func(t *txn) error {
		b := t.Bucket(bucketTools)
		if err := put(b, []byte("half"), []byte("{}")); err != nil {
			return err
		}
		return put(b, make([]byte, bolt.MaxKeySize+1), []byte("{}"))
	}}
	clean := &write{done: make(chan struct{}), apply: func(*txn) error { return errors.New("refused before writing") }}
	// The writer keeps the chain's head between commits; appends before
	// (journaled) and after the retried group show that a rolled-back
	// transaction's head is not kept. This goroutine commits in the
	// writer's place, which stays idle.
	appendAlone := func(reason string) {
		w := auditWrite([]*broker.AuditRecord{{Event: broker.EventAllowed, Reason: reason}})
		s.commit([]*write{w})
		if w.err != nil {
			t.Fatal(w.err)
		}
	}
	appendAlone("before")
	first, second := appendOne("first"), appendOne("second")
	group := []*write{first, clean, half, second}
	// Each write's stored hook runs once if it committed, never if it did
	// not: not for the rolled-back try, not for the writes that failed.
	stored := make([]int, len(group))
	for i, w := range group {
		w.stored = func() { stored[i]++ }
	}
	s.commit(slices.Clone(group))
	appendAlone("after")
	if !slices.Equal(stored, []int{1, 0, 0, 1}) {
		t.Errorf("stored hooks of first, clean, half, second ran %v times, want [1 0 0 1]", stored)
	}

	for i, w := range group {
		select {
		case <-w.done:
		default:
			t.Fatalf("write %d was not released", i)
		}
	}
	if first.err != nil || second.err != nil {
		t.Errorf("the good writes failed: %v, %v", first.err, second.err)
	}
	if _, ok := errors.AsType[*spoiledError](half.err); !ok || !errors.Is(half.err, bolt.ErrKeyTooLarge) {
		t.Errorf("the spoiling write got %v", half.err)
	}
	if clean.err == nil || clean.err.Error() != "refused before writing" {
		t.Errorf("the refused write got %v", clean.err)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketTools).Get([]byte("half")) != nil {
			t.Error("half of the spoiling write was committed")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Audit(t.Context(), broker.AuditQuery{})
	var reasons []string
	for _, r := range recs {
		reasons = append(reasons, r.Reason)
	}
	if err != nil || !slices.Equal(reasons, []string{"after", "second", "first", "before"}) {
		t.Errorf("audit (newest first) = %q, %v; want after, second, first, before", reasons, err)
	}
	if v, err := s.VerifyAudit(t.Context()); err != nil || !v.OK {
		t.Errorf("VerifyAudit = %+v, %v", v, err)
	}
}

// TestFailedCommitAnnouncesNothing fails a group's commit after its writes
// applied, as a failed sync would: no write is announced, and each gets the
// commit's error.
func TestFailedCommitAnnouncesNothing(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	var announced int
	good := &write{done: make(chan struct{}), stored: func() { announced++ }, apply: func(t *txn) error {
		return put(t.Bucket(bucketTools), []byte("good"), []byte("{}"))
	}}
	// Rolling the transaction back behind the writer's back makes its
	// commit fail.
	saboteur := &write{done: make(chan struct{}), stored: func() { announced++ }, apply: func(t *txn) error {
		return t.Rollback()
	}}
	s.commit([]*write{good, saboteur})
	if good.err == nil || saboteur.err == nil {
		t.Fatalf("writes of a failed commit got %v, %v; want the commit's error", good.err, saboteur.err)
	}
	if announced != 0 {
		t.Errorf("a failed commit announced %d writes", announced)
	}
	// The writer goes on.
	again := &write{done: make(chan struct{}), stored: func() { announced++ }, apply: good.apply}
	s.commit([]*write{again})
	if again.err != nil || announced != 1 {
		t.Errorf("the next commit: %v, %d announced; want it committed and announced", again.err, announced)
	}
}

// TestSpoiledWriteAmongCallers does the same through the API: a create
// that bbolt refuses fails alone.
func TestSpoiledWriteAmongCallers(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "airlock.db"))
	huge := strings.Repeat("X", bolt.MaxKeySize+1)
	var mu sync.Mutex
	announced := map[string]int{}
	if err := s.WatchApprovals(ctx, func(a *broker.Approval) {
		mu.Lock()
		announced[a.ID]++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 16)
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			id := fmt.Sprintf("01A%02d", i)
			if i == 7 {
				id = huge
			}
			<-start
			errs[i] = s.CreateApproval(ctx, approval(id, broker.StatusPending), &broker.AuditRecord{Event: broker.EventHeld, ApprovalID: id})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 7) {
			t.Errorf("create %d: %v", i, err)
		}
	}
	if v, err := s.VerifyAudit(ctx); err != nil || !v.OK || v.Records != 15 {
		t.Errorf("VerifyAudit = %+v, %v; want 15 good records", v, err)
	}
	// The good creates may have shared a rolled-back transaction with the
	// spoiling one: each is announced once all the same, and it never.
	for i := range errs {
		id, want := fmt.Sprintf("01A%02d", i), 1
		if i == 7 {
			id, want = huge, 0
		}
		if announced[id] != want {
			t.Errorf("create %d announced %d times, want %d", i, announced[id], want)
		}
	}
}

func TestVerifyNamesUnreadableRecord(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "airlock.db")
	s := openTest(t, path)
	for range 4 {
		if err := s.AppendAudit(ctx, &broker.AuditRecord{Event: broker.EventAllowed}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flushJournal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Put(seqKey(2), []byte("{garbage")) }); err != nil {
		t.Fatal(err)
	}
	if v, err := s.VerifyAudit(ctx); err != nil || v.OK || v.BrokenSeq != 2 || v.Records != 1 {
		t.Errorf("VerifyAudit = %+v, %v; want broken at 2", v, err)
	}
	// Nothing can be chained to an unreadable head. Only the store's own
	// writer changes the file while it is open, so the damage is done
	// while it is closed, as it would be in life.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Put(seqKey(4), []byte("{garbage")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	if err := s.AppendAudit(ctx, &broker.AuditRecord{Event: broker.EventAllowed}); err == nil {
		t.Error("AppendAudit chained a record to an unreadable one")
	}
}
