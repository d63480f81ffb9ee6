package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func version(reason string) string {
	return "package airlock\n\ndecision := {\"action\": \"allow\", \"reason\": \"" + reason + "\"}\n"
}

// broken compiles without strict mode but not with it (x is unused): if it
// were ever served, calls would be allowed with the reason "bad".
const broken = "package airlock\n\ndecision := {\"action\": \"allow\", \"reason\": \"bad\"} if {\n\tx := 1\n}\n"

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchGoodBadGood edits a real directory while calls are being
// decided: the broken revision must never serve, and no call may fail.
func TestWatchGoodBadGood(t *testing.T) {
	var l logs
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"airlock.rego": version("v1")})
	e := newEngine(t, Options{Dir: dir, Logger: l.logger()})

	ctx, cancel := context.WithCancel(t.Context())
	var watching, deciding sync.WaitGroup
	watching.Go(func() {
		if err := e.Watch(ctx); err != nil {
			t.Errorf("Watch: %v", err)
		}
	})

	// Decide continuously from two goroutines and remember every reason.
	var (
		mu      sync.Mutex
		reasons = map[string]int{}
		stop    atomic.Bool
	)
	for range 2 {
		deciding.Go(func() {
			for !stop.Load() {
				d := e.Decide(context.Background(), call())
				mu.Lock()
				reasons[d.Reason]++
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	defer func() {
		stop.Store(true)
		deciding.Wait()
		cancel()
		watching.Wait()
		mu.Lock()
		defer mu.Unlock()
		for reason := range reasons {
			if reason != "v1" && reason != "v2" {
				t.Errorf("a call was decided with reason %q; only v1 and v2 may serve", reason)
			}
		}
		if reasons["v1"] == 0 || reasons["v2"] == 0 {
			t.Errorf("reasons seen = %v, want both revisions", reasons)
		}
	}()
	current := func() string { return e.Decide(t.Context(), call()).Reason }
	waitFor(t, "the watcher to start", func() bool { return l.find("watching policy directory", nil) != nil })
	v1 := e.Status().Revision

	// Bad: the error is reported with file:row:col and v1 keeps serving.
	writeFiles(t, dir, map[string]string{"airlock.rego": broken})
	waitFor(t, "the failed reload", func() bool { return e.Status().LastError != "" })
	st := e.Status()
	if want := filepath.Join(dir, "airlock.rego") + ":4:2:"; !strings.Contains(st.LastError, want) || st.LastErrorAt.IsZero() {
		t.Errorf("status after a bad save = %+v, want LastError naming %s", st, want)
	}
	if st.Revision != v1 || current() != "v1" {
		t.Errorf("revision %s serving %q after a bad save, want v1 still serving", st.Revision, current())
	}
	if rec := l.find("policy reload failed; still serving the previous revision", map[string]string{"revision": v1}); rec == nil || !strings.Contains(rec["err"].(string), ":4:2:") {
		t.Errorf("reload failure not logged with file:row:col:\n%s", l.String())
	}

	// Good again, in a new subdirectory: watched recursively.
	if err := os.Remove(filepath.Join(dir, "airlock.rego")); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"policies/airlock.rego": version("v2")})
	waitFor(t, "v2 to serve", func() bool { return current() == "v2" })
	st = e.Status()
	if st.LastError != "" || !st.LastErrorAt.IsZero() || st.Revision == v1 {
		t.Errorf("status after a good save = %+v, want the error cleared and a new revision", st)
	}
	if l.find("policy reloaded", map[string]string{"revision": st.Revision, "previous_revision": v1}) == nil {
		t.Errorf("successful reload not logged with its revision:\n%s", l.String())
	}

	// A change below the new subdirectory is seen too.
	writeFiles(t, dir, map[string]string{"policies/more/extra.rego": "package airlock.extra\n\nx := 1\n"})
	waitFor(t, "the nested file to load", func() bool { return len(e.Status().Modules) == 2 })
}

func TestReloadKeepsServingOnFailure(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"airlock.rego": version("v1")})
	e := newEngine(t, Options{Dir: dir})
	v1 := e.Status()

	// Unchanged files: nothing to swap.
	if err := e.Reload(t.Context()); err != nil || e.Status().LoadedAt != v1.LoadedAt {
		t.Errorf("reload of unchanged files: %v, loaded at %v (was %v)", err, e.Status().LoadedAt, v1.LoadedAt)
	}

	writeFiles(t, dir, map[string]string{"airlock.rego": broken})
	if err := e.Reload(t.Context()); err == nil {
		t.Fatal("reload of a broken policy succeeded")
	}
	if d := e.Decide(t.Context(), call()); d.Reason != "v1" || d.Revision != v1.Revision {
		t.Errorf("after a failed reload: %+v, want v1", d)
	}

	writeFiles(t, dir, map[string]string{"airlock.rego": version("v2")})
	if err := e.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(t.Context(), call()); d.Reason != "v2" || d.Revision == v1.Revision {
		t.Errorf("after a good reload: %+v, want v2", d)
	}
	if st := e.Status(); st.LastError != "" {
		t.Errorf("LastError = %q after a good reload", st.LastError)
	}
}

func TestWatchEmbeddedWaitsForCancel(t *testing.T) {
	e := newEngine(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := e.Watch(ctx); err != nil {
		t.Errorf("Watch = %v", err)
	}
	if ctx.Err() == nil {
		t.Error("Watch returned before its context was done")
	}
	if err := e.Reload(t.Context()); err != nil {
		t.Errorf("Reload of the embedded library = %v", err)
	}
}
