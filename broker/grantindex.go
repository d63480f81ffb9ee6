package broker

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// grantIndex holds the active grants in memory, arranged so that finding
// the grants that cover a call costs the same with a hundred thousand
// grants as with none: only the call's server and tool are looked at, exact
// grants are found by digest, and arguments grants by their key values.
type grantIndex struct {
	mu     sync.RWMutex
	byTool map[[2]string]*toolGrants
	byID   map[string]*Grant
}

type toolGrants struct {
	tool    []*Grant
	exact   map[string][]*Grant            // by arguments digest
	byKeys  map[string]map[string][]*Grant // by key set, then by those keys' values
	keySets map[string][]string            // key set → its sorted keys
}

func (ix *grantIndex) add(g *Grant) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.byTool == nil {
		ix.byTool = make(map[[2]string]*toolGrants)
		ix.byID = make(map[string]*Grant)
	}
	if _, dup := ix.byID[g.ID]; dup {
		ix.removeLocked(g.ID)
	}
	k := [2]string{g.Server, g.Tool}
	tg := ix.byTool[k]
	if tg == nil {
		tg = &toolGrants{exact: map[string][]*Grant{}, byKeys: map[string]map[string][]*Grant{}, keySets: map[string][]string{}}
		ix.byTool[k] = tg
	}
	switch g.Scope {
	case ScopeTool:
		tg.tool = append(tg.tool, g)
	case ScopeExact:
		tg.exact[g.ArgumentsDigest] = append(tg.exact[g.ArgumentsDigest], g)
	case ScopeArguments:
		keys, set, vk := argumentsKey(g)
		tg.keySets[set] = keys
		if tg.byKeys[set] == nil {
			tg.byKeys[set] = map[string][]*Grant{}
		}
		tg.byKeys[set][vk] = append(tg.byKeys[set][vk], g)
	}
	ix.byID[g.ID] = g
}

func mapKeys(m map[string]json.RawMessage) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// valuesKey joins the canonical values of keys, in order.
// argumentsKey is where an arguments grant lives in the index: its sorted
// key arguments, their set's name, and its values under them.
func argumentsKey(g *Grant) (keys []string, set, vk string) {
	keys = slices.Sorted(mapKeys(g.KeyArguments))
	return keys, strings.Join(keys, "\x00"), valuesKey(keys, g.KeyArguments)
}

func valuesKey(keys []string, vals map[string]json.RawMessage) string {
	var b strings.Builder
	for _, k := range keys {
		b.Write(vals[k])
		b.WriteByte(0)
	}
	return b.String()
}

func (ix *grantIndex) remove(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(id)
}

func (ix *grantIndex) removeLocked(id string) {
	g := ix.byID[id]
	if g == nil {
		return
	}
	delete(ix.byID, id)
	tg := ix.byTool[[2]string{g.Server, g.Tool}]
	drop := func(gs []*Grant) []*Grant {
		return slices.DeleteFunc(gs, func(x *Grant) bool { return x.ID == id })
	}
	switch g.Scope {
	case ScopeTool:
		tg.tool = drop(tg.tool)
	case ScopeExact:
		if tg.exact[g.ArgumentsDigest] = drop(tg.exact[g.ArgumentsDigest]); len(tg.exact[g.ArgumentsDigest]) == 0 {
			delete(tg.exact, g.ArgumentsDigest)
		}
	case ScopeArguments:
		_, set, vk := argumentsKey(g)
		if tg.byKeys[set][vk] = drop(tg.byKeys[set][vk]); len(tg.byKeys[set][vk]) == 0 {
			delete(tg.byKeys[set], vk)
		}
		if len(tg.byKeys[set]) == 0 {
			delete(tg.byKeys, set)
			delete(tg.keySets, set)
		}
	}
}

// replace swaps in a grant's new state (a use counted, say), or drops it
// when it is no longer active.
func (ix *grantIndex) replace(g *Grant) {
	if g.Status != GrantActive {
		ix.remove(g.ID)
		return
	}
	ix.add(g)
}

// matching returns the active grants that cover a call, oldest first.
// args are the call's arguments; they are only parsed when an arguments
// grant exists for the tool.
func (ix *grantIndex) matching(server, tool, principal, fingerprint string, args *policy.Arguments, now time.Time) []*Grant {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	tg := ix.byTool[[2]string{server, tool}]
	if tg == nil {
		return nil
	}
	digest := args.Digest()
	var out []*Grant
	keep := func(gs []*Grant, callArgs map[string]json.RawMessage) {
		for _, g := range gs {
			if g.covers(principal, fingerprint, digest, callArgs, now) {
				out = append(out, g)
			}
		}
	}
	keep(tg.tool, nil)
	keep(tg.exact[digest], nil)
	if len(tg.byKeys) > 0 {
		if callArgs := args.Members(); callArgs != nil {
			for set, keys := range tg.keySets {
				if vk, ok := callValuesKey(keys, callArgs); ok {
					keep(tg.byKeys[set][vk], callArgs)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b *Grant) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// expired returns the ids of active grants whose expiry has passed.
func (ix *grantIndex) expired(now time.Time) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var ids []string
	for id, g := range ix.byID {
		if !now.Before(g.ExpiresAt) {
			ids = append(ids, id)
		}
	}
	return ids
}

func callValuesKey(keys []string, callArgs map[string]json.RawMessage) (string, bool) {
	for _, k := range keys {
		if _, ok := callArgs[k]; !ok {
			return "", false
		}
	}
	return valuesKey(keys, callArgs), true
}

// policyGrants describes grants to the policy.
func policyGrants(gs []*Grant) []policy.Grant {
	out := make([]policy.Grant, len(gs))
	for i, g := range gs {
		out[i] = policy.Grant{ID: g.ID, Scope: g.Scope, CreatedBy: g.CreatedBy, ExpiresAt: g.ExpiresAt, ApprovalID: g.ApprovalID}
	}
	return out
}
