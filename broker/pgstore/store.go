// Package pgstore keeps the broker's state in PostgreSQL, so that several
// `airlock serve` replicas act as one broker: the whole broker.Store
// contract, for processes on many machines at once.
//
// Three choices carry it:
//   - First decision wins across replicas: an update is one transaction
//     that reads the record with SELECT … FOR UPDATE, runs the core's
//     compare-and-set on it and writes it back with its audit record, so
//     two approvers on two replicas produce one outcome.
//   - One audit chain: every append locks the one chain row, numbers its
//     records after the head, seals them onto the head's hash and moves
//     the head, in the transaction that inserts them. Each Store value
//     commits the appends queued while its last commit ran in one
//     transaction (group commit), so one fsync serves many calls.
//   - Change feeds: the chain row also hands out a revision for every
//     change to an approval, grant or token, so revisions commit in
//     order. A writer NOTIFYs in its transaction; every Store value
//     LISTENs and, on a notification and at least every second, reads
//     the rows whose revision is past the last it saw and announces them.
//     A lost notification (a dropped connection) delays a change by a
//     second at most; it never loses one.
//
// Times that decide something (an approval's expiry, a lease) are the
// database's: Now is the local clock corrected by its measured offset.
package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/airlock-mcp/airlock/broker"
)

// Options configure a Store.
type Options struct {
	// Password, when not empty, is the database user's password (from a
	// file or the environment; a URL in a config file must not carry
	// one). It is never logged.
	Password string
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// MaxConns caps the pool's connections; 0 means 16.
	MaxConns int32
}

// Store is a broker.Store in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	cfg  *pgx.ConnConfig // for the LISTEN connection

	// mu is held to read closed by every method, and to write it by
	// Close, which so waits for the methods under way.
	mu     sync.RWMutex
	closed bool

	appends chan *appendReq
	stop    context.CancelFunc
	done    sync.WaitGroup

	approvals broker.ApprovalFeed
	grants    broker.GrantFeed
	tokenGen  atomic.Uint64
	offset    atomic.Int64 // the database's clock minus ours, in ns

	// id names this Store value in the rows it writes (their writer):
	// it announces its own changes, the follower the others'.
	id string
	// records serializes this Store value's writes to one record, from
	// before its transaction to after its announcement, so that its own
	// changes to a record are announced in the order they committed.
	recordsMu sync.Mutex
	records   map[string]*recordLock

	// pubMu orders announcements: the follower's batches and each local
	// announcement happen one at a time.
	pubMu sync.Mutex
	// seen is the follower's high-water mark: it has read every change
	// up to this revision (revisions commit in order).
	seen int64
	// last is the revision announced last, per record, so that an older
	// state never follows a newer one. The follower forgets the records
	// at or below seen that no local write holds: a later change to them
	// has a higher revision.
	last map[string]int64
}

var (
	errClosed              = errors.New("pgstore: the store is closed")
	_         broker.Store = (*Store)(nil)
)

// Open connects to the database at url, migrates its schema and starts
// following other replicas' changes. It fails at once, naming the host,
// when the database cannot be reached.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if opts.Password != "" {
		pc.ConnConfig.Password = opts.Password
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pc.MaxConns = 16
	if opts.MaxConns > 0 {
		pc.MaxConns = opts.MaxConns
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	where := fmt.Sprintf("%s:%d/%s", pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %s: %w", where, err)
	}
	s := &Store{pool: pool, log: log, cfg: pc.ConnConfig, appends: make(chan *appendReq, 1024),
		id: rand.Text(), records: map[string]*recordLock{}, last: map[string]int64{}}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: cannot reach the database at %s: %w", where, err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: %s: %w", where, err)
	}
	var rev int64
	if err := pool.QueryRow(ctx, "SELECT rev FROM airlock_chain").Scan(&rev); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: %s: %w", where, err)
	}
	s.seen = rev
	s.measureClock(ctx)
	bg, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.done.Add(2)
	go s.commitAppends()
	go s.follow(bg)
	return s, nil
}

// Close waits for the methods under way, then stops. Later calls fail.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.appends)
	s.mu.Unlock()
	s.stop()
	s.done.Wait()
	s.approvals.Close()
	s.grants.Close()
	s.pool.Close()
	return nil
}

// enter starts a method: it fails once the store is closed, and Close
// waits for it to leave.
func (s *Store) enter() (leave func(), err error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, errClosed
	}
	return s.mu.RUnlock, nil
}

// Now is the database's clock, as read from here: what replicas agree
// on for expiry.
func (s *Store) Now() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) }

// measureClock reads the database's clock and keeps its offset from ours,
// taking the middle of the round trip as the moment it was read.
func (s *Store) measureClock(ctx context.Context) {
	t0 := time.Now()
	var db time.Time
	if err := s.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&db); err != nil {
		return
	}
	t1 := time.Now()
	mid := t0.Add(t1.Sub(t0) / 2)
	s.offset.Store(int64(db.Sub(mid)))
}

