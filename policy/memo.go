package policy

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// memoLimit bounds the bytes of JSON a memo remembers; past it, it starts over.
const memoLimit = 8 << 20

// memo remembers the Rego values of raw JSON that repeats from call to call:
// a tool's annotations and schemas are the same on every call until the
// server lists a new definition, and a schema can be kilobytes. The key is
// the exact bytes, so a memo can never hand back a stale value. Values are
// immutable and shared by concurrent evaluations, as OPA shares a policy's
// own constants.
type memo struct {
	mu    sync.RWMutex
	terms map[string]*ast.Term
	bytes int
}

// term returns the parsed value of raw, which must not be empty.
func (m *memo) term(field string, raw []byte) (*ast.Term, error) {
	m.mu.RLock()
	t, ok := m.terms[string(raw)] // no copy: the compiler special-cases this lookup
	m.mu.RUnlock()
	if ok {
		return t, nil
	}
	t, err := rawTerm(field, raw)
	if err != nil || len(raw) > memoLimit/16 {
		return t, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.terms == nil || m.bytes+len(raw) > memoLimit {
		m.terms, m.bytes = make(map[string]*ast.Term), 0
	}
	m.terms[string(raw)] = t
	m.bytes += len(raw)
	return t, nil
}
