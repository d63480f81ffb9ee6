package remote

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

const testToken = "airlock_admin_test"

// serve starts a Server of h's broker on a socket in a temp dir.
func serve(t *testing.T, h *brokertest.Harness) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), SocketName)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(h.Broker, h.Broker, testToken, brokertest.Logger())
	go s.Serve(ln)
	t.Cleanup(s.Close)
	return s, path
}

// attach connects to the Server at path as the wrap "wrap-a".
func attach(t *testing.T, path string) *Conn {
	t.Helper()
	c, err := Dial(t.Context(), path, testToken, "wrap-a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialer is a Switch's next that attaches at path, then, once that
// broker has gone, takes over with local.
func dialer(t *testing.T, path, replica string, local func() Backend) func(context.Context) (Backend, error) {
	attached := false
	return func(ctx context.Context) (Backend, error) {
		if !attached {
			attached = true
			return Dial(ctx, path, testToken, replica)
		}
		return local(), nil
	}
}

// A wrap attached to the owner holds a call; the owner stops; the wrap
// takes the state over and its call, still held for the same approval,
// is released by a vote made after the change.
func TestHeldCallOutlivesTheOwner(t *testing.T) {
	store := brokertest.NewMemStore()
	owner := brokertest.NewHarness(t, broker.Options{Store: store, Replica: "owner"})
	srv, path := serve(t, owner)
	var took atomic.Pointer[brokertest.Harness]
	sw := NewSwitch(dialer(t, path, "wrap-b", func() Backend {
		h := brokertest.NewHarness(t, broker.Options{Store: store, Replica: "wrap-b"})
		took.Store(h)
		return h.Broker
	}))
	defer sw.Close()

	caller := brokertest.NewCaller()
	out := make(chan broker.Outcome, 1)
	go func() {
		out <- sw.Check(context.Background(), owner.NewCall("write", map[string]any{"path": "/x"}), caller)
	}()
	a := owner.Held()
	if a.Holder != "wrap-b" {
		t.Fatalf("holder = %q, want the attached wrap's replica", a.Holder)
	}

	srv.Close()
	owner.Broker.Close()
	if got, _ := store.Approval(context.Background(), a.ID); got.Status != broker.StatusPending {
		t.Fatalf("after the owner stopped: %s (%s), want still pending", got.Status, got.Note)
	}
	brokertest.WaitFor(t, "the takeover", func() bool { return took.Load() != nil })
	next := took.Load()
	brokertest.WaitFor(t, "the resumed wait", func() bool { return next.Broker.Usage().Held == 1 })
	next.Vote(a.ID, "alice", broker.Approve, "")
	if o := brokertest.Wait(t, out, "the outcome"); !o.Forward {
		t.Fatalf("outcome = %+v, want forwarded", o)
	}
	if got, _ := store.Approval(context.Background(), a.ID); got.ReleasedAt.IsZero() {
		t.Errorf("the approval was not marked released")
	}
}

// An allowed call's audit write is awaited through the socket, and the
// broker reads definitions from the wrap's session.
func TestAllowedCallAudited(t *testing.T) {
	owner := brokertest.NewHarness(t, broker.Options{})
	_, path := serve(t, owner)
	c := attach(t, path)
	o := c.Check(t.Context(), owner.NewCall("echo", map[string]any{"text": "hi"}), brokertest.NewCaller())
	if !o.Forward || o.Audited == nil {
		t.Fatalf("outcome = %+v, want forwarded, with its audit write to await", o)
	}
	if err := <-o.Audited; err != nil {
		t.Fatal(err)
	}
	if ev := owner.AuditEvents(); len(ev) != 1 || ev[0] != string(broker.EventAllowed) {
		t.Errorf("audit = %q", ev)
	}
}

// A wrap's client that cancels withdraws the approval with its reason,
// as in process.
func TestCancelWithdrawsWithTheClientsReason(t *testing.T) {
	owner := brokertest.NewHarness(t, broker.Options{})
	_, path := serve(t, owner)
	c := attach(t, path)
	ctx, cancel := context.WithCancelCause(context.Background())
	out := make(chan broker.Outcome, 1)
	go func() { out <- c.Check(ctx, owner.NewCall("write", nil), brokertest.NewCaller()) }()
	a := owner.Held()
	cancel(fmt.Errorf("%w: Request timed out", broker.ErrClientCancelled))
	if o := brokertest.Wait(t, out, "the outcome"); o.Forward || o.Refusal != "" {
		t.Fatalf("outcome = %+v, want none", o)
	}
	brokertest.WaitFor(t, "the withdrawal", func() bool {
		got, _ := owner.Store.Approval(context.Background(), a.ID)
		return got.Status == broker.StatusWithdrawn
	})
	got, _ := owner.Store.Approval(context.Background(), a.ID)
	if got.Note != "the client cancelled the call: Request timed out" {
		t.Errorf("note = %q", got.Note)
	}
}

// A wrap that goes away takes its held calls with it: withdrawn, never
// left pending.
func TestDetachWithdraws(t *testing.T) {
	owner := brokertest.NewHarness(t, broker.Options{})
	_, path := serve(t, owner)
	c := attach(t, path)
	go c.Check(context.Background(), owner.NewCall("write", nil), brokertest.NewCaller())
	a := owner.Held()
	c.Close()
	brokertest.WaitFor(t, "the withdrawal", func() bool {
		got, _ := owner.Store.Approval(context.Background(), a.ID)
		return got.Status == broker.StatusWithdrawn
	})
}

// A peer without the admin token is refused before anything else.
func TestWrongTokenRefused(t *testing.T) {
	owner := brokertest.NewHarness(t, broker.Options{})
	srv, path := serve(t, owner)
	_, err := Dial(t.Context(), path, "airlock_admin_wrong", "wrap-a")
	if err == nil || !strings.Contains(err.Error(), "wrong admin token") {
		t.Fatalf("Dial = %v, want refused", err)
	}
	brokertest.WaitFor(t, "the refused peer to be gone", func() bool { return srv.Attached() == 0 })
}

// Resume refuses an approval that is not the call's.
func TestResumeChecksTheCall(t *testing.T) {
	h := brokertest.NewHarness(t, broker.Options{Replica: "r"})
	go h.Call(context.Background(), "write", map[string]any{"path": "/a"})
	a := h.Held()
	o := h.Broker.Resume(t.Context(), a.ID, h.NewCall("write", map[string]any{"path": "/b"}), h.Caller)
	if o.Forward || !strings.Contains(o.Refusal, "lost track") {
		t.Fatalf("resume with other arguments = %+v, want refused", o)
	}
}

// A client that timed out keeps its approval open for its retry, through
// the socket as in process: the cause arrives whole.
func TestTimeoutCauseCrossesTheSocket(t *testing.T) {
	owner := brokertest.NewHarness(t, broker.Options{})
	_, path := serve(t, owner)
	c := attach(t, path)
	ctx, cancel := context.WithCancelCause(context.Background())
	out := make(chan broker.Outcome, 1)
	go func() { out <- c.Check(ctx, owner.NewCall("write", nil), brokertest.NewCaller()) }()
	a := owner.Held()
	cancel(fmt.Errorf("%w: Request timed out (%w)", broker.ErrClientCancelled, broker.ErrClientTimedOut))
	brokertest.Wait(t, out, "the outcome")
	got, _ := owner.Store.Approval(context.Background(), a.ID)
	if got.Status != broker.StatusPending {
		t.Fatalf("after a timeout: %s (%s), want pending for the cancel grace", got.Status, got.Note)
	}
	// The retry joins it: approving it releases the retry.
	caller := &heldSpy{Caller: brokertest.NewCaller(), held: make(chan string, 1)}
	go func() { out <- c.Check(t.Context(), owner.NewCall("write", nil), caller) }()
	if id := brokertest.Wait(t, caller.held, "the retry to be held"); id != a.ID {
		t.Fatalf("the retry waits on %s, want %s", id, a.ID)
	}
	owner.Vote(a.ID, "alice", broker.Approve, "")
	if o := brokertest.Wait(t, out, "the retry's outcome"); !o.Forward {
		t.Fatalf("retry = %+v, want forwarded", o)
	}
}

// heldSpy hears which approval its call waits on.
type heldSpy struct {
	*brokertest.Caller
	held chan string
}

func (h *heldSpy) Held(p broker.Pending) { h.held <- p.ApprovalID }
