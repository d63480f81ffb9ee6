// Package pgtest starts private PostgreSQL clusters for tests: a real
// server, never a mock, in a temporary directory on a free loopback port.
//
// Debian keeps initdb and pg_ctl off PATH, in PostgreSQL's versioned lib
// directory; pgtest looks there. PostgreSQL refuses to run as root, so a
// test run as root (CI's) runs the cluster as the postgres user the
// Debian package creates. Without PostgreSQL a test is skipped with a
// message naming the package, or failed when AIRLOCK_REQUIRE_TOOLS=1.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

const hint = "install Debian's postgresql package (apt-get install postgresql; see .ci/run)"

// Cluster is one running PostgreSQL server.
type Cluster struct {
	bin  string // the directory of initdb, pg_ctl and postgres
	dir  string // the temporary directory: data/ and the socket
	port int
	cred *syscall.Credential // nil when not root

	mu      sync.Mutex
	running bool
	dbs     atomic.Int64
}

var (
	shared     *Cluster
	sharedErr  error
	sharedOnce sync.Once
)

// Shared returns the test binary's one cluster, starting it on first use.
// Call Stop from TestMain (StopShared) so that it does not outlive the
// tests; a cluster left behind is stopped by its postmaster noticing its
// data directory gone at the next start of a test binary at worst.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	bin := binDir()
	if bin == "" {
		brokertest.Missing(t, "PostgreSQL (initdb)", hint)
	}
	sharedOnce.Do(func() { shared, sharedErr = Start(bin) })
	if sharedErr != nil {
		t.Fatalf("pgtest: %v", sharedErr)
	}
	return shared
}

// Private starts a cluster of the test's own, for a test that stops and
// starts it (as a database that goes away does) without disturbing the
// tests sharing the shared one. It is stopped and removed when the test
// ends.
func Private(t testing.TB) *Cluster {
	t.Helper()
	bin := binDir()
	if bin == "" {
		brokertest.Missing(t, "PostgreSQL (initdb)", hint)
	}
	c, err := Start(bin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		c.Stop()
		os.RemoveAll(c.dir)
	})
	return c
}

// StopShared stops the shared cluster if one was started; TestMain calls
// it after the tests ran.
func StopShared() {
	if shared != nil {
		shared.Stop()
		os.RemoveAll(shared.dir)
	}
}

// Main runs a package's tests (brokertest.Main) and then stops the shared
// cluster: call it from TestMain.
func Main(m interface{ Run() int }) int {
	defer StopShared()
	return brokertest.Main(m)
}

// binDir finds PostgreSQL's server binaries: on PATH, or the newest of
// Debian's /usr/lib/postgresql/N/bin.
func binDir() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start initializes and starts a new cluster with the binaries in bin.
// Its data stay durable (fsync on): the tests measure real commits.
func Start(bin string) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "airlock-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL needs another user, and there is no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if out, err := c.run("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if c.port, err = freePort(); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nmax_connections = 400\n"+
		"shared_buffers = 128MB\nlog_min_messages = warning\n", c.port, dir)
	if err := appendFile(filepath.Join(c.data(), "postgresql.conf"), conf); err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// run runs one of the cluster's binaries as the cluster's user.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.CombinedOutput()
}

// Start starts a stopped cluster again, on the same port.
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return nil
	}
	if out, err := c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	c.running = true
	return nil
}

// Stop stops the cluster (fast: open connections are closed), as a
// database that goes away would.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return nil
	}
	c.running = false
	if out, err := c.run("pg_ctl", "-D", c.data(), "-m", "fast", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Port is the cluster's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// URL is a connection URL for database db as the superuser.
func (c *Cluster) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: fmt.Sprintf("127.0.0.1:%d", c.port), Path: "/" + db,
		RawQuery: "sslmode=disable"}
	return u.String()
}

// NewDatabase creates a fresh, empty database for the test and returns its
// connection URL. It is dropped when the test ends.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", c.dbs.Add(1), sanitize(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// WITH (FORCE) ends the connections a failed test left behind.
		c.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	return c.URL(name)
}

func (c *Cluster) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// sanitize keeps a test's name readable in a database name of at most 63
// bytes.
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 40 {
		s = s[len(s)-40:]
	}
	return s
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
