package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/broker"
)

// kind describes one table of records (approvals, grants, tokens): the
// columns queries filter on, taken from the record, and the feed that
// announces its changes.
type kind[T any] struct {
	tag   int // this kind's number in the follower's query
	table string
	noun  string
	id    func(*T) string
	// cols are the filter columns: status, server, tool, name.
	cols func(*T) (status, server, tool, name string)
	// publish announces a change, given the record's stored JSON.
	publish func(s *Store, data []byte)
}

const (
	tagApproval = iota
	tagGrant
	tagToken
)

var approvals = &kind[broker.Approval]{
	tag: tagApproval, table: "airlock_approvals", noun: "approval",
	id: func(a *broker.Approval) string { return a.ID },
	cols: func(a *broker.Approval) (string, string, string, string) {
		return string(a.Status), a.Server, a.Tool, ""
	},
	publish: func(s *Store, data []byte) { s.publishErr(s.approvals.Publish(data)) },
}

var grants = &kind[broker.Grant]{
	tag: tagGrant, table: "airlock_grants", noun: "grant",
	id: func(g *broker.Grant) string { return g.ID },
	cols: func(g *broker.Grant) (string, string, string, string) {
		return string(g.Status), g.Server, g.Tool, ""
	},
	publish: func(s *Store, data []byte) { s.publishErr(s.grants.Publish(data)) },
}

var tokens = &kind[broker.Token]{
	tag: tagToken, table: "airlock_tokens", noun: "token",
	id: func(t *broker.Token) string { return t.ID },
	cols: func(t *broker.Token) (string, string, string, string) {
		status := "active"
		if t.Revoked() {
			status = "revoked"
		}
		return status, "", "", t.Name
	},
	// A token's change is announced by moving the generation, which
	// tells the broker its cached records may be stale.
	publish: func(s *Store, _ []byte) { s.tokenGen.Add(1) },
}

func (s *Store) publishErr(err error) {
	if err != nil {
		s.log.Error("pgstore: announcing a change", "err", err)
	}
}

func recordKey(tag int, id string) string { return fmt.Sprint(tag, "/", id) }

// recordLock is one record's lock among this Store value's writers, kept
// while any of them wants it.
type recordLock struct {
	mu    sync.Mutex
	users int
}

// lockRecord takes key's lock, and returns its release.
func (s *Store) lockRecord(key string) (unlock func()) {
	s.recordsMu.Lock()
	l := s.records[key]
	if l == nil {
		l = new(recordLock)
		s.records[key] = l
	}
	l.users++
	s.recordsMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.recordsMu.Lock()
		if l.users--; l.users == 0 {
			delete(s.records, key)
		}
		s.recordsMu.Unlock()
	}
}

// announce publishes a change this Store value committed at revision rev,
// called with the record's lock held, unless the follower announced a
// later change another replica made to it meanwhile: never an older state
// after a newer one.
func announce[T any](s *Store, k *kind[T], key string, rev int64, data []byte) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if rev <= s.last[key] {
		return
	}
	s.last[key] = rev
	k.publish(s, data)
}

// create inserts a new record and rec with it, in one transaction.
func create[T any](ctx context.Context, s *Store, k *kind[T], v *T, rec *broker.AuditRecord) error {
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	id := k.id(v)
	if id == "" {
		return fmt.Errorf("pgstore: create %s: empty id", k.noun)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("pgstore: encode %s %s: %w", k.noun, id, err)
	}
	status, server, tool, name := k.cols(v)
	key := recordKey(k.tag, id)
	defer s.lockRecord(key)()
	var c *chain
	var rev int64
	err = s.tx(ctx, func(tx pgx.Tx) error {
		// The row first, the chain row last: one lock order for every
		// transaction.
		tag, err := tx.Exec(ctx, "INSERT INTO "+k.table+" (id, status, server, tool, name, rev, writer, data) VALUES ($1, $2, $3, $4, $5, 0, $6, $7) ON CONFLICT (id) DO NOTHING",
			id, status, []byte(server), []byte(tool), []byte(name), s.id, data)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s %s already exists", k.noun, id)
		}
		if c, err = lockChain(ctx, tx); err != nil {
			return err
		}
		rev = c.nextRev()
		if rec != nil {
			if err := c.append(ctx, rec); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE "+k.table+" SET rev = $2 WHERE id = $1", id, rev); err != nil {
			return err
		}
		return c.finish(ctx)
	})
	if err != nil {
		return writeErr("create", k.noun, id, err)
	}
	c.sealed()
	announce(s, k, key, rev, data)
	return nil
}

