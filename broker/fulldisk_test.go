package broker_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/airlock-mcp/airlock/relay/relaytest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// On a disk that fills up, the call whose record could not be written is
// the last to run until there is room again; then its record is written,
// late. It needs a small tmpfs, so it runs only where mounting one is
// allowed (as root on Linux) and is skipped elsewhere.
func TestAuditOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	st, err := boltstore.Open(filepath.Join(dir, "airlock.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := relaytest.NewServer()
	bk := relaytest.New(t, broker.Options{Policy: brokertest.AllowAll(), Store: st}, srv.Upstream("test"))
	t.Cleanup(func() { st.Close() })
	t.Cleanup(func() { bk.Close() })
	cs := relaytest.StdioClient(t, bk, mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil))
	call := func() string {
		t.Helper()
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "ran"}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Content[0].(*mcp.TextContent).Text
	}
	call()

	// Fill the disk.
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	filler.Close()

	withheld := false
	for range 10000 {
		if strings.Contains(call(), "result is withheld") {
			withheld = true
			break
		}
	}
	if !withheld {
		t.Fatal("no audit write failed on a full disk")
	}
	ran := srv.Count("tools/call")
	if text := call(); !strings.Contains(text, "cannot write its audit log") {
		t.Errorf("a call after a failed audit write: %q", text)
	}
	if n := srv.Count("tools/call"); n != ran {
		t.Fatalf("%d calls ran after the failed write; none may", n-ran)
	}

	os.Remove(filepath.Join(dir, "filler"))
	if text := call(); text != "ran" {
		t.Fatalf("a call once there is room: %q", text)
	}
	recs, err := st.Audit(t.Context(), broker.AuditQuery{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || !recs[2].Late || recs[1].Event != broker.EventAuditResumed || recs[0].Late {
		t.Errorf("the last records: %+v", recs)
	}
	if v, err := st.VerifyAudit(t.Context()); err != nil || !v.OK {
		t.Errorf("verify = %+v, %v", v, err)
	}
}
