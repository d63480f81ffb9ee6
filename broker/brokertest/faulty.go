package brokertest

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/airlock-mcp/airlock/broker"
)

// ErrDiskFull is what a FaultyStore fails with.
var ErrDiskFull = errors.New("disk full")

// FaultyStore wraps a store so that a test can make storing grants fail,
// as a full disk would, while the rest of the store keeps working: the
// case of a call approved and released whose grant was not stored. A
// FaultyStore{Store: s} fails nothing until told to.
type FaultyStore struct {
	broker.Store
	failGrants atomic.Bool
}

// FailGrants wraps s so that every CreateGrant fails with ErrDiskFull
// until SetFailGrants(false).
func FailGrants(s broker.Store) *FaultyStore {
	f := &FaultyStore{Store: s}
	f.failGrants.Store(true)
	return f
}

// SetFailGrants makes later CreateGrant calls fail (true) or reach the
// wrapped store again (false).
func (f *FaultyStore) SetFailGrants(fail bool) { f.failGrants.Store(fail) }

// CreateGrant implements broker.Store.
func (f *FaultyStore) CreateGrant(ctx context.Context, g *broker.Grant, rec *broker.AuditRecord) error {
	if f.failGrants.Load() {
		return ErrDiskFull
	}
	return f.Store.CreateGrant(ctx, g, rec)
}
