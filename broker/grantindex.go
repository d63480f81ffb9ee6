package broker

import (
	"encoding/json"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// grantIndex holds the active grants in memory, built so that neither of
// two costs grows with the number of grants.
//
// Finding the grants that cover a call: only the call's server and tool
// are looked at, exact grants are found by digest and arguments grants by
// their key values.
//
// The garbage collector's work: the index holds no pointers. A grant is a
// fixed-size record whose strings live in one byte arena, and the maps are
// keyed by hashes, so a collection never scans the grants. (Held as
// *Grant values, 100,000 grants were 60 MiB that every collection
// scanned, and every decision, granted or not, was up to half again as
// slow at the median; see docs/benchmarks.md.)
type grantIndex struct {
	mu   sync.RWMutex
	seed maphash.Seed
	recs []grantRec // a slot per grant; freed slots are reused
	free []int32
	text []byte // the records' strings
	dead int    // bytes of text that no record refers to any more
	// byID and byKey lead from a hash to the first slot of a chain of
	// records linked by nextID and next: byID by the grant's id, byKey by
	// what a call must have to be covered (server, tool, scope, digest or
	// key values).
	byID  map[uint64]int32
	byKey map[uint64]int32
	// perTool counts each tool's grants by scope (indexed by scope code,
	// keyed by toolHash), so that a call skips the lookups of scopes its
	// tool has no grants of; most tools have none at all.
	perTool map[uint64][4]int32
	// keySets are, per server and tool, the key sets of its arguments
	// grants: few, and what a call's values are looked up under.
	keySets map[[2]string][]keySet
	// changed, while the grants are loaded at start, names those the
	// store's change feed put or removed meanwhile: what the feed said is
	// newer than the page the load read.
	changed map[string]bool
}

type keySet struct {
	name   string   // its keys, sorted, joined by NULs
	keys   []string // sorted
	grants int      // how many grants use it
}

// A str is a string in the index's arena.
type str struct{ off, n int }

// A stamp is a time without its location pointer.
type stamp struct {
	sec  int64
	nsec int32
}

func stampOf(t time.Time) stamp {
	if t.IsZero() {
		return stamp{}
	}
	return stamp{t.Unix(), int32(t.Nanosecond())}
}

func (s stamp) time() time.Time {
	if s == (stamp{}) {
		return time.Time{}
	}
	return time.Unix(s.sec, int64(s.nsec))
}

// Scopes as the index stores them; scopeNone never matches (an arguments
// grant without key arguments, or a scope this version does not know).
const (
	scopeNone uint8 = iota
	scopeTool
	scopeExact
	scopeArguments
)

// grantRec is an active grant, as the index holds it.
type grantRec struct {
	id, server, tool str
	// keySet and match are what a call must have: for an exact grant,
	// match is the digest; for an arguments grant, keySet names the keys
	// and match holds their values (see valuesKey).
	keySet, match                                         str
	fingerprint, principal, createdBy, approvalID, reason str
	// source and principal are whom it covers, as Grant.Covers reads
	// them, unless anyone.
	source                        str
	createdAt, expiresAt, lastUse stamp
	maxUses, uses                 int
	scope                         uint8
	anyone                        bool
	inUse                         bool  // whether the slot holds a grant
	next, nextID                  int32 // the chains' next slots; -1 ends them
}

// strs are the record's strings, for moving them about in the arena.
func (r *grantRec) strs() [11]*str {
	return [...]*str{&r.id, &r.server, &r.tool, &r.keySet, &r.match, &r.fingerprint, &r.principal, &r.createdBy, &r.approvalID, &r.reason, &r.source}
}

// covers reports whether r covers the caller (source, id): both must be
// r's, unless r covers anyone.
func (ix *grantIndex) covers(r *grantRec, source, id string) bool {
	return r.anyone || (ix.is(r.source, source) && ix.is(r.principal, id))
}

func (r *grantRec) activeAt(now time.Time) bool {
	return now.Before(r.expiresAt.time()) && (r.maxUses == 0 || r.uses < r.maxUses)
}

// put stores g's latest state: an active grant is added or replaced (a
// use counted, say), any other is dropped.
func (ix *grantIndex) put(g *Grant) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.changed != nil {
		ix.changed[g.ID] = true
	}
	ix.putLocked(g)
}

