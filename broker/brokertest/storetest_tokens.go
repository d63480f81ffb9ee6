package brokertest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// The token part of TestStore.

func newToken(i int, name string) *broker.Token {
	return &broker.Token{
		ID:        fmt.Sprintf("06TOKEN%09d", i),
		Name:      name,
		Hash:      fmt.Sprintf("%064x", i),
		Servers:   []string{"github"},
		Groups:    []string{"ci"},
		CreatedBy: "admin",
		CreatedAt: t0.Add(time.Duration(i) * time.Second),
		ExpiresAt: t0.Add(time.Hour),
	}
}

func testTokenLifecycle(t *testing.T, s broker.Store) {
	ctx := t.Context()
	tok := newToken(1, "builder")
	rec := &broker.AuditRecord{Time: t0, Event: broker.EventTokenCreated, Actor: "admin", Principal: "builder"}
	if err := s.CreateToken(ctx, tok, rec); err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 1 {
		t.Errorf("the creation's record was not sealed in place: %+v", rec)
	}
	got, err := s.Token(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "stored token", got, tok)
	got.Groups[0] = "changed"
	if again, _ := s.Token(ctx, tok.ID); again.Groups[0] != "ci" {
		t.Error("a returned token shares memory with the store")
	}
	if _, err := s.Token(ctx, "nope"); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("unknown token: %v", err)
	}
	if _, err := s.UpdateToken(ctx, "nope", func(*broker.Token) (*broker.AuditRecord, error) { return nil, nil }); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("updating an unknown token: %v", err)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateToken(ctx, tok.ID, func(t *broker.Token) (*broker.AuditRecord, error) {
		t.RevokedAt = t0
		return &broker.AuditRecord{Event: "x"}, boom
	}); !errors.Is(err, boom) {
		t.Errorf("failing fn: %v", err)
	}
	if got, _ := s.Token(ctx, tok.ID); got.Revoked() {
		t.Error("a failed update was stored")
	}
	updated, err := s.UpdateToken(ctx, tok.ID, func(t *broker.Token) (*broker.AuditRecord, error) {
		t.RevokedAt, t.RevokedBy = t0, "bob"
		return &broker.AuditRecord{Time: t0, Event: broker.EventTokenRevoked, Actor: "bob"}, nil
	})
	if err != nil || !updated.Revoked() || updated.RevokedBy != "bob" || updated.Hash != tok.Hash {
		t.Fatalf("revoke: %+v %v", updated, err)
	}
	recs := allAudit(t, s)
	if len(recs) != 2 || recs[1].Event != broker.EventTokenRevoked {
		t.Errorf("audit after a failed and a good update: %+v", recs)
	}
}

func testTokenNames(t *testing.T, s broker.Store) {
	ctx := t.Context()
	if err := s.CreateToken(ctx, newToken(1, "builder"), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, newToken(2, "builder"), nil); !errors.Is(err, broker.ErrTokenExists) {
		t.Fatalf("a second token named builder: %v", err)
	}
	if err := s.CreateToken(ctx, newToken(1, "other"), nil); err == nil {
		t.Fatal("a token with a taken id was stored")
	}
	// Two at once: exactly one gets the name.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = s.CreateToken(ctx, newToken(10+i, "racer"), nil) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, broker.ErrTokenExists):
			t.Errorf("racing creation: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d tokens named racer were stored, want 1", won)
	}
	if _, err := s.UpdateToken(ctx, newToken(1, "").ID, func(t *broker.Token) (*broker.AuditRecord, error) {
		t.RevokedAt, t.RevokedBy = t0, "admin"
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, newToken(3, "builder"), nil); err != nil {
		t.Errorf("the name of a revoked token is free again: %v", err)
	}
}

func testTokenGeneration(t *testing.T, s broker.Store) {
	ctx := t.Context()
	g0 := s.TokenGeneration()
	tok := newToken(1, "builder")
	if err := s.CreateToken(ctx, tok, nil); err != nil {
		t.Fatal(err)
	}
	g1 := s.TokenGeneration()
	if g1 == g0 {
		t.Error("CreateToken returned before the generation moved")
	}
	if _, err := s.UpdateToken(ctx, tok.ID, func(t *broker.Token) (*broker.AuditRecord, error) {
		t.RevokedAt = t0
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	g2 := s.TokenGeneration()
	if g2 == g1 {
		t.Error("UpdateToken returned before the generation moved")
	}
	s.UpdateToken(ctx, tok.ID, func(*broker.Token) (*broker.AuditRecord, error) { return nil, errors.New("no") })
	s.CreateToken(ctx, newToken(2, "builder"), nil)
	s.CreateToken(ctx, newToken(3, "builder"), nil) // refused: the name is taken again
	if err := s.AppendAudit(ctx, &broker.AuditRecord{Time: t0, Event: "x"}); err != nil {
		t.Fatal(err)
	}
	if g3 := s.TokenGeneration(); g3 == g2 {
		t.Error("the generation did not move for the second token")
	}
}

func testTokenList(t *testing.T, s broker.Store) {
	ctx := t.Context()
	if ts, err := s.Tokens(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("empty store: %v %v", ts, err)
	}
	for i := range 3 {
		if err := s.CreateToken(ctx, newToken(i, fmt.Sprint("agent", i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := s.Tokens(ctx)
	if err != nil || len(ts) != 3 {
		t.Fatalf("list: %v %v", ts, err)
	}
	for i, tok := range ts {
		if want := fmt.Sprint("agent", 2-i); tok.Name != want {
			t.Errorf("token %d is %s, want %s (newest first)", i, tok.Name, want)
		}
	}
}
