package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The MCP conformance suite, in server mode, against the go-sdk's
// everything-server: directly over its own HTTP transport, and through
// `airlock serve` wrapping it over stdio. Every check that passes directly
// must pass through Airlock. The direct results are kept in
// testdata/conformance/direct.txt, so that a change in the suite or the
// server shows up as a diff; -update rewrites it.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("the conformance suite takes seconds; skipped in -short mode")
	}
	node := brokertest.Node(t)
	suite := filepath.Join(brokertest.RepoRoot(t), "testdata", "node", "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")
	if _, err := os.Stat(suite); err != nil {
		brokertest.Missing(t, "the MCP conformance suite", "run `npm ci --prefix testdata/node`")
	}
	server := brokertest.EverythingServer(t)

	addr := freePort(t)
	direct := exec.Command(server, "-http", addr, "-stateless=false")
	if err := direct.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Process.Kill(); direct.Wait() })
	waitListening(t, addr)
	directResults := runConformance(t, node, suite, "http://"+addr+"/")

	// The suite's tools carry no annotations, which the default policy
	// holds: this test is about the relay, so everything is allowed. The
	// suite opens a session for each scenario and ends none, past the
	// default limits on sessions and children.
	base, _ := startServe(t, "policy: {dir: "+allowAllPolicy(t)+"}\n"+
		"limits: {sessions: 256, sessions_per_principal: 256, children_per_server: 256}\n"+
		"servers:\n  everything:\n    command: "+server+"\n")
	viaAirlock := runConformance(t, node, suite, base+"/mcp/everything")

	golden := filepath.Join(brokertest.RepoRoot(t), "testdata", "conformance", "direct.txt")
	got := strings.Join(directResults, "\n") + "\n"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading the baseline (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("direct results differ from %s (run with -update if the change is expected):\ngot:\n%swant:\n%s", golden, got, want)
	}
	passed := 0
	for _, line := range directResults {
		if !strings.HasSuffix(line, " SUCCESS") {
			continue
		}
		passed++
		if !slices.Contains(viaAirlock, line) {
			t.Errorf("passes directly but not through Airlock: %s", line)
		}
	}
	t.Logf("%d checks pass directly; all of them pass through Airlock", passed)
}

// runConformance runs every active server scenario against url and returns
// one "scenario/check STATUS" line per check, sorted.
func runConformance(t *testing.T, node, suite, url string) []string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command(node, suite, "server", "--url", url, "-o", out)
	cmd.Dir = out
	log, err := cmd.CombinedOutput()
	if err != nil {
		// The suite exits non-zero when a check fails; the results say which.
		t.Logf("conformance suite against %s: %v", url, err)
	}
	dirs, _ := os.ReadDir(out)
	var lines []string
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(out, d.Name(), "checks.json"))
		if err != nil {
			continue
		}
		var checks []struct{ ID, Status string }
		if err := json.Unmarshal(data, &checks); err != nil {
			t.Fatalf("%s: %v", d.Name(), err)
		}
		scenario := scenarioName(d.Name())
		for _, c := range checks {
			if c.Status == "INFO" {
				continue // narration, not a verdict
			}
			lines = append(lines, fmt.Sprintf("%s/%s %s", scenario, c.ID, c.Status))
		}
	}
	if len(lines) == 0 {
		t.Fatalf("no conformance results from %s:\n%s", url, log)
	}
	slices.Sort(lines)
	return lines
}

// scenarioName strips the "server-" prefix and the timestamp from a result
// directory's name.
func scenarioName(dir string) string {
	return resultStamp.ReplaceAllString(strings.TrimPrefix(dir, "server-"), "")
}

var resultStamp = regexp.MustCompile(`-\d{4}-\d{2}-\d{2}T[\d-]+Z$`)

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := netDial(addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listening", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
