package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// cliEnv is cli with extra environment variables; it returns stdout and
// stderr.
func cliEnv(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := airlockCmd(t, args...)
	cmd.Env = append(cmd.Env, env...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("airlock %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
	return string(out), stderr.String(), err
}

// Tokens made, listed and revoked with the CLI against a running serve,
// and a person deciding with their approver token: the policy's
// approvers.users names alice, so the admin token cannot approve and
// alice's token can, and the audit log says alice.
func TestTokensThroughCLI(t *testing.T) {
	policyDir := t.TempDir()
	os.WriteFile(filepath.Join(policyDir, "airlock.rego"), []byte(`package airlock

decision := {"action": "hold", "reason": "writes need alice", "approvers": {"users": ["alice"]}}
`), 0o600)
	base, stderr := startServe(t, fmt.Sprintf("policy: {dir: %s}\nhold_wait: 60s\nservers:\n  t:\n    command: env\n    args: [\"AIRLOCK_TEST_ROLE=server\", \"AIRLOCK_TEST_SERVER=echo\", %q]\n  u:\n    command: env\n    args: [\"AIRLOCK_TEST_ROLE=server\", \"AIRLOCK_TEST_SERVER=echo\", %q]\n", policyDir, os.Args[0], os.Args[0]))

	if out, err := cli(t, "tokens", "list"); err != nil || !strings.Contains(out, "No tokens.") {
		t.Fatalf("tokens list before any: %q %v", out, err)
	}
	agent, note, err := cliEnv(t, nil, "tokens", "create", "builder", "--server", "t", "--group", "ci", "--group", "build")
	agent = strings.TrimSpace(agent)
	if err != nil || !strings.HasPrefix(agent, broker.AgentTokenPrefix) || strings.Contains(agent, "\n") {
		t.Fatalf("create builder: stdout %q, %v", agent, err)
	}
	if !strings.Contains(note, "shown now and never again") || !strings.Contains(note, "servers t; groups build, ci; expires ") {
		t.Errorf("create builder says on stderr: %q", note)
	}
	alice, _, err := cliEnv(t, nil, "tokens", "create", "alice", "--approver", "--ttl", "0")
	alice = strings.TrimSpace(alice)
	if err != nil || !strings.HasPrefix(alice, broker.ApproverTokenPrefix) {
		t.Fatalf("create alice: %q %v", alice, err)
	}
	for _, args := range [][]string{
		{"tokens", "create", "builder"},                         // taken
		{"tokens", "create", "x", "--server", "nope"},           // no such server
		{"tokens", "create", "x", "--approver", "--group", "g"}, // an approver has no groups
		{"tokens", "create", "bad name"},
	} {
		if out, err := cli(t, args...); err == nil {
			t.Errorf("%v made a token: %s", args, out)
		}
	}
	out, err := cli(t, "tokens", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAME", "LAST USED", "builder", "agent", "active", "t ", "build,ci", "alice", "approver", "never", "admin"} {
		if !strings.Contains(out, want) {
			t.Errorf("tokens list lacks %q:\n%s", want, out)
		}
	}
	jsonOut, err := cli(t, "tokens", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var views []broker.TokenView
	if err := json.Unmarshal([]byte(jsonOut), &views); err != nil || len(views) != 2 || views[0].Name != "alice" || views[1].Servers[0] != "t" {
		t.Errorf("tokens list --json: %v\n%s", err, jsonOut)
	}
	for _, secret := range []string{agent, alice, agent[len(agent)-43:], alice[len(alice)-43:]} {
		if strings.Contains(out+jsonOut, secret) {
			t.Error("tokens list shows a secret")
		}
	}
	if strings.Contains(jsonOut, `"hash"`) {
		t.Errorf("tokens list --json shows hashes:\n%s", jsonOut)
	}

	// A held call, decided by alice with her token.
	cs := httpSession(t, base+"/mcp/t")
	done := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"n": 1}})
		done <- err
	}()
	p := pending(t, 1)[0]
	if _, err := cli(t, "approve", p.ID); err == nil || !strings.Contains(err.Error(), "not_an_approver") {
		t.Errorf("the admin token approved a call only alice may: %v", err)
	}
	open := filepath.Join(t.TempDir(), "token")
	os.WriteFile(open, []byte(alice+"\n"), 0o644)
	if _, err := cli(t, "approve", p.ID, "--token-file", open); err == nil || !strings.Contains(err.Error(), "open to other users") {
		t.Errorf("a token file open to others: %v", err)
	}
	if _, _, err := cliEnv(t, []string{"AIRLOCK_TOKEN=" + agent}, "approve", p.ID); err == nil || !strings.Contains(err.Error(), "holds an agent token") {
		t.Errorf("an agent token in AIRLOCK_TOKEN: %v", err)
	}
	private := filepath.Join(t.TempDir(), "token")
	os.WriteFile(private, []byte(alice+"\n"), 0o600)
	// Alice is on her own machine: no state directory names the broker,
	// and the admin token is not hers to read.
	elsewhere := []string{"XDG_STATE_HOME=" + t.TempDir()}
	if _, _, err := cliEnv(t, elsewhere, "approve", p.ID, "--token-file", private); err == nil || !strings.Contains(err.Error(), "no running Airlock broker") {
		t.Errorf("alice's machine found a broker without --url: %v", err)
	}
	if _, _, err := cliEnv(t, elsewhere, "approve", p.ID, "--url", base); err == nil || !strings.Contains(err.Error(), "needs your approver token") {
		t.Errorf("--url without a token: %v", err)
	}
	if out, _, err := cliEnv(t, elsewhere, "approve", p.ID, "--token-file", private, "--url", base); err != nil || !strings.Contains(out, "is released") {
		t.Fatalf("alice approves with --token-file at --url: %q %v\n%s", out, err, stderr)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out, err = cli(t, "audit", "--json", "--event", "approval.approved")
	if err != nil || !strings.Contains(out, `"actor":"alice"`) || !strings.Contains(out, `"channel":"cli"`) {
		t.Errorf("the approval's audit record: %q %v", out, err)
	}
	out, err = cli(t, "audit", "--json", "--event", "token.created")
	if err != nil || strings.Count(out, `"event":"token.created"`) != 2 || !strings.Contains(out, `"principal":"builder"`) {
		t.Errorf("token.created records: %q %v", out, err)
	}

	if out, err := cli(t, "tokens", "revoke", "builder"); err != nil || !strings.Contains(out, "Revoked agent token builder") {
		t.Errorf("revoke builder: %q %v", out, err)
	}
	if _, err := cli(t, "tokens", "revoke", "builder"); err == nil {
		t.Error("builder was revoked twice")
	}
	if _, err := cli(t, "tokens", "revoke", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cliEnv(t, []string{"AIRLOCK_TOKEN=" + alice}, "approve", "06FHQ2B0Y5CJ3ZKM"); err == nil || !strings.Contains(err.Error(), "unknown, expired or revoked") {
		t.Errorf("a revoked approver token: %v", err)
	}
	out, err = cli(t, "tokens", "list")
	if err != nil || strings.Count(out, "revoked") < 2 || !strings.Contains(out, " by admin") {
		t.Errorf("tokens list after revoking: %q %v", out, err)
	}
}

// With no broker running, tokens list reads the state directory,
// read-only, as grants list does.
func TestTokensListWithoutBroker(t *testing.T) {
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, dbFile), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{Policy: brokertest.AllowAll(), Store: st, Servers: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := b.CreateToken(t.Context(), broker.TokenSpec{Name: "builder", Servers: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	st.Close()
	out, stderr, err := cliEnv(t, nil, "tokens", "list", "--state-dir", dir)
	if err != nil || !strings.Contains(out, "builder") || !strings.Contains(out, "active") || strings.Contains(out, tok[len(tok)-43:]) ||
		!strings.Contains(stderr, "read the state directory directly, read-only") {
		t.Errorf("tokens list without a broker: %q %q %v", out, stderr, err)
	}
}
