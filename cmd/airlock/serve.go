package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
)

func newServeCmd() *cobra.Command {
	var configPath, listen string
	cmd := &cobra.Command{
		Use:   "serve [-c airlock.yaml] [--listen ADDR]",
		Short: "Run the broker daemon: every configured server over streamable HTTP",
		Long: `serve hosts every server in the config and serves each over MCP's streamable
HTTP transport at http://LISTEN/mcp/NAME. A stdio server gets one child
process per client session; sessions idle for session_idle are closed and
their child stopped. /healthz reports on the broker.

The config takes servers under "servers:" or, pasted as is, the
"mcpServers" block of claude_desktop_config.json:

  listen: 127.0.0.1:7420
  mcpServers:
    filesystem:
      command: npx
      args: ["-y", "@modelcontextprotocol/server-filesystem", "/srv/data"]
    github:
      url: https://api.githubcopilot.com/mcp/
      headers: {Authorization: "Bearer ${GITHUB_TOKEN}"}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Listen = listen
			}
			return serve(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", os.Getenv("AIRLOCK_CONFIG"), "config file (env AIRLOCK_CONFIG)")
	cmd.Flags().StringVar(&listen, "listen", "", "listen address, overriding the config's listen (default "+DefaultListen+")")
	return cmd
}

func serve(ctx context.Context, cfg *Config) error {
	log := newLogger(os.Stderr, cfg.LogLevel)
	var stderrMu sync.Mutex
	var ups []*broker.Upstream
	for _, name := range cfg.serverNames() {
		ups = append(ups, newUpstream(name, cfg.Servers[name], log, newPrefixWriter(&stderrMu, os.Stderr, name)))
	}
	b, err := broker.New(broker.Options{Logger: log, InitTimeout: cfg.InitTimeout}, ups...)
	if err != nil {
		return err
	}
	mcpHandler := b.HTTPHandler(broker.HTTPOptions{
		IdleTimeout:    cfg.SessionIdle,
		Loopback:       loopbackListen(cfg.Listen),
		AllowedOrigins: cfg.AllowedOrigins,
	})
	mux := http.NewServeMux()
	mux.Handle("/mcp/{server}", mcpHandler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		type server struct {
			Name      string `json:"name"`
			Transport string `json:"transport"`
		}
		h := struct {
			Status   string   `json:"status"`
			Version  string   `json:"version"`
			Servers  []server `json:"servers"`
			Sessions int      `json:"sessions"`
		}{Status: "ok", Version: version(), Servers: []server{}, Sessions: mcpHandler.Sessions()}
		for _, u := range ups {
			h.Servers = append(h.Servers, server{u.Name, u.Transport})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h)
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// No WriteTimeout: a held call keeps its response open for minutes.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if len(ups) == 0 {
		log.Warn("no servers configured; add some under servers: or mcpServers: in the config")
	}
	for _, u := range ups {
		log.Info("serving", "server", u.Name, "upstream", u.Transport, "url", "http://"+ln.Addr().String()+"/mcp/"+u.Name)
	}

	select {
	case err := <-errc:
		mcpHandler.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	// Sessions first: their pending requests are answered and their
	// handlers return, which lets Shutdown finish.
	mcpHandler.Close()
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
