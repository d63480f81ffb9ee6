package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
	"github.com/airlock-mcp/airlock/broker/remote"
	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/wire"
)

func newWrapCmd() *cobra.Command {
	var name, configPath, stateDir, listen string
	cmd := &cobra.Command{
		Use:   "wrap [--name NAME] [-c airlock.yaml] -- CMD [ARGS...]",
		Short: "Guard one stdio MCP server: run it as a child and serve it on stdio",
		Long: `wrap starts CMD as a child process speaking MCP over stdio, and serves it to
the MCP client on Airlock's own stdin and stdout. Use it in place of the
server's command in your client's config. stdout carries only the protocol;
logs and the server's stderr go to stderr.

When the client closes stdin, the server is stopped (stdin closed, then
SIGTERM, then SIGKILL) and airlock exits 0. If the server dies, calls in
flight get an error and airlock exits 1, naming the server's exit status.`,
		Example: `  airlock wrap --name filesystem -- npx -y @modelcontextprotocol/server-filesystem /srv/data
  airlock wrap --name github -c airlock.yaml -- github-mcp-server stdio`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			named := "--name"
			if name == "" {
				name, named = guessName(args), "its command; --name sets another"
			}
			sc := cfg.Servers[name]
			if sc == nil {
				sc = &ServerConfig{}
			}
			// The command line decides what runs; the config may add env,
			// cwd and trust settings for a server of the same name.
			sc.Command, sc.Args, sc.URL = args[0], args[1:], ""
			if err := checkCommand(sc); err != nil {
				return err
			}
			log := newLogger(os.Stderr, cfg.LogLevel)
			// Policies match servers by name: say which one this is.
			log.Info("wrapping server "+name, "server", name, "named_from", named)
			dir, err := stateDirFor(stateDir, cfg.StateDir, true)
			if err != nil {
				return err
			}
			return wrap(cmd.Context(), cfg, log, dir, listen, newUpstream(name, sc, log, os.Stderr))
		},
	}
	// Everything after CMD belongs to CMD, even without "--".
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVar(&name, "name", "", "the server's name in policy, logs and approvals (default: derived from CMD, e.g. filesystem for server-filesystem)")
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "config file (airlock.yaml); optional")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "state directory (env AIRLOCK_STATE_DIR; default ~/.local/state/airlock/wraps, shared by every wrap)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address of the approval API (and web UI); port 0 picks a free one")
	return cmd
}

// wrap serves one upstream to the client on stdio. The first wrap of a
// state directory owns it: it runs the broker, the approval API and the
// web UI, and serves the broker to later wraps on a Unix socket there;
// those attach to it (see package remote), so that every wrap of one user
// shares one approvals page, audit log and set of grants. When the owner
// exits, an attached wrap takes the state over, and the others move to it.
func wrap(ctx context.Context, cfg *Config, log *slog.Logger, stateDir, listen string, up *relay.Upstream) error {
	cfg.Listen = listen // where this process listens, for links to it
	if err := ensureStateDir(stateDir); err != nil {
		return err
	}
	w := &wrapper{cfg: cfg, log: log, stateDir: stateDir, listen: listen, up: up, replica: newReplicaID(), metrics: newPromMetrics()}
	sw := remote.NewSwitch(w.next)
	var err error
	w.relay, err = relay.New(cfg.relayOptions(sw, log, w.metrics), up)
	if err != nil {
		sw.Close()
		return err
	}
	defer func() {
		// No broker is looked for once the wrap is leaving, and one that
		// was being started is stopped with the rest.
		sw.Close()
		w.close()
		w.relay.Close()
	}()
	// The first broker is found before the client is served: a state
	// directory that cannot be opened, or a policy that does not load,
	// is an error now rather than a refusal of every call.
	if _, err := sw.Backend(ctx); err != nil {
		return err
	}
	conn := wire.NewLineConn(os.Stdin, os.Stdout, os.Stdin, 0)
	// The session outlives ctx (a signal) until the held calls have had
	// their answers: ending it first would answer them "session closed".
	sessionCtx, endSession := context.WithCancel(context.WithoutCancel(ctx))
	defer endSession()
	go func() {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			w.answerHeld()
			endSession()
		case <-sessionCtx.Done():
		}
	}()
	err = w.relay.ServeConn(sessionCtx, up.Name, conn, osPrincipal())
	if err != nil {
		var ee *wire.ExitError
		if errors.As(err, &ee) {
			return &exitError{code: 1, msg: fmt.Sprintf("upstream %s %s", up.Name, ee.Status())}
		}
		return &exitError{code: 1, msg: err.Error()}
	}
	return nil
}

