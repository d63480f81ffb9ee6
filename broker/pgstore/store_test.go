package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/broker/pgstore/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openURL opens a Store on url for the length of the test.
func openURL(t testing.TB, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), url, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	c := pgtest.Shared(t)
	brokertest.TestStore(t, func(t *testing.T) broker.Store {
		return openURL(t, c.NewDatabase(t))
	}, brokertest.StoreOptions{TamperAudit: tamper})
}

// tamper rewrites a stored record as someone with write access to the
// database would.
func tamper(t *testing.T, s broker.Store, seq uint64, fn func(*broker.AuditRecord) *broker.AuditRecord) {
	ctx := t.Context()
	pool := s.(*Store).pool
	var data []byte
	if err := pool.QueryRow(ctx, "SELECT data FROM airlock_audit WHERE seq = $1", int64(seq)).Scan(&data); err != nil {
		t.Fatal(err)
	}
	r := new(broker.AuditRecord)
	if err := json.Unmarshal(data, r); err != nil {
		t.Fatal(err)
	}
	if r = fn(r); r == nil {
		if _, err := pool.Exec(ctx, "DELETE FROM airlock_audit WHERE seq = $1", int64(seq)); err != nil {
			t.Fatal(err)
		}
		return
	}
	if data, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	} else if _, err := pool.Exec(ctx, "UPDATE airlock_audit SET data = $2 WHERE seq = $1", int64(seq), data); err != nil {
		t.Fatal(err)
	}
}

func newApproval(n int) *broker.Approval {
	return &broker.Approval{
		ID: fmt.Sprintf("01TEST%06d", n), Status: broker.StatusPending, Server: "fs", Tool: "write_file",
		Arguments: json.RawMessage(`{"path":"/tmp/x"}`), RequestedAt: time.Now().UTC(),
	}
}