// update is UpdateApproval for any kind: the row is locked, fn runs on
// what it holds, and fn's changes are stored with its record in the same
// transaction; so a compare-and-set in fn holds across replicas.
func update[T any](ctx context.Context, s *Store, k *kind[T], id string, fn func(*T) (*broker.AuditRecord, error)) (*T, error) {
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	key := recordKey(k.tag, id)
	defer s.lockRecord(key)()
	var (
		c     *chain
		rev   int64
		out   *T
		data  []byte
		fnErr error
	)
	err = s.tx(ctx, func(tx pgx.Tx) error {
		var old []byte
		err := tx.QueryRow(ctx, "SELECT data FROM "+k.table+" WHERE id = $1 FOR UPDATE", id).Scan(&old)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%s %s: %w", k.noun, id, broker.ErrNotFound)
		}
		if err != nil {
			return err
		}
		v := new(T)
		// The store's own encoding of a record the core built (see collect).
		if err := json.Unmarshal(old, v); err != nil {
			return fmt.Errorf("decoding %s %s: %w", k.noun, id, err)
		}
		rec, err := fn(v)
		if err != nil {
			fnErr = err
			return err
		}
		if k.id(v) != id {
			return fmt.Errorf("%s %s: the update changed its id", k.noun, id)
		}
		if data, err = json.Marshal(v); err != nil {
			return fmt.Errorf("encoding %s %s: %w", k.noun, id, err)
		}
		if c, err = lockChain(ctx, tx); err != nil {
			return err
		}
		rev = c.nextRev()
		if rec != nil {
			if err := c.append(ctx, rec); err != nil {
				return err
			}
		}
		status, server, tool, name := k.cols(v)
		if _, err := tx.Exec(ctx, "UPDATE "+k.table+" SET status = $2, server = $3, tool = $4, name = $5, rev = $6, writer = $7, data = $8 WHERE id = $1",
			id, status, []byte(server), []byte(tool), []byte(name), rev, s.id, data); err != nil {
			return err
		}
		out = v
		return c.finish(ctx)
	})
	if fnErr != nil && errors.Is(err, fnErr) {
		return nil, fnErr // the caller's own error, as it gave it
	}
	if err != nil {
		return nil, writeErr("update", k.noun, id, err)
	}
	c.sealed()
	announce(s, k, key, rev, data)
	return out, nil
}

// writeErr names what failed; a second token of a name not revoked is
// ErrTokenExists, whichever replica made the first.
func writeErr(op, noun, id string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "airlock_tokens_name" {
		return fmt.Errorf("pgstore: token %s: %w", id, broker.ErrTokenExists)
	}
	return fmt.Errorf("pgstore: %s %s %s: %w", op, noun, id, err)
}

// get reads one record.
func get[T any](ctx context.Context, s *Store, k *kind[T], id string) (*T, error) {
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	rows, err := s.pool.Query(ctx, "SELECT data FROM "+k.table+" WHERE id = $1", id)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %s %s: %w", k.noun, id, err)
	}
	got, err := collect[T](rows)
	if err != nil {
		return nil, err
	}
	if len(got) == 0 {
		return nil, fmt.Errorf("pgstore: %s %s: %w", k.noun, id, broker.ErrNotFound)
	}
	return got[0], nil
}

