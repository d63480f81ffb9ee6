package broker_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTokenHarness(t *testing.T) (*brokertest.Harness, *clock) {
	c := &clock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	h := brokertest.NewHarness(t, broker.Options{Servers: []string{"github", "files"}, Now: c.now})
	return h, c
}

func createToken(t *testing.T, b *broker.Broker, spec broker.TokenSpec) string {
	t.Helper()
	tok, _, err := b.CreateToken(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenPrincipal(t *testing.T) {
	h, _ := newTokenHarness(t)
	ctx := t.Context()
	tok := createToken(t, h.Broker, broker.TokenSpec{Name: "builder", Servers: []string{"github"}, Groups: []string{"ci", "build"}, TTL: time.Hour})
	if !strings.HasPrefix(tok, broker.AgentTokenPrefix) {
		t.Errorf("agent token %q lacks its prefix", tok)
	}
	p, err := h.Broker.TokenPrincipal(ctx, tok, "github")
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "builder" || p.Source != "token" || strings.Join(p.Groups, ",") != "build,ci" {
		t.Errorf("principal %+v", p)
	}
	if _, err := h.Broker.TokenPrincipal(ctx, tok, "files"); !errors.Is(err, broker.ErrTokenScope) {
		t.Errorf("a token for github at files: %v, want ErrTokenScope", err)
	}
	ap := createToken(t, h.Broker, broker.TokenSpec{Name: "alice", Approver: true})
	if !strings.HasPrefix(ap, broker.ApproverTokenPrefix) {
		t.Errorf("approver token %q lacks its prefix", ap)
	}
	if _, err := h.Broker.TokenPrincipal(ctx, ap, "github"); !errors.Is(err, broker.ErrTokenScope) {
		t.Errorf("an approver token at an MCP endpoint: %v, want ErrTokenScope", err)
	}
	every := createToken(t, h.Broker, broker.TokenSpec{Name: "any"})
	if _, err := h.Broker.TokenPrincipal(ctx, every, "files"); err != nil {
		t.Errorf("a token without servers is good for every one: %v", err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		b[i] ^= 1
		return string(b)
	}
	bad := map[string]string{
		"empty":             "",
		"prefix only":       broker.AgentTokenPrefix,
		"last byte changed": flip(tok, len(tok)-1),
		"id changed":        flip(tok, len(broker.AgentTokenPrefix)+3),
		"approver prefix":   broker.ApproverTokenPrefix + tok[len(broker.AgentTokenPrefix):],
		"agent prefix":      broker.AgentTokenPrefix + ap[len(broker.ApproverTokenPrefix):],
		"too long":          tok + "A",
		"too short":         tok[:len(tok)-1],
		"other scheme":      "airlock_xx_" + tok[len(broker.AgentTokenPrefix):],
	}
	for name, s := range bad {
		if _, err := h.Broker.TokenPrincipal(ctx, s, "github"); !errors.Is(err, broker.ErrBadToken) {
			t.Errorf("%s: %v, want ErrBadToken", name, err)
		}
	}
}

func TestTokenSpecRefused(t *testing.T) {
	h, _ := newTokenHarness(t)
	for name, spec := range map[string]broker.TokenSpec{
		"no name":             {},
		"space in name":       {Name: "a b"},
		"unknown server":      {Name: "x", Servers: []string{"nope"}},
		"negative ttl":        {Name: "x", TTL: -time.Second},
		"approver with scope": {Name: "x", Approver: true, Servers: []string{"github"}},
		"empty group":         {Name: "x", Groups: []string{""}},
	} {
		if _, _, err := h.Broker.CreateToken(t.Context(), spec); err == nil {
			t.Errorf("%s: made a token", name)
		}
	}
	createToken(t, h.Broker, broker.TokenSpec{Name: "builder"})
	if _, _, err := h.Broker.CreateToken(t.Context(), broker.TokenSpec{Name: "builder"}); !errors.Is(err, broker.ErrTokenExists) {
		t.Errorf("a second builder: %v", err)
	}
}

// A token revoked is refused at its very next use, though the broker had
// it cached; and so is one revoked behind the broker's back, through the
// store it shares with another broker.
func TestTokenRevokedIsRefusedAtOnce(t *testing.T) {
	h, _ := newTokenHarness(t)
	ctx := t.Context()
	tok := createToken(t, h.Broker, broker.TokenSpec{Name: "builder"})
	for range 3 {
		if _, err := h.Broker.TokenPrincipal(ctx, tok, "github"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Broker.RevokeToken(ctx, "builder", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Broker.TokenPrincipal(ctx, tok, "github"); !errors.Is(err, broker.ErrBadToken) {
		t.Errorf("revoked: %v, want ErrBadToken", err)
	}
	if _, err := h.Broker.RevokeToken(ctx, "builder", "bob"); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("revoking again: %v", err)
	}

	other, err := broker.New(broker.Options{Policy: brokertest.HoldTools(1, "write"), Store: h.Store, Servers: []string{"github"}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tok2 := createToken(t, h.Broker, broker.TokenSpec{Name: "deployer"})
	if _, err := h.Broker.TokenPrincipal(ctx, tok2, "github"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.RevokeToken(ctx, "deployer", "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Broker.TokenPrincipal(ctx, tok2, "github"); !errors.Is(err, broker.ErrBadToken) {
		t.Errorf("revoked through the shared store: %v, want ErrBadToken", err)
	}

	var events []string
	for _, r := range slices.Backward(auditAll(t, h)) { // newest first
		if strings.HasPrefix(string(r.Event), "token.") {
			events = append(events, string(r.Event)+" "+r.Principal+" by "+r.Actor)
		}
	}
	want := "token.created builder by admin|token.revoked builder by bob|token.created deployer by admin|token.revoked deployer by carol"
	if got := strings.Join(events, "|"); got != want {
		t.Errorf("audit:\n got %s\nwant %s", got, want)
	}
}

func auditAll(t *testing.T, h *brokertest.Harness) []*broker.AuditRecord {
	t.Helper()
	recs, err := h.Broker.Audit(context.Background(), broker.AuditQuery{After: 0, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestTokenExpires(t *testing.T) {
	h, c := newTokenHarness(t)
	tok := createToken(t, h.Broker, broker.TokenSpec{Name: "builder", TTL: time.Hour})
	forever := createToken(t, h.Broker, broker.TokenSpec{Name: "forever"})
	c.add(time.Hour - time.Second)
	if _, err := h.Broker.TokenPrincipal(t.Context(), tok, "github"); err != nil {
		t.Fatalf("a second before it expires: %v", err)
	}
	c.add(time.Second)
	if _, err := h.Broker.TokenPrincipal(t.Context(), tok, "github"); !errors.Is(err, broker.ErrBadToken) {
		t.Errorf("expired: %v, want ErrBadToken", err)
	}
	c.add(1000 * time.Hour)
	if _, err := h.Broker.TokenPrincipal(t.Context(), forever, "github"); err != nil {
		t.Errorf("a token without ttl expired: %v", err)
	}
}

// Last use is kept in memory and written back at most every minute, and
// at Close: a request that carries a token writes nothing.
func TestTokenLastUsedWrittenBack(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	store := brokertest.NewMemStore()
	b, err := broker.New(broker.Options{Policy: brokertest.HoldTools(1, "write"), Store: store, Servers: []string{"github"}, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	tok := createToken(t, b, broker.TokenSpec{Name: "builder"})
	stored := func() *broker.Token {
		ts, err := store.Tokens(ctx)
		if err != nil || len(ts) != 1 {
			t.Fatalf("tokens: %v %v", ts, err)
		}
		return ts[0]
	}
	gen := store.TokenGeneration()
	for range 10 {
		c.add(time.Second)
		if _, err := b.TokenPrincipal(ctx, tok, "github"); err != nil {
			t.Fatal(err)
		}
	}
	if g := store.TokenGeneration(); g != gen {
		t.Errorf("requests within a minute wrote the token %d times", g-gen)
	}
	listed, err := b.Tokens(ctx)
	if err != nil || !listed[0].LastUsedAt.Equal(c.now()) || listed[0].Hash != "" {
		t.Errorf("listed: %+v %v (want last used %s, no hash)", listed, err, c.now())
	}
	c.add(time.Minute)
	if _, err := b.TokenPrincipal(ctx, tok, "github"); err != nil {
		t.Fatal(err)
	}
	for i := 0; stored().LastUsedAt.IsZero(); i++ {
		if i == 1000 {
			t.Fatal("the last use was not written back after a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.add(time.Second)
	last := c.now()
	if _, err := b.TokenPrincipal(ctx, tok, "github"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := stored().LastUsedAt; !got.Equal(last) {
		t.Errorf("after Close the store says last used %s, want %s", got, last)
	}
}

// The store keeps the token's hash and never the token: not in the
// database file, nor in its journal.
func TestTokenNotInStoreFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "airlock.db")
	st, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{Policy: brokertest.HoldTools(1, "write"), Store: st, Servers: []string{"github"}})
	if err != nil {
		t.Fatal(err)
	}
	tok := createToken(t, b, broker.TokenSpec{Name: "builder", Servers: []string{"github"}})
	ap := createToken(t, b, broker.TokenSpec{Name: "alice", Approver: true})
	if _, err := b.TokenPrincipal(t.Context(), tok, "github"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RevokeToken(t.Context(), "builder", ""); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	found := false
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{tok, ap, tok[len(tok)-43:], ap[len(ap)-43:]} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds a token's secret", filepath.Base(f))
			}
		}
		found = found || bytes.Contains(data, []byte("builder"))
	}
	if !found {
		t.Fatal("no file holds the token's record: the test looks in the wrong place")
	}
}

func TestRecordAuthRefusal(t *testing.T) {
	h, _ := newTokenHarness(t)
	if err := h.Broker.RecordAuthRefusal(t.Context(), broker.AuthRefusal{Server: "github", Source: "token", Status: 401, Reason: "the agent token is unknown", Remote: "10.0.0.7:5555", Suppressed: 12}); err != nil {
		t.Fatal(err)
	}
	recs := auditAll(t, h)
	r := recs[0]
	if r.Event != broker.EventRequestRefused || r.Server != "github" || r.PrincipalSource != "token" || r.Actor != "airlock" ||
		!strings.Contains(r.Reason, "401") || !strings.Contains(r.Reason, "10.0.0.7:5555") || !strings.Contains(r.Reason, "12 more") {
		t.Errorf("record %+v", r)
	}
}

// BenchmarkTokenPrincipal is the cost of an agent token per request,
// against a door that asks nothing (noop):
//
//	go test -run '^$' -bench TokenPrincipal ./broker
func BenchmarkTokenPrincipal(b *testing.B) {
	ctx := context.Background()
	noop := func(context.Context, string, string) (broker.Principal, error) {
		return broker.Principal{ID: "anonymous", Source: "anonymous"}, nil
	}
	run := func(b *testing.B, f func(context.Context, string, string) (broker.Principal, error), tok string) {
		b.Run("serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f(ctx, tok, "github"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := f(ctx, tok, "github"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
	b.Run("noop", func(b *testing.B) { run(b, noop, "") })
	for name, open := range map[string]func(b *testing.B) broker.Store{
		"memstore": func(*testing.B) broker.Store { return brokertest.NewMemStore() },
		"boltstore": func(b *testing.B) broker.Store {
			st, err := boltstore.Open(filepath.Join(b.TempDir(), "airlock.db"), boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		},
	} {
		b.Run(name, func(b *testing.B) {
			br, err := broker.New(broker.Options{Policy: brokertest.HoldTools(1, "write"), Store: open(b), Servers: []string{"github"}})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			tok, _, err := br.CreateToken(ctx, broker.TokenSpec{Name: "builder", Servers: []string{"github"}, Groups: []string{"ci"}})
			if err != nil {
				b.Fatal(err)
			}
			run(b, br.TokenPrincipal, tok)
		})
	}
}