// retryable says a transaction failed for a reason that trying it again
// can cure: a serialization failure or a deadlock.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// tx runs fn in a transaction, committed once fn returns nil, and again
// (a bounded number of times) when the database asks for it. fn must be a
// function of what it reads in the transaction, since it may run twice.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
		}
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if !retryable(err) {
			return err
		}
	}
	return err
}

// chain is a transaction's hold on the chain row: the audit head and the
// revision counter. Taking it last, after any record row, keeps one lock
// order for every transaction.
type chain struct {
	tx   pgx.Tx
	seq  int64
	hash string
	rev  int64
	recs []*broker.AuditRecord // sealed copies, to hand back on commit
	dest []*broker.AuditRecord // the callers' records
}

func lockChain(ctx context.Context, tx pgx.Tx) (*chain, error) {
	c := &chain{tx: tx}
	if err := tx.QueryRow(ctx, "SELECT seq, hash, rev FROM airlock_chain WHERE id = 1 FOR UPDATE").Scan(&c.seq, &c.hash, &c.rev); err != nil {
		return nil, fmt.Errorf("locking the audit chain: %w", err)
	}
	return c, nil
}

func (c *chain) nextRev() int64 { c.rev++; return c.rev }

// append seals a copy of r onto the chain and inserts it.
func (c *chain) append(ctx context.Context, r *broker.AuditRecord) error {
	cp := *r
	c.seq++
	data, err := cp.SealJSON(uint64(c.seq), c.hash)
	if err != nil {
		return err
	}
	c.hash = cp.Hash
	if _, err := c.tx.Exec(ctx, "INSERT INTO airlock_audit (seq, event, server, tool, actor, approval_id, data) VALUES ($1, $2, $3, $4, $5, $6, $7)",
		c.seq, string(cp.Event), []byte(cp.Server), []byte(cp.Tool), []byte(cp.Actor), cp.ApprovalID, data); err != nil {
		return fmt.Errorf("appending to the audit log: %w", err)
	}
	c.recs, c.dest = append(c.recs, &cp), append(c.dest, r)
	return nil
}

// finish moves the head and tells the other replicas (at commit).
func (c *chain) finish(ctx context.Context) error {
	if _, err := c.tx.Exec(ctx, "UPDATE airlock_chain SET seq = $1, hash = $2, rev = $3 WHERE id = 1", c.seq, c.hash, c.rev); err != nil {
		return err
	}
	_, err := c.tx.Exec(ctx, "SELECT pg_notify('airlock', '')")
	return err
}

// sealed hands the sealed records back to their callers, once committed.
func (c *chain) sealed() {
	for i, r := range c.dest {
		*r = *c.recs[i]
	}
}

// appendReq is one AppendAudit call waiting for the group commit.
type appendReq struct {
	ctx  context.Context
	recs []*broker.AuditRecord
	done chan error
}

// AppendAudit appends records to the one chain of every replica, durable
// before it returns. Calls that arrive while a commit runs share the next.
func (s *Store) AppendAudit(ctx context.Context, recs ...*broker.AuditRecord) error {
	leave, err := s.enter()
	if err != nil {
		return err
	}
	req := &appendReq{ctx: ctx, recs: recs, done: make(chan error, 1)}
	s.appends <- req
	leave()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		// The records may still be stored: the log is append-only, and
		// an append once begun is not taken back.
		return ctx.Err()
	}
}

// maxGroup bounds the records of one group commit.
const maxGroup = 1024

func (s *Store) commitAppends() {
	defer s.done.Done()
	for first := range s.appends {
		group := []*appendReq{first}
		n := len(first.recs)
	more:
		for n < maxGroup {
			select {
			case r, ok := <-s.appends:
				if !ok {
					break more
				}
				group = append(group, r)
				n += len(r.recs)
			default:
				break more
			}
		}
		s.commitGroup(group)
	}
}

func (s *Store) commitGroup(group []*appendReq) {
	live := group[:0]
	for _, r := range group {
		if r.ctx.Err() != nil {
			r.done <- r.ctx.Err()
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var c *chain
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		if c, err = lockChain(ctx, tx); err != nil {
			return err
		}
		for _, r := range live {
			for _, rec := range r.recs {
				if err := c.append(ctx, rec); err != nil {
					return err
				}
			}
		}
		_, err = tx.Exec(ctx, "UPDATE airlock_chain SET seq = $1, hash = $2 WHERE id = 1", c.seq, c.hash)
		return err
	})
	if err == nil {
		c.sealed()
	} else {
		err = fmt.Errorf("pgstore: %w", err)
	}
	for _, r := range live {
		r.done <- err
	}
}

