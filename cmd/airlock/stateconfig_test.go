package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateConfigErrors(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("hunter2\n"), 0o600)
	open := filepath.Join(t.TempDir(), "open")
	os.WriteFile(open, []byte("hunter2\n"), 0o644)
	os.Chmod(open, 0o644)
	tests := map[string]struct{ yaml, env, want string }{
		"unknown key":         {"state: {postgress: x}\n", "", `line 1: unknown key "postgress"`},
		"not a URL":           {"state: {postgres: 'host=db user=airlock'}\n", "", "config: state.postgres: not a URL; write postgres://user@host:5432/database"},
		"another scheme":      {"state: {postgres: 'mysql://db/airlock'}\n", "", "config: state.postgres: a mysql: URL; write postgres://"},
		"password in the URL": {"state: {postgres: 'postgres://airlock:hunter2@db/airlock'}\n", "", "config: state.postgres: the URL carries a password, and the config file is no place for one; remove it from the URL and put it in a file named by state.password_file"},
		"keyword form":        {"state: {postgres: 'host=db password=hunter2'}\n", "", "config: state.postgres: not a URL"},
		"password in a query": {"state: {postgres: 'postgres://airlock@db/airlock?password=hunter2'}\n", "", "state.password_file"},
		"both":                {"state: {postgres: 'postgres://airlock@db/airlock'}\n", "postgres://x@db/y", "config: state.postgres is set and so is AIRLOCK_DATABASE_URL; name the database in one place"},
		"bad env URL":         {"", "mysql://x:hunter2@db/y", "AIRLOCK_DATABASE_URL: a mysql: URL"},
		"file without db":     {"state: {password_file: " + pw + "}\n", "", "config: state.password_file is set, but no database is"},
		"password twice":      {"state: {password_file: " + pw + "}\n", "postgres://x:hunter2@db/y", "config: state.password_file is set and AIRLOCK_DATABASE_URL carries a password too"},
		"missing file":        {"state: {postgres: 'postgres://x@db/y', password_file: /nonexistent}\n", "", "config: state.password_file: open /nonexistent"},
		"short lease":         {"state: {postgres: 'postgres://x@db/y', lease: 1s}\n", "", "config: state.lease is 1s; give at least 3s"},
		"open file":           {"state: {postgres: 'postgres://x@db/y', password_file: " + open + "}\n", "", "is open to other users (mode 0644)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Setenv(envDatabaseURL, tc.env)
			_, err := loadConfig(writeConfig(t, tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestStateConfigPicksTheDatabase(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pw"), []byte("hunter2\n"), 0o600)
	cfgPath := filepath.Join(dir, "airlock.yaml")
	os.WriteFile(cfgPath, []byte("state: {postgres: 'postgres://airlock@db/airlock', password_file: pw}\nadmin_token_file: token\n"), 0o600)
	t.Setenv(envDatabaseURL, "")
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.State.database() || cfg.State.url != "postgres://airlock@db/airlock" || cfg.State.password != "hunter2" {
		t.Errorf("state = %+v", cfg.State)
	}
	if cfg.State.PasswordFile != filepath.Join(dir, "pw") || cfg.AdminTokenFile != filepath.Join(dir, "token") {
		t.Errorf("paths are not read from the config's directory: %q %q", cfg.State.PasswordFile, cfg.AdminTokenFile)
	}

	// The environment may carry the password; nothing else names a database.
	t.Setenv(envDatabaseURL, "postgresql://airlock:hunter2@db:5433/airlock?sslmode=require")
	cfg, err = loadConfig(writeConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.State.url != "postgresql://airlock:hunter2@db:5433/airlock?sslmode=require" || cfg.State.password != "" {
		t.Errorf("state from the environment = %+v", cfg.State)
	}
	t.Setenv(envDatabaseURL, "")
	if cfg, err = loadConfig(""); err != nil || cfg.State.database() {
		t.Errorf("without a database: %+v, %v", cfg.State, err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://airlock:hunter2@db/airlock":                 "postgres://airlock:xxxxx@db/airlock",
		"postgres://airlock@db/airlock":                         "postgres://airlock@db/airlock",
		"postgres://db/airlock?password=hunter2&sslmode=verify": "postgres://db/airlock?password=xxxxx&sslmode=verify",
		"postgres://a:p%40ss@db/x?sslpassword=hunter2":          "postgres://a:xxxxx@db/x?sslpassword=xxxxx",
		"postgres://a:hunter2@db:bad port/x":                    "(a database URL that does not parse)",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := withoutPassword("postgres://a:hunter2@db/x?password=y&sslmode=require"); got != "postgres://a@db/x?sslmode=require" {
		t.Errorf("withoutPassword = %q", got)
	}
}
