package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"
	"github.com/airlock-mcp/airlock/relay/wire"
)

// rawRelay is a relay serving one stdio session between a client and an
// upstream that are both raw lines: the test writes every byte either side
// sends and reads every byte the relay sends them, so that no SDK decodes
// and re-encodes a message on the way. Each tools/call waits at the gate
// until the test decides it (gateGets, then check.decide).
type rawRelay struct {
	t    *testing.T
	gate *relaytest.Gate

	clientW   io.WriteCloser // the client's side of the relay's stdin
	relayOut  io.Closer      // the relay's stdout, closed once it is done
	toClient  chan string    // lines the relay wrote to the client
	upstreamW io.Writer      // the upstream's side of the relay's upstream stdin
	dialed    chan struct{}  // closed once upstreamW is set
	toUp      chan string    // lines the relay wrote to the upstream
	checks    chan *check    // tools/calls at the gate
	served    chan error     // ServeConn's result
	stop      func()         // ends ServeConn's context

	closeOnce sync.Once
}

// check is one tools/call waiting at the gate for the test.
type check struct {
	params []byte // call.Params as they were when the relay handed them over
	call   *broker.Call
	ctx    context.Context
	caller broker.Caller
	out    chan broker.Outcome
}

// decide ends the gate's wait with o, unless the call's context ended.
func (c *check) decide(t *testing.T, o broker.Outcome) {
	t.Helper()
	select {
	case c.out <- o:
	case <-c.ctx.Done():
		t.Errorf("the gate cannot decide: the call's context ended (%v)", context.Cause(c.ctx))
	case <-time.After(readTimeout):
		t.Fatal("timed out deciding a call at the gate")
	}
}

// readTimeout bounds each wait for the relay: a missing message fails the
// test instead of hanging it.
const readTimeout = 10 * time.Second

func timeout() <-chan time.Time { return time.After(readTimeout) }

func newRawRelay(t *testing.T, opts ...relay.Options) *rawRelay {
	rr := &rawRelay{
		t:        t,
		toClient: make(chan string, 64),
		toUp:     make(chan string, 64),
		checks:   make(chan *check, 16),
		served:   make(chan error, 1),
		dialed:   make(chan struct{}),
	}
	rr.gate = &relaytest.Gate{Decide: func(ctx context.Context, call *broker.Call, caller broker.Caller) broker.Outcome {
		c := &check{params: bytes.Clone(call.Params), call: call, ctx: ctx, caller: caller, out: make(chan broker.Outcome)}
		rr.checks <- c
		select {
		case o := <-c.out:
			return o
		case <-ctx.Done():
			return broker.Outcome{}
		}
	}}
	upstream := &relay.Upstream{Name: "test", Transport: "stdio", Dial: func(context.Context) (mcp.Connection, error) {
		upIn, relayToUp := io.Pipe()
		upToRelay, upOut := io.Pipe()
		rr.upstreamW = upOut
		close(rr.dialed)
		go readLines(upIn, rr.toUp)
		return wire.NewLineConn(upToRelay, relayToUp, closers{relayToUp, upToRelay}, 0), nil
	}}
	var o relay.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Gate = rr.gate
	r := relaytest.NewRelay(t, o, upstream)
	clientIn, relayOut := io.Pipe()
	relayIn, clientOut := io.Pipe()
	rr.clientW, rr.relayOut = clientOut, relayOut
	go readLines(clientIn, rr.toClient)
	conn := wire.NewLineConn(relayIn, relayOut, relayIn, 0)
	ctx, stop := context.WithCancel(context.Background())
	rr.stop = stop
	go func() {
		rr.served <- r.ServeConn(ctx, "test", conn, broker.Principal{ID: "tester", Source: "os"})
	}()
	t.Cleanup(rr.close)
	return rr
}

// readLines sends each line read from r to lines, and closes lines at the
// end of r.
func readLines(r io.Reader, lines chan<- string) {
	defer close(lines)
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines <- sc.Text()
	}
}

// client sends the relay line as the client.
func (rr *rawRelay) client(line string) {
	rr.t.Helper()
	if _, err := io.WriteString(rr.clientW, line+"\n"); err != nil {
		rr.t.Fatalf("client write: %v", err)
	}
}

// upstream sends the relay line as the upstream.
func (rr *rawRelay) upstream(line string) {
	rr.t.Helper()
	select {
	case <-rr.dialed:
	case <-time.After(readTimeout):
		rr.t.Fatal("timed out waiting for the relay to dial the upstream")
	}
	if _, err := io.WriteString(rr.upstreamW, line+"\n"); err != nil {
		rr.t.Fatalf("upstream write: %v", err)
	}
}

// clientGets returns the next line the relay sent the client; ok is false
// when the relay has closed the client's side.
func (rr *rawRelay) clientGets() (line string, ok bool) {
	rr.t.Helper()
	return next(rr.t, rr.toClient, "a line to the client")
}

// upstreamGets returns the next line the relay sent the upstream; ok is
// false when the relay has closed the upstream.
func (rr *rawRelay) upstreamGets() (line string, ok bool) {
	rr.t.Helper()
	return next(rr.t, rr.toUp, "a line to the upstream")
}

func next(t *testing.T, lines <-chan string, what string) (string, bool) {
	t.Helper()
	select {
	case l, ok := <-lines:
		return l, ok
	case <-time.After(readTimeout):
		t.Fatalf("timed out waiting for %s", what)
		return "", false
	}
}

// gateGets returns the next tools/call the relay handed the gate.
func (rr *rawRelay) gateGets() *check {
	rr.t.Helper()
	select {
	case c := <-rr.checks:
		return c
	case <-time.After(readTimeout):
		rr.t.Fatal("timed out waiting for a call at the gate")
		return nil
	}
}

// closeClient ends the client's side, as a stdio client exiting does, and
// waits for the session to end.
func (rr *rawRelay) closeClient() {
	rr.t.Helper()
	rr.clientW.Close()
	select {
	case err := <-rr.served:
		if err != nil {
			rr.t.Errorf("ServeConn: %v", err)
		}
	case <-time.After(readTimeout):
		rr.t.Fatal("timed out waiting for the session to end")
	}
	rr.relayOut.Close()
	rr.stop()
}

func (rr *rawRelay) close() { rr.closeOnce.Do(rr.closeClient) }

// rest closes the client's side and returns what the relay sent either
// side that the test has not read.
func (rr *rawRelay) rest() (toClient, toUpstream []string) {
	rr.t.Helper()
	rr.close()
	for {
		l, ok := rr.clientGets()
		if !ok {
			break
		}
		toClient = append(toClient, l)
	}
	for {
		l, ok := rr.upstreamGets()
		if !ok {
			break
		}
		toUpstream = append(toUpstream, l)
	}
	return toClient, toUpstream
}

// mustGet fails the test unless the next line from get is want.
func mustGet(t *testing.T, get func() (string, bool), want string) {
	t.Helper()
	got, ok := get()
	if !ok {
		t.Fatalf("the relay closed the stream; want %s", want)
	}
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// initializeRaw runs the initialize handshake through rr.
func initializeRaw(t *testing.T, rr *rawRelay) {
	t.Helper()
	rr.client(initBody)
	if l, _ := rr.upstreamGets(); !strings.Contains(l, `"method":"initialize"`) {
		t.Fatalf("upstream got %s, want initialize", l)
	}
	rr.upstream(`{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"raw","version":"1"}}}`)
	mustGet(t, rr.clientGets, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"raw","version":"1"}}}`)
	rr.client(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	mustGet(t, rr.upstreamGets, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
}
