package boltstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// childEnv makes the test binary a child process instead of running tests:
// "MODE:PATH", where MODE is "write" (write until killed) or "hold" (hold
// the store open until stdin closes).
const childEnv = "BOLTSTORE_TEST_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		mode, path, _ := strings.Cut(v, ":")
		os.Exit(child(mode, path))
	}
	os.Exit(m.Run())
}

func child(mode, path string) int {
	s, err := Open(path, Options{Timeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch mode {
	case "hold":
		fmt.Println("open")
		io.Copy(io.Discard, os.Stdin)
	case "write":
		writeUntilKilled(s, os.Getenv("BOLTSTORE_TEST_ROUND"), false)
	case "audit":
		writeUntilKilled(s, os.Getenv("BOLTSTORE_TEST_ROUND"), true)
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode", mode)
		return 2
	}
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// writeUntilKilled holds, decides and audits from several goroutines (or
// only audits), and prints a line for each write once it is acknowledged:
// "pending ID", "approved ID" or "audit SEQ".
func writeUntilKilled(s *Store, round string, auditOnly bool) {
	ctx := context.Background()
	var mu sync.Mutex
	ack := func(format string, args ...any) {
		line := fmt.Appendf(nil, format+"\n", args...)
		mu.Lock()
		os.Stdout.Write(line) // one write each: lines never interleave
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := 0; ; n++ {
				id := fmt.Sprintf("01R%sG%dN%08d", round, g, n)
				if auditOnly {
					goto audit
				}
				if err := s.CreateApproval(ctx, approval(id, broker.StatusPending), &broker.AuditRecord{Event: broker.EventHeld, ApprovalID: id}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				ack("pending %s", id)
				if _, err := s.UpdateApproval(ctx, id, approve(fmt.Sprint("approver-", g))); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				ack("approved %s", id)
			audit:
				recs := []*broker.AuditRecord{{Event: broker.EventAllowed, Actor: "g"}, {Event: broker.EventAllowed, Actor: "g"}}
				if err := s.AppendAudit(ctx, recs...); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				ack("audit %d", recs[1].Seq)
			}
		})
	}
	wg.Wait()
}

// TestKill9WhileWriting kills a writing process with SIGKILL, three times
// over the same file, and checks that the file opens, its chain verifies
// and every acknowledged write is in it. Audit records alone go through the
// journal, so that mode must find one to recover after some kill.
func TestKill9WhileWriting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, mode := range []string{"write", "audit"} {
		t.Run(mode, func(t *testing.T) { kill9WhileWriting(t, mode) })
	}
}

func kill9WhileWriting(t *testing.T, mode string) {
	path := filepath.Join(t.TempDir(), "airlock.db")
	recovered := false
	acked := map[string]broker.Status{}
	var ackedSeq uint64
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+mode+":"+path, "BOLTSTORE_TEST_ROUND="+strconv.Itoa(round))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill at a different point each round, in the middle of the
		// writes of eight goroutines.
		killAt := 300 + 250*round
		lines := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// A line printed before the kill is an acknowledged write,
			// even if it is read after.
			kind, arg, _ := strings.Cut(sc.Text(), " ")
			switch kind {
			case "pending":
				if acked[arg] == "" {
					acked[arg] = broker.StatusPending
				}
			case "approved":
				acked[arg] = broker.StatusApproved
			case "audit":
				seq, err := strconv.ParseUint(arg, 10, 64)
				if err != nil {
					t.Fatalf("child said %q", sc.Text())
				}
				ackedSeq = max(ackedSeq, seq)
			default:
				t.Fatalf("child said %q", sc.Text())
			}
			if lines++; lines == killAt {
				cmd.Process.Kill()
			}
		}
		err = cmd.Wait()
		if lines < killAt || err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("round %d: child exited after %d acknowledgements: %v\n%s", round, lines, err, stderr.Bytes())
		}

		if fi, err := os.Stat(path + journalSuffix); err == nil && fi.Size() > 0 {
			recovered = true
		}
		s, err := Open(path, Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("round %d: opening after kill -9: %v", round, err)
		}
		v, err := s.VerifyAudit(t.Context())
		if err != nil || !v.OK || v.Records < ackedSeq {
			t.Errorf("round %d: VerifyAudit = %+v, %v; want OK with at least the %d records acknowledged", round, v, err, ackedSeq)
		}
		for id, status := range acked {
			a, err := s.Approval(t.Context(), id)
			switch {
			case err != nil:
				t.Errorf("round %d: acknowledged approval %s is lost: %v", round, id, err)
			case status == broker.StatusApproved && a.Status != broker.StatusApproved:
				t.Errorf("round %d: approval %s was acknowledged approved but is %s", round, id, a.Status)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		checkFile(t, path)
		t.Logf("round %d: killed after %d acknowledgements; %d records verify", round, lines, v.Records)
	}
	if mode == "audit" && !recovered {
		t.Error("no kill left records in the audit journal to recover")
	}
}

// TestOpenLockedByAnotherProcess is TestOpenLocked with a real second
// process, as a second broker would be.
func TestOpenLockedByAnotherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	path := filepath.Join(t.TempDir(), "airlock.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=hold:"+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "open\n" {
		t.Fatalf("child: %q, %v\n%s", line, err, stderr.Bytes())
	}
	_, err = Open(path, Options{Timeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "another Airlock is probably running") {
		t.Fatalf("Open while another process holds the file = %v", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.Bytes())
	}
	s := openTest(t, path)
	s.Close()
}