// loading starts (true) or ends (false) the load at start, during which
// load leaves alone the grants that put or remove changed.
func (ix *grantIndex) loading(on bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.changed = nil
	if on {
		ix.changed = make(map[string]bool)
	}
}

// load puts a grant as a load read it, unless the feed said more since.
func (ix *grantIndex) load(g *Grant) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if !ix.changed[g.ID] {
		ix.putLocked(g)
	}
}

func (ix *grantIndex) putLocked(g *Grant) {
	if ix.byID == nil {
		ix.seed = maphash.MakeSeed()
		ix.byID = make(map[uint64]int32)
		ix.byKey = make(map[uint64]int32)
		ix.perTool = make(map[uint64][4]int32)
		ix.keySets = make(map[[2]string][]keySet)
	}
	ix.removeLocked(g.ID)
	if g.Status != GrantActive {
		return
	}
	source, principal, anyone := g.Covers()
	r := grantRec{
		id: ix.str(g.ID), server: ix.str(g.Server), tool: ix.str(g.Tool),
		fingerprint: ix.str(g.ToolFingerprint), principal: ix.str(principal), source: ix.str(source), createdBy: ix.str(g.CreatedBy),
		approvalID: ix.str(g.ApprovalID), reason: ix.str(g.Reason),
		createdAt: stampOf(g.CreatedAt), expiresAt: stampOf(g.ExpiresAt), lastUse: stampOf(g.LastUse),
		maxUses: g.MaxUses, uses: g.Uses, anyone: anyone, inUse: true,
	}
	var set, match string
	switch g.Scope {
	case ScopeTool:
		r.scope = scopeTool
	case ScopeExact:
		r.scope, match = scopeExact, g.ArgumentsDigest
	case ScopeArguments:
		keys, s, m := argumentsKey(g.KeyArguments)
		// A key with a NUL would make its set's name ambiguous.
		if len(keys) > 0 && !slices.ContainsFunc(keys, func(k string) bool { return strings.Contains(k, "\x00") }) {
			r.scope, set, match = scopeArguments, s, m
			tk := [2]string{g.Server, g.Tool}
			i := slices.IndexFunc(ix.keySets[tk], func(ks keySet) bool { return ks.name == set })
			if i < 0 {
				i = len(ix.keySets[tk])
				ix.keySets[tk] = append(ix.keySets[tk], keySet{name: set, keys: keys})
			}
			ix.keySets[tk][i].grants++
		}
	}
	r.keySet, r.match = ix.str(set), ix.str(match)
	th := ix.toolHash(g.Server, g.Tool)
	counts := ix.perTool[th]
	counts[r.scope]++
	ix.perTool[th] = counts

	var slot int32
	if n := len(ix.free); n > 0 {
		slot, ix.free = ix.free[n-1], ix.free[:n-1]
	} else {
		slot = int32(len(ix.recs))
		ix.recs = append(ix.recs, grantRec{})
	}
	r.nextID = ix.link(ix.byID, ix.idHash(g.ID), slot)
	r.next = ix.link(ix.byKey, ix.keyHash(th, r.scope, set, match), slot)
	ix.recs[slot] = r
}

// link makes slot the head of h's chain and returns the slot it goes
// before.
func (ix *grantIndex) link(m map[uint64]int32, h uint64, slot int32) int32 {
	next, ok := m[h]
	if !ok {
		next = -1
	}
	m[h] = slot
	return next
}

// unlink takes slot out of h's chain; next reads a record's link field.
func (ix *grantIndex) unlink(m map[uint64]int32, h uint64, slot int32, next func(*grantRec) *int32) {
	prev := int32(-1)
	for s, ok := m[h]; ok && s >= 0; s = *next(&ix.recs[s]) {
		if s != slot {
			prev = s
			continue
		}
		switch after := *next(&ix.recs[s]); {
		case prev >= 0:
			*next(&ix.recs[prev]) = after
		case after >= 0:
			m[h] = after
		default:
			delete(m, h)
		}
		return
	}
}

func (ix *grantIndex) remove(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.changed != nil {
		ix.changed[id] = true
	}
	ix.removeLocked(id)
}

