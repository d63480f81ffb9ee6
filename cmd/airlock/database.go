package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/airlock-mcp/airlock/broker/pgstore"
)

// Files a replica on PostgreSQL keeps in its state directory.
const (
	// databaseFile names the database the state directory's broker uses,
	// without a password, so that the CLI reads it when no broker runs.
	databaseFile = "database.json"
	// replicaLock is held (flock) by the broker running on the directory:
	// with the state in PostgreSQL no database file locks the directory,
	// and two replicas sharing one would overwrite each other's api.json.
	replicaLock = "replica.lock"
)

// databaseOpenTimeout bounds opening the database at start: a host that
// drops packets would otherwise leave serve hanging with no word.
const databaseOpenTimeout = 30 * time.Second

// openDatabase opens the PostgreSQL store at dbURL. Its errors never
// carry the password: they name the database by its redacted URL, and
// what the driver says is scrubbed of the password besides.
func openDatabase(ctx context.Context, dbURL, password string, log *slog.Logger) (*pgstore.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, databaseOpenTimeout)
	defer cancel()
	st, err := pgstore.Open(ctx, dbURL, pgstore.Options{Logger: log, Password: password})
	if err == nil {
		return st, nil
	}
	msg := scrub(err.Error(), password, urlPassword(dbURL))
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		msg = fmt.Sprintf("no answer within %s (%s)", databaseOpenTimeout, msg)
	}
	if errors.Is(err, pgstore.ErrSchemaTooNew) {
		return nil, fmt.Errorf("state: the database %s: %s: %w", redactURL(dbURL), msg, pgstore.ErrSchemaTooNew)
	}
	return nil, fmt.Errorf("state: cannot open the database %s: %s", redactURL(dbURL), msg)
}

// urlPassword is the password a database URL carries, if any.
func urlPassword(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}

// scrub replaces every secret in msg: a driver may quote its connection
// string in an error.
func scrub(msg string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
			if e := url.QueryEscape(s); e != s {
				msg = strings.ReplaceAll(msg, e, "xxxxx")
			}
		}
	}
	return msg
}

// databaseInfo is what databaseFile holds.
type databaseInfo struct {
	Postgres     string `json:"postgres"` // without a password
	PasswordFile string `json:"password_file,omitempty"`
}

func writeDatabaseInfo(dir string, s *StateConfig) error {
	data, err := json.MarshalIndent(databaseInfo{Postgres: withoutPassword(s.url), PasswordFile: s.PasswordFile}, "", "  ")
	if err != nil {
		return err
	}
	if err := writePrivateFile(filepath.Join(dir, databaseFile), append(data, '\n')); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return nil
}

// readDatabaseInfo reads dir's databaseFile; ok is false when it has none.
func readDatabaseInfo(dir string) (info databaseInfo, ok bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, databaseFile))
	if errors.Is(err, fs.ErrNotExist) {
		return info, false, nil
	}
	if err != nil {
		return info, false, err
	}
	// Airlock's own file, written by a broker of this user.
	if err := json.Unmarshal(data, &info); err != nil || info.Postgres == "" {
		return info, false, fmt.Errorf("%s is not a database file Airlock wrote", filepath.Join(dir, databaseFile))
	}
	return info, true, nil
}

// databasePassword is the password the CLI gives the database a state
// directory names: its password file's, or that of AIRLOCK_DATABASE_URL
// when it names the same database; else none, and the driver looks in
// PGPASSWORD and ~/.pgpass.
func (info databaseInfo) url() (dbURL, password string, err error) {
	if info.PasswordFile != "" {
		p, err := readSecretFile(info.PasswordFile)
		if err != nil {
			return "", "", fmt.Errorf("the database's password file: %w", err)
		}
		return info.Postgres, p, nil
	}
	if env := stateEnv(); env != "" && withoutPassword(env) == info.Postgres {
		return env, "", nil
	}
	return info.Postgres, "", nil
}

// errStateDirInUse reports a state directory another broker runs on.
var errStateDirInUse = errors.New("the state directory is in use by another broker")

// lockStateDir takes dir's replica lock, held until the returned file is
// closed (or the process ends, however it ends).
func lockStateDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, replicaLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("state dir %s: %w; give each replica its own state_dir (or --state-dir)", dir, errStateDirInUse)
		}
		return nil, fmt.Errorf("state dir: lock %s: %w", replicaLock, err)
	}
	return f, nil
}

var unsafeHostChars = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// newReplicaID names this process among the replicas of a store: the host
// and a random suffix, new at every start, so that a restarted replica is
// a new one whose predecessor's pending approvals are abandoned.
func newReplicaID() string {
	host, err := os.Hostname()
	host = strings.Trim(unsafeHostChars.ReplaceAllString(host, "-"), "-")
	if err != nil || host == "" {
		host = "airlock"
	}
	if len(host) > 40 {
		host = host[:40]
	}
	b := make([]byte, 3)
	rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}
