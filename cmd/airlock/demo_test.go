package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// lineReader collects a subprocess's output lines and waits for the one
// that matches.
type lineReader struct {
	t     *testing.T
	lines chan string
	seen  []string
}

func newLineReader(t *testing.T, r interface{ Read([]byte) (int, error) }) *lineReader {
	lr := &lineReader{t: t, lines: make(chan string, 256)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lr.lines <- sc.Text()
		}
		close(lr.lines)
	}()
	return lr
}

func (lr *lineReader) waitFor(re *regexp.Regexp) []string {
	lr.t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lr.lines:
			if !ok {
				lr.t.Fatalf("output ended before %s:\n%s", re, strings.Join(lr.seen, "\n"))
			}
			lr.seen = append(lr.seen, l)
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-timeout:
			lr.t.Fatalf("waited for %s:\n%s", re, strings.Join(lr.seen, "\n"))
		}
	}
}

// The newcomer's first run: `airlock demo` makes an allowed, a denied and
// a held call; the held one is approved through the API with the command
// the demo prints, and Ctrl-C leaves nothing behind.
func TestDemo(t *testing.T) {
	state := t.TempDir()
	cmd := airlockCmd(t, "demo", "--listen", freePort(t), "--state-dir", state)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	out := newLineReader(t, stdout)

	sandbox := out.waitFor(regexp.MustCompile(`^  sandbox  (\S+)`))[1]
	link := out.waitFor(regexp.MustCompile(`^  (http://\S+/login\?token=\S+)$`))[1]
	out.waitFor(regexp.MustCompile(`^   ALLOWED by the policy: list_directory only reads inside `))
	out.waitFor(regexp.MustCompile(`^   The server answered: .*notes\.txt`))
	out.waitFor(regexp.MustCompile(`^   DENIED\. The agent reads: The call to read_text_file was denied by policy: .*outside the allowed directories`))
	id := out.waitFor(regexp.MustCompile(`^   HELD for approval \(ref ([0-9A-Z]+)\): write_file writes outside the scratch directory`))[1]
	printed := out.waitFor(regexp.MustCompile(`^     (.+) approve (\S+) --state-dir (\S+)$`))
	if printed[2] != id || printed[3] != state {
		t.Errorf("the printed command names %s in %s, want %s in %s", printed[2], printed[3], id, state)
	}
	if who := signedInAs(t, link); who != "admin" {
		t.Errorf("the printed link signs in as %q", who)
	}

	if _, err := cli(t, "approve", id, "--state-dir", state); err != nil {
		t.Fatal(err)
	}
	out.waitFor(regexp.MustCompile(`^   APPROVED by admin\. The server answered: wrote \d+ bytes to `))
	if data, err := os.ReadFile(filepath.Join(sandbox, "notes.txt")); err != nil || !strings.Contains(string(data), "try airlock demo") {
		t.Errorf("notes.txt after the approved write: %q, %v", data, err)
	}
	out.waitFor(regexp.MustCompile(`^Done\.`))

	cmd.Process.Signal(os.Interrupt)
	if code := exitCode(t, cmd); code != 0 {
		t.Errorf("demo exited %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Dir(sandbox)); !os.IsNotExist(err) {
		t.Errorf("the demo's directory is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, apiInfoFile)); !os.IsNotExist(err) {
		t.Errorf("the demo's api.json is still there: %v", err)
	}
}

// The sample server refuses paths outside its sandbox itself, whatever a
// policy allowed.
func TestSandboxServerStaysInside(t *testing.T) {
	dir := t.TempDir()
	if err := seedSandbox(dir); err != nil {
		t.Fatal(err)
	}
	os.Symlink("/etc", filepath.Join(dir, "etc-link"))
	srv, err := newSandboxServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, ct := mcp.NewInMemoryTransports()
	ctx := context.Background()
	if _, err := srv.Connect(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	call := func(tool string, args any) (string, bool) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			t.Fatal(err)
		}
		return resultText(res), res.IsError
	}
	for name, args := range map[string]any{
		"traversal":      pathArgs{Path: dir + "/../../etc/passwd"},
		"outside":        pathArgs{Path: "/etc/passwd"},
		"relative":       pathArgs{Path: "notes.txt"},
		"through a link": pathArgs{Path: dir + "/etc-link/passwd"},
	} {
		if got, isErr := call("read_text_file", args); !isErr {
			t.Errorf("%s: read %q", name, got)
		}
	}
	if got, isErr := call("write_file", writeArgs{Path: dir + "/etc-link/x", Content: "x"}); !isErr {
		t.Errorf("wrote through a link: %q", got)
	}
	if got, isErr := call("read_text_file", pathArgs{Path: dir + "/notes.txt"}); isErr || got != demoNotes {
		t.Errorf("read inside: %q", got)
	}
	if got, isErr := call("move_file", moveArgs{Source: dir + "/report.md", Destination: dir + "/scratch/r.md"}); isErr {
		t.Errorf("move inside: %q", got)
	}
	if got, isErr := call("delete_file", pathArgs{Path: dir}); !isErr {
		t.Errorf("deleted the sandbox: %q", got)
	}
	if got, isErr := call("delete_file", pathArgs{Path: dir + "/scratch/r.md"}); isErr {
		t.Errorf("delete inside: %q", got)
	}
}
