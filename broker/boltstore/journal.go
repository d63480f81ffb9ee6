package boltstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-mcp/airlock/broker"
)

// The audit journal: audit records appended on their own (every allowed
// call's) are made durable here first, in a plain append-only file next to
// the database, and moved into the database in bulk later.
//
// A bbolt commit costs two fsyncs and rewrites a page or more for a few
// records; the journal costs one write and one fdatasync. Allowed calls
// wait for their record, so this is most of what audit costs them.
//
// Each record is a frame: its length and CRC-32C (4 bytes each, little
// endian), then its JSON, sealed onto the chain as if it were already in
// the database. Writes that change other state (an approval and its
// record) still commit in one bbolt transaction; that transaction first
// moves every journaled record into the database, so the chain there
// never has a gap. Reads of the audit log do the same first. Opening the
// store moves what a crash left in the journal, up to the first torn or
// damaged frame: a record after it was never acknowledged, since its
// fdatasync had not returned.
type journal struct {
	f       *os.File
	size    int64
	pending []entry // journaled, not yet in the database
}

const (
	frameHeader = 8
	// maxFrame bounds a record, so that a damaged length cannot make
	// Open read gigabytes.
	maxFrame = 16 << 20
	// checkpointRecords and checkpointBytes say when the writer moves
	// the journal into the database on its own.
	checkpointRecords = 4096
	checkpointBytes   = 4 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fitsFrame refuses records the journal could not read back: writing one
// would lose it, and every record after it, at the next open.
func fitsFrame(es []entry) error {
	for _, e := range es {
		if len(e.data) > maxFrame {
			return fmt.Errorf("boltstore: an audit record of %d bytes is over the journal's limit of %d", len(e.data), maxFrame)
		}
	}
	return nil
}

func appendFrame(buf, data []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(data)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(data, castagnoli))
	return append(buf, data...)
}

// openJournal opens the journal at path and reads the records a previous
// run left in it, up to the first frame that is torn or damaged. The rest
// is cut off, after a copy of it is saved next to the journal: usually
// it is a write a crash tore, but it may be damage with good records
// behind it, which a person should be able to look at. lost describes
// the copy (nil when nothing was cut). The caller truncates the journal
// to j.size, and moves the records into the database.
func openJournal(path string) (j *journal, recs []entry, lost *journalCut, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, nil, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	recs, off := readFrames(data)
	j = &journal{f: f, size: int64(off)}
	if off < len(data) {
		cut := data[off:]
		saved, err := saveCut(path, cut)
		if err != nil {
			f.Close()
			return nil, nil, nil, err
		}
		lost = intactRecords(cut)
		lost.File, lost.Bytes = saved, len(cut)
		return j, recs, lost, nil
	}
	return j, recs, nil, nil
}

// readFrames reads the records of a journal's contents up to the first
// frame that is torn or damaged, and returns them with the length of the
// intact part.
func readFrames(data []byte) (recs []entry, off int) {
	for len(data)-off >= frameHeader {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n > maxFrame || len(data)-off-frameHeader < n {
			break
		}
		payload := data[off+frameHeader : off+frameHeader+n]
		if crc32.Checksum(payload, castagnoli) != sum {
			break
		}
		r := new(broker.AuditRecord)
		if err := json.Unmarshal(payload, r); err != nil {
			break
		}
		recs = append(recs, entry{r, payload})
		off += frameHeader + n
	}
	return recs, off
}

// journalCut describes bytes cut off the journal, kept in File. Records
// counts the intact records found in them, behind the damage, with the
// sequence numbers of the first and the last: acknowledged records that
// never reached the database. A torn write at the end has none.
type journalCut struct {
	At       time.Time `json:"at"`
	File     string    `json:"file"`
	Bytes    int       `json:"bytes"`
	AfterSeq uint64    `json:"after_seq"`
	Records  int       `json:"records"`
	FirstSeq uint64    `json:"first_seq,omitempty"`
	LastSeq  uint64    `json:"last_seq,omitempty"`
}

