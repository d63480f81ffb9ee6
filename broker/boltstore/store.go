// Package boltstore keeps the broker's state in one bbolt file: approvals
// and an index of the pending ones, grants and an index of the active ones,
// the hash-chained audit log, and the tools first seen on each server.
//
// bbolt runs one write transaction at a time and each durable commit waits
// for an fsync, so committing every write on its own caps the store at a
// few thousand writes a second however many callers wait, and bbolt's own
// Batch makes a lone caller wait out its 10 ms delay. Store instead sends
// every write to one goroutine that commits as soon as it is idle and
// folds whatever queued during the previous commit into the next
// transaction (group commit): a lone caller pays one fsync, and a crowd
// shares theirs. Each caller still returns only after the transaction
// holding its write is on disk, so a decision acknowledged to an approver
// survives a crash.
//
// Reads run in their own read-only transactions, beside the writer.
//
// Records are decoded with encoding/json: every byte in the file and its
// journal was encoded by Airlock (an agent's or a server's JSON is inside
// them only as raw values, parsed strictly where it is judged), and damage
// is caught by the journal's CRCs and the audit log's hash chain.
package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/airlock-mcp/airlock/broker"
)

// The file's layout. Every bucket is created in setup.
var (
	// meta holds the schema version.
	bucketMeta = []byte("meta")
	// approvals: id → Approval JSON. Ids sort by time, so the bucket's
	// order is the order of requests.
	bucketApprovals = []byte("approvals")
	// pending: big-endian expiry (Unix ms) + id → nothing, for every
	// pending approval: few are pending at a time however long the
	// history, so listing them and finding the next to expire stay cheap.
	bucketPending = []byte("pending")
	// audit: big-endian seq → AuditRecord JSON.
	bucketAudit = []byte("audit")
	// tools: uvarint len(server) + server + tool → ToolRecord JSON.
	bucketTools = []byte("tools")
	// grants: id → Grant JSON; grants_active indexes the active ones like
	// pending does approvals.
	bucketGrants       = []byte("grants")
	bucketGrantsActive = []byte("grants_active")
	// tokens: id → Token JSON, the record of a token without its secret.
	// A file written before tokens existed lacks it until its next
	// read-write open.
	bucketTokens = []byte("tokens")
	// leases: replica → its lease JSON ({"renewed", "until"}). The file
	// is locked to one process, but that process serves the wraps
	// attached to it (broker.Call.Holder), which hold leases of their own
	// and outlive it when one of them takes over the file.
	bucketLeases = []byte("leases")

	keySchema = []byte("schema")
)

// schemaVersion is the layout this code reads and writes. Bump it (and
// migrate in setup) for a change an older Airlock would misread; a new
// bucket that older versions can ignore needs no bump.
const schemaVersion = 1

// buckets lists every bucket the store uses; setup creates the missing
// ones.
var buckets = [][]byte{bucketMeta, bucketApprovals, bucketPending, bucketAudit, bucketTools, bucketGrants, bucketGrantsActive, bucketTokens, bucketLeases}

// ErrLocked reports a database file that another process holds open.
var ErrLocked = errors.New("locked by another process")

// Options configure Open. The zero value is ready to use.
type Options struct {
	// Timeout is how long Open waits for another process to release the
	// file; zero means one second.
	Timeout time.Duration
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// ReadOnly opens an existing file to read only, beside other readers
	// and once its writer is gone: no writer starts, every write fails,
	// and neither the file nor its journal is changed. Records the
	// journal holds that the database does not are read from the
	// journal (see Unmoved).
	ReadOnly bool
}

