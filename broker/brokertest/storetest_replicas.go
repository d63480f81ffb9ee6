package brokertest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// The store's side of replicas: the grants' change feed, which keeps every
// broker's grant index current, and leases, by which a replica learns
// whose held calls nobody waits for any more.

// grantRecorder keeps what a WatchGrants function was given.
type grantRecorder struct {
	mu   sync.Mutex
	seen []*broker.Grant
}

func (r *grantRecorder) f(g *broker.Grant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, g)
}

func (r *grantRecorder) expect(t *testing.T, what string, want ...*broker.Grant) {
	t.Helper()
	r.mu.Lock()
	got := slices.Clone(r.seen)
	r.mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("%s: the grant watcher was called %d times, want %d", what, len(got), len(want))
	}
	for i := range got {
		sameJSON(t, fmt.Sprintf("%s: call %d", what, i+1), got[i], want[i])
	}
}

// A grant watcher sees every create and update with the grant as stored,
// by the time the method returns; a failed update, and changes to other
// things, are announced to nobody; its values are its own.
func testWatchGrants(t *testing.T, s broker.Store) {
	ctx := t.Context()
	r := &grantRecorder{}
	if err := s.WatchGrants(ctx, r.f); err != nil {
		t.Fatalf("WatchGrants: %v", err)
	}
	g := newGrant(1, "write")
	if err := s.CreateGrant(ctx, g, &broker.AuditRecord{Time: t0, Event: "grant.created", Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	created, err := s.Grant(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, "after CreateGrant", created)

	used, err := s.UpdateGrant(ctx, g.ID, func(g *broker.Grant) (*broker.AuditRecord, error) {
		g.Uses++
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, "after UpdateGrant", created, used)

	refused := errors.New("refused")
	if _, err := s.UpdateGrant(ctx, g.ID, func(g *broker.Grant) (*broker.AuditRecord, error) {
		g.Status = broker.GrantRevoked
		return nil, refused
	}); !errors.Is(err, refused) {
		t.Fatalf("UpdateGrant with a failing fn = %v, want its error", err)
	}
	a := newApproval(1)
	create(t, s, a, heldRecord(a))
	r.expect(t, "after a failed update and an approval", created, used)

	// A watcher that changes what it was given changes nobody else's.
	r.mu.Lock()
	r.seen[1].Status = broker.GrantRevoked
	r.mu.Unlock()
	stored, err := s.Grant(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "the stored grant after a watcher changed its copy", stored, used)
}

// A replica's own lease is live.
func testLeaseOwn(t *testing.T, s broker.Store) {
	for range 2 { // taken, then renewed
		leases, err := s.Lease(t.Context(), "replica-a", time.Minute)
		if err != nil {
			t.Fatalf("Lease: %v", err)
		}
		if !slices.Equal(live(leases), []string{"replica-a"}) {
			t.Fatalf("Lease = %+v, want the replica's own alone live", leases)
		}
	}
}

// Another replica's lease is live until it runs out, and is kept after
// that with the time it was last renewed.
func testLeaseOthers(t *testing.T, s broker.Store) {
	ctx := t.Context()
	if _, err := s.Lease(ctx, "replica-a", time.Hour); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if _, err := s.Lease(ctx, "replica-short", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	// Long past the short lease, by any clock a test runs on.
	time.Sleep(200 * time.Millisecond)
	leases, err := s.Lease(ctx, "replica-b", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := live(leases), []string{"replica-a", "replica-b"}; !slices.Equal(got, want) {
		t.Fatalf("live leases = %q, want %q", got, want)
	}
	i := slices.IndexFunc(leases, func(l broker.Lease) bool { return l.Replica == "replica-short" })
	if i < 0 {
		t.Fatalf("Lease = %+v: the lease that ran out is not kept", leases)
	}
	// A database's clock may differ from this one by a little.
	if r := leases[i].Renewed; r.Before(before.Add(-time.Second)) || r.After(after.Add(time.Second)) {
		t.Errorf("renewed = %v, want between %v and %v", r, before, after)
	}
}

// live lists the replicas whose leases are live, sorted.
func live(leases []broker.Lease) []string {
	var out []string
	for _, l := range leases {
		if l.Live {
			out = append(out, l.Replica)
		}
	}
	slices.Sort(out)
	return out
}
