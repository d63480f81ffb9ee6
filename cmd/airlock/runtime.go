package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // on DefaultServeMux, mounted only when config asks
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
	"github.com/airlock-mcp/airlock/broker/remote"
	"github.com/airlock-mcp/airlock/notifiers/slack"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/ui"
)

// runtime is what serve and wrap share: the state directory and its
// database, the policy engine, the broker, and the HTTP listener that
// carries the API, the metrics and health (and, for serve, the MCP
// endpoints).
type runtime struct {
	cfg      *Config
	log      *slog.Logger
	stateDir string
	replica  string // this broker's name among its store's replicas (broker.Options.Replica)
	store    broker.Store
	lock     *os.File // the state directory's replica lock, with a database
	engine   *policy.Engine
	broker   *broker.Broker
	relay    *relay.Relay
	ui       *ui.Server
	metrics  *promMetrics
	token    string
	mux      *http.ServeMux
	listener net.Listener
	hosts    *relay.Hosts // the names the listener answers to
	server   *http.Server
	stop     context.CancelFunc // ends the policy watcher
	sessions func() int         // open MCP sessions, for /healthz; nil for none

	slack     *slack.Notifier // nil without a slack section
	stopSlack func()          // ends Socket Mode; nil when not running

	ownRelay bool           // the relay is the runtime's, not a wrap's
	gate     *remote.Server // serves the wraps attached to this one; nil for none
}

// runtimeOptions are what a wrap brings to the runtime it starts: its
// relay, which outlives the broker it began with, and its name among the
// replicas. Zero values mean the runtime's own.
type runtimeOptions struct {
	relay   *relay.Relay
	metrics *promMetrics
	replica string
	// gone names replicas known to have stopped: the process that held
	// the state directory before.
	gone []string
	// lockWait is how long to wait for a bbolt file another process
	// holds; 0 means a second.
	lockWait time.Duration
}

// protectedPaths are the files no tool call may name (see docs/policy.md):
// the state dir and the state home that holds every wrap's state dir (so
// that one wrap's agent cannot read a sibling's token), the config file,
// the policy dir and every secret file the config names. workDirs are
// where a stdio server may run, for reading relative paths: Airlock's own
// directory, which a server inherits, and each servers.X.cwd.
func protectedPaths(cfg *Config, stateDir string) (protect, workDirs []string) {
	protect = []string{stateDir, filepath.Join(stateDir, tokenFile)}
	if home, err := stateHome(); err == nil {
		protect = append(protect, home)
	}
	protect = append(protect, cfg.path, cfg.Policy.Dir, cfg.AdminTokenFile, cfg.State.PasswordFile)
	if s := cfg.Slack; s != nil {
		protect = append(protect, s.BotTokenFile, s.AppTokenFile, s.SigningSecretFile)
	}
	if o := cfg.UI.OIDC; o != nil {
		protect = append(protect, o.ClientSecretFile)
	}
	if a := cfg.Auth; a != nil && a.OAuth != nil {
		protect = append(protect, a.OAuth.ClientSecretFile)
	}
	protect = slices.DeleteFunc(protect, func(p string) bool { return p == "" })
	if wd, err := os.Getwd(); err == nil {
		workDirs = append(workDirs, wd)
	}
	for _, servers := range []map[string]*ServerConfig{cfg.Servers, cfg.MCPServers} {
		for _, s := range servers {
			if s != nil && s.Cwd != "" {
				workDirs = append(workDirs, s.Cwd)
			}
		}
	}
	return protect, workDirs
}

