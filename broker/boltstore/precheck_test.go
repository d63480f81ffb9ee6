package boltstore

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
)

// A database with scribbled pages is refused with an error naming the
// file and what to do, never a panic (bbolt's free-list rebuild panics in
// a goroutine of its own, which would take Airlock down with a trace).
func TestDamagedPagesRefused(t *testing.T) {
	dir := t.TempDir()
	pristine := filepath.Join(dir, "pristine.db")
	s := openTest(t, pristine)
	for i := range 300 {
		if err := s.CreateApproval(t.Context(), &broker.Approval{ID: broker.NewRef(), Status: broker.StatusPending, Tool: strings.Repeat("t", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, s, 500)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(pristine)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	rng := rand.New(rand.NewPCG(1, 2))
	refused := 0
	for page := 2; page < len(data)/pageSize; page++ { // pages 0 and 1 are the meta pages, which bbolt checksums
		for _, scribble := range []string{"random", "ones"} {
			damaged := append([]byte(nil), data...)
			p := damaged[page*pageSize : (page+1)*pageSize]
			for i := range p {
				if scribble == "random" {
					p[i] = byte(rng.Uint32())
				} else {
					p[i] = 0xff
				}
			}
			path := filepath.Join(dir, "airlock.db")
			os.Remove(path + journalSuffix)
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := Open(path, Options{Logger: testLogger(t)})
			if err == nil {
				r.Close() // a free page: nothing reads it
				continue
			}
			if refused == 0 {
				t.Logf("page %d: %v", page, err)
			}
			refused++
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move the file aside") {
				t.Errorf("page %d, %s: Open = %v; want an error naming %s and the way out", page, scribble, err, path)
			}
		}
	}
	if refused == 0 {
		t.Fatal("no scribbled page was noticed")
	}
}