// list reads records newest first (ids sort by time), filtered in SQL.
func list[T any](ctx context.Context, s *Store, k *kind[T], statuses []string, server, tool, before string, limit int) ([]*T, error) {
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	switch len(statuses) {
	case 0:
	case 1: // = rather than ANY, so the planner uses a partial index
		add("status = $%d", statuses[0])
	default:
		add("status = ANY($%d)", statuses)
	}
	if server != "" {
		add("server = $%d", []byte(server))
	}
	if tool != "" {
		add("tool = $%d", []byte(tool))
	}
	if before != "" {
		add("id < $%d", before)
	}
	q := "SELECT data FROM " + k.table
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC"
	if limit > 0 {
		args = append(args, limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list %ss: %w", k.noun, err)
	}
	return collect[T](rows)
}

func statusStrings[S ~string](ss []S) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

func pageLimit(n int) int {
	if n <= 0 {
		return 100
	}
	return n
}

// CreateApproval stores a new approval and rec with it.
func (s *Store) CreateApproval(ctx context.Context, a *broker.Approval, rec *broker.AuditRecord) error {
	return create(ctx, s, approvals, a, rec)
}

// UpdateApproval runs fn on the approval as stored, locked against every
// replica, and stores its changes and record together.
func (s *Store) UpdateApproval(ctx context.Context, id string, fn func(*broker.Approval) (*broker.AuditRecord, error)) (*broker.Approval, error) {
	return update(ctx, s, approvals, id, fn)
}

// Approval returns one approval, or an error wrapping broker.ErrNotFound.
func (s *Store) Approval(ctx context.Context, id string) (*broker.Approval, error) {
	return get(ctx, s, approvals, id)
}

// Approvals lists approvals, newest first.
func (s *Store) Approvals(ctx context.Context, q broker.ApprovalQuery) ([]*broker.Approval, error) {
	return list(ctx, s, approvals, statusStrings(q.Status), q.Server, q.Tool, q.Before, pageLimit(q.Limit))
}

// WatchApprovals calls f with every change to an approval, this
// replica's and every other's.
func (s *Store) WatchApprovals(ctx context.Context, f func(*broker.Approval)) error {
	return s.approvals.Watch(ctx, f)
}

// CreateGrant stores a new grant and rec with it.
func (s *Store) CreateGrant(ctx context.Context, g *broker.Grant, rec *broker.AuditRecord) error {
	return create(ctx, s, grants, g, rec)
}

// UpdateGrant is UpdateApproval for grants.
func (s *Store) UpdateGrant(ctx context.Context, id string, fn func(*broker.Grant) (*broker.AuditRecord, error)) (*broker.Grant, error) {
	return update(ctx, s, grants, id, fn)
}

// Grant returns one grant, or an error wrapping broker.ErrNotFound.
func (s *Store) Grant(ctx context.Context, id string) (*broker.Grant, error) {
	return get(ctx, s, grants, id)
}

// Grants lists grants, newest first; the active ones through a partial
// index, however many have ended.
func (s *Store) Grants(ctx context.Context, q broker.GrantQuery) ([]*broker.Grant, error) {
	return list(ctx, s, grants, statusStrings(q.Status), q.Server, q.Tool, q.Before, pageLimit(q.Limit))
}

// WatchGrants is WatchApprovals for grants.
func (s *Store) WatchGrants(ctx context.Context, f func(*broker.Grant)) error {
	return s.grants.Watch(ctx, f)
}

// CreateToken stores a new token's record; a name held by a token not
// revoked, on any replica, is refused by the database's unique index.
func (s *Store) CreateToken(ctx context.Context, t *broker.Token, rec *broker.AuditRecord) error {
	if t.Name == "" {
		return fmt.Errorf("pgstore: create token %s: empty name", t.ID)
	}
	return create(ctx, s, tokens, t, rec)
}

// UpdateToken is UpdateApproval for tokens.
func (s *Store) UpdateToken(ctx context.Context, id string, fn func(*broker.Token) (*broker.AuditRecord, error)) (*broker.Token, error) {
	return update(ctx, s, tokens, id, fn)
}

// Token returns one token's record, or an error wrapping
// broker.ErrNotFound.
func (s *Store) Token(ctx context.Context, id string) (*broker.Token, error) {
	return get(ctx, s, tokens, id)
}

// Tokens lists every token's record, newest first.
func (s *Store) Tokens(ctx context.Context) ([]*broker.Token, error) {
	return list(ctx, s, tokens, nil, "", "", "", 0)
}

// TokenGeneration moves once a change to a token made here is durable,
// and when the follower reads one another replica made.
func (s *Store) TokenGeneration() uint64 { return s.tokenGen.Load() }
