package main

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Files in a state directory.
const (
	dbFile      = "airlock.db"
	tokenFile   = "admin-token" // the API's bearer token, mode 0600
	apiInfoFile = "api.json"    // where the running broker's API listens
	loginFile   = "login-link"  // the login link made at start, mode 0600
	wrapsDir    = "wraps"       // the wraps' state directory in the state home
)

// stateHome is where Airlock keeps state by default:
// $XDG_STATE_HOME/airlock, or ~/.local/state/airlock.
func stateHome() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "airlock"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("state dir: no home directory; set --state-dir or AIRLOCK_STATE_DIR: %w", err)
	}
	return filepath.Join(home, ".local", "state", "airlock"), nil
}

// stateDirFor picks a broker's state directory: the flag, then
// AIRLOCK_STATE_DIR, then the config file, then the default: the state
// home for serve, and for every wrap one directory beneath it, wraps,
// which the first wrap owns and the others attach to.
func stateDirFor(flag, config string, wrap bool) (string, error) {
	for _, d := range []string{flag, os.Getenv("AIRLOCK_STATE_DIR"), config} {
		if d != "" {
			return d, nil
		}
	}
	home, err := stateHome()
	if err != nil {
		return "", err
	}
	if wrap {
		return filepath.Join(home, wrapsDir), nil
	}
	return home, nil
}

func ensureStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return nil
}

// adminToken reads the API's bearer token from path (the state
// directory's admin-token, or admin_token_file), creating it on first
// start. A token file that exists but cannot be used (empty, unreadable,
// open to other users) is an error naming it: replacing it would lock out
// every CLI that already read it, and guessing would loop.
func adminToken(path string) (string, error) {
	dir := filepath.Dir(path)
	tok, err := readSecretFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		if err != nil {
			return "", fmt.Errorf("admin token: %w", err)
		}
		return tok, nil
	}
	tok = rand.Text() + rand.Text()
	// Written under a temporary name and linked into place, so that a
	// concurrent start never reads a half-written (empty) file.
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(tok + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		// Another process made it first: use theirs, once.
		if tok, err = readSecretFile(path); err != nil {
			return "", fmt.Errorf("admin token: %w", err)
		}
		return tok, nil
	} else if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return tok, nil
}

// readSecretFile reads a secret kept alone in a file: the admin token, a
// Slack token, an OIDC client secret. It refuses a file that other users
// may read or write (whoever can read it can approve calls or speak as
// Airlock), and an empty one; errors name the file, never the secret.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s is open to other users (mode %04o); make it private with: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// apiInfo is what a running broker writes beside its token, so that the
// CLI finds it with no flags.
type apiInfo struct {
	URL       string    `json:"url"`
	PID       int       `json:"pid"`
	Server    string    `json:"server,omitempty"` // the wrapped server, for wrap
	StartedAt time.Time `json:"started_at"`
	// TokenFile is where the admin token is when it is not the state
	// directory's admin-token (admin_token_file).
	TokenFile string `json:"token_file,omitempty"`
	// Replica is the broker's name among the replicas of its store.
	Replica string `json:"replica"`
}

func writeAPIInfo(dir string, info apiInfo) error {
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	if err := writePrivateFile(filepath.Join(dir, apiInfoFile), append(data, '\n')); err != nil {
		return fmt.Errorf("api info: %w", err)
	}
	return nil
}

// writePrivateFile replaces path with data, readable by this user only.
// It writes a new file and renames it into place, so that a reader sees
// the old contents or the new, and never a file another user could open.
func writePrivateFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func removeAPIInfo(dir string) { os.Remove(filepath.Join(dir, apiInfoFile)) }

// brokerRef is a running broker the CLI can talk to.
type brokerRef struct {
	Dir   string
	Info  apiInfo
	Token string
}

// findBrokers returns the brokers whose state is in dir, and, when dir is
// the default state home, those of every `wrap` beneath it; none is an
// error saying where it looked.
func findBrokers(dir string, includeWraps bool) ([]brokerRef, error) {
	refs, err := runningBrokers(brokerDirs(dir, includeWraps))
	if err != nil {
		return nil, err
	}
	if len(refs) == 0 {
		if !includeWraps {
			// The directory was named: never suggest naming it.
			return nil, fmt.Errorf("no Airlock broker is running for %s; start `airlock serve` or `airlock wrap` on it", dir)
		}
		return nil, fmt.Errorf("no running Airlock broker found in %s or its wrap-* directories; start `airlock serve` or `airlock wrap`, or name another state directory with --state-dir", dir)
	}
	return refs, nil
}

// brokerDirs is dir and, with includeWraps, the wraps' directories in it:
// wraps, and the wrap-* of each wrap's own from before wraps shared one.
func brokerDirs(dir string, includeWraps bool) []string {
	dirs := []string{dir}
	if includeWraps {
		wraps, _ := filepath.Glob(filepath.Join(dir, "wrap-*"))
		if _, err := os.Stat(filepath.Join(dir, wrapsDir)); err == nil {
			wraps = append(wraps, filepath.Join(dir, wrapsDir))
		}
		sort.Strings(wraps)
		dirs = append(dirs, wraps...)
	}
	return dirs
}

// runningBrokers returns the brokers running on dirs: those whose api.json
// names a live process.
func runningBrokers(dirs []string) ([]brokerRef, error) {
	var refs []brokerRef
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, apiInfoFile))
		if err != nil {
			continue
		}
		// Airlock's own state file, written by a running broker.
		var info apiInfo
		if json.Unmarshal(data, &info) != nil || info.URL == "" || !processAlive(info.PID) {
			continue
		}
		tok, err := readSecretFile(cmp.Or(info.TokenFile, filepath.Join(d, tokenFile)))
		if err != nil {
			return nil, fmt.Errorf("reading the admin token of the broker in %s: %w", d, err)
		}
		refs = append(refs, brokerRef{Dir: d, Info: info, Token: tok})
	}
	return refs, nil
}
