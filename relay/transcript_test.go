package relay_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/airlock-mcp/airlock/broker"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts in testdata/transcripts with what the relay did")

// TestTranscripts plays each golden transcript in testdata/transcripts
// through a relay over stdio, between a raw line client and a raw line
// upstream in front of a stub gate, and compares every line the relay
// sends either side byte for byte. With -update, it writes what the relay
// sent instead of comparing.
//
// A transcript is a txtar archive: its comment says what it shows, and
// its one file, "transcript", is a list of steps, one a line, run in
// order. Blank lines and lines starting with # are notes. Each step
// names a party and a direction, from the party's point of view:
//
//	client> LINE         the client sends LINE
//	client> close        the client closes its side (a stdio client exits)
//	client< LINE         the next line the client receives is LINE
//	upstream< LINE       the next line the upstream receives is LINE
//	upstream> LINE       the upstream sends LINE
//	gate< PARAMS         the next tools/call reaches the gate with PARAMS
//	gate< ended: CAUSE   the call at the gate is cancelled with CAUSE
//	gate> waiting TEXT   the gate says the call still waits (Caller.Waiting)
//	gate> forward        the gate lets the call go ahead
//	gate> refuse TEXT    the gate refuses the call with TEXT
//	gate> malformed TEXT the gate finds the params malformed
//	gate> nothing        the gate returns the zero Outcome
//
// Nothing is normalised: the relay numbers its requests upstream 1, 2, …
// per session, which a transcript that waits for each line fixes. After
// the last step the client's side is closed (unless a step did), and
// anything else the relay sent either side fails the test.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "transcripts", "*.txtar"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			t.Parallel()
			runTranscript(t, file)
		})
	}
}

func runTranscript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ar := txtar.Parse(data)
	if len(ar.Files) != 1 || ar.Files[0].Name != "transcript" {
		t.Fatalf("%s: want one file named transcript", file)
	}
	lines := strings.Split(strings.TrimSuffix(string(ar.Files[0].Data), "\n"), "\n")
	rr := newRawRelay(t)
	var out []string // the transcript as the relay played it, for -update
	var cur *check   // the call at the gate
	closed := false
	for i, line := range lines {
		out = append(out, line)
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s: transcript line %d", filepath.Base(file), i+1)
		step, arg, _ := strings.Cut(line, " ")
		// got reports what the relay sent where the step expects want.
		got := func(prefix, got, want string) {
			if *update {
				out[len(out)-1] = step + " " + prefix + got
			} else if got != want {
				t.Errorf("%s: %s\n got: %s%s\nwant: %s%s", where, step, prefix, got, prefix, want)
			}
		}
		switch step {
		case "client>":
			if arg == "close" {
				rr.close()
				closed = true
			} else {
				rr.client(arg)
			}
		case "upstream>":
			rr.upstream(arg)
		case "client<", "upstream<":
			get := rr.clientGets
			if step == "upstream<" {
				get = rr.upstreamGets
			}
			l, ok := get()
			if !ok {
				t.Fatalf("%s: the relay closed the stream; want %s", where, arg)
			}
			got("", l, arg)
		case "gate<":
			if cause, ok := strings.CutPrefix(arg, "ended: "); ok {
				if cur == nil {
					t.Fatalf("%s: no call at the gate", where)
				}
				select {
				case <-cur.ctx.Done():
				case <-timeout():
					t.Fatalf("%s: the call at the gate was not cancelled", where)
				}
				got("ended: ", context.Cause(cur.ctx).Error(), cause)
				continue
			}
			cur = rr.gateGets()
			got("", string(cur.params), arg)
		case "gate>":
			if cur == nil {
				t.Fatalf("%s: no call at the gate", where)
			}
			verb, text, _ := strings.Cut(arg, " ")
			switch verb {
			case "waiting":
				cur.caller.Waiting(text)
			case "forward":
				cur.decide(t, broker.Outcome{Forward: true})
			case "refuse":
				cur.decide(t, broker.Outcome{Refusal: text})
			case "malformed":
				cur.decide(t, broker.Outcome{Malformed: text})
			case "nothing":
				cur.decide(t, broker.Outcome{})
			default:
				t.Fatalf("%s: unknown gate step %q", where, arg)
			}
		default:
			t.Fatalf("%s: unknown step %q", where, step)
		}
	}
	if !closed {
		rr.close()
	}
	toClient, toUp := rr.rest()
	if *update {
		for _, l := range toClient {
			out = append(out, "client< "+l)
		}
		for _, l := range toUp {
			out = append(out, "upstream< "+l)
		}
		ar.Files[0].Data = []byte(strings.Join(out, "\n") + "\n")
		if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, l := range toClient {
		t.Errorf("%s: the relay also sent the client %s", file, l)
	}
	for _, l := range toUp {
		t.Errorf("%s: the relay also sent the upstream %s", file, l)
	}
}
