package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
	"github.com/airlock-mcp/airlock/broker/pgstore"
	"github.com/airlock-mcp/airlock/broker/pgstore/pgtest"
)

// pgServe is an `airlock serve` on a database, which the test stops.
type pgServe struct {
	base   string
	cmd    *exec.Cmd
	stderr *syncBuffer
}

// startPGServe starts serve with config (listen is added) and env, and
// waits until it answers /healthz.
func startPGServe(t testing.TB, config string, env ...string) *pgServe {
	t.Helper()
	addr := freePort(t)
	path := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(path, []byte("listen: "+addr+"\n"+config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &pgServe{base: "http://" + addr, cmd: airlockCmd(t, "serve", "-c", path), stderr: &syncBuffer{}}
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.stop(t)
		}
	})
	waitHealthy(t, s.base, s.stderr)
	return s
}

func (s *pgServe) stop(t testing.TB) {
	t.Helper()
	s.cmd.Process.Signal(os.Interrupt)
	if code := exitCode(t, s.cmd); code != 0 {
		t.Errorf("serve exited %d\n%s", code, s.stderr)
	}
}

type healthz struct {
	Status  string `json:"status"`
	Replica string `json:"replica"`
	Store   string `json:"store"`
}

func getHealthz(t *testing.T, base string) healthz {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h healthz
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// A broker on PostgreSQL holds a call and releases it on approval, keeps
// its state across a restart, and leaves a state directory the CLI reads
// the database through once it has stopped. Its password, from a file,
// appears nowhere in what it prints, even at debug level.
func TestServeOnPostgres(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	password := cmp.Or(urlPassword(db), "pw-4b1d-never-printed")
	pwFile := filepath.Join(t.TempDir(), "db-password")
	os.WriteFile(pwFile, []byte(password+"\n"), 0o600)
	args, _ := json.Marshal(testServerArgs("echo")[1:])
	config := fmt.Sprintf("log_level: debug\npolicy: {dir: %s}\nstate: {postgres: %q, password_file: %s}\nservers:\n  up:\n    command: env\n    args: %s\n",
		holdWritesPolicy(t), withoutPassword(db), pwFile, args)

	s := startPGServe(t, config)
	h := getHealthz(t, s.base)
	if h.Store != "postgres" || h.Replica == "" {
		t.Errorf("/healthz = %+v, want the store and the replica's name", h)
	}
	if !strings.Contains(s.stderr.String(), "replica="+h.Replica) {
		t.Errorf("the start log does not name the replica %s:\n%s", h.Replica, s.stderr)
	}
	stateDir := filepath.Join(testStateHome(t), "airlock")
	if _, err := os.Stat(filepath.Join(stateDir, dbFile)); err == nil {
		t.Errorf("a bbolt file was made in %s", stateDir)
	}

	cs := httpSession(t, s.base+"/mcp/up")
	if got := callText(t, cs, "echo", map[string]any{"n": 1}); !strings.Contains(got, `"n":1`) {
		t.Fatalf("echo = %q", got)
	}
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"f": "x"}})
		if err != nil {
			res = &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}
		}
		done <- res
	}()
	p := pending(t, 1)[0]
	if out, err := cli(t, "approve", p.ID); err != nil || !strings.Contains(out, "released") {
		t.Fatalf("approve: %q %v", out, err)
	}
	if res := <-done; res.IsError || !strings.Contains(resultString(res), `wrote {"f":"x"}`) {
		t.Fatalf("the approved call: %q", resultString(res))
	}
	if out, err := cli(t, "tokens", "create", "kept-agent"); err != nil {
		t.Fatalf("tokens create: %v\n%s", err, out)
	}
	s.stop(t)

	// Stopped: the CLI reads the database the state directory names.
	out, err := cli(t, "audit", "verify")
	if err != nil || !strings.Contains(out, "The audit log verifies") {
		t.Fatalf("audit verify with no broker running: %q %v", out, err)
	}
	if out, err := cli(t, "audit", "--json"); err != nil || !strings.Contains(out, p.ID) {
		t.Errorf("audit with no broker running lacks the approval %s: %v\n%s", p.ID, err, out)
	}

	// Restarted: a new replica on the same state.
	s2 := startPGServe(t, config)
	if h2 := getHealthz(t, s2.base); h2.Replica == h.Replica || h2.Store != "postgres" {
		t.Errorf("after a restart /healthz = %+v; want a new replica name, not %s", h2, h.Replica)
	}
	if out, err := cli(t, "tokens", "list"); err != nil || !strings.Contains(out, "kept-agent") {
		t.Errorf("tokens after a restart: %v\n%s", err, out)
	}
	var approved []pendingView
	out, err = cli(t, "pending", "--json")
	if err != nil || json.Unmarshal([]byte(out), &approved) != nil || len(approved) != 0 {
		t.Errorf("pending after a restart: %v %s", err, out)
	}
	if out, err := cli(t, "audit", "--json", "--event", "approval.approved"); err != nil || !strings.Contains(out, p.ID) {
		t.Errorf("the approval's audit record after a restart: %v\n%s", err, out)
	}
	s2.stop(t)
	for _, text := range []string{s.stderr.String(), s2.stderr.String()} {
		if strings.Contains(text, password) {
			t.Errorf("serve printed the database password:\n%s", text)
		}
	}
}

