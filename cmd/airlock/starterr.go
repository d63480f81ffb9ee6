package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/airlock-mcp/airlock/broker/boltstore"
)

// The errors of a start that cannot go on say what is in the way and what
// to do, not only what the system call said.

// listenError explains a listen on addr that failed because the address
// is taken, as the demo does.
func listenError(addr string, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	return fmt.Errorf("%w: %s is taken, by another program or another Airlock; "+
		"pick another address with --listen or the config's listen key (127.0.0.1:0 takes any free port)", err, addr)
}

// lockedError names the broker that holds the state directory, from the
// api.json it wrote, when err says the database (or, with the state in
// PostgreSQL, the directory) is locked. A broker that
// is still starting has not written api.json yet: then err says enough.
func lockedError(stateDir string, err error) error {
	if !errors.Is(err, boltstore.ErrLocked) && !errors.Is(err, errStateDirInUse) {
		return err
	}
	data, rerr := os.ReadFile(filepath.Join(stateDir, apiInfoFile))
	var info apiInfo
	if rerr != nil || json.Unmarshal(data, &info) != nil || info.URL == "" || !processAlive(info.PID) {
		return err
	}
	what := "a broker"
	if info.Server != "" {
		what = "airlock wrap of " + termSafe(info.Server)
	}
	return fmt.Errorf("%w; it is %s, pid %d, at %s since %s: stop it, or give this one another --state-dir",
		err, what, info.PID, termSafe(info.URL), info.StartedAt.Local().Format(time.RFC3339))
}

// checkCommand makes sure a stdio server's program exists and can run,
// before anything else starts: wrap should fail before it makes a login
// link for a broker that cannot serve anything. The lookup is the one the
// child's start does (PATH, or relative to the server's cwd).
func checkCommand(sc *ServerConfig) error {
	if sc.Command == "" {
		return nil
	}
	path := sc.Command
	if strings.ContainsRune(path, '/') && !filepath.IsAbs(path) && sc.Cwd != "" {
		path = filepath.Join(sc.Cwd, path)
	}
	if _, err := exec.LookPath(path); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("server command %q: not found in PATH (%s)", sc.Command, os.Getenv("PATH"))
		}
		return fmt.Errorf("server command %q: %w", sc.Command, err)
	}
	return nil
}