// Audit lists records newest first, or oldest first after q.After.
func (s *Store) Audit(ctx context.Context, q broker.AuditQuery) ([]*broker.AuditRecord, error) {
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	where, args := "true", []any{}
	add := func(cond string, v any) {
		args = append(args, v)
		where += fmt.Sprintf(" AND "+cond, len(args))
	}
	if q.Server != "" {
		add("server = $%d", []byte(q.Server))
	}
	if q.Tool != "" {
		add("tool = $%d", []byte(q.Tool))
	}
	if q.Actor != "" {
		add("actor = $%d", []byte(q.Actor))
	}
	if q.ApprovalID != "" {
		add("approval_id = $%d", q.ApprovalID)
	}
	if e := q.Event; e != "" {
		if e[len(e)-1] == '.' {
			add("starts_with(event, $%d)", e)
		} else {
			add("event = $%d", e)
		}
	}
	order := "DESC"
	if q.After > 0 {
		add("seq > $%d", int64(q.After))
		order = "ASC"
	} else if q.Before > 0 {
		add("seq < $%d", int64(q.Before))
	}
	args = append(args, limit)
	rows, err := s.pool.Query(ctx, fmt.Sprintf("SELECT data FROM airlock_audit WHERE %s ORDER BY seq %s LIMIT $%d", where, order, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return collect[broker.AuditRecord](rows)
}

// VerifyAudit checks the whole chain, reading it in order, and that it
// ends at the head the chain row records: so removing the newest records
// is caught too.
func (s *Store) VerifyAudit(ctx context.Context) (broker.AuditVerification, error) {
	leave, err := s.enter()
	if err != nil {
		return broker.AuditVerification{}, err
	}
	defer leave()
	var headSeq int64
	var headHash string
	if err := s.pool.QueryRow(ctx, "SELECT seq, hash FROM airlock_chain").Scan(&headSeq, &headHash); err != nil {
		return broker.AuditVerification{}, fmt.Errorf("pgstore: reading the chain's head: %w", err)
	}
	var v broker.Verifier
	var after int64
	var last *broker.AuditRecord
	const page = 10000
	for {
		rows, err := s.pool.Query(ctx, "SELECT seq, data FROM airlock_audit WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3", after, headSeq, page)
		if err != nil {
			return broker.AuditVerification{}, fmt.Errorf("pgstore: verify audit: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
			var data []byte
			if err := rows.Scan(&after, &data); err != nil {
				rows.Close()
				return broker.AuditVerification{}, fmt.Errorf("pgstore: verify audit: %w", err)
			}
			r, ok := v.CheckJSON(data)
			if !ok {
				rows.Close()
				return v.Result(), nil
			}
			if r.Seq != uint64(after) {
				rows.Close()
				return broker.BrokenAt(r.Seq, fmt.Sprintf("record %d is stored as seq %d", r.Seq, after)), nil
			}
			last = r
		}
		if err := rows.Err(); err != nil {
			return broker.AuditVerification{}, fmt.Errorf("pgstore: verify audit: %w", err)
		}
		if n < page {
			break
		}
	}
	res := v.Result()
	if int64(res.Records) != headSeq || (last != nil && last.Hash != headHash) {
		return broker.BrokenAt(res.Records+1, fmt.Sprintf("the chain's head is record %d (%.12s…), but the log ends at record %d", headSeq, headHash, res.Records)), nil
	}
	return res, nil
}

// collect decodes rows of one JSON column. The JSON is the store's own
// encoding of a value the core built, so encoding/json reads back what
// was written.
func collect[T any](rows pgx.Rows) ([]*T, error) {
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("pgstore: %w", err)
		}
		v := new(T)
		if err := json.Unmarshal(data, v); err != nil {
			return nil, fmt.Errorf("pgstore: decoding a stored record: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return out, nil
}

// SeenTool records a tool's first sighting; the first replica's wins.
func (s *Store) SeenTool(ctx context.Context, t *broker.ToolRecord) (*broker.ToolRecord, error) {
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	data, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO airlock_tools (server, tool, data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", []byte(t.Server), []byte(t.Tool), data); err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	rows, err := s.pool.Query(ctx, "SELECT data FROM airlock_tools WHERE server = $1 AND tool = $2", []byte(t.Server), []byte(t.Tool))
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	got, err := collect[broker.ToolRecord](rows)
	if err != nil {
		return nil, err
	}
	if len(got) != 1 {
		return nil, fmt.Errorf("pgstore: tool %s on %s: not stored", t.Tool, t.Server)
	}
	return got[0], nil
}

// ToolRecords lists every tool first seen, for copying a store elsewhere.
func (s *Store) ToolRecords(ctx context.Context) ([]*broker.ToolRecord, error) {
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	rows, err := s.pool.Query(ctx, "SELECT data FROM airlock_tools ORDER BY server, tool")
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return collect[broker.ToolRecord](rows)
}

// Lease renews replica's lease by the database's clock and returns the
// leases kept. Leases that ran out a day ago are removed.
func (s *Store) Lease(ctx context.Context, replica string, ttl time.Duration) ([]broker.Lease, error) {
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	var out []broker.Lease
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO airlock_replicas (id, expires_at, renewed_at) VALUES ($1, now() + $2 * interval '1 microsecond', now())
			ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at, renewed_at = EXCLUDED.renewed_at`, replica, ttl.Microseconds()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM airlock_replicas WHERE expires_at < now() - interval '1 day'"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT id, renewed_at, expires_at > now() FROM airlock_replicas ORDER BY id")
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (broker.Lease, error) {
			var l broker.Lease
			err := row.Scan(&l.Replica, &l.Renewed, &l.Live)
			return l, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: lease: %w", err)
	}
	return out, nil
}
