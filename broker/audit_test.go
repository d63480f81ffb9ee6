package broker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/airlock-mcp/airlock/relay/relaytest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// failingAudit is a memory store that cannot write the audit log.
type failingAudit struct{ *brokertest.MemStore }

func (failingAudit) AppendAudit(context.Context, ...*broker.AuditRecord) error {
	return errors.New("injected audit failure")
}

// An allowed call whose record could not be made durable has run, but its
// result is withheld, and the agent is told why.
func TestResultWithheldWhenAuditFails(t *testing.T) {
	srv := relaytest.NewServer()
	bk := relaytest.New(t, broker.Options{Policy: brokertest.AllowAll(), Store: failingAudit{brokertest.NewMemStore()}}, srv.Upstream("test"))
	cs := relaytest.StdioClient(t, bk, mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil))
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "secret result"}})
	if err != nil {
		t.Fatal(err)
	}
	text := res.Content[0].(*mcp.TextContent).Text
	if !res.IsError || !strings.Contains(text, "could not write this call to its audit log") || strings.Contains(text, "secret result") {
		t.Errorf("result of a call whose audit write failed: %q (isError %v)", text, res.IsError)
	}
	if srv.Count("tools/call") != 1 {
		t.Errorf("the upstream saw %d calls; the call runs while its record is written", srv.Count("tools/call"))
	}
}

// flakyAudit is a memory store whose audit writes fail while fail is set.
type flakyAudit struct {
	*brokertest.MemStore
	fail atomic.Bool
}

func (s *flakyAudit) AppendAudit(ctx context.Context, recs ...*broker.AuditRecord) error {
	if s.fail.Load() {
		return errors.New("injected audit failure")
	}
	return s.MemStore.AppendAudit(ctx, recs...)
}

// Once an audit write fails, no allowed call is forwarded until the store
// takes writes again; then the call that ran unrecorded is recorded, marked
// late, before any new call goes ahead.
func TestAuditFailureClosesTheGate(t *testing.T) {
	srv := relaytest.NewServer()
	st := &flakyAudit{MemStore: brokertest.NewMemStore()}
	bk := relaytest.New(t, broker.Options{Policy: brokertest.AllowAll(), Store: st}, srv.Upstream("test"))
	cs := relaytest.StdioClient(t, bk, mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil))
	call := func(text string) (string, bool) {
		t.Helper()
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": text}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Content[0].(*mcp.TextContent).Text, res.IsError
	}

	st.fail.Store(true)
	call("in flight") // runs: its write overlaps the call, and its result is withheld
	if got := bk.AuditStatus(); got.OK || got.Backlog != 1 {
		t.Errorf("status after a failed write = %+v, want degraded with a backlog of 1", got)
	}
	text, isErr := call("after the failure")
	if !isErr || !strings.Contains(text, "cannot write its audit log") || !strings.Contains(text, "ref ") {
		t.Errorf("call after a failed audit write: %q (isError %v)", text, isErr)
	}
	if n := srv.Count("tools/call"); n != 1 {
		t.Fatalf("the upstream saw %d calls; after a failed audit write none may be forwarded", n)
	}

	st.fail.Store(false)
	if text, isErr := call("recovered"); isErr || text != "recovered" {
		t.Fatalf("call once the store recovered: %q (isError %v)", text, isErr)
	}
	if got := bk.AuditStatus(); !got.OK {
		t.Errorf("status after recovery = %+v", got)
	}
	recs, err := st.Audit(t.Context(), broker.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(recs)
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s late=%v", r.Event, r.Late))
	}
	want := []string{"call.allowed late=true", "audit.resumed late=false", "call.allowed late=false"}
	if !slices.Equal(got, want) {
		t.Errorf("audit log = %q, want %q", got, want)
	}
	if v, err := st.VerifyAudit(t.Context()); err != nil || !v.OK {
		t.Errorf("verify = %+v, %v", v, err)
	}
}

// Past MaxAuditBacklog only a count is kept, and the resuming record
// states it.
func TestAuditBacklogBound(t *testing.T) {
	st := &flakyAudit{MemStore: brokertest.NewMemStore()}
	bk := relaytest.New(t, broker.Options{Policy: brokertest.AllowAll(), Store: st}, relaytest.NewServer().Upstream("test"))
	for i := range broker.MaxAuditBacklog + 3 {
		bk.NoteAuditFailure(&broker.AuditRecord{Event: broker.EventAllowed, Tool: fmt.Sprint("t", i)}, errors.New("disk full"))
	}
	if got := bk.AuditStatus(); got.OK || got.Backlog != broker.MaxAuditBacklog || got.Dropped != 3 {
		t.Fatalf("status = %+v", got)
	}
	cs := relaytest.StdioClient(t, bk, mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil))
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err != nil {
		t.Fatal(err)
	}
	recs, err := st.Audit(t.Context(), broker.AuditQuery{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[1].Event != broker.EventAuditResumed || !strings.Contains(recs[1].Reason, "1024 calls that ran meanwhile are recorded late") ||
		!strings.Contains(recs[1].Reason, "3 more ran but were not kept") {
		t.Fatalf("last records: %+v", recs)
	}
	if recs[0].Event != broker.EventAllowed || recs[0].Late || recs[0].Seq != broker.MaxAuditBacklog+2 {
		t.Errorf("the call after recovery: %+v", recs[0])
	}
}