// Two Store values on one database act as two replicas: a change made
// through one is announced to the other's watchers, once, and in order.
func TestOtherReplicasChangesAreAnnounced(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	ctx := t.Context()

	var mu sync.Mutex
	var seen []string
	if err := b.WatchApprovals(ctx, func(ap *broker.Approval) {
		mu.Lock()
		seen = append(seen, string(ap.Status))
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	ap := newApproval(1)
	if err := a.CreateApproval(ctx, ap, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.UpdateApproval(ctx, ap.ID, func(x *broker.Approval) (*broker.AuditRecord, error) {
		x.Status = broker.StatusApproved
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both changes announced on the other replica", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 2 || (len(seen) == 1 && seen[0] == string(broker.StatusApproved))
	})
	time.Sleep(2 * pollEvery) // a second announcement would come by now
	mu.Lock()
	defer mu.Unlock()
	// The follower reads a record's state as it is now, so two quick
	// changes may arrive as one; never twice, never out of order.
	if len(seen) > 2 || seen[len(seen)-1] != string(broker.StatusApproved) || (len(seen) == 2 && seen[0] != string(broker.StatusPending)) {
		t.Errorf("the other replica heard %v", seen)
	}
}

// A notification lost (the listening connection killed) delays a change;
// the periodic read still brings it.
func TestLostNotificationDelaysNotLoses(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	ctx := t.Context()
	got := make(chan *broker.Grant, 4)
	if err := b.WatchGrants(ctx, func(g *broker.Grant) { got <- g }); err != nil {
		t.Fatal(err)
	}
	// Killing every other backend of the database breaks b's LISTEN
	// connection (and the pools', which reconnect).
	if _, err := a.pool.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'"); err != nil {
		t.Fatal(err)
	}
	g := &broker.Grant{ID: "01GRANT1", Status: broker.GrantActive, Server: "fs", Tool: "read_file", CreatedAt: time.Now().UTC()}
	if err := a.CreateGrant(ctx, g, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-got:
		if g.ID != "01GRANT1" {
			t.Errorf("heard of %s", g.ID)
		}
	case <-time.After(10 * pollEvery):
		t.Fatal("the grant never reached the other replica")
	}
}

// A token created or revoked on one replica moves the other's
// generation, so its cached records are read again.
func TestTokenChangesMoveOtherReplicasGeneration(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	before := b.TokenGeneration()
	tok := &broker.Token{ID: "01TOKEN1", Name: "ci", CreatedBy: "admin", CreatedAt: time.Now().UTC()}
	if err := a.CreateToken(t.Context(), tok, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other replica's token generation moved", func() bool { return b.TokenGeneration() != before })
	// The name is taken on every replica until the token is revoked.
	dup := &broker.Token{ID: "01TOKEN2", Name: "ci", CreatedBy: "admin", CreatedAt: time.Now().UTC()}
	if err := b.CreateToken(t.Context(), dup, nil); !errors.Is(err, broker.ErrTokenExists) {
		t.Errorf("a second token named ci on the other replica: %v, want ErrTokenExists", err)
	}
}

// Two replicas deciding one approval at once: exactly one decision is
// stored, with one audit record, and the chain stays whole.
func TestFirstDecisionWinsAcrossStores(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	stores := []*Store{openURL(t, url), openURL(t, url), openURL(t, url)}
	ctx := t.Context()
	ap := newApproval(1)
	if err := stores[0].CreateApproval(ctx, ap, nil); err != nil {
		t.Fatal(err)
	}
	errDecided := errors.New("already decided")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 30 {
		wg.Go(func() {
			_, err := stores[i%3].UpdateApproval(ctx, ap.ID, func(x *broker.Approval) (*broker.AuditRecord, error) {
				if x.Status != broker.StatusPending {
					return nil, errDecided
				}
				x.Status = broker.StatusApproved
				return &broker.AuditRecord{Time: time.Now().UTC(), Event: broker.EventApproved, ApprovalID: x.ID, Actor: fmt.Sprint("approver", i)}, nil
			})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, errDecided) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d decisions won, want 1", wins)
	}
	recs, err := stores[1].Audit(ctx, broker.AuditQuery{ApprovalID: ap.ID})
	if err != nil || len(recs) != 1 {
		t.Errorf("audit records of the decision: %d (%v), want 1", len(recs), err)
	}
}

// Replicas appending at once make one chain: 1, 2, 3… without gaps, each
// linked to the one before, whichever replica appended it.
func TestOneChainForEveryReplica(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	stores := []*Store{openURL(t, url), openURL(t, url), openURL(t, url)}
	ctx := t.Context()
	var wg sync.WaitGroup
	const each = 200
	for i, s := range stores {
		for g := range 4 {
			wg.Go(func() {
				for n := range each / 4 {
					r := &broker.AuditRecord{Time: time.Now().UTC(), Event: broker.EventAllowed, Server: "fs", Tool: "read", Actor: broker.Airlock,
						Reason: fmt.Sprintf("replica %d goroutine %d call %d", i, g, n)}
					if err := s.AppendAudit(ctx, r); err != nil {
						t.Error(err)
						return
					}
					if r.Seq == 0 {
						t.Error("an appended record did not learn its seq")
					}
				}
			})
		}
	}
	wg.Wait()
	v, err := stores[2].VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK || v.Records != 3*each {
		t.Errorf("verification: %+v, want %d records, whole", v, 3*each)
	}
}

// Removing the newest records is caught: the chain row still names the
// head they made.
func TestVerifyCatchesCutTail(t *testing.T) {
	s := openURL(t, pgtest.Shared(t).NewDatabase(t))
	ctx := t.Context()
	for i := range 4 {
		if err := s.AppendAudit(ctx, &broker.AuditRecord{Time: time.Now().UTC(), Event: broker.EventAllowed, Actor: broker.Airlock, Reason: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, "DELETE FROM airlock_audit WHERE seq > 2"); err != nil {
		t.Fatal(err)
	}
	v, err := s.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || v.BrokenSeq != 3 {
		t.Errorf("verification after cutting records 3 and 4: %+v", v)
	}
}

// Open refuses a database a newer Airlock migrated, and migrating twice
// (or from two replicas at once) changes nothing.
func TestSchema(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			s, err := Open(context.Background(), url, Options{})
			if err != nil {
				t.Error(err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n, v int
	if err := conn.QueryRow(t.Context(), "SELECT count(*), max(version) FROM airlock_schema").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != 1 || v != len(migrations) {
		t.Errorf("schema table: %d rows, version %d", n, v)
	}
	if _, err := conn.Exec(t.Context(), "UPDATE airlock_schema SET version = version + 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), url, Options{}); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open on a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// A database that cannot be reached fails Open at once, naming it, and
// the password given never appears in the error.
func TestOpenUnreachable(t *testing.T) {
	start := time.Now()
	_, err := Open(t.Context(), "postgres://airlock@127.0.0.1:1/airlock?sslmode=disable&connect_timeout=2", Options{Password: "s3cret-pass"})
	if err == nil {
		t.Fatal("Open on a closed port succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "s3cret-pass") {
		t.Errorf("error = %q", msg)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open took %v to fail", d)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A transaction the database refuses for a serialization failure or a
// deadlock runs again, a bounded number of times; any other error is
// returned at once.
func TestTransactionsRetried(t *testing.T) {
	s := openURL(t, pgtest.Shared(t).NewDatabase(t))
	runs := 0
	err := s.tx(t.Context(), func(tx pgx.Tx) error {
		if runs++; runs < 3 {
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		_, err := tx.Exec(t.Context(), "SELECT 1")
		return err
	})
	if err != nil || runs != 3 {
		t.Errorf("after two serialization failures: %v, %d runs", err, runs)
	}
	runs = 0
	err = s.tx(t.Context(), func(pgx.Tx) error { runs++; return &pgconn.PgError{Code: "40P01"} })
	if err == nil || runs != 5 {
		t.Errorf("a deadlock every time: %v after %d runs, want an error after 5", err, runs)
	}
	runs = 0
	err = s.tx(t.Context(), func(pgx.Tx) error { runs++; return errors.New("not the database's") })
	if err == nil || runs != 1 {
		t.Errorf("another error: %v after %d runs, want it after 1", err, runs)
	}
}

// Now is the database's clock, whatever the local one says: replicas
// whose clocks disagree still agree on expiry.
func TestNowIsTheDatabasesClock(t *testing.T) {
	s := openURL(t, pgtest.Shared(t).NewDatabase(t))
	// As if this machine's clock ran an hour behind the database's.
	s.offset.Store(int64(time.Hour))
	if d := s.Now().Sub(time.Now()); d < 59*time.Minute {
		t.Fatalf("Now with an offset of an hour is %s ahead", d)
	}
	s.measureClock(t.Context())
	var db time.Time
	if err := s.pool.QueryRow(t.Context(), "SELECT clock_timestamp()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if d := s.Now().Sub(db); d < -time.Second || d > time.Second {
		t.Errorf("Now is %s from the database's clock", d)
	}
}

// A record whose stored bytes decode to the sealed record but read
// otherwise (a second "Actor" a case-insensitive decoder drops) is caught:
// a reader of the table would see what the chain does not vouch for.
func TestVerifyCatchesBytesThatAreNotTheRecords(t *testing.T) {
	s := openURL(t, pgtest.Shared(t).NewDatabase(t))
	ctx := t.Context()
	for i := range 3 {
		if err := s.AppendAudit(ctx, &broker.AuditRecord{Time: time.Now().UTC(), Event: broker.EventAllowed, Actor: broker.Airlock, Reason: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, `UPDATE airlock_audit SET data = convert_to(replace(convert_from(data, 'UTF8'), '"actor":"airlock"', '"Actor":"mallory","actor":"airlock"'), 'UTF8') WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	v, err := s.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || v.BrokenSeq != 2 || !strings.Contains(v.Problem, "not its own encoding") {
		t.Errorf("verification after rewriting record 2's bytes: %+v", v)
	}
}
