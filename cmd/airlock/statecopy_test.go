package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
)

// boltFixture makes a state directory holding some of everything: tools,
// tokens, grants, approvals decided and pending, and their audit records.
func boltFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	s, err := boltstore.Open(filepath.Join(dir, dbFile), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i, tool := range []string{"echo", "write"} {
		if _, err := s.SeenTool(ctx, &broker.ToolRecord{Server: "fs", Tool: tool, Fingerprint: "sha256:" + tool,
			FirstSeen: t0.Add(time.Duration(i) * time.Second), Definition: json.RawMessage(`{"name":"` + tool + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"alice-laptop", "bob"} {
		tok := &broker.Token{ID: fmt.Sprintf("01TOKEN%09d", i), Name: name, Hash: fmt.Sprintf("%064x", i+1), Approver: i == 1,
			CreatedBy: "admin", CreatedAt: t0.Add(time.Duration(i) * time.Minute)}
		if err := s.CreateToken(ctx, tok, &broker.AuditRecord{Time: tok.CreatedAt, Event: "token.created", Actor: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		at := t0.Add(time.Hour + time.Duration(i)*time.Minute)
		a := &broker.Approval{ID: fmt.Sprintf("01APPROVAL%06d", i), Status: broker.StatusPending, Server: "fs", Tool: "write",
			Arguments: json.RawMessage(`{"n":` + fmt.Sprint(i) + `}`), ArgumentsDigest: fmt.Sprintf("sha256:%d", i),
			ToolFingerprint: "sha256:write", RequestedAt: at, ExpiresAt: at.Add(10 * time.Minute)}
		if err := s.CreateApproval(ctx, a, &broker.AuditRecord{Time: at, Event: broker.EventHeld, Server: "fs", Tool: "write", ApprovalID: a.ID}); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			continue // left pending
		}
		if _, err := s.UpdateApproval(ctx, a.ID, func(a *broker.Approval) (*broker.AuditRecord, error) {
			a.Status = broker.StatusApproved
			a.DecidedBy, a.DecidedAt = "alice", at.Add(time.Second)
			return &broker.AuditRecord{Time: a.DecidedAt, Event: broker.EventApproved, ApprovalID: a.ID, Actor: "alice"}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	g := &broker.Grant{ID: "01GRANT000000001", Status: broker.GrantActive, Server: "fs", Tool: "write", Scope: "tool",
		ToolFingerprint: "sha256:write", Anyone: true, CreatedBy: "alice", CreatedAt: t0.Add(2 * time.Hour), ExpiresAt: t0.Add(50 * time.Hour)}
	if err := s.CreateGrant(ctx, g, &broker.AuditRecord{Time: g.CreatedAt, Event: "grant.created", Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := s.AppendAudit(ctx, &broker.AuditRecord{Time: t0.Add(3*time.Hour + time.Duration(i)*time.Second), Event: broker.EventAllowed,
			Server: "fs", Tool: "echo"}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The copy reproduces every record and the audit chain, hash for hash.
func TestCopyStateReproducesEverything(t *testing.T) {
	ctx := context.Background()
	src, err := boltstore.Open(filepath.Join(boltFixture(t), dbFile), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := boltstore.Open(filepath.Join(t.TempDir(), dbFile), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	n, err := copyState(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if n.approvals != 3 || n.pending != 1 || n.grants != 1 || n.tokens != 2 || n.tools != 2 || n.audit != 13 {
		t.Errorf("copied %+v", n)
	}
	sameStores(t, src, dst)
	var out strings.Builder
	n.print(&out, "bolt:src", "postgres://x@db/y")
	for _, want := range []string{"approvals  3 (1 pending, copied as pending", "grants     1", "tokens     2", "tools      2",
		"audit log  13 records; both chains verify and end in record 13, hash " + n.headHash} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the summary lacks %q:\n%s", want, out.String())
		}
	}

	// Again into the same destination: refused, and nothing written.
	if _, err := copyState(ctx, src, dst); err == nil || !strings.Contains(err.Error(), "the destination is not empty (it holds approvals, grants, tokens, audit records, tools)") {
		t.Errorf("a second copy: %v", err)
	}
	if v, _ := dst.VerifyAudit(ctx); v.Records != 13 {
		t.Errorf("the refused copy wrote: %+v", v)
	}
}

// sameStores compares everything two stores hold, by its JSON.
func sameStores(t *testing.T, a *boltstore.Store, b broker.Store) {
	t.Helper()
	ctx := context.Background()
	enc := func(v any, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(v)
		return string(data)
	}
	for what, pair := range map[string][2]string{
		"approvals": {enc(a.Approvals(ctx, broker.ApprovalQuery{Limit: 1000})), enc(b.Approvals(ctx, broker.ApprovalQuery{Limit: 1000}))},
		"grants":    {enc(a.Grants(ctx, broker.GrantQuery{Limit: 1000})), enc(b.Grants(ctx, broker.GrantQuery{Limit: 1000}))},
		"tokens":    {enc(a.Tokens(ctx)), enc(b.Tokens(ctx))},
		"audit":     {enc(a.Audit(ctx, broker.AuditQuery{Limit: 1000})), enc(b.Audit(ctx, broker.AuditQuery{Limit: 1000}))},
	} {
		if pair[0] != pair[1] {
			t.Errorf("%s differ:\nsource      %s\ndestination %s", what, pair[0], pair[1])
		}
	}
	if tl, ok := b.(toolLister); ok {
		if x, y := enc(a.ToolRecords(ctx)), enc(tl.ToolRecords(ctx)); x != y {
			t.Errorf("tools differ:\nsource      %s\ndestination %s", x, y)
		}
	}
}

func TestStateCopyRefusesBadInput(t *testing.T) {
	fixture := boltFixture(t)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("hunter2\n"), 0o600)
	to := "postgres://airlock@127.0.0.1:1/airlock"
	tests := map[string]struct {
		args []string
		env  string
		want string
	}{
		"no destination":     {[]string{"--from", "bolt:" + fixture}, "", "name the database with --to"},
		"password in --to":   {[]string{"--from", "bolt:" + fixture, "--to", "postgres://airlock:hunter2@db/airlock"}, "", "--to carries a password, which every user of this machine can read on a command line"},
		"password twice":     {[]string{"--from", "bolt:" + fixture, "--password-file", pw}, "postgres://a:hunter2@db/b", "give the password once"},
		"not bolt":           {[]string{"--from", fixture, "--to", to}, "", "write bolt:PATH"},
		"no database in dir": {[]string{"--from", "bolt:" + t.TempDir(), "--to", to}, "", "the directory holds no airlock.db"},
		"not postgres":       {[]string{"--from", "bolt:" + fixture, "--to", "mysql://db/x"}, "", "--to: a mysql: URL"},
		"unreachable":        {[]string{"--from", "bolt:" + fixture, "--to", to, "--password-file", pw}, "", "postgres://airlock@127.0.0.1:1/airlock"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cmd := airlockCmd(t, append([]string{"state", "copy"}, tc.args...)...)
			cmd.Env = append(cmd.Env, envDatabaseURL+"="+tc.env)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("%v: %s\nwant it to say %q", err, out, tc.want)
			}
			if strings.Contains(string(out), "hunter2") {
				t.Errorf("the output shows the password: %s", out)
			}
		})
	}

	// A source a broker holds is refused, before the destination is opened.
	s, err := boltstore.Open(filepath.Join(fixture, dbFile), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := airlockCmd(t, "state", "copy", "--from", "bolt:"+fixture, "--to", to).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is in use by a running broker: stop it first") {
		t.Errorf("copy from a store in use: %v: %s", err, out)
	}
}
