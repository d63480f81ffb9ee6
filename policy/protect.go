package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Airlock's own secrets (its state directory with the admin token, its
// config, its policy, the token files the config names) live on the same
// machine as the tools it guards. A filesystem or shell tool that can read
// them lets an agent take the admin token and approve its own held calls.
// So the engine refuses, ahead of every policy, any call whose arguments
// name a path under one of them. It is a fixed rule in Go rather than a
// rule in the library because the docs invite users to replace the
// library's decision, and because Rego cannot resolve symlinks.
//
// What counts as naming a path: any string in the arguments, at any depth
// (object keys too), and each word of it split as a shell would roughly
// split a command line, read as a path after undoing percent-encoding,
// file: URLs, ~ and $HOME, `..` and symlinks (on the longest prefix that
// exists). A relative path is read against Airlock's own working
// directory (a stdio server inherits it unless servers.X.cwd says
// otherwise) and against that cwd; and, since the server's real working
// directory is unknown, it also counts when its last two or more
// segments, leading `..` dropped, are the end of a protected path.

// protected is the set of paths no call may name.
type protected struct {
	paths []string  // absolute and cleaned: each as given and as its symlinks resolve
	dirs  []string  // working directories relative paths are read against
	home  string    // for ~ and $HOME; "" when unknown
	term  *ast.Term // input.airlock
}

var kAirlock, kProtectedPaths = key("airlock"), key("protected_paths")

// newProtected resolves paths (and relative arguments against dirs).
func newProtected(paths, dirs []string) (*protected, error) {
	p := &protected{}
	p.home, _ = os.UserHomeDir()
	for _, s := range paths {
		if s == "" {
			return nil, errors.New("policy: protected path is empty")
		}
		abs, err := filepath.Abs(s)
		if err != nil {
			return nil, fmt.Errorf("policy: protected path %s: %w", s, err)
		}
		for _, c := range []string{abs, realPath(abs)} {
			if c == string(filepath.Separator) {
				return nil, fmt.Errorf("policy: protected path %s is the root directory", s)
			}
			if !slices.Contains(p.paths, c) {
				p.paths = append(p.paths, c)
			}
		}
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("policy: working directory %s: %w", d, err)
		}
		if !slices.Contains(p.dirs, abs) {
			p.dirs = append(p.dirs, abs)
		}
	}
	terms := make([]*ast.Term, len(p.paths))
	for i, s := range p.paths {
		terms[i] = ast.StringTerm(s)
	}
	p.term = ast.ObjectTerm([2]*ast.Term{kProtectedPaths, ast.ArrayTerm(terms...)})
	return p, nil
}

// realPath resolves the symlinks of the longest prefix of the absolute
// path p that exists, and cleans the result. The rest is kept as written:
// it does not exist, so no link can redirect it yet. It walks down from
// the root, one Lstat per element, so that a path whose top is missing
// (the common case for a path on another machine) costs one call.
func realPath(p string) string {
	sep := string(filepath.Separator)
	cur := filepath.VolumeName(p) + sep
	elems := strings.Split(p[len(filepath.VolumeName(p)):], sep)
	for i, e := range elems {
		switch e {
		case "", ".":
			continue
		case "..":
			// cur has no links left in it, so its parent is the real one.
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, e)
		fi, err := os.Lstat(next)
		if err != nil {
			// Missing, not a directory, or unreadable: nothing below can
			// be reached through a link Airlock can see.
			return filepath.Join(append([]string{next}, elems[i+1:]...)...)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			r, err := filepath.EvalSymlinks(next)
			if err != nil {
				// A dangling link or a loop: the OS cannot follow it either.
				return filepath.Join(append([]string{next}, elems[i+1:]...)...)
			}
			next = r
		}
		cur = next
	}
	return cur
}

// hit is an argument that names a protected path.
type hit struct {
	arg, path string
}

// check reports the first string in v that names a protected path.
func (p *protected) check(v ast.Value) (hit, bool) {
	var h hit
	found := false
	var walk func(v ast.Value)
	walk = func(v ast.Value) {
		if found {
			return
		}
		switch v := v.(type) {
		case ast.String:
			h, found = p.checkString(string(v))
		case *ast.Array:
			for i := range v.Len() {
				walk(v.Elem(i).Value)
			}
		case ast.Object:
			v.Foreach(func(k, x *ast.Term) {
				walk(k.Value)
				walk(x.Value)
			})
		case ast.Set:
			v.Foreach(func(x *ast.Term) { walk(x.Value) })
		}
	}
	walk(v)
	return h, found
}

