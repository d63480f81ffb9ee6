package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readDoc returns a file of docs/ (or the README, given "../README.md").
func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the part of a Markdown document under the heading that
// starts with title, up to the next heading of the same level.
func section(t *testing.T, doc, title string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+title)
	if i < 0 {
		t.Fatalf("no section %q", title)
	}
	level := title[:strings.IndexByte(title, ' ')+1]
	rest := doc[i+1+len(title):]
	if j := strings.Index(rest, "\n"+level); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

var fenceRE = regexp.MustCompile("(?s)\n```([a-z]*)\n(.*?)\n```")

// TestPolicyWalkthrough runs docs/policy.md's ten-minute walk-through as a
// reader would, in an empty directory: it writes each Rego file the text
// names, runs each console command and compares what it prints with what
// the document shows ("..." stands for lines left out). A change to the
// library that alters a quoted output (the number of tests, of files)
// fails here until the document says it.
func TestPolicyWalkthrough(t *testing.T) {
	walk := section(t, readDoc(t, "policy.md"), "## Ten minutes")
	t.Chdir(t.TempDir())
	fileRE := regexp.MustCompile("`(\\./policy/[a-z_]+\\.rego)`")
	prev, ran, wrote := 0, 0, 0
	for _, m := range fenceRE.FindAllStringSubmatchIndex(walk, -1) {
		prose, lang, body := walk[prev:m[0]], walk[m[2]:m[3]], walk[m[4]:m[5]]
		prev = m[1]
		switch lang {
		case "rego":
			names := fileRE.FindAllStringSubmatch(prose, -1)
			if len(names) == 0 {
				t.Fatalf("a Rego block of the walk-through names no file before it:\n%s", body)
			}
			write(t, ".", map[string]string{names[len(names)-1][1]: body + "\n"})
			wrote++
		case "console":
			for _, c := range consoleCommands(t, body) {
				stdout, stderr, err := run(t, c.stdin, c.args...)
				if err != nil {
					t.Fatalf("$ airlock %s: %v\n%s", strings.Join(c.args, " "), err, stderr)
				}
				if problem := matchOutput(c.want, stdout); problem != "" {
					t.Errorf("$ airlock %s: %s\nthe document shows:\n%s\nthe command printed:\n%s",
						strings.Join(c.args, " "), problem, strings.Join(c.want, "\n"), stdout)
				}
				ran++
			}
		}
	}
	if ran < 3 || wrote < 3 {
		t.Fatalf("the walk-through ran %d commands and wrote %d files; the test no longer reads it", ran, wrote)
	}
}

type consoleCommand struct {
	args  []string
	stdin string
	want  []string
}

var echoRE = regexp.MustCompile(`(?s)^echo '(.*)' \| airlock (.*)$`)

// consoleCommands reads a console block: "$ " starts a command (which goes
// on while a single quote is open), and the lines up to the next one are
// its output. A command is `airlock …` or `echo '…' | airlock …`.
func consoleCommands(t *testing.T, block string) []consoleCommand {
	t.Helper()
	var cs []consoleCommand
	lines := strings.Split(block, "\n")
	for i := 0; i < len(lines); i++ {
		line, ok := strings.CutPrefix(lines[i], "$ ")
		if !ok {
			if len(cs) == 0 {
				t.Fatalf("console block does not start with a command: %q", lines[i])
			}
			cs[len(cs)-1].want = append(cs[len(cs)-1].want, lines[i])
			continue
		}
		for strings.Count(line, "'")%2 == 1 && i+1 < len(lines) {
			i++
			line += "\n" + lines[i]
		}
		var c consoleCommand
		if m := echoRE.FindStringSubmatch(line); m != nil {
			c.stdin, line = m[1], m[2]
		} else if line, ok = strings.CutPrefix(line, "airlock "); !ok {
			t.Fatalf("the walk-through runs something other than airlock: %q", line)
		}
		c.args = strings.Fields(line)
		cs = append(cs, c)
	}
	return cs
}

// matchOutput compares printed output with the lines a document shows, a
// line "..." standing for any number of lines. It returns what differs.
func matchOutput(want []string, got string) string {
	g := strings.Split(strings.TrimRight(got, "\n"), "\n")
	j := 0
	for i := 0; i < len(want); i++ {
		w := strings.TrimRight(want[i], " ")
		if strings.TrimSpace(w) == "..." {
			if i+1 == len(want) {
				return ""
			}
			next := strings.TrimRight(want[i+1], " ")
			for j < len(g) && strings.TrimRight(g[j], " ") != next {
				j++
			}
			continue
		}
		if j >= len(g) {
			return "missing line " + strconvQuote(w)
		}
		if strings.TrimRight(g[j], " ") != w {
			return "line " + strconvQuote(g[j]) + " where the document shows " + strconvQuote(w)
		}
		j++
	}
	if j < len(g) {
		return "extra line " + strconvQuote(g[j])
	}
	return ""
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// TestAPIInfoDocumented checks that docs/api.md's row for api.json names
// the fields a broker writes there: in its JSON object those it always
// writes, and after it those it writes only sometimes (omitempty).
func TestAPIInfoDocumented(t *testing.T) {
	var row string
	for line := range strings.SplitSeq(readDoc(t, "api.md"), "\n") {
		if strings.HasPrefix(line, "| `api.json` |") {
			row = line
		}
	}
	obj := regexp.MustCompile("`(\\{[^`]*\\})`").FindStringSubmatchIndex(row)
	if obj == nil {
		t.Fatalf("docs/api.md has no row for api.json with a JSON object: %q", row)
	}
	keys := func(s string) []string {
		var ks []string
		for _, m := range regexp.MustCompile(`"([a-z_]+)"`).FindAllStringSubmatch(s, -1) {
			if !slices.Contains(ks, m[1]) {
				ks = append(ks, m[1])
			}
		}
		slices.Sort(ks)
		return ks
	}
	var always []string
	for _, m := range regexp.MustCompile(`"([a-z_]+)":`).FindAllStringSubmatch(row[obj[2]:obj[3]], -1) {
		always = append(always, m[1])
	}
	slices.Sort(always)
	sometimes := keys(row[obj[1]:])

	var wantAlways, wantSometimes []string
	typ := reflect.TypeFor[apiInfo]()
	for i := range typ.NumField() {
		name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
			wantSometimes = append(wantSometimes, name)
		} else {
			wantAlways = append(wantAlways, name)
		}
	}
	slices.Sort(wantAlways)
	slices.Sort(wantSometimes)
	if !slices.Equal(always, wantAlways) {
		t.Errorf("docs/api.md shows api.json as %v; a broker always writes %v", always, wantAlways)
	}
	if !slices.Equal(sometimes, wantSometimes) {
		t.Errorf("docs/api.md names %v as written only sometimes in api.json; a broker writes %v only sometimes", sometimes, wantSometimes)
	}
}
