package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/airlock-mcp/airlock/broker"
)

// MemStore is a broker.Store in memory, for tests: the same contract as
// the bbolt store, minus durability.
type MemStore struct {
	mu        sync.Mutex
	approvals map[string][]byte // JSON, so that callers never share memory with the store
	audit     [][]byte
	lastHash  string
	tools     map[[2]string][]byte
	closed    bool
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{approvals: map[string][]byte{}, tools: map[[2]string][]byte{}}
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
	if _, dup := m.approvals[a.ID]; dup {
		return fmt.Errorf("brokertest: approval %s exists", a.ID)
	}
	m.approvals[a.ID] = encode(a)
	if rec != nil {
		m.appendLocked(rec)
	}
	return nil
}

func (m *MemStore) UpdateApproval(_ context.Context, id string, fn func(*broker.Approval) (*broker.AuditRecord, error)) (*broker.Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return nil, err
	}
	data, ok := m.approvals[id]
	if !ok {
		return nil, fmt.Errorf("brokertest: approval %s: %w", id, broker.ErrNotFound)
	}
	a := decode[broker.Approval](data)
	rec, err := fn(a)
	if err != nil {
		return nil, err
	}
	m.approvals[id] = encode(a)
	if rec != nil {
		m.appendLocked(rec)
	}
	return decode[broker.Approval](m.approvals[id]), nil
}

func (m *MemStore) Approval(_ context.Context, id string) (*broker.Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.approvals[id]
	if !ok {
		return nil, fmt.Errorf("brokertest: approval %s: %w", id, broker.ErrNotFound)
	}
	return decode[broker.Approval](data), nil
}

func (m *MemStore) Approvals(_ context.Context, q broker.ApprovalQuery) ([]*broker.Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.approvals))
	for id := range m.approvals {
		if q.Before == "" || id < q.Before {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []*broker.Approval
	for _, id := range ids {
		a := decode[broker.Approval](m.approvals[id])
		if q.Matches(a) {
			out = append(out, a)
			if len(out) == limit {
				break
			}
		}
	}
	return out, nil
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
	return nil
}
