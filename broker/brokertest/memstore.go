package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// MemStore is a broker.Store in memory, for tests: the same contract as
// the bbolt store, minus durability.
type MemStore struct {
	mu        sync.Mutex
	approvals table[broker.Approval]
	grants    table[broker.Grant]
	tokens    table[broker.Token]
	tokenGen  atomic.Uint64
	audit     [][]byte
	lastHash  string
	tools     map[[2]string][]byte
	closed    bool
	// The feeds are published to under mu, so that one record's changes
	// reach the watchers in the order they were made.
	feed      broker.ApprovalFeed
	grantFeed broker.GrantFeed
	// leases holds each replica's last renewal and expiry. Every user of
	// one MemStore is a replica, as processes sharing a database are.
	leases map[string]memLease
	// Now is the store's clock for leases; nil means time.Now.
	Now func() time.Time
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{
		approvals: table[broker.Approval]{name: "approval", rows: map[string][]byte{}},
		grants:    table[broker.Grant]{name: "grant", rows: map[string][]byte{}},
		tokens:    table[broker.Token]{name: "token", rows: map[string][]byte{}},
		tools:     map[[2]string][]byte{},
	}
}

// table keeps records as JSON by id, so that callers never share memory
// with the store.
type table[T any] struct {
	name string
	rows map[string][]byte
}

func (t *table[T]) create(id string, v *T) error {
	if _, dup := t.rows[id]; dup {
		return fmt.Errorf("brokertest: %s %s exists", t.name, id)
	}
	t.rows[id] = encode(v)
	return nil
}

func (t *table[T]) update(id string, fn func(*T) (*broker.AuditRecord, error)) (*T, *broker.AuditRecord, error) {
	data, ok := t.rows[id]
	if !ok {
		return nil, nil, fmt.Errorf("brokertest: %s %s: %w", t.name, id, broker.ErrNotFound)
	}
	v := decode[T](data)
	rec, err := fn(v)
	if err != nil {
		return nil, nil, err
	}
	t.rows[id] = encode(v)
	return decode[T](t.rows[id]), rec, nil
}

func (t *table[T]) get(id string) (*T, error) {
	data, ok := t.rows[id]
	if !ok {
		return nil, fmt.Errorf("brokertest: %s %s: %w", t.name, id, broker.ErrNotFound)
	}
	return decode[T](data), nil
}

// list returns matching records newest first (ids sort by time).
func (t *table[T]) list(before string, limit int, match func(*T) bool) []*T {
	ids := make([]string, 0, len(t.rows))
	for id := range t.rows {
		if before == "" || id < before {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	if limit <= 0 {
		limit = 100
	}
	var out []*T
	for _, id := range ids {
		v := decode[T](t.rows[id])
		if match(v) {
			out = append(out, v)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

var _ broker.Store = (*MemStore)(nil)

func encode(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("brokertest: encoding %T: %v", v, err))
	}
	return data
}

func decode[T any](data []byte) *T {
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		panic(fmt.Sprintf("brokertest: decoding %T: %v", v, err))
	}
	return v
}

func (m *MemStore) check() error {
	if m.closed {
		return fmt.Errorf("brokertest: store is closed")
	}
	return nil
}

func (m *MemStore) CreateApproval(_ context.Context, a *broker.Approval, rec *broker.AuditRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return err
	}
	if err := m.approvals.create(a.ID, a); err != nil {
		return err
	}
	m.appendIf(rec)
	m.publish(a.ID)
	return nil
}

func (m *MemStore) UpdateApproval(_ context.Context, id string, fn func(*broker.Approval) (*broker.AuditRecord, error)) (*broker.Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return nil, err
	}
	a, rec, err := m.approvals.update(id, fn)
	if err != nil {
		return nil, err
	}
	m.appendIf(rec)
	m.publish(id)
	return a, nil
}

// publish announces the stored approval id to the watchers. The store
// encoded it itself, so it decodes.
func (m *MemStore) publish(id string) {
	if err := m.feed.Publish(m.approvals.rows[id]); err != nil {
		panic(fmt.Sprintf("brokertest: %v", err))
	}
}

// WatchApprovals calls f after every stored change to an approval, with
// the store's lock held, until ctx is done. Every user of this MemStore
// value shares the feed, as processes share a database.
func (m *MemStore) WatchApprovals(ctx context.Context, f func(*broker.Approval)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return err
	}
	return m.feed.Watch(ctx, f)
}

func (m *MemStore) Approval(_ context.Context, id string) (*broker.Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.approvals.get(id)
}

func (m *MemStore) Approvals(_ context.Context, q broker.ApprovalQuery) ([]*broker.Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.approvals.list(q.Before, q.Limit, q.Matches), nil
}

func (m *MemStore) CreateGrant(_ context.Context, g *broker.Grant, rec *broker.AuditRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return err
	}
	if err := m.grants.create(g.ID, g); err != nil {
		return err
	}
	m.appendIf(rec)
	m.publishGrant(g.ID)
	return nil
}

func (m *MemStore) UpdateGrant(_ context.Context, id string, fn func(*broker.Grant) (*broker.AuditRecord, error)) (*broker.Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return nil, err
	}
	g, rec, err := m.grants.update(id, fn)
	if err != nil {
		return nil, err
	}
	m.appendIf(rec)
	m.publishGrant(id)
	return g, nil
}