// startRuntime opens the state directory (failing fast when another broker
// holds it), loads the policy, and starts the broker for ups. The caller
// adds its own routes to rt.mux, then calls rt.serve.
func startRuntime(ctx context.Context, cfg *Config, log *slog.Logger, stateDir string, ups []*relay.Upstream, opts runtimeOptions) (*runtime, error) {
	tuneGC(gcHeadroom)
	rt := &runtime{cfg: cfg, log: log, stateDir: stateDir, metrics: cmp.Or(opts.metrics, newPromMetrics()), mux: http.NewServeMux()}
	ok := false
	defer func() {
		if !ok {
			rt.close()
		}
	}()
	if err := ensureStateDir(stateDir); err != nil {
		return nil, err
	}
	rt.replica = cmp.Or(opts.replica, newReplicaID())
	now, err := rt.openStore(ctx, cmp.Or(opts.lockWait, time.Second))
	if err != nil {
		return nil, err
	}
	if rt.token, err = adminToken(cmp.Or(cfg.AdminTokenFile, filepath.Join(stateDir, tokenFile))); err != nil {
		return nil, err
	}
	protect, workDirs := protectedPaths(cfg, stateDir)
	rt.engine, err = policy.New(ctx, policy.Options{Dir: cfg.Policy.Dir, Logger: log, Timeout: cfg.Policy.Timeout,
		ProtectedPaths: protect, WorkDirs: workDirs})
	if err != nil {
		return nil, err
	}
	watchCtx, stop := context.WithCancel(context.Background())
	rt.stop = stop
	go func() {
		if err := rt.engine.Watch(watchCtx); err != nil {
			log.Error("policy watcher stopped", "err", err)
		}
	}()
	if rt.slack, err = newSlack(cfg, log); err != nil {
		return nil, err
	}
	var notifiers []broker.Notifier
	if rt.slack != nil {
		notifiers = append(notifiers, rt.slack)
	}
	servers := make([]string, len(ups))
	for i, u := range ups {
		servers[i] = u.Name
	}
	rt.broker, err = broker.New(broker.Options{
		Notifiers:           notifiers,
		Policy:              rt.engine,
		Store:               rt.store,
		Logger:              log,
		Metrics:             rt.metrics,
		HoldWait:            cfg.HoldWait,
		HoldWaitProgress:    cfg.HoldWaitProgress,
		CancelGrace:         cfg.CancelGrace,
		ApprovedRetryWindow: cfg.ApprovedRetryWindow,
		JoinAcrossSessions:  cfg.JoinAcrossSessions,
		ApprovalTimeout:     cfg.ApprovalTimeout,
		Heartbeat:           cfg.Heartbeat,
		SkipAllowedAudit:    cfg.AuditAllowedCalls != nil && !*cfg.AuditAllowedCalls,
		Limits:              cfg.Limits.broker(),
		AdminIdentity:       cfg.adminIdentity(), // a login link's identity: one person, one name
		People:              cfg.people(),
		Servers:             servers,
		Replica:             rt.replica,
		Gone:                opts.gone,
		LeaseTTL:            cfg.State.Lease,
		Now:                 now,
	})
	if err != nil {
		return nil, err
	}
	if rt.relay = opts.relay; rt.relay == nil {
		rt.ownRelay = true
		if rt.relay, err = relay.New(cfg.relayOptions(rt.broker, log, rt.metrics), ups...); err != nil {
			return nil, err
		}
	}
	rt.metrics.watchUsage(rt.broker, rt.relay, func() int {
		if rt.sessions == nil {
			return 0
		}
		return rt.sessions()
	})
	if err := rt.broker.Start(ctx); err != nil {
		return nil, err
	}
	if rt.slack != nil {
		rt.startSlack()
	}
	rt.ui, err = ui.New(ui.Options{Broker: rt.broker, Policy: rt.engine, Logger: log, Approver: cfg.UI.Approver,
		PublicURL: cfg.UI.URL, SessionTTL: cfg.UI.SessionTTL, OIDC: cfg.UI.oidc()})
	if err != nil {
		return nil, err
	}
	rt.mux.Handle("/", rt.ui)
	rt.mux.Handle("POST /api/v1/login-links", rt.ui.LoginLinkHandler(rt.token))
	rt.mux.Handle("/api/v1/", rt.broker.APIHandler(rt.token))
	rt.mux.Handle("GET /metrics", promhttp.HandlerFor(rt.metrics.reg, promhttp.HandlerOpts{}))
	rt.mux.HandleFunc("GET /healthz", rt.healthz)
	if cfg.Pprof {
		rt.mux.Handle("/debug/pprof/", requireToken(rt.token, http.DefaultServeMux))
	}
	ok = true
	return rt, nil
}

// openStore opens the state: the bbolt file in the state directory, or
// the PostgreSQL database the config names, whose clock (now) the broker
// then keeps time by, so that every replica agrees when an approval
// expires.
func (rt *runtime) openStore(ctx context.Context, lockWait time.Duration) (now func() time.Time, err error) {
	st := &rt.cfg.State
	if !st.database() {
		// A directory that once ran on a database runs on bbolt now; the
		// CLI must not read the database for it.
		os.Remove(filepath.Join(rt.stateDir, databaseFile))
		bs, err := boltstore.Open(filepath.Join(rt.stateDir, dbFile), boltstore.Options{Timeout: lockWait, Logger: rt.log})
		if err != nil {
			return nil, lockedError(rt.stateDir, err)
		}
		rt.store = bs // only now: a nil *boltstore.Store would make a non-nil broker.Store
		rt.log.Info("state", "store", "bbolt", "path", filepath.Join(rt.stateDir, dbFile), "replica", rt.replica)
		return nil, nil
	}
	// State in a bbolt file here would be left behind unseen: say how to
	// bring it along instead.
	if _, err := os.Stat(filepath.Join(rt.stateDir, dbFile)); err == nil {
		return nil, fmt.Errorf("state: the config names a database, but the state directory %s holds a bbolt database (%s) that would be left behind: "+
			"copy it with `airlock state copy --from bolt:%s --to %s` and move %s away, or give this replica another state_dir",
			rt.stateDir, dbFile, rt.stateDir, withoutPassword(st.url), dbFile)
	}
	if rt.lock, err = lockStateDir(rt.stateDir); err != nil {
		return nil, lockedError(rt.stateDir, err)
	}
	pg, err := openDatabase(ctx, st.url, st.password, rt.log)
	if err != nil {
		return nil, err
	}
	rt.store = pg
	if err := writeDatabaseInfo(rt.stateDir, st); err != nil {
		return nil, err
	}
	rt.log.Info("state", "store", "postgres", "database", redactURL(st.url), "replica", rt.replica)
	return pg.Now, nil
}