// Two replicas on one state directory would overwrite each other's
// api.json: the second is refused, naming the first. A state directory
// holding a bbolt file is refused too, with the copy command to run.
func TestServeOnPostgresRefusesAStateDirInUse(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	config := fmt.Sprintf("policy: {dir: %s}\nstate: {postgres: %q}\n", allowAllPolicy(t), db)
	startPGServe(t, config)

	path := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(path, []byte("listen: "+freePort(t)+"\n"+config), 0o600)
	out, err := airlockCmd(t, "serve", "-c", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the state directory is in use by another broker") ||
		!strings.Contains(string(out), "it is a broker, pid") {
		t.Errorf("a second serve on the state directory: %v\n%s", err, out)
	}

	boltDir := t.TempDir()
	bs, err := boltstore.Open(filepath.Join(boltDir, dbFile), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bs.Close()
	out, err = airlockCmd(t, "serve", "-c", path, "--state-dir", boltDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "holds a bbolt database (airlock.db) that would be left behind: copy it with `airlock state copy --from bolt:"+boltDir) {
		t.Errorf("serve on a database with a bbolt state directory: %v\n%s", err, out)
	}
}

// A database that cannot be reached stops serve at start, with an error
// naming it (without its password) and a non-zero status.
func TestServeOnUnreachableDatabase(t *testing.T) {
	const password = "pw-9c2e-never-printed"
	addr := freePort(t) // nothing listens there
	for name, env := range map[string][]string{
		"config":      nil,
		"environment": {envDatabaseURL + "=postgres://airlock:" + password + "@" + addr + "/airlock?connect_timeout=5"},
	} {
		t.Run(name, func(t *testing.T) {
			config := fmt.Sprintf("listen: %s\npolicy: {dir: %s}\n", freePort(t), allowAllPolicy(t))
			if env == nil {
				config += "state: {postgres: 'postgres://airlock@" + addr + "/airlock?connect_timeout=5'}\n"
			}
			path := filepath.Join(t.TempDir(), "airlock.yaml")
			os.WriteFile(path, []byte(config), 0o600)
			cmd := airlockCmd(t, "serve", "-c", path)
			cmd.Env = append(cmd.Env, env...)
			cmd.Env = append(cmd.Env, "PGPASSWORD="+password)
			out, err := cmd.CombinedOutput()
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() == 0 {
				t.Fatalf("serve on an unreachable database: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "airlock: state: cannot open the database postgres://airlock") || !strings.Contains(string(out), addr) {
				t.Errorf("the error does not name the database:\n%s", out)
			}
			if strings.Contains(string(out), password) {
				t.Errorf("the error shows the password:\n%s", out)
			}
		})
	}
}

// state copy moves a bbolt state directory into an empty database: every
// record, and the same audit chain, which `audit verify` then checks on
// both sides; a second copy into the same database is refused.
func TestStateCopyIntoPostgres(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	src := boltFixture(t)
	out, err := cli(t, "state", "copy", "--from", "bolt:"+src, "--to", withoutPassword(db))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Copied bolt:" + filepath.Join(src, dbFile) + " to " + redactURL(withoutPassword(db)) + ":",
		"approvals  3 (1 pending, copied as pending", "grants     1", "tokens     2", "tools      2", "audit log  13 records; both chains verify and end in record 13, hash "} {
		if !strings.Contains(out, want) {
			t.Errorf("the summary lacks %q:\n%s", want, out)
		}
	}

	ctx := context.Background()
	bs, err := boltstore.Open(filepath.Join(src, dbFile), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	pg, err := pgstore.Open(ctx, db, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameStores(t, bs, pg)
	for _, r := range []*broker.ToolRecord{{Server: "fs", Tool: "echo"}, {Server: "fs", Tool: "write"}} {
		// SeenTool answers the first record: the copied one.
		got, err := pg.SeenTool(ctx, &broker.ToolRecord{Server: r.Server, Tool: r.Tool, Fingerprint: "sha256:other", Definition: json.RawMessage(`{}`)})
		if err != nil || got.Fingerprint != "sha256:"+r.Tool {
			t.Errorf("tool %s/%s in the database: %+v, %v", r.Server, r.Tool, got, err)
		}
	}
	pg.Close()
	bs.Close()

	verify := func(env ...string) string {
		cmd := airlockCmd(t, "audit", "verify", "--state-dir", src)
		if env != nil {
			cmd = airlockCmd(t, "audit", "verify", "--state-dir", t.TempDir())
		}
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("audit verify %v: %v\n%s", env, err, out)
		}
		return string(out)
	}
	if out := verify(); !strings.Contains(out, "The audit log verifies: 13 records") {
		t.Errorf("audit verify of the source: %s", out)
	}
	if out := verify(envDatabaseURL + "=" + db); !strings.Contains(out, "The audit log verifies: 13 records") {
		t.Errorf("audit verify of the database: %s", out)
	}

	out, err = cli(t, "state", "copy", "--from", "bolt:"+src, "--to", withoutPassword(db))
	if err == nil || !strings.Contains(err.Error(), "the destination is not empty") {
		t.Errorf("a copy into a database that holds state: %v\n%s", err, out)
	}
}
