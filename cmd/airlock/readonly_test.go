package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// deadPID is the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("running true: %v", err)
	}
	return cmd.Process.Pid
}

// stoppedBroker leaves in dir the state of a broker that ran and stopped,
// killed before it could remove its api.json: a grant, a call held when it
// stopped, and audit records, two of them in the journal only.
func stoppedBroker(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(dir, dbFile), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	pendingIn(t, st, nil)
	g := &broker.Grant{ID: "01GRANTREADONLY", Server: "fs", Tool: "read_file", Scope: broker.ScopeTool, Status: broker.GrantActive,
		CreatedBy: "admin", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateGrant(ctx, g, &broker.AuditRecord{Time: now, Event: broker.EventGrantCreated, Server: "fs", Tool: "read_file"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Copy the files while a second run still holds records only in its
	// journal, as a crash leaves them.
	st, err = boltstore.Open(filepath.Join(dir, dbFile), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"journaled_one", "journaled_two"} {
		if err := st.AppendAudit(ctx, &broker.AuditRecord{Time: time.Now(), Event: broker.EventAllowed, Server: "fs", Tool: tool}); err != nil {
			t.Fatal(err)
		}
	}
	var files [2][]byte
	for i, name := range []string{dbFile, dbFile + ".journal"} {
		if files[i], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	for i, name := range []string{dbFile, dbFile + ".journal"} {
		if err := os.WriteFile(filepath.Join(dir, name), files[i], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeAPIInfo(dir, apiInfo{URL: "http://127.0.0.1:1", PID: deadPID(t)}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, tokenFile), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// After a broker stopped, the commands that read its state read the
// directory read-only, say so, and change no file.
func TestStoppedBrokerStateIsReadReadOnly(t *testing.T) {
	dir := t.TempDir()
	stoppedBroker(t, dir)
	before := brokertest.DirState(t, dir)
	note := "no broker is running for " + dir + ": read the state directory directly, read-only"
	tests := map[string]struct {
		args []string
		want []string
	}{
		"audit":          {[]string{"audit"}, []string{"call.held", "grant.created", "journaled_one", "journaled_two"}},
		"audit --json":   {[]string{"audit", "--json"}, []string{`"tool":"journaled_two"`}},
		"audit verify":   {[]string{"audit", "verify"}, []string{"The audit log verifies: 4 records, each chained to the one before."}},
		"pending":        {[]string{"pending"}, []string{"No calls are waiting for approval: no broker is running, and a call waits only while its broker runs."}},
		"pending --json": {[]string{"pending", "--json"}, []string{"[]"}},
		"grants list":    {[]string{"grants", "list"}, []string{"01GRANTREADONLY", "read_file"}},
		"grants --all":   {[]string{"grants", "--all"}, []string{"01GRANTREADONLY"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, errOut, err := run(t, "", append(tc.args, "--state-dir", dir)...)
			if err != nil {
				t.Fatalf("airlock %s: %v\nstderr: %s", name, err, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(errOut, note) || !strings.Contains(errOut, "2 audit records read from its journal") {
				t.Errorf("stderr %q should say %q and that 2 records came from the journal", errOut, note)
			}
			if after := brokertest.DirState(t, dir); len(after) != len(before) {
				t.Fatalf("files changed: %d before, %d after", len(before), len(after))
			} else {
				for k, v := range before {
					if after[k] != v {
						t.Errorf("%s changed (size, mode, mtime or bytes)", k)
					}
				}
			}
		})
	}
	// The same read through the environment variable.
	t.Setenv("AIRLOCK_STATE_DIR", dir)
	if out, errOut, err := run(t, "", "audit", "verify"); err != nil || !strings.Contains(out, "verifies: 4 records") || !strings.Contains(errOut, note) {
		t.Errorf("audit verify with AIRLOCK_STATE_DIR: %q %q %v", out, errOut, err)
	}
}

// A named state directory without a broker or a database: the error says
// so, and never asks for the flag that was passed.
func TestNoStateNamedDirectory(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"audit"}, {"audit", "verify"}, {"pending"}, {"grants", "list"}, {"approve", "01X"}} {
		_, _, err := run(t, "", append(args, "--state-dir", dir)...)
		if err == nil || !strings.Contains(err.Error(), "no Airlock broker is running for "+dir) || strings.Contains(err.Error(), "--state-dir") {
			t.Errorf("airlock %s --state-dir: %v; want it to say no broker runs for %s, without asking for --state-dir", strings.Join(args, " "), err, dir)
		}
	}
}

// brokerIn is voteBroker with its state directory at dir.
func brokerIn(t *testing.T, dir string, store broker.Store) {
	t.Helper()
	b, err := broker.New(broker.Options{Policy: brokertest.AllowAll(), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srv := httptest.NewServer(b.APIHandler("tok"))
	t.Cleanup(srv.Close)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeAPIInfo(dir, apiInfo{URL: srv.URL, PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, tokenFile), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// With serve and a wrap running, pending says which broker each call
// waits at, and audit shows both logs merged by time, each line labelled,
// unless --state-dir picks one.
func TestSeveralBrokers(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_STATE_HOME", xdg)
	t.Setenv("AIRLOCK_STATE_DIR", "")
	home := filepath.Join(xdg, "airlock")
	wrap := filepath.Join(home, "wrap-filesystem")
	serveStore, wrapStore := brokertest.NewMemStore(), brokertest.NewMemStore()
	brokerIn(t, home, serveStore)
	brokerIn(t, wrap, wrapStore)
	// A stopped wrap beside them is not read while brokers run.
	stoppedBroker(t, filepath.Join(home, "wrap-gone"))

	t0 := time.Now().Add(-time.Hour)
	for i, s := range []broker.Store{serveStore, wrapStore, serveStore, wrapStore} {
		rec := &broker.AuditRecord{Time: t0.Add(time.Duration(i) * time.Second), Event: broker.EventAllowed, Server: "srv", Tool: []string{"first", "second", "third", "fourth"}[i]}
		if err := s.AppendAudit(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	serveID := pendingIn(t, serveStore, nil)
	wrapID := pendingIn(t, wrapStore, func(a *broker.Approval) { a.Server = "filesystem" })

	out, _, err := run(t, "", "pending")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "BROKER ") || !strings.Contains(lines[0], " ARGUMENTS ") {
		t.Fatalf("pending:\n%s\nwant a BROKER column and two rows", out)
	}
	for _, want := range []string{home + " " + serveID, "wrap-filesystem " + wrapID} {
		found := false
		for _, l := range lines[1:] {
			found = found || strings.HasPrefix(strings.Join(strings.Fields(l), " "), want)
		}
		if !found {
			t.Errorf("pending has no row starting %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, "", "pending", "--json")
	var views []pendingView
	if err != nil || json.Unmarshal([]byte(out), &views) != nil || len(views) != 2 || views[0].Broker == "" || views[0].Broker == views[1].Broker {
		t.Errorf("pending --json: %s %v; want each entry's broker", out, err)
	}

	out, errOut, err := run(t, "", "audit", "--event", "call.allowed")
	if err != nil {
		t.Fatalf("audit with two brokers: %v", err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 7 {
			t.Fatalf("audit line %q", l)
		}
		got = append(got, f[0]+" "+f[6])
	}
	want := []string{home + " first", "wrap-filesystem second", home + " third", "wrap-filesystem fourth"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("audit across brokers: %q, want %q\n%s", got, want, out)
	}
	if strings.Contains(errOut, "read-only") {
		t.Errorf("audit read a state directory read-only while brokers run: %s", errOut)
	}
	out, _, err = run(t, "", "audit", "--json", "--event", "call.allowed", "-n", "1")
	if err != nil || !strings.Contains(out, `"broker":"wrap-filesystem"`) || !strings.Contains(out, `"tool":"fourth"`) || strings.Count(out, "\n") != 1 {
		t.Errorf("audit --json -n 1: %q %v; want the newest record of all, labelled", out, err)
	}

	out, _, err = run(t, "", "audit", "--event", "call.allowed", "--state-dir", wrap)
	if err != nil || strings.Contains(out, "first") || !strings.Contains(out, "second") || strings.Contains(out, "wrap-filesystem") {
		t.Errorf("audit --state-dir %s: %q %v; want only its records, unlabelled", wrap, out, err)
	}
	out, _, err = run(t, "", "audit", "verify")
	if err != nil || !strings.Contains(out, "wrap-filesystem: The audit log verifies") || !strings.Contains(out, home+": The audit log verifies") {
		t.Errorf("audit verify with two brokers: %q %v", out, err)
	}
}