// listen binds the HTTP listener and records its address for the CLI.
func (rt *runtime) listen(addr, wrapped string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	rt.listener = relay.LimitListener(ln, cmp.Or(rt.cfg.MaxConnections, DefaultMaxConnections))
	rt.hosts = relay.NewHosts(relay.HostsConfig{
		Listen:         addr,
		Bound:          ln.Addr(),
		Allowed:        rt.publicHosts(),
		AllowedOrigins: rt.cfg.AllowedOrigins,
	})
	// No WriteTimeout or ReadTimeout: a held call keeps its response open
	// for minutes; BodyTimeout bounds the body alone. Every route, the MCP
	// endpoints included, is behind the Host check.
	rt.server = &http.Server{
		Handler:           relay.BodyTimeout(cmp.Or(rt.cfg.BodyTimeout, DefaultBodyTimeout), rt.hosts.Guard(rt.mux)),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute, // an idle keep-alive connection gives its slot back
	}
	return writeAPIInfo(rt.stateDir, apiInfo{URL: rt.baseURL(), PID: os.Getpid(), Server: wrapped, StartedAt: time.Now().UTC(),
		TokenFile: rt.cfg.AdminTokenFile, Replica: rt.replica})
}

// publicHosts are the names besides the listen address's by which
// Airlock is reached: allowed_hosts, and the hosts of the URLs a proxy
// forwards from (ui.url, slack.ui_url; Slack posts its interactivity
// requests to the same public host).
func (rt *runtime) publicHosts() []string {
	hosts := slices.Clone(rt.cfg.AllowedHosts)
	urls := []string{rt.cfg.UI.URL}
	if rt.cfg.Slack != nil {
		urls = append(urls, rt.cfg.Slack.UIURL)
	}
	for _, s := range urls {
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			hosts = append(hosts, u.Hostname())
		}
	}
	return hosts
}

func (rt *runtime) baseURL() string { return "http://" + rt.listener.Addr().String() }

// serve runs the HTTP server until it fails; it returns nil after shutdown.
func (rt *runtime) serve() error {
	if err := rt.server.Serve(rt.listener); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// answerHeld answers every held call on a graceful shutdown, before the
// sessions close: the broker abandons the approvals, which gives each
// waiting call its "abandoned" tool error, and the relay waits until every
// call has left the gate and its answer is written. Both waits are bounded,
// so that a stuck store or upstream cannot hold up the shutdown.
func (rt *runtime) answerHeld() {
	rt.handOver()
	if err := rt.broker.Close(); err != nil {
		rt.log.Error("abandoning the pending approvals failed", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), gateDrainTimeout)
	defer cancel()
	if err := rt.relay.AwaitGate(ctx); err != nil {
		rt.log.Warn("calls still at the gate when the sessions closed", "err", err)
	}
}

// gateDrainTimeout bounds answerHeld's wait for the relay, after the broker
// has answered: enough to write the answers, and for a call that was
// fetching the tool list to be refused.
const gateDrainTimeout = 5 * time.Second

// close shuts everything down in order: Slack stops taking decisions, the
// broker answers waiting calls and abandons their approvals, the listener
// stops, the store closes last.
func (rt *runtime) close() {
	rt.closeSlack()
	rt.handOver()
	if rt.relay != nil && rt.ownRelay {
		rt.relay.Close()
	}
	if rt.broker != nil {
		rt.broker.Close()
	}
	if rt.ui != nil {
		rt.ui.Close() // its event streams would hold up the shutdown
	}
	if rt.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rt.server.Shutdown(ctx)
		cancel()
	}
	if rt.listener != nil {
		removeAPIInfo(rt.stateDir)
		os.Remove(filepath.Join(rt.stateDir, loginFile)) // its link dies with this broker
	}
	if rt.stop != nil {
		rt.stop()
	}
	if rt.engine != nil {
		rt.engine.Close()
	}
	if rt.store != nil {
		if err := rt.store.Close(); err != nil {
			rt.log.Error("closing the database failed", "err", err)
		}
	}
	if rt.lock != nil {
		rt.lock.Close()
	}
}

