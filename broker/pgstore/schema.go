package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSchemaTooNew is what Open returns when the database was migrated by a
// newer Airlock: this one would not know what it keeps.
var ErrSchemaTooNew = errors.New("the database's schema is newer than this Airlock knows")

// migrations are applied in order, each once, forward only; the database
// records how many ran. A migration is never changed once released: a
// change is a new one at the end.
var migrations = []string{
	// 1: the first schema. Records are kept as the JSON every store
	// keeps (the change feeds decode it), with the columns queries filter
	// on beside it. rev orders every change to approvals, grants and
	// tokens; the one chain row hands it out, so revisions commit in
	// order and a reader that has seen rev N has seen every change
	// before it. writer names the Store value (one per process) that made
	// the change, which announces it itself. Names that come from
	// servers or identities (server, tool, actor, a token's name) are
	// bytea, as the JSON is: text cannot hold every string Go can.
	`
CREATE TABLE airlock_chain (
	id   int PRIMARY KEY CHECK (id = 1),
	seq  bigint NOT NULL,
	hash text NOT NULL,
	rev  bigint NOT NULL
);
INSERT INTO airlock_chain VALUES (1, 0, '', 0);

CREATE TABLE airlock_approvals (
	id     text PRIMARY KEY,
	status text NOT NULL,
	server bytea NOT NULL,
	tool   bytea NOT NULL,
	name   bytea NOT NULL,
	rev    bigint NOT NULL,
	writer text NOT NULL,
	data   bytea NOT NULL
);
CREATE INDEX airlock_approvals_rev ON airlock_approvals (rev);
CREATE INDEX airlock_approvals_pending ON airlock_approvals (id) WHERE status = 'pending';

CREATE TABLE airlock_grants (LIKE airlock_approvals INCLUDING ALL);
CREATE INDEX airlock_grants_active ON airlock_grants (id) WHERE status = 'active';

CREATE TABLE airlock_tokens (LIKE airlock_approvals INCLUDING ALL);
CREATE UNIQUE INDEX airlock_tokens_name ON airlock_tokens (name) WHERE status <> 'revoked';

CREATE TABLE airlock_tools (
	server bytea NOT NULL,
	tool   bytea NOT NULL,
	data   bytea NOT NULL,
	PRIMARY KEY (server, tool)
);

CREATE TABLE airlock_audit (
	seq         bigint PRIMARY KEY,
	event       text NOT NULL,
	server      bytea NOT NULL,
	tool        bytea NOT NULL,
	actor       bytea NOT NULL,
	approval_id text NOT NULL,
	data        bytea NOT NULL
);
CREATE INDEX airlock_audit_approval ON airlock_audit (approval_id) WHERE approval_id <> '';

CREATE TABLE airlock_replicas (
	id         text PRIMARY KEY,
	expires_at timestamptz NOT NULL
);
`,
	// 2: when each replica last renewed its lease, so that the approvals
	// of one that died are abandoned with the wait they really had.
	`ALTER TABLE airlock_replicas ADD COLUMN renewed_at timestamptz NOT NULL DEFAULT now();`,
}

// migrationLock is the advisory lock under which replicas starting at
// once migrate one at a time.
const migrationLock = 0x41_69_72_6c_6f_63_6b // "Airlock"

// migrate brings the schema up to date, or refuses a newer one.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("taking the migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock)
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS airlock_schema (version int NOT NULL)"); err != nil {
		return fmt.Errorf("creating the schema table: %w", err)
	}
	var version int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM airlock_schema").Scan(&version); err != nil {
		return fmt.Errorf("reading the schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: version %d, this Airlock knows %d; run the newer Airlock, or restore a backup of this one's",
			ErrSchemaTooNew, version, len(migrations))
	}
	for v := version + 1; v <= len(migrations); v++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
			tx.Rollback(ctx)
			return fmt.Errorf("migration %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM airlock_schema; INSERT INTO airlock_schema VALUES ("+fmt.Sprint(v)+")"); err != nil {
			tx.Rollback(ctx)
			return fmt.Errorf("migration %d: %w", v, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("migration %d: %w", v, err)
		}
	}
	return nil
}