func (ix *grantIndex) removeLocked(id string) {
	if len(ix.byID) == 0 {
		return // nothing to remove, nor a seed to hash with
	}
	h := ix.idHash(id)
	slot := int32(-1)
	for s, ok := ix.byID[h]; ok && s >= 0; s = ix.recs[s].nextID {
		if ix.is(ix.recs[s].id, id) {
			slot = s
			break
		}
	}
	if slot < 0 {
		return
	}
	r := &ix.recs[slot]
	server, tool, set := ix.string(r.server), ix.string(r.tool), ix.string(r.keySet)
	ix.unlink(ix.byID, h, slot, func(r *grantRec) *int32 { return &r.nextID })
	th := ix.toolHash(server, tool)
	ix.unlink(ix.byKey, ix.keyHash(th, r.scope, set, ix.string(r.match)), slot, func(r *grantRec) *int32 { return &r.next })
	counts := ix.perTool[th]
	if counts[r.scope]--; counts == ([4]int32{}) {
		delete(ix.perTool, th)
	} else {
		ix.perTool[th] = counts
	}
	if r.scope == scopeArguments {
		tk := [2]string{server, tool}
		sets := ix.keySets[tk]
		if i := slices.IndexFunc(sets, func(ks keySet) bool { return ks.name == set }); i >= 0 {
			if sets[i].grants--; sets[i].grants == 0 {
				sets = slices.Delete(sets, i, i+1)
			}
		}
		if ix.keySets[tk] = sets; len(sets) == 0 {
			delete(ix.keySets, tk)
		}
	}
	for _, s := range r.strs() {
		ix.dead += s.n
	}
	*r = grantRec{}
	ix.free = append(ix.free, slot)
	if ix.dead > 1<<16 && ix.dead > len(ix.text)/2 {
		ix.compact()
	}
}

// compact copies the live strings into a new arena, so that ended grants'
// strings do not pile up.
func (ix *grantIndex) compact() {
	old := ix.text
	ix.text = make([]byte, 0, len(old)-ix.dead)
	for i := range ix.recs {
		if !ix.recs[i].inUse {
			continue
		}
		for _, s := range ix.recs[i].strs() {
			off := len(ix.text)
			ix.text = append(ix.text, old[s.off:s.off+s.n]...)
			s.off = off
		}
	}
	ix.dead = 0
}

func (ix *grantIndex) str(s string) str {
	off := len(ix.text)
	ix.text = append(ix.text, s...)
	return str{off, len(s)}
}

func (ix *grantIndex) bytes(s str) []byte      { return ix.text[s.off : s.off+s.n] }
func (ix *grantIndex) string(s str) string     { return string(ix.bytes(s)) }
func (ix *grantIndex) is(s str, v string) bool { return string(ix.bytes(s)) == v }

func (ix *grantIndex) idHash(id string) uint64 { return maphash.String(ix.seed, id) }

// Hashes may collide by chance. Candidates are compared in full, so a
// collision costs a comparison, never a wrong match; and perTool's counts
// only decide whether to look.

func (ix *grantIndex) toolHash(server, tool string) uint64 {
	return maphash.Comparable(ix.seed, [2]string{server, tool})
}

// keyHash hashes what a call to tool th must have to be covered by a
// grant of scope.
func (ix *grantIndex) keyHash(th uint64, scope uint8, set, match string) uint64 {
	return maphash.Comparable(ix.seed, callKey{th, scope, set, match})
}

type callKey struct {
	tool       uint64
	scope      uint8
	set, match string
}

