package pgstore

import (
	"context"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Timings of the follower.
const (
	// pollEvery bounds how late a change arrives when its notification
	// was lost: the follower reads new revisions at least this often.
	pollEvery = time.Second
	// clockEvery is how often the database's clock is measured again.
	clockEvery = 30 * time.Second
)

// follow announces the changes other replicas make: it LISTENs on a
// connection of its own and reads the revisions past seen on each
// notification, and every pollEvery without one, until ctx is done. A
// lost connection is opened again; meanwhile the polls go on, so a change
// is late, never lost.
func (s *Store) follow(ctx context.Context) {
	defer s.done.Done()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	lastClock := time.Now()
	// broken is whether the follower is cut off, so that an outage is
	// logged once when it starts and once when it ends, not every second.
	broken := false
	trouble := func(what string, err error) {
		if ctx.Err() == nil && !broken {
			broken = true
			s.log.Warn("pgstore: "+what+"; other replicas' changes arrive when the database answers again", "err", err)
		}
	}
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			if conn, err = s.listen(ctx); err != nil {
				trouble("cannot listen for other replicas' changes", err)
			}
		}
		if conn != nil {
			wctx, cancel := context.WithTimeout(ctx, pollEvery)
			_, err := conn.WaitForNotification(wctx)
			cancel()
			if err != nil && ctx.Err() == nil && !pgconn.Timeout(err) {
				trouble("the connection listening for changes broke", err)
				conn.Close(ctx)
				conn = nil
			}
		} else {
			select {
			case <-ctx.Done():
			case <-time.After(pollEvery):
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err := s.poll(ctx); err != nil {
			trouble("reading other replicas' changes", err)
		} else if broken && conn != nil {
			broken = false
			s.log.Info("pgstore: following other replicas' changes again")
		}
		if time.Since(lastClock) > clockEvery {
			s.measureClock(ctx)
			lastClock = time.Now()
		}
	}
}

// listen opens the connection that hears the NOTIFY of every write, and
// reads once, for the changes made before it listened.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, s.cfg.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(cctx, "LISTEN airlock"); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

// polled is one change the follower read.
type polled struct {
	tag    int
	id     string
	rev    int64
	writer string
	data   []byte
}

// poll reads every record changed past seen and announces, in revision
// order, each that another Store value wrote and that was not announced
// at that revision or later; then seen moves to the last revision read.
func (s *Store) poll(ctx context.Context) error {
	s.pubMu.Lock()
	from := s.seen
	s.pubMu.Unlock()
	// One statement, so one snapshot: since revisions commit in order, it
	// holds every change up to the highest revision it returns.
	rows, err := s.pool.Query(ctx, `
		SELECT 0, id, rev, writer, data FROM airlock_approvals WHERE rev > $1
		UNION ALL SELECT 1, id, rev, writer, data FROM airlock_grants WHERE rev > $1
		UNION ALL SELECT 2, id, rev, writer, data FROM airlock_tokens WHERE rev > $1
		ORDER BY 3 LIMIT 10000`, from)
	if err != nil {
		return err
	}
	var batch []polled
	for rows.Next() {
		var p polled
		if err := rows.Scan(&p.tag, &p.id, &p.rev, &p.writer, &p.data); err != nil {
			rows.Close()
			return err
		}
		batch = append(batch, p)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	for _, p := range batch {
		key := recordKey(p.tag, p.id)
		if p.writer == s.id || p.rev <= s.last[key] {
			continue // announced here already, or by its writer here
		}
		s.last[key] = p.rev
		switch p.tag {
		case tagApproval:
			approvals.publish(s, p.data)
		case tagGrant:
			grants.publish(s, p.data)
		case tagToken:
			tokens.publish(s, p.data)
		}
	}
	// A batch cut by the limit ends at a revision whose records were all
	// read: each revision is one record.
	s.seen = batch[len(batch)-1].rev
	s.recordsMu.Lock()
	maps.DeleteFunc(s.last, func(key string, rev int64) bool { return rev <= s.seen && s.records[key] == nil })
	s.recordsMu.Unlock()
	return nil
}
