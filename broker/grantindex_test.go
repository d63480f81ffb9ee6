package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// covers is what "a grant covers a call" means, written plainly: the index
// must find exactly the grants this finds by looking at every one.
func covers(g *Grant, server, tool string, p Principal, fingerprint string, args *policy.Arguments, now time.Time) bool {
	if g.Status != GrantActive || !now.Before(g.ExpiresAt) || (g.MaxUses > 0 && g.Uses >= g.MaxUses) {
		return false
	}
	source, id, anyone := g.Covers()
	if g.Server != server || g.Tool != tool || g.ToolFingerprint != fingerprint || !(anyone || source == sourceOf(p) && id == p.ID) {
		return false
	}
	switch g.Scope {
	case ScopeTool:
		return true
	case ScopeExact:
		return g.ArgumentsDigest == args.Digest()
	case ScopeArguments:
		for k, want := range g.KeyArguments {
			got, ok := args.AppendMember(nil, k)
			if !ok || !bytes.Equal(got, want) {
				return false
			}
		}
		return len(g.KeyArguments) > 0
	}
	return false
}

// TestGrantIndexAgreesWithCovers puts, replaces and removes random grants
// and checks every lookup and sweep against covers. The grants share
// servers, tools, digests and key values, so the index's chains hold
// several records each; long reasons make removals compact the arena.
func TestGrantIndexAgreesWithCovers(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	paths := []string{`"/a"`, `"/b"`, `"/c"`, `1`, `{"x":[1,2]}`}
	principals := []Principal{{ID: "alice", Source: "os"}, {ID: "alice", Source: "token"}, {ID: "bob", Source: "os"}, {Source: "anonymous"}, {}}
	callFor := func() (server, tool string, principal Principal, fp string, args *policy.Arguments) {
		raw := fmt.Sprintf(`{"path":%s,"repo":%s}`, pick(paths...), pick(paths...))
		if rng.IntN(4) == 0 {
			raw = fmt.Sprintf(`{"path":%s}`, pick(paths...))
		}
		args, err := policy.ParseArguments([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return pick("fs", "git"), pick("write", "delete"), principals[rng.IntN(len(principals))], pick("fp1", "fp2"), args
	}
	// normalized is g as the index gives it back: whom it covers as
	// Covers reads it (a grant stored before sources was named is read
	// failing closed).
	normalized := func(gs []*Grant) []*Grant {
		out := make([]*Grant, len(gs))
		for i, g := range gs {
			c := *g
			source, id, anyone := g.Covers()
			c.Anyone, c.PrincipalSource, c.Principal = anyone, source, id
			out[i] = &c
		}
		return out
	}
	newGrant := func(i int) *Grant {
		server, tool, principal, fp, args := callFor()
		g := &Grant{
			ID: fmt.Sprintf("G%06d", i), Status: GrantActive, Server: server, Tool: tool,
			ToolFingerprint: fp, CreatedBy: pick("carol", "dan"),
			CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Duration(rng.IntN(120)-20) * time.Minute),
			Reason: strings.Repeat("r", rng.IntN(3000)), ApprovalID: pick("", "A1"),
			MaxUses: rng.IntN(3), Uses: rng.IntN(3),
		}
		if rng.IntN(2) == 0 {
			g.LastUse = now.Add(-time.Minute)
		}
		switch rng.IntN(4) {
		case 0:
			g.Anyone = true
		case 1: // bound to an identity, as grants are now
			g.PrincipalSource, g.Principal = sourceOf(principal), principal.ID
		case 2: // stored before grants named a source
			g.Principal = principal.ID
		}
		switch rng.IntN(4) {
		case 0:
			g.Scope = ScopeTool
		case 1:
			g.Scope, g.ArgumentsDigest = ScopeExact, args.Digest()
		case 2:
			g.Scope, g.KeyArguments = ScopeArguments, map[string]json.RawMessage{"path": member(args, "path")}
		case 3:
			g.Scope, g.KeyArguments = ScopeArguments, map[string]json.RawMessage{"path": member(args, "path"), "repo": json.RawMessage(pick(paths...))}
		}
		return g
	}

	var ix grantIndex
	live := map[string]*Grant{}
	mostLive := 0
	for i := range 4000 {
		switch op := rng.IntN(10); {
		case op < 5 || len(live) == 0:
			g := newGrant(i)
			ix.put(g)
			live[g.ID] = g
		case op < 7: // a use counted, or the grant ended
			g := *live[pick(slices.Sorted(maps.Keys(live))...)]
			g.Uses++
			if rng.IntN(3) == 0 {
				g.Status = GrantRevoked
			}
			ix.put(&g)
			if live[g.ID] = &g; g.Status != GrantActive {
				delete(live, g.ID)
			}
		default:
			id := pick(slices.Sorted(maps.Keys(live))...)
			ix.remove(id)
			delete(live, id)
		}

		mostLive = max(mostLive, len(live))
		server, tool, principal, fp, args := callFor()
		var want []*Grant
		for _, g := range live {
			if covers(g, server, tool, principal, fp, args, now) {
				want = append(want, g)
			}
		}
		slices.SortFunc(want, func(a, b *Grant) int { return strings.Compare(a.ID, b.ID) })
		got := ix.matching(server, tool, principal, fp, args, now)
		if !reflect.DeepEqual(inUTC(got), inUTC(normalized(want))) {
			t.Fatalf("step %d: %s %s %s %s %s: matching found %v, covers %v", i, server, tool, principal, fp, args.Digest(), ids(got), ids(want))
		}
	}
	var wantExpired []string
	for id, g := range live {
		if !now.Before(g.ExpiresAt) {
			wantExpired = append(wantExpired, id)
		}
	}
	gotExpired := ix.expired(now)
	slices.Sort(gotExpired)
	slices.Sort(wantExpired)
	if !slices.Equal(gotExpired, wantExpired) {
		t.Errorf("expired: %v, want %v", gotExpired, wantExpired)
	}
	if len(ix.recs) > mostLive {
		t.Errorf("%d slots for at most %d grants at once: freed slots are not reused", len(ix.recs), mostLive)
	}
	if ix.dead > len(ix.text)/2+1<<16 {
		t.Errorf("the arena holds %d dead bytes of %d: ended grants' strings are not reclaimed", ix.dead, len(ix.text))
	}
}

// TestGrantIndexRefusesAmbiguousKeys: a key argument named with a NUL
// would make two key sets look alike, so such a grant matches nothing.
func TestGrantIndexRefusesAmbiguousKeys(t *testing.T) {
	var ix grantIndex
	now := time.Now()
	ix.put(&Grant{ID: "G1", Status: GrantActive, Server: "fs", Tool: "write", Scope: ScopeArguments, ToolFingerprint: "fp",
		KeyArguments: map[string]json.RawMessage{"a\x00b": json.RawMessage(`1`)}, ExpiresAt: now.Add(time.Hour)})
	args, _ := policy.ParseArguments([]byte(`{"a":1,"b":1,"a\u0000b":1}`))
	if got := ix.matching("fs", "write", Principal{ID: "alice", Source: "os"}, "fp", args, now); len(got) != 0 {
		t.Errorf("matched %v", ids(got))
	}
	if got := ix.expired(now.Add(2 * time.Hour)); !slices.Equal(got, []string{"G1"}) {
		t.Errorf("expired %v, want the grant swept all the same", got)
	}
}

func member(args *policy.Arguments, key string) json.RawMessage {
	m, _ := args.AppendMember(nil, key)
	return m
}

func ids(gs []*Grant) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.ID)
	}
	return out
}

// inUTC drops what the index does not keep of a time: its location.
func inUTC(gs []*Grant) []Grant {
	out := make([]Grant, len(gs))
	for i, g := range gs {
		out[i] = *g
		out[i].CreatedAt, out[i].ExpiresAt, out[i].LastUse = g.CreatedAt.UTC(), g.ExpiresAt.UTC(), g.LastUse.UTC()
	}
	return out
}
