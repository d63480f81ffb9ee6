package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// envDatabaseURL names a PostgreSQL database in the environment, in place
// of state.postgres. Unlike the config file, the environment may carry the
// password in the URL: it is where deployments keep secrets.
const envDatabaseURL = "AIRLOCK_DATABASE_URL"

// StateConfig is the state section: where approvals, grants, tokens, the
// tools first seen and the audit log are kept. Empty, they are in a bbolt
// file in state_dir, owned by one process; with a database, in PostgreSQL,
// shared by every replica that names it (docs/ha.md).
type StateConfig struct {
	// Postgres is the database's URL, postgres://user@host:5432/db,
	// without a password: the config is no place for secrets.
	Postgres string `yaml:"postgres"`
	// PasswordFile holds the database password (mode 0600). Without it
	// the password comes from AIRLOCK_DATABASE_URL, PGPASSWORD or
	// ~/.pgpass, as for psql.
	PasswordFile string `yaml:"password_file"`
	// Lease is how long a replica that stopped answering keeps its held
	// calls before a peer abandons them (broker.Options.LeaseTTL); 0
	// means the broker's default, 30s.
	Lease time.Duration `yaml:"lease"`

	url      string // the database in effect: Postgres or AIRLOCK_DATABASE_URL; "" for bbolt
	password string // read from PasswordFile
}

// database reports whether the state is in PostgreSQL.
func (s *StateConfig) database() bool { return s.url != "" }

// resolve picks the database (state.postgres or env, never both: a
// deployment that sets both has two answers to "which database", and
// writing approvals to the wrong one is worse than not starting), checks
// its URL and reads the password file.
func (s *StateConfig) resolve(env string) error {
	if s.Lease != 0 && s.Lease < minLease {
		return fmt.Errorf("config: state.lease is %s; give at least %s, since a replica renews it every third and a database's pause must not cost a live replica its calls", s.Lease, minLease)
	}
	switch {
	case s.Postgres != "" && env != "":
		return fmt.Errorf("config: state.postgres is set and so is %s; name the database in one place", envDatabaseURL)
	case s.Postgres != "":
		if err := checkDatabaseURL(s.Postgres, true); err != nil {
			return fmt.Errorf("config: state.postgres: %w", err)
		}
		s.url = s.Postgres
	case env != "":
		if err := checkDatabaseURL(env, false); err != nil {
			return fmt.Errorf("%s: %w", envDatabaseURL, err)
		}
		s.url = env
	}
	if s.PasswordFile == "" {
		return nil
	}
	if s.url == "" {
		return fmt.Errorf("config: state.password_file is set, but no database is: set state.postgres (or %s)", envDatabaseURL)
	}
	if urlHasPassword(s.url) {
		return fmt.Errorf("config: state.password_file is set and %s carries a password too; give the password once", envDatabaseURL)
	}
	var err error
	if s.password, err = readSecretFile(s.PasswordFile); err != nil {
		return fmt.Errorf("config: state.password_file: %w", err)
	}
	return nil
}

// minLease is the shortest state.lease accepted.
const minLease = 3 * time.Second

// secretParams are the query parameters of a libpq URL that carry secrets.
var secretParams = []string{"password", "sslpassword"}

// checkDatabaseURL accepts a postgres:// (or postgresql://) URL. One read
// from the config file must carry no password: a config is shared,
// reviewed and logged, and the password goes in password_file instead.
func checkDatabaseURL(s string, inFile bool) error {
	// The value is not quoted in these errors: one that is not a URL
	// (a keyword=value string) may hold a password anywhere.
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Scheme == "" || u.Opaque != "":
		return errors.New("not a URL; write postgres://user@host:5432/database (keyword=value connection strings are not read)")
	case u.Scheme != "postgres" && u.Scheme != "postgresql":
		return fmt.Errorf("a %s: URL; write postgres://user@host:5432/database", u.Scheme)
	}
	if inFile && urlHasPassword(s) {
		return errors.New("the URL carries a password, and the config file is no place for one; " +
			"remove it from the URL and put it in a file named by state.password_file (mode 0600), or in PGPASSWORD")
	}
	return nil
}

// urlHasPassword reports whether a database URL carries a password, in its
// user info or its query.
func urlHasPassword(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return strings.Contains(s, "@") // unparseable: assume the worst
	}
	if _, ok := u.User.Password(); ok {
		return true
	}
	q := u.Query()
	for _, p := range secretParams {
		if q.Has(p) {
			return true
		}
	}
	return false
}

// redactURL is a database URL fit for logs and errors: the password, if
// any, replaced by xxxxx.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(a database URL that does not parse)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	redacted := false
	for _, p := range secretParams {
		if q.Has(p) {
			q.Set(p, "xxxxx")
			redacted = true
		}
	}
	if redacted {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// withoutPassword is the URL with no password at all, for files the CLI
// reads back (database.json).
func withoutPassword(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	q := u.Query()
	if q.Has("password") || q.Has("sslpassword") {
		for _, p := range secretParams {
			q.Del(p)
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// stateEnv is the environment's database URL, read in one place so that
// tests and the CLI agree.
func stateEnv() string { return os.Getenv(envDatabaseURL) }
