package brokertest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// DirState is every file in dir with its mode, mtime and bytes: two calls
// are equal only if nothing in the directory was written, for tests of
// what must be read-only.
func DirState(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil && !fi.IsDir() {
			t.Fatal(err)
		}
		out[e.Name()] = fi.Mode().String() + " " + fi.ModTime().Format(time.RFC3339Nano) + " " + string(data)
	}
	return out
}
