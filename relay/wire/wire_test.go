package wire

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

func TestLineConnSkipsBadLines(t *testing.T) {
	input := "\n" + // blank lines are skipped
		`{"jsonrpc":"2.0","id":1,"method":"a","params":{"k":"v"}}` + "\n" +
		"not json\n" +
		`{"jsonrpc":"2.0","id":2,"method":"b","params":{"pad":"` + strings.Repeat("x", 200<<10) + `"}}` + "\n" +
		`{"jsonrpc":"2.0","id":3,"method":"c"}` // no trailing newline
	c := NewLineConn(strings.NewReader(input), io.Discard, nil, 100<<10)
	first, err := c.Read(context.Background())
	if err != nil || first.(*jsonrpc.Request).Method != "a" {
		t.Fatalf("first: %v, %v", first, err)
	}
	var pe *ParseError
	if _, err := c.Read(context.Background()); !errors.As(err, &pe) || pe.TooLarge {
		t.Fatalf("garbage: %v", err)
	}
	if _, err := c.Read(context.Background()); !errors.As(err, &pe) || !pe.TooLarge {
		t.Fatalf("oversized: %v", err)
	}
	last, err := c.Read(context.Background())
	if err != nil || last.(*jsonrpc.Request).Method != "c" {
		t.Fatalf("last: %v, %v", last, err)
	}
	// Params must not alias the reader's buffer, which later reads reuse.
	if got := string(first.(*jsonrpc.Request).Params); got != `{"k":"v"}` {
		t.Errorf("first params now %q", got)
	}
	if _, err := c.Read(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("at the end: %v", err)
	}
}

func TestEventReader(t *testing.T) {
	stream := ": comment\n" +
		"retry: 1500\n" +
		"id: 7\n" +
		"data: {\"a\":\n" +
		"data: 1}\n\n" +
		"event: message\r\ndata: two\r\n\r\n" +
		"data: three\rdata: more\r\r" +
		"id\n\n" + // an event without data dispatches nothing
		"data: cut off"
	er := NewEventReader(strings.NewReader(stream), 0)
	want := []Event{
		{ID: "7", Data: []byte("{\"a\":\n1}"), Retry: 1500},
		{Type: "message", ID: "7", Data: []byte("two")},
		{ID: "7", Data: []byte("three\nmore")},
	}
	for _, w := range want {
		ev, err := er.Next()
		if err != nil {
			t.Fatalf("want %+v: %v", w, err)
		}
		if ev.Type != w.Type || ev.ID != w.ID || string(ev.Data) != string(w.Data) || ev.Retry != w.Retry {
			t.Errorf("got %+v (%q), want %+v (%q)", ev, ev.Data, w, w.Data)
		}
	}
	if _, err := er.Next(); err == nil {
		t.Error("an event cut off by the end of the stream was dispatched")
	}
	if er.LastID != "" {
		t.Errorf("a bare id field should reset the last id, got %q", er.LastID)
	}
}

func TestAppendEventRoundTrip(t *testing.T) {
	buf := AppendEvent(nil, "s1-3", []byte(`{"jsonrpc":"2.0","method":"x"}`))
	ev, err := NewEventReader(strings.NewReader(string(buf)), 0).Next()
	if err != nil || ev.ID != "s1-3" || string(ev.Data) != `{"jsonrpc":"2.0","method":"x"}` {
		t.Fatalf("%+v, %v", ev, err)
	}
}

func TestChildReportsExitStatus(t *testing.T) {
	ch, err := (&Command{Path: "sh", Args: []string{"-c", `read line; echo '{"jsonrpc":"2.0","id":1,"result":{}}'; exit 3`}}).Start()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Write(context.Background(), &jsonrpc.Request{Method: "x"}); err != nil {
		t.Fatal(err)
	}
	// The last message before exit must not be lost.
	if msg, err := ch.Read(context.Background()); err != nil {
		t.Fatalf("last message: %v", err)
	} else if _, ok := msg.(*jsonrpc.Response); !ok {
		t.Fatalf("last message: %v", msg)
	}
	_, err = ch.Read(context.Background())
	var ee *ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(ee.Error(), "exited with status 3") {
		t.Fatalf("err = %v", err)
	}
}

func TestChildStopEscalates(t *testing.T) {
	tests := map[string]struct {
		script string
		want   string
	}{
		"exits when stdin closes": {`cat >/dev/null`, "exited with status 0"},
		"needs SIGTERM":           {`trap 'exit 7' TERM; while :; do sleep 0.01; done`, "exited with status 7"},
		"needs SIGKILL":           {`trap '' TERM; while :; do sleep 0.01; done`, "killed by signal 9"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ch, err := (&Command{Path: "sh", Args: []string{"-c", tc.script}, Grace: 200 * time.Millisecond}).Start()
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // let the shell set its trap
			start := time.Now()
			ch.Close()
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("stopping took %s", d)
			}
			_, err = ch.Read(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