// Store is a broker.Store in a bbolt file. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
	log  *slog.Logger
	mode commitMode

	// mu guards closed and sends on writes, so that Close can close the
	// channel once no sender is left.
	mu     sync.RWMutex
	closed bool
	writes chan *write
	done   chan struct{} // closed when the writer goroutine has exited

	// The audit chain's head after the last commit, and the audit
	// journal, kept by the writer goroutine (see try and journal).
	head      auditHead
	headKnown bool
	journal   *journal
	journaled atomic.Int64 // records in the journal, for readers

	feed broker.ApprovalFeed // published to by the writer goroutine
	// grantFeed is published to by the writer goroutine too.
	grantFeed broker.GrantFeed
	tokenGen  atomic.Uint64 // TokenGeneration, moved by the writer goroutine

	// readOnly is set by Options.ReadOnly. unmoved are then the
	// journal's records past the database's last, and torn the bytes
	// after the journal's last intact record.
	readOnly bool
	unmoved  []entry
	torn     *journalCut
}

var _ broker.Store = (*Store)(nil)

// Open opens (or creates) the database at path and starts its writer. When
// another process holds the file, Open fails after opts.Timeout with an
// error that wraps ErrLocked.
func Open(path string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	if opts.ReadOnly {
		return openReadOnly(path, timeout, log)
	}
	// The free-page list is not written at every commit but rebuilt when
	// the file is opened: one page write less per commit (the commits
	// are what every audited call waits for) for a longer open, and a
	// walk of every page that must not meet a damaged one (precheck).
	if err := precheck(path, timeout); err != nil {
		return nil, err
	}
	db, err := openBolt(path, timeout)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("boltstore: open %s: %w: another Airlock is probably running on it (gave up after %s)", path, ErrLocked, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	var version uint64
	if err := db.Update(func(tx *bolt.Tx) error {
		version, err = setup(tx)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	log = log.With("path", path)
	j, err := recoverJournal(db, path+journalSuffix, log)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	s := &Store{
		db:      db,
		path:    path,
		log:     log,
		writes:  make(chan *write, queueLen),
		done:    make(chan struct{}),
		journal: j,
	}
	go s.run()
	s.log.Info("store opened", "schema", version)
	return s, nil
}

// setup creates the buckets of a new file, checks the schema of an old
// one and returns its version.
func setup(tx *bolt.Tx) (uint64, error) {
	var version uint64
	if meta := tx.Bucket(bucketMeta); meta != nil {
		v := meta.Get(keySchema)
		if len(v) != 8 {
			return 0, errors.New("the meta bucket has no schema version")
		}
		version = binary.BigEndian.Uint64(v)
		if version > schemaVersion {
			return 0, fmt.Errorf("schema version %d is newer than this Airlock's (%d): a newer Airlock wrote it; run that one, or move the file aside", version, schemaVersion)
		}
		// Migrations from older versions go here, one version at a time.
	} else {
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error { return errNotAirlock }); err != nil {
			return 0, err
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return 0, err
		}
		version = schemaVersion
		if err := meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, version)); err != nil {
			return 0, err
		}
	}
	for _, name := range buckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return 0, fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return version, nil
}

var errNotAirlock = errors.New("a bbolt database, but not Airlock's (it has no meta bucket)")

// Close waits for the writes already queued to commit, then closes the
// file. Later writes fail; calling Close again does nothing.
func (s *Store) Close() error {
	if s.readOnly {
		return s.closeReadOnly()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.writes)
	s.mu.Unlock()
	<-s.done
	s.feed.Close()
	s.grantFeed.Close()
	var errs []error
	if len(s.journal.pending) > 0 {
		if _, err := s.try(nil); err != nil {
			errs = append(errs, fmt.Errorf("boltstore: close %s: move the audit journal: %w (it stays in the journal, and moves at the next open)", s.path, err))
		}
	}
	if err := s.journal.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("boltstore: close %s%s: %w", s.path, journalSuffix, err))
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("boltstore: close %s: %w", s.path, err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.log.Info("store closed")
	return nil
}

var errClosed = errors.New("boltstore: the store is closed")

// openBolt opens the file read-write. A corruption bbolt finds while
// rebuilding the free list panics in this goroutine: it becomes an error.
func openBolt(path string, timeout time.Duration) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, damaged(path, fmt.Errorf("%v", p))
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
}
