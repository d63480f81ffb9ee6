package policy

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// protectedFixture is a home with an Airlock state dir in it, a symlink
// into that dir from elsewhere, and an ordinary file beside it.
func protectedFixture(t *testing.T) (state, other string, p *protected) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	state = filepath.Join(home, ".local", "state", "airlock", "wrap-fs")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "admin-token"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	other = filepath.Join(home, "notes")
	if err := os.MkdirAll(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(state, filepath.Join(other, "innocent")); err != nil {
		t.Fatal(err)
	}
	// As cmd/airlock does: the state dir and, by name, the token in it.
	p, err := newProtected([]string{state, filepath.Join(state, "admin-token")}, []string{other})
	if err != nil {
		t.Fatal(err)
	}
	return state, other, p
}

func TestProtectedPathForms(t *testing.T) {
	state, other, p := protectedFixture(t)
	home := os.Getenv("HOME")
	tok := filepath.Join(state, "admin-token")
	rel, _ := filepath.Rel(home, tok)
	named := []string{
		tok,
		state,
		state + "/",
		filepath.Join(other, "..", rel),
		other + "/../" + rel,
		"~/" + rel,
		"$HOME/" + rel,
		"file://" + tok,
		"FILE://" + tok,
		"file:" + tok,
		"file://" + strings.ReplaceAll(url.PathEscape(tok), "%2F", "/"),
		strings.ReplaceAll(tok, "/", "%2F"),
		strings.ReplaceAll(strings.ReplaceAll(tok, "/", "%2F"), "%", "%25"), // twice
		strings.ReplaceAll(tok, "admin-token", "%61dmin-token"),
		filepath.Join(other, "innocent", "admin-token"), // through a symlink
		filepath.Join(other, "innocent", "missing", "..", "admin-token"),
		"innocent/admin-token",              // relative to a work dir
		"../../airlock/wrap-fs/admin-token", // unknown cwd: trailing segments
		"wrap-fs/admin-token",
		"cat " + tok,
		"sh -c 'cat " + tok + "'",
		"--file=" + tok,
		`{"path":"` + tok + `"}`,
		"cp ~/" + rel + " /tmp/x",
	}
	for _, s := range named {
		if _, ok := p.checkString(s); !ok {
			t.Errorf("%q: not caught", s)
		}
	}
	fine := []string{
		filepath.Join(other, "todo.md"),
		filepath.Join(home, ".local", "state"), // an ancestor is not under
		state + "-old/admin-token",
		"admin-token", // a bare name: no way to tell where it is
		"airlock/README.md",
		"file:///etc/hosts",
		"https://example.com" + tok, // another machine's path
		"100%",
		"just some words",
	}
	for _, s := range fine {
		if h, ok := p.checkString(s); ok {
			t.Errorf("%q: caught as %+v", s, h)
		}
	}
}

func TestProtectedPathsDenyAheadOfPolicy(t *testing.T) {
	state, other, _ := protectedFixture(t)
	dir := t.TempDir()
	// A policy that allows everything: the guard must not depend on it.
	if err := os.WriteFile(filepath.Join(dir, "airlock.rego"), []byte("package airlock\n\ndecision := {\"action\": \"allow\", \"reason\": input.airlock.protected_paths[0]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := New(context.Background(), Options{Dir: dir, ProtectedPaths: []string{state}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	decide := func(args string) Decision {
		in := &Input{Tool: Tool{Name: "read_text_file"}, Arguments: json.RawMessage(args)}
		return e.Decide(context.Background(), in)
	}
	d := decide(`{"path":"` + filepath.Join(other, "innocent", "admin-token") + `"}`)
	if d.Action != Deny || !strings.Contains(d.Reason, state) {
		t.Errorf("symlink into the state dir: %s %q", d.Action, d.Reason)
	}
	d = decide(`{"options":{"paths":["x","file://` + state + `/admin-token"]}}`)
	if d.Action != Deny {
		t.Errorf("nested file URL: %s %q", d.Action, d.Reason)
	}
	d = decide(`{"path":"` + filepath.Join(other, "todo.md") + `"}`)
	if d.Action != Allow || d.Reason != state {
		t.Errorf("ordinary file: %s %q; want allow with input.airlock.protected_paths[0] = %s", d.Action, d.Reason, state)
	}
}

// BenchmarkProtectedCheck is the guard's cost on an ordinary path argument
// and on a string that cannot be a path.
func BenchmarkProtectedCheck(b *testing.B) {
	state := b.TempDir()
	p, err := newProtected([]string{state, filepath.Join(state, "admin-token")}, []string{b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	existing := filepath.Join(b.TempDir(), "report.md")
	os.WriteFile(existing, nil, 0o600)
	for _, s := range []string{"/srv/data/report.md", existing, "quarterly numbers"} {
		b.Run(strings.ReplaceAll(s, "/", "_"), func(b *testing.B) {
			for range b.N {
				if _, ok := p.checkString(s); ok {
					b.Fatal("caught")
				}
			}
		})
	}
}