func (m *MemStore) publishGrant(id string) {
	if err := m.grantFeed.Publish(m.grants.rows[id]); err != nil {
		panic(fmt.Sprintf("brokertest: %v", err))
	}
}

// WatchGrants is WatchApprovals for grants.
func (m *MemStore) WatchGrants(ctx context.Context, f func(*broker.Grant)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return err
	}
	return m.grantFeed.Watch(ctx, f)
}

// Lease keeps leases as a shared database would: every replica's until
// a day after it runs out.
func (m *MemStore) Lease(_ context.Context, replica string, ttl time.Duration) ([]broker.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return nil, err
	}
	now := time.Now()
	if m.Now != nil {
		now = m.Now()
	}
	if m.leases == nil {
		m.leases = make(map[string]memLease)
	}
	m.leases[replica] = memLease{renewed: now, until: now.Add(ttl)}
	var out []broker.Lease
	for r, l := range m.leases {
		if now.After(l.until.Add(24 * time.Hour)) {
			delete(m.leases, r)
			continue
		}
		out = append(out, broker.Lease{Replica: r, Renewed: l.renewed, Live: now.Before(l.until)})
	}
	slices.SortFunc(out, func(a, b broker.Lease) int { return strings.Compare(a.Replica, b.Replica) })
	return out, nil
}

type memLease struct{ renewed, until time.Time }

func (m *MemStore) Grant(_ context.Context, id string) (*broker.Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.grants.get(id)
}

func (m *MemStore) Grants(_ context.Context, q broker.GrantQuery) ([]*broker.Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.grants.list(q.Before, q.Limit, q.Matches), nil
}

// CreateToken stores a token's record, refusing a name held by a token
// not revoked.
func (m *MemStore) CreateToken(_ context.Context, t *broker.Token, rec *broker.AuditRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return err
	}
	for _, data := range m.tokens.rows {
		if o := decode[broker.Token](data); o.Name == t.Name && !o.Revoked() {
			return fmt.Errorf("brokertest: token %s: %w", t.Name, broker.ErrTokenExists)
		}
	}
	if err := m.tokens.create(t.ID, t); err != nil {
		return err
	}
	m.appendIf(rec)
	m.tokenGen.Add(1)
	return nil
}

func (m *MemStore) UpdateToken(_ context.Context, id string, fn func(*broker.Token) (*broker.AuditRecord, error)) (*broker.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return nil, err
	}
	t, rec, err := m.tokens.update(id, fn)
	if err != nil {
		return nil, err
	}
	m.appendIf(rec)
	m.tokenGen.Add(1)
	return t, nil
}

func (m *MemStore) Token(_ context.Context, id string) (*broker.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tokens.get(id)
}

func (m *MemStore) Tokens(context.Context) ([]*broker.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tokens.list("", len(m.tokens.rows)+1, func(*broker.Token) bool { return true }), nil
}

// TokenGeneration moves with every stored change to a token.
func (m *MemStore) TokenGeneration() uint64 { return m.tokenGen.Load() }

func (m *MemStore) appendIf(rec *broker.AuditRecord) {
	if rec != nil {
		m.appendLocked(rec)
	}
}

func (m *MemStore) AppendAudit(_ context.Context, recs ...*broker.AuditRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return err
	}
	for _, r := range recs {
		m.appendLocked(r)
	}
	return nil
}

func (m *MemStore) appendLocked(r *broker.AuditRecord) {
	c := *r
	c.Seal(uint64(len(m.audit))+1, m.lastHash)
	m.lastHash = c.Hash
	m.audit = append(m.audit, encode(&c))
	*r = c
}

func (m *MemStore) Audit(_ context.Context, q broker.AuditQuery) ([]*broker.AuditRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []*broker.AuditRecord
	keep := func(i int) bool {
		r := decode[broker.AuditRecord](m.audit[i])
		if q.Matches(r) {
			out = append(out, r)
		}
		return len(out) < limit
	}
	if q.After > 0 {
		for i := int(q.After); i < len(m.audit) && keep(i); i++ {
		}
		return out, nil
	}
	start := len(m.audit) - 1
	if q.Before > 0 {
		start = min(start, int(q.Before)-2)
	}
	for i := start; i >= 0 && keep(i); i-- {
	}
	return out, nil
}

func (m *MemStore) VerifyAudit(context.Context) (broker.AuditVerification, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var v broker.Verifier
	for _, data := range m.audit {
		if !v.Check(decode[broker.AuditRecord](data)) {
			break
		}
	}
	return v.Result(), nil
}

// TamperAudit rewrites record seq with fn, as an attacker with access to
// the database would, for tests of the chain's verification.
func (m *MemStore) TamperAudit(seq uint64, fn func(*broker.AuditRecord)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := decode[broker.AuditRecord](m.audit[seq-1])
	fn(r)
	m.audit[seq-1] = encode(r)
}

func (m *MemStore) SeenTool(_ context.Context, t *broker.ToolRecord) (*broker.ToolRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return nil, err
	}
	k := [2]string{t.Server, t.Tool}
	if data, ok := m.tools[k]; ok {
		return decode[broker.ToolRecord](data), nil
	}
	m.tools[k] = encode(t)
	return decode[broker.ToolRecord](m.tools[k]), nil
}

func (m *MemStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.feed.Close()
	m.grantFeed.Close()
	return nil
}