// wrapper is one wrap's part in its state directory: the owner's runtime,
// or an attachment to the owner's broker.
type wrapper struct {
	cfg      *Config
	log      *slog.Logger
	stateDir string
	listen   string
	up       *relay.Upstream
	replica  string // this wrap's name, as owner and as attached wrap
	metrics  *promMetrics
	relay    *relay.Relay

	mu       sync.Mutex
	rt       *runtime // set while this wrap owns the state
	attached bool     // announced the owner's UI once
	started  bool     // had a broker once: from then on, next waits for one
	closed   bool     // leaving: a runtime started now is closed at once
}

// attachWait bounds how long a wrap waits for a state directory whose
// lock is held but whose socket does not answer: its owner starting or
// stopping takes well under this; a broker that is no wrap (airlock serve
// on the same directory) never answers.
const attachWait = 5 * time.Second

// ownLockWait is how long a wrap waits for the state's lock before it
// tries the owner's socket again: the owner holds it for as long as it
// runs, so waiting longer only slows a wrap that should attach.
const ownLockWait = 50 * time.Millisecond

// next finds the broker for this wrap's calls: the owner's, attached over
// its socket, or this wrap's own once it takes the state directory.
//
// At start it gives up after attachWait; once it has had a broker, it
// goes on until ctx ends, since held calls wait to resume on the next
// one: an owner that takes long to stop must not cost them their
// approvals.
func (w *wrapper) next(ctx context.Context) (b remote.Backend, err error) {
	sock := filepath.Join(w.stateDir, remote.SocketName)
	w.mu.Lock()
	patient := w.started
	w.mu.Unlock()
	defer func() {
		if err == nil {
			w.mu.Lock()
			w.started = true
			w.mu.Unlock()
		}
	}()
	deadline := time.Now().Add(attachWait)
	for {
		if c, err := w.attach(ctx, sock); err == nil {
			return c, nil
		}
		rt, err := w.own(ctx, sock)
		if err == nil {
			return rt.broker, nil
		}
		if !errors.Is(err, boltstore.ErrLocked) && !errors.Is(err, errStateDirInUse) {
			return nil, err
		}
		if !patient && time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// attach connects to the owner's socket.
func (w *wrapper) attach(ctx context.Context, sock string) (*remote.Conn, error) {
	if _, err := os.Stat(sock); err != nil {
		return nil, err
	}
	token, err := readSecretFile(cmp.Or(w.cfg.AdminTokenFile, filepath.Join(w.stateDir, tokenFile)))
	if err != nil {
		return nil, err
	}
	c, err := remote.Dial(ctx, sock, token, w.replica)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	first := !w.attached
	w.attached = true
	w.mu.Unlock()
	if first {
		w.announceOwner()
	}
	w.log.Info("attached to the broker that owns the state directory", "state_dir", w.stateDir, "replica", w.replica)
	return c, nil
}

// announceOwner tells the person where the shared approvals page is.
func (w *wrapper) announceOwner() {
	data, err := os.ReadFile(filepath.Join(w.stateDir, apiInfoFile))
	var info apiInfo
	if err != nil || json.Unmarshal(data, &info) != nil {
		return
	}
	fmt.Fprintf(os.Stderr, "Approvals UI: %s, shared with the airlock wrap of %s (pid %d); `airlock login` prints a sign-in link\n",
		termSafe(info.URL), termSafe(info.Server), info.PID)
}

// own takes the state directory: this wrap runs the broker, and serves
// it to the wraps that attach.
func (w *wrapper) own(ctx context.Context, sock string) (*runtime, error) {
	// A process that held the lock before and left its api.json behind
	// died without abandoning its calls: its own are abandoned now, with
	// the wait they had, not when its lease runs out.
	var gone []string
	if data, err := os.ReadFile(filepath.Join(w.stateDir, apiInfoFile)); err == nil {
		var info apiInfo
		// Airlock's own state file, written by the process that had the lock.
		if json.Unmarshal(data, &info) == nil && info.Replica != "" && info.Replica != w.replica {
			gone = []string{info.Replica}
		}
	}
	rt, err := startRuntime(ctx, w.cfg, w.log, w.stateDir, []*relay.Upstream{w.up},
		runtimeOptions{relay: w.relay, metrics: w.metrics, replica: w.replica, gone: gone, lockWait: ownLockWait})
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			rt.close()
		}
	}()
	if err := rt.listen(w.listen, w.up.Name); err != nil {
		return nil, listenError(w.listen, err)
	}
	// Whoever held the lock before is gone, and its socket with it.
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err == nil {
		// The directory is this user's alone already; the socket says so too.
		err = os.Chmod(sock, 0o600)
	}
	if err != nil {
		// This wrap still serves its client; other wraps cannot share the
		// directory, and say so when they find it locked.
		w.log.Warn("other wraps cannot attach to this one", "socket", sock, "err", err)
		if ln != nil {
			ln.Close()
		}
	} else {
		rt.gate = remote.NewServer(rt.broker, rt.broker, rt.token, w.log)
		go func() {
			if err := rt.gate.Serve(ln); err != nil {
				w.log.Error("serving other wraps stopped", "err", err)
			}
		}()
	}
	go func() {
		if err := rt.serve(); err != nil {
			w.log.Error("approval API stopped", "err", err)
		}
	}()
	w.log.Info("approval API ready", "url", rt.baseURL()+"/api/v1/", "state_dir", w.stateDir)
	rt.announceUI(os.Stderr, true)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, errors.New("wrap: exiting")
	}
	w.rt = rt
	w.mu.Unlock()
	ok = true
	return rt, nil
}

