package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // on DefaultServeMux, mounted only when config asks
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
	"github.com/airlock-mcp/airlock/notifiers/slack"
	"github.com/airlock-mcp/airlock/policy"
)

// runtime is what serve and wrap share: the state directory and its
// database, the policy engine, the broker, and the HTTP listener that
// carries the API, the metrics and health (and, for serve, the MCP
// endpoints).
type runtime struct {
	cfg      *Config
	log      *slog.Logger
	stateDir string
	store    *boltstore.Store
	engine   *policy.Engine
	broker   *broker.Broker
	metrics  *promMetrics
	token    string
	mux      *http.ServeMux
	listener net.Listener
	server   *http.Server
	stop     context.CancelFunc // ends the policy watcher
	sessions func() int         // open MCP sessions, for /healthz; nil for none

	slack     *slack.Notifier // nil without a slack section
	stopSlack func()          // ends Socket Mode; nil when not running
}

// startRuntime opens the state directory (failing fast when another broker
// holds it), loads the policy, and starts the broker for ups. The caller
// adds its own routes to rt.mux, then calls rt.serve.
func startRuntime(ctx context.Context, cfg *Config, log *slog.Logger, stateDir string, ups []*broker.Upstream) (*runtime, error) {
	rt := &runtime{cfg: cfg, log: log, stateDir: stateDir, metrics: newPromMetrics(), mux: http.NewServeMux()}
	ok := false
	defer func() {
		if !ok {
			rt.close()
		}
	}()
	if err := ensureStateDir(stateDir); err != nil {
		return nil, err
	}
	var err error
	rt.store, err = boltstore.Open(filepath.Join(stateDir, dbFile), boltstore.Options{Timeout: time.Second, Logger: log})
	if err != nil {
		return nil, err
	}
	if rt.token, err = adminToken(stateDir); err != nil {
		return nil, err
	}
	rt.engine, err = policy.New(ctx, policy.Options{Dir: cfg.Policy.Dir, Logger: log, Timeout: cfg.Policy.Timeout})
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
	rt.broker, err = broker.New(broker.Options{
		Notifiers:        notifiers,
		Policy:           rt.engine,
		Store:            rt.store,
		Logger:           log,
		Metrics:          rt.metrics,
		InitTimeout:      cfg.InitTimeout,
		HoldWait:         cfg.HoldWait,
		ApprovalTimeout:  cfg.ApprovalTimeout,
		Heartbeat:        cfg.Heartbeat,
		SkipAllowedAudit: cfg.AuditAllowedCalls != nil && !*cfg.AuditAllowedCalls,
	}, ups...)
	if err != nil {
		return nil, err
	}
	if err := rt.broker.Start(ctx); err != nil {
		return nil, err
	}
	if rt.slack != nil {
		rt.startSlack()
	}
	rt.mux.Handle("/api/v1/", rt.broker.APIHandler(rt.token))
	rt.mux.Handle("GET /metrics", promhttp.HandlerFor(rt.metrics.reg, promhttp.HandlerOpts{}))
	rt.mux.HandleFunc("GET /healthz", rt.healthz)
	if cfg.Pprof {
		rt.mux.Handle("/debug/pprof/", requireToken(rt.token, http.DefaultServeMux))
	}
	ok = true
	return rt, nil
}

// listen binds the HTTP listener and records its address for the CLI.
func (rt *runtime) listen(addr, wrapped string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	rt.listener = ln
	// No WriteTimeout: a held call keeps its response open for minutes.
	rt.server = &http.Server{Handler: rt.mux, ReadHeaderTimeout: 10 * time.Second}
	return writeAPIInfo(rt.stateDir, apiInfo{URL: rt.baseURL(), PID: os.Getpid(), Server: wrapped, StartedAt: time.Now().UTC()})
}

func (rt *runtime) baseURL() string { return "http://" + rt.listener.Addr().String() }

// serve runs the HTTP server until it fails; it returns nil after shutdown.
func (rt *runtime) serve() error {
	if err := rt.server.Serve(rt.listener); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// close shuts everything down in order: Slack stops taking decisions, the
// broker answers waiting calls and abandons their approvals, the listener
// stops, the store closes last.
func (rt *runtime) close() {
	rt.closeSlack()
	if rt.broker != nil {
		rt.broker.Close()
	}
	if rt.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rt.server.Shutdown(ctx)
		cancel()
	}
	if rt.listener != nil {
		removeAPIInfo(rt.stateDir)
	}
	if rt.stop != nil {
		rt.stop()
	}
	if rt.store != nil {
		if err := rt.store.Close(); err != nil {
			rt.log.Error("closing the database failed", "err", err)
		}
	}
}

// requireToken guards h with the admin token.
func requireToken(token string, h http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			http.Error(w, "missing or wrong admin token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (rt *runtime) healthz(w http.ResponseWriter, r *http.Request) {
	type server struct {
		Name      string `json:"name"`
		Transport string `json:"transport"`
	}
	st := rt.engine.Status()
	h := struct {
		Status   string        `json:"status"`
		Version  string        `json:"version"`
		Servers  []server      `json:"servers"`
		Sessions int           `json:"sessions"`
		Policy   policy.Status `json:"policy"`
	}{Status: "ok", Version: version(), Servers: []server{}, Policy: st}
	if rt.sessions != nil {
		h.Sessions = rt.sessions()
	}
	for _, name := range rt.cfg.serverNames() {
		if u := rt.broker.Upstream(name); u != nil {
			h.Servers = append(h.Servers, server{u.Name, u.Transport})
		}
	}
	if st.LastError != "" {
		// Still serving the last good revision, but someone must look.
		h.Status = "degraded"
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(h)
}
