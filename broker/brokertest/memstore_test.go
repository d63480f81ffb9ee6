package brokertest

import (
	"slices"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
)

func TestMemStore(t *testing.T) {
	TestStore(t, func(*testing.T) broker.Store { return NewMemStore() }, StoreOptions{
		TamperAudit: func(t *testing.T, s broker.Store, seq uint64, fn func(*broker.AuditRecord) *broker.AuditRecord) {
			m := s.(*MemStore)
			var removed bool
			m.TamperAudit(seq, func(r *broker.AuditRecord) {
				if nr := fn(r); nr != nil {
					*r = *nr
				} else {
					removed = true
				}
			})
			if removed {
				m.mu.Lock()
				m.audit = slices.Delete(m.audit, int(seq-1), int(seq))
				m.mu.Unlock()
			}
		},
	})
}
