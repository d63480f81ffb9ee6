package main

import (
	"context"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/relay"
)

func newServeCmd() *cobra.Command {
	var configPath, listen, stateDir string
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
			return serve(cmd.Context(), cfg, stateDir)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", os.Getenv("AIRLOCK_CONFIG"), "config file (env AIRLOCK_CONFIG)")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "state directory (env AIRLOCK_STATE_DIR; default ~/.local/state/airlock)")
	cmd.Flags().StringVar(&listen, "listen", "", "listen address, overriding the config's listen (default "+DefaultListen+")")
	return cmd
}

func serve(ctx context.Context, cfg *Config, stateFlag string) error {
	if cfg.Auth == nil && !loopbackListen(cfg.Listen) {
		return errOpenDoor(cfg.Listen)
	}
	log := newLogger(os.Stderr, cfg.LogLevel)
	stateDir, err := stateDirFor(stateFlag, cfg.StateDir, false)
	if err != nil {
		return err
	}
	var stderrMu sync.Mutex
	var ups []*relay.Upstream
	for _, name := range cfg.serverNames() {
		ups = append(ups, newUpstream(name, cfg.Servers[name], log, newPrefixWriter(&stderrMu, os.Stderr, name)))
	}
	rt, err := startRuntime(ctx, cfg, log, stateDir, ups, runtimeOptions{})
	if err != nil {
		return err
	}
	defer rt.close()
	if err := rt.listen(cfg.Listen, ""); err != nil {
		return listenError(cfg.Listen, err)
	}
	door, err := rt.door(ctx)
	if err != nil {
		return err
	}
	mcpHandler := rt.relay.HTTPHandler(relay.HTTPOptions{
		IdleTimeout:  cfg.SessionIdle,
		Hosts:        rt.hosts,
		Authenticate: door.Authenticate,
	})
	rt.mux.Handle("/mcp/{server}", mcpHandler)
	rt.mux.Handle("GET /.well-known/oauth-protected-resource/mcp/{server}", rt.knownServer(door.Metadata()))
	rt.sessions = mcpHandler.Sessions
	errc := make(chan error, 1)
	go func() { errc <- rt.serve() }()
	rt.announceUI(os.Stderr, false)
	if len(ups) == 0 {
		log.Warn("no servers configured; add some under servers: or mcpServers: in the config")
	}
	for _, u := range ups {
		log.Info("serving", "server", u.Name, "upstream", u.Transport, "url", rt.baseURL()+"/mcp/"+u.Name)
	}
	log.Info("who may call the MCP endpoints", "auth", cfg.Auth.doorway())
	log.Info("broker ready", "state_dir", stateDir, "replica", rt.replica, "api", rt.baseURL()+"/api/v1/", "policy_revision", rt.engine.Status().Revision)

	select {
	case err := <-errc:
		mcpHandler.Close()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	// Held calls are answered first, then the sessions end, which lets the
	// HTTP server's shutdown finish.
	rt.answerHeld()
	mcpHandler.Close()
	return nil
}
