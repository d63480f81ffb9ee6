package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// errReadOnly is the error of every write to a store opened read-only.
var errReadOnly = errors.New("boltstore: the store is open read-only")

// openReadOnly opens an existing store to read it while no broker runs on
// it: for the CLI, after a broker stopped. bbolt's read-only open shares
// the file lock with other readers and writes nothing. The journal is
// read, never replayed into the file nor cut: what a read-write open
// would move is kept in memory and read with the database.
func openReadOnly(path string, timeout time.Duration, log *slog.Logger) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("boltstore: open %s read-only: %w", path, err)
	}
	// Every page is read once here, in this goroutine, so that damage is
	// an error rather than a fault in a later read.
	if err := precheck(path, timeout); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("boltstore: open %s: %w: another Airlock is probably running on it (gave up after %s)", path, ErrLocked, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s read-only: %w", path, err)
	}
	s := &Store{db: db, path: path, log: log.With("path", path), readOnly: true}
	if err := db.View(s.loadReadOnly); err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: open %s read-only: %w", path, err)
	}
	return s, nil
}

// loadReadOnly checks the file is an Airlock store this code can read and
// reads the journal's records past the database's last, as
// recoverJournal would move them (and refusing what it would refuse).
func (s *Store) loadReadOnly(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return errNotAirlock
	}
	v := meta.Get(keySchema)
	if len(v) != 8 {
		return errors.New("the meta bucket has no schema version")
	}
	if version := binary.BigEndian.Uint64(v); version > schemaVersion {
		return fmt.Errorf("schema version %d is newer than this Airlock's (%d): a newer Airlock wrote it; read it with that one", version, schemaVersion)
	}
	for _, name := range buckets {
		if tx.Bucket(name) == nil {
			// An older Airlock's file, before the bucket was added.
			return fmt.Errorf("it has no %s bucket: start a broker on it once, which adds it", name)
		}
	}
	jpath := s.path + journalSuffix
	data, err := os.ReadFile(jpath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit journal %s: %w", jpath, err)
	}
	recs, off := readFrames(data)
	if off < len(data) {
		s.torn = intactRecords(data[off:])
		s.torn.Bytes = len(data) - off
	}
	head, err := lastRecord(tx)
	if err != nil {
		return err
	}
	b := tx.Bucket(bucketAudit)
	for _, e := range recs {
		fresh, err := continues(b, head, e)
		if err != nil {
			return fmt.Errorf("audit journal %s: %w", jpath, err)
		}
		if !fresh {
			continue
		}
		s.unmoved = append(s.unmoved, e)
		head = auditHead{e.rec.Seq, e.rec.Hash}
	}
	return nil
}

// Unmoved reports, for a store opened read-only, how many audit records
// its journal holds that the database does not yet (a read-write open
// moves them in; reads here include them), and how many bytes follow the
// journal's last intact record (a torn write, or damage, that a
// read-write open would cut off).
func (s *Store) Unmoved() (records, tornBytes int) {
	if s.torn != nil {
		tornBytes = s.torn.Bytes
	}
	return len(s.unmoved), tornBytes
}

func (s *Store) closeReadOnly() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: close %s: %w", s.path, err)
	}
	return nil
}