// relayOptions are the relay's options for a gate: the broker, or a
// wrap's switch between brokers.
func (c *Config) relayOptions(gate relay.Gate, log *slog.Logger, metrics relay.Metrics) relay.Options {
	return relay.Options{Gate: gate, Logger: log, Metrics: metrics,
		InitTimeout: c.InitTimeout, Limits: c.Limits.relay(), OfferTasks: c.OfferTasks}
}

// handOver stops serving attached wraps, leaving their held calls
// pending for the wrap that takes the state over next. Closing the
// listener removes its socket.
func (rt *runtime) handOver() {
	if rt.gate != nil {
		rt.gate.Close()
		rt.gate = nil
	}
}

// requireToken guards h with the admin token.
func requireToken(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !broker.AdminAuthorized(r, token) {
			http.Error(w, "missing or wrong admin token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// announceUI tells the person at the terminal how to open the approvals
// page: a one-time login link, or where to sign in with OIDC. The link is a
// credential, and stderr is no place for it: an MCP client keeps the
// stderr of the servers it starts in its logs, and logs are kept for long.
// So it goes on the terminal (serve, when it has one) or into a 0600 file
// in the state directory, whose name goes on stderr (ui.login_link).
// wrapped is true under wrap, whose terminal, if any, is its client's.
func (rt *runtime) announceUI(stderr io.Writer, wrapped bool) {
	if o := rt.cfg.UI.OIDC; o != nil {
		fmt.Fprintf(stderr, "Approvals UI: %s (sign in with %s; `airlock login` prints a one-time link)\n", rt.uiURL(), o.Issuer)
		return
	}
	link, err := rt.ui.NewLoginLink(rt.uiURL(), "")
	if err != nil {
		rt.log.Error("making a login link failed", "err", err)
		return
	}
	say := func(w io.Writer) {
		fmt.Fprintf(w, "Approvals UI: open %s to sign in as %s (the link works once, within an hour; `airlock login` prints another)\n",
			link.URL, link.Approver)
	}
	mode := rt.cfg.UI.LoginLink
	if mode == "stderr" {
		say(stderr)
		return
	}
	if mode != "file" && !wrapped {
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			say(tty)
			tty.Close()
			return
		}
	}
	path := filepath.Join(rt.stateDir, loginFile)
	if err := writePrivateFile(path, []byte(link.URL+"\n")); err != nil {
		rt.log.Error("writing the login link failed", "file", path, "err", err)
		return
	}
	fmt.Fprintf(stderr, "Approvals UI: %s; a one-time link that signs in as %s is in %s (`airlock login` prints another)\n",
		rt.uiURL(), link.Approver, path)
}

// uiURL is where people open the UI: the configured URL, or the
// listener's address with a loopback host in place of an unspecified one.
func (rt *runtime) uiURL() string {
	if rt.cfg.UI.URL != "" {
		return strings.TrimSuffix(rt.cfg.UI.URL, "/")
	}
	host, port, err := net.SplitHostPort(rt.listener.Addr().String())
	if err != nil {
		return rt.baseURL()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func (rt *runtime) healthz(w http.ResponseWriter, r *http.Request) {
	type server struct {
		Name      string `json:"name"`
		Transport string `json:"transport"`
	}
	st := rt.engine.Status()
	h := struct {
		Status   string             `json:"status"`
		Version  string             `json:"version"`
		Replica  string             `json:"replica"`
		Store    string             `json:"store"`
		Servers  []server           `json:"servers"`
		Sessions int                `json:"sessions"`
		Policy   policy.Status      `json:"policy"`
		Audit    broker.AuditStatus `json:"audit"`
	}{Status: "ok", Version: version(), Replica: rt.replica, Store: "bbolt", Servers: []server{}, Policy: st, Audit: rt.broker.AuditStatus()}
	if rt.cfg.State.database() {
		h.Store = "postgres"
	}
	if rt.sessions != nil {
		h.Sessions = rt.sessions()
	}
	for _, name := range rt.cfg.serverNames() {
		if u := rt.relay.Upstream(name); u != nil {
			h.Servers = append(h.Servers, server{u.Name, u.Transport})
		}
	}
	if st.LastError != "" || !h.Audit.OK {
		// Still serving the last good revision, or refusing allowed calls
		// until the audit log takes writes: someone must look.
		h.Status = "degraded"
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(h)
}