// intactRecords looks for whole frames in bytes cut off the journal. The
// damaged frame's length cannot be trusted, so it searches every offset
// for a frame whose checksum holds and which reads as a record, and goes
// on frame by frame from each one found.
func intactRecords(cut []byte) *journalCut {
	c := &journalCut{}
	for off := 1; off+frameHeader <= len(cut); {
		n := int(binary.LittleEndian.Uint32(cut[off:]))
		if n <= maxFrame && n <= len(cut)-off-frameHeader {
			payload := cut[off+frameHeader : off+frameHeader+n]
			var r broker.AuditRecord
			if crc32.Checksum(payload, castagnoli) == binary.LittleEndian.Uint32(cut[off+4:]) && json.Unmarshal(payload, &r) == nil && r.Seq > 0 {
				if c.Records == 0 {
					c.FirstSeq = r.Seq
				}
				c.Records++
				c.LastSeq = r.Seq
				off += frameHeader + n
				continue
			}
		}
		off++
	}
	return c
}

// saveCut keeps the bytes cut off the journal at path in a file of their
// own, named after the journal and the time.
func saveCut(path string, cut []byte) (string, error) {
	name := fmt.Sprintf("%s.cut-%s", path, time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.WriteFile(name, cut, 0o600); err != nil {
		return "", fmt.Errorf("saving the %d bytes cut off the audit journal: %w", len(cut), err)
	}
	return name, nil
}

// append writes frames after the journal's end and waits for them to be
// on disk. On failure it cuts the file back, so that a later append does
// not follow a half-written frame.
func (j *journal) append(frames []byte, es []entry) error {
	if _, err := j.f.WriteAt(frames, j.size); err != nil {
		return j.undo(fmt.Errorf("boltstore: write audit journal: %w", err))
	}
	if err := fdatasync(j.f); err != nil {
		return j.undo(fmt.Errorf("boltstore: sync audit journal: %w", err))
	}
	j.size += int64(len(frames))
	j.pending = append(j.pending, es...)
	return nil
}

func (j *journal) undo(err error) error {
	if terr := j.truncate(j.size); terr != nil {
		return errors.Join(err, terr)
	}
	return err
}

// truncate cuts the journal to size. After a checkpoint it needs no sync:
// the records are in the database, which is synced, and replaying them
// after a crash skips what the database has.
func (j *journal) truncate(size int64) error {
	if err := j.f.Truncate(size); err != nil {
		return fmt.Errorf("boltstore: truncate audit journal: %w", err)
	}
	j.size = size
	return nil
}

// moved forgets the pending records, now in the database, and empties the
// file.
func (j *journal) moved() error {
	j.pending = j.pending[:0]
	return j.truncate(0)
}

// due says whether the writer should move the journal into the database.
func (j *journal) due() bool {
	return len(j.pending) >= checkpointRecords || j.size >= checkpointBytes
}

// journalSuffix names the journal after the database: airlock.db.journal.
const journalSuffix = ".journal"

// recoverJournal opens the journal and moves into the database what a
// previous run left in it. Records the database already has (the run
// stopped between moving them and emptying the journal) are skipped; the
// others must continue the database's chain.
func recoverJournal(db *bolt.DB, path string, log *slog.Logger) (*journal, error) {
	j, recs, lost, err := openJournal(path)
	if err != nil {
		return nil, fmt.Errorf("audit journal %s: %w", path, err)
	}
	if lost != nil {
		if err := keepCut(db, j, recs, lost, path, log); err != nil {
			j.f.Close()
			return nil, fmt.Errorf("audit journal %s: %w", path, err)
		}
	}
	if len(recs) == 0 {
		return j, nil
	}
	moved := 0
	err = db.Update(func(tx *bolt.Tx) error {
		head, err := lastRecord(tx)
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketAudit)
		for _, e := range recs {
			fresh, err := continues(b, head, e)
			if err != nil {
				return fmt.Errorf("audit journal %s: %w; move the journal aside to open the store without it", path, err)
			}
			if !fresh {
				continue
			}
			if err := b.Put(seqKey(e.rec.Seq), e.data); err != nil {
				return err
			}
			head = auditHead{e.rec.Seq, e.rec.Hash}
			moved++
		}
		return nil
	})
	if err != nil {
		j.f.Close()
		return nil, err
	}
	if moved > 0 {
		log.Info("moved the audit journal into the database", "journal", path, "records", moved)
	}
	if err := j.truncate(0); err != nil {
		j.f.Close()
		return nil, err
	}
	return j, nil
}