// matching returns the active grants that cover a call, oldest first:
// for the call's server and tool, of a scope whose digest or key values
// it has, made for its tool's definition and for its principal (the same
// source and id) or anyone, unexpired and with uses left. Of the call's
// arguments, only the members arguments grants key on are looked at.
func (ix *grantIndex) matching(server, tool string, p Principal, fingerprint string, args *policy.Arguments, now time.Time) []*Grant {
	source := sourceOf(p)
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if len(ix.byKey) == 0 {
		return nil
	}
	th := ix.toolHash(server, tool)
	counts, ok := ix.perTool[th]
	if !ok {
		return nil
	}
	var out []*Grant
	find := func(scope uint8, set, match string) {
		if counts[scope] == 0 {
			return
		}
		for s, ok := ix.byKey[ix.keyHash(th, scope, set, match)]; ok && s >= 0; s = ix.recs[s].next {
			r := &ix.recs[s]
			if r.scope == scope && ix.is(r.server, server) && ix.is(r.tool, tool) && ix.is(r.keySet, set) && ix.is(r.match, match) &&
				ix.is(r.fingerprint, fingerprint) && ix.covers(r, source, p.ID) && r.activeAt(now) {
				out = append(out, ix.grant(r))
			}
		}
	}
	find(scopeTool, "", "")
	find(scopeExact, "", args.Digest())
	if counts[scopeArguments] > 0 {
		var buf [256]byte
		for _, ks := range ix.keySets[[2]string{server, tool}] {
			if vk, ok := callValuesKey(buf[:0], ks.keys, args); ok {
				find(scopeArguments, ks.name, string(vk))
			}
		}
	}
	slices.SortFunc(out, func(a, b *Grant) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// grant rebuilds the Grant a record holds.
func (ix *grantIndex) grant(r *grantRec) *Grant {
	g := &Grant{
		ID: ix.string(r.id), Status: GrantActive, Server: ix.string(r.server), Tool: ix.string(r.tool),
		ToolFingerprint: ix.string(r.fingerprint), CreatedBy: ix.string(r.createdBy),
		ApprovalID: ix.string(r.approvalID), Reason: ix.string(r.reason), Anyone: r.anyone,
		CreatedAt: r.createdAt.time(), ExpiresAt: r.expiresAt.time(), LastUse: r.lastUse.time(),
		MaxUses: r.maxUses, Uses: r.uses,
	}
	if !r.anyone {
		g.PrincipalSource, g.Principal = ix.string(r.source), ix.string(r.principal)
	}
	switch r.scope {
	case scopeTool:
		g.Scope = ScopeTool
	case scopeExact:
		g.Scope, g.ArgumentsDigest = ScopeExact, ix.string(r.match)
	case scopeArguments:
		g.Scope = ScopeArguments
		keys := strings.Split(ix.string(r.keySet), "\x00")
		vals := strings.Split(ix.string(r.match), "\x00") // one more: valuesKey ends each value
		g.KeyArguments = make(map[string]json.RawMessage, len(keys))
		for i, k := range keys {
			g.KeyArguments[k] = json.RawMessage(vals[i])
		}
	}
	return g
}

// expired returns the ids of grants whose expiry has passed.
func (ix *grantIndex) expired(now time.Time) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var ids []string
	for i := range ix.recs {
		if r := &ix.recs[i]; r.inUse && !now.Before(r.expiresAt.time()) {
			ids = append(ids, ix.string(r.id))
		}
	}
	return ids
}

// argumentsKey is where an arguments grant lives in the index: its sorted
// key arguments, their set's name, and its values under them.
func argumentsKey(keyArgs map[string]json.RawMessage) (keys []string, set, vk string) {
	keys = make([]string, 0, len(keyArgs))
	for k := range keyArgs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, strings.Join(keys, "\x00"), valuesKey(keys, keyArgs)
}

// valuesKey joins the canonical values of keys, in order, each ended by a
// NUL (which JSON text cannot hold).
func valuesKey(keys []string, vals map[string]json.RawMessage) string {
	var b strings.Builder
	for _, k := range keys {
		b.Write(vals[k])
		b.WriteByte(0)
	}
	return b.String()
}

// callValuesKey is valuesKey of a call's arguments, appended to b; false
// when the call lacks one of keys.
func callValuesKey(b []byte, keys []string, args *policy.Arguments) ([]byte, bool) {
	for _, k := range keys {
		var ok bool
		if b, ok = args.AppendMember(b, k); !ok {
			return b, false
		}
		b = append(b, 0)
	}
	return b, true
}

// policyGrants describes grants to the policy.
func policyGrants(gs []*Grant) []policy.Grant {
	out := make([]policy.Grant, len(gs))
	for i, g := range gs {
		out[i] = policy.Grant{ID: g.ID, Scope: g.Scope, CreatedBy: g.CreatedBy, ExpiresAt: g.ExpiresAt, ApprovalID: g.ApprovalID}
	}
	return out
}