// mayBePath is the cheap test that keeps ordinary strings (names, prose
// without a slash, numbers) away from the path work.
func mayBePath(s string) bool {
	return strings.ContainsAny(s, `/\~%$`) || len(s) >= 5 && strings.EqualFold(s[:5], "file:")
}

// separators split a command line into words: blanks, quotes, and the
// characters that join words in shell and option syntax.
func separator(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r', '\v', '\f', '"', '\'', '`', '=', ';', '|', '&', '<', '>', '(', ')', ',', '{', '}', '[', ']':
		return true
	}
	return false
}

func (p *protected) checkString(s string) (hit, bool) {
	if !mayBePath(s) {
		return hit{}, false
	}
	if path, ok := p.names(s); ok {
		return hit{s, path}, true
	}
	for _, w := range strings.FieldsFunc(s, separator) {
		if w == s || !mayBePath(w) {
			continue
		}
		if path, ok := p.names(w); ok {
			return hit{w, path}, true
		}
	}
	return hit{}, false
}

// names reports the protected path that the word w names, in any of the
// forms it could be read in.
func (p *protected) names(w string) (string, bool) {
	forms := []string{w}
	// Percent-encoding, applied up to three times over.
	for d, i := w, 0; i < 3 && strings.Contains(d, "%"); i++ {
		u, err := url.PathUnescape(d)
		if err != nil || u == d {
			break
		}
		forms = append(forms, u)
		d = u
	}
	for _, f := range forms {
		for _, c := range p.candidates(f) {
			if path, ok := p.under(c); ok {
				return path, true
			}
		}
	}
	return "", false
}

// candidates are the absolute paths a word may stand for (or a relative
// one, marked by not starting with a separator, for the suffix test).
func (p *protected) candidates(f string) []string {
	if len(f) >= 5 && strings.EqualFold(f[:5], "file:") {
		u, err := url.Parse(f)
		if err != nil {
			// Not a URL Go can read; strip the scheme and read what is left.
			f = strings.TrimLeft(f[5:], "/")
			f = "/" + f
		} else if u.Opaque != "" {
			f = u.Opaque
		} else {
			f = u.Path
		}
	}
	if p.home != "" {
		switch {
		case f == "~" || f == "$HOME" || f == "${HOME}":
			f = p.home
		case strings.HasPrefix(f, "~/"):
			f = p.home + f[1:]
		case strings.HasPrefix(f, "$HOME/"):
			f = p.home + f[5:]
		case strings.HasPrefix(f, "${HOME}/"):
			f = p.home + f[7:]
		}
	}
	if filepath.Separator != '/' {
		f = filepath.FromSlash(f)
	}
	if filepath.IsAbs(f) {
		return []string{f}
	}
	out := make([]string, 0, len(p.dirs)+1)
	for _, d := range p.dirs {
		out = append(out, filepath.Join(d, f))
	}
	return append(out, f)
}

// under reports the protected path that c is, or is inside of. An
// absolute c is compared as written (cleaned) and with its symlinks
// resolved; a relative one by its trailing segments.
func (p *protected) under(c string) (string, bool) {
	if !filepath.IsAbs(c) {
		return p.suffix(c)
	}
	clean := filepath.Clean(c)
	if path, ok := p.lexical(clean); ok {
		return path, true
	}
	// Resolve from the path as written: a `..` after a symlink climbs out
	// of the link's target, not out of the directory the link is in.
	return p.lexical(realPath(c))
}

func (p *protected) lexical(c string) (string, bool) {
	for _, path := range p.paths {
		if c == path || strings.HasPrefix(c, path) && c[len(path)] == filepath.Separator {
			return path, true
		}
	}
	return "", false
}

// suffix matches a relative path whose working directory is unknown: it
// names a protected path when two or more of its leading segments (after
// any `..`) are the last segments of that path.
func (p *protected) suffix(c string) (string, bool) {
	c = filepath.Clean(c)
	sep := string(filepath.Separator)
	for c == ".." || strings.HasPrefix(c, ".."+sep) {
		c = strings.TrimPrefix(strings.TrimPrefix(c, ".."), sep)
	}
	segs := strings.Split(c, sep)
	for n := 2; n <= len(segs); n++ {
		head := strings.Join(segs[:n], sep)
		for _, path := range p.paths {
			if strings.HasSuffix(path, sep+head) {
				return path, true
			}
		}
	}
	return "", false
}

// protectedReason is the deny reason: it names the argument and the path,
// so that the agent (and whoever reads the audit log) knows why.
func protectedReason(h hit) string {
	arg := h.arg
	if len(arg) > 200 {
		arg = arg[:200] + "…"
	}
	return fmt.Sprintf("Airlock: the arguments name %q, under %s, which holds Airlock's own state, config or secrets; no tool may reach it", arg, h.path)
}