// continues checks that journal record e fits the audit log whose last
// record is head: either the log has it already, with the same hash, or it
// is the log's next record. It reports whether e is new to the log.
func continues(b *bolt.Bucket, head auditHead, e entry) (fresh bool, err error) {
	if e.rec.Seq <= head.Seq {
		var have auditHead
		if json.Unmarshal(b.Get(seqKey(e.rec.Seq)), &have) != nil || have.Hash != e.rec.Hash {
			return false, fmt.Errorf("record %d is not the audit log's record %d", e.rec.Seq, e.rec.Seq)
		}
		return false, nil
	}
	if e.rec.Seq != head.Seq+1 || e.rec.PrevHash != head.Hash {
		return false, fmt.Errorf("record %d does not follow record %d of the audit log", e.rec.Seq, head.Seq)
	}
	return true, nil
}

// keyJournalCuts (in meta) lists the journal cuts that lost intact
// records, so that VerifyAudit reports them after every restart.
var keyJournalCuts = []byte("journal_cuts")

// keepCut logs a cut and, when intact records were lost in it, notes it in
// the database before the journal is cut: the note must not be lost with
// the bytes.
func keepCut(db *bolt.DB, j *journal, recs []entry, lost *journalCut, path string, log *slog.Logger) error {
	if lost.Records == 0 {
		log.Warn("the audit journal ended in a torn record; cut it off and kept a copy. "+
			"After a crash that is a write never acknowledged",
			"journal", path, "records_kept", len(recs), "copy", lost.File)
		return j.truncate(j.size)
	}
	err := db.Update(func(tx *bolt.Tx) error {
		head, err := lastRecord(tx)
		if err != nil {
			return err
		}
		lost.AfterSeq = head.Seq
		if n := len(recs); n > 0 && recs[n-1].rec.Seq > head.Seq {
			lost.AfterSeq = recs[n-1].rec.Seq
		}
		lost.At = time.Now().UTC()
		meta := tx.Bucket(bucketMeta)
		var cuts []journalCut
		if data := meta.Get(keyJournalCuts); data != nil {
			if err := json.Unmarshal(data, &cuts); err != nil {
				return fmt.Errorf("reading the journal cuts noted before: %w", err)
			}
		}
		data, err := json.Marshal(append(cuts, *lost))
		if err != nil {
			return err
		}
		return meta.Put(keyJournalCuts, data)
	})
	if err != nil {
		return fmt.Errorf("noting the damaged records cut off into %s: %w", lost.File, err)
	}
	log.Error("the audit journal was damaged: intact records behind the damage were cut off and are missing from the audit log; audit verify reports it",
		"journal", path, "after_seq", lost.AfterSeq, "records_lost", lost.Records, "copy", lost.File)
	return j.truncate(j.size)
}

// journalCuts lists the cuts keepCut noted.
func journalCuts(tx *bolt.Tx) ([]journalCut, error) {
	data := tx.Bucket(bucketMeta).Get(keyJournalCuts)
	if data == nil {
		return nil, nil
	}
	var cuts []journalCut
	if err := json.Unmarshal(data, &cuts); err != nil {
		return nil, fmt.Errorf("boltstore: reading the journal cuts: %w", err)
	}
	return cuts, nil
}