func (w *wrapper) runtime() *runtime {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rt
}

// answerHeld answers the held calls on a graceful shutdown, when this
// wrap owns the state; an attached wrap's end withdraws its calls.
func (w *wrapper) answerHeld() {
	if rt := w.runtime(); rt != nil {
		rt.answerHeld()
	}
}

// close hands the state over, if this wrap owns it.
func (w *wrapper) close() {
	w.mu.Lock()
	rt := w.rt
	w.rt, w.closed = nil, true
	w.mu.Unlock()
	if rt != nil {
		rt.close()
	}
}

var versionSuffix = regexp.MustCompile(`@[^/@]*$`)

// mcpAffixes are what MCP servers' package names add to what they serve:
// server-filesystem, mcp-server-git and github-mcp-server are filesystem,
// git and github, the names policies (and rego/examples) use.
var mcpAffixes = regexp.MustCompile(`^(mcp-server-|server-|mcp-)|(-mcp-server|-server-mcp|-mcp)$`)

// guessName derives a server name from its command line: the package a
// launcher like npx or uvx runs, or the program itself, without the affixes
// that say it is an MCP server.
func guessName(args []string) string {
	prog := filepath.Base(args[0])
	if prog == "env" {
		// env VAR=value… prog: name it after prog.
		for i, a := range args[1:] {
			if !strings.HasPrefix(a, "-") && !strings.Contains(a, "=") {
				return guessName(args[1+i:])
			}
		}
	}
	switch prog {
	case "npx", "uvx", "bunx", "pnpx", "node", "python", "python3", "deno", "bun", "docker":
		for _, a := range args[1:] {
			if strings.HasPrefix(a, "-") || a == "run" || a == "dlx" {
				continue
			}
			prog = filepath.Base(versionSuffix.ReplaceAllString(a, ""))
			prog = strings.TrimSuffix(strings.TrimSuffix(prog, ".js"), ".py")
			break
		}
	}
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '-'
	}, prog)
	clean = strings.TrimLeft(clean, "-_.")
	if short := mcpAffixes.ReplaceAllString(clean, ""); short != "" && short != "server" {
		clean = short
	}
	if clean == "" {
		return "server"
	}
	return clean
}

// osPrincipal is the user running a stdio client: whoever can write to our
// stdin runs as this user.
func osPrincipal() broker.Principal {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return broker.Principal{ID: u.Username, Source: "os"}
	}
	return broker.Principal{ID: fmt.Sprintf("uid:%d", os.Getuid()), Source: "os"}
}
