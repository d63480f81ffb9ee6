package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
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
			dir, err := stateDirFor(stateDir, cfg.StateDir, name)
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
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "state directory (env AIRLOCK_STATE_DIR; default ~/.local/state/airlock/wrap-NAME)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address of the approval API (and web UI); port 0 picks a free one")
	return cmd
}

// wrap serves one upstream to the client on stdio, with the approval API
// on a loopback port.
func wrap(ctx context.Context, cfg *Config, log *slog.Logger, stateDir, listen string, up *relay.Upstream) error {
	cfg.Listen = listen // where this process listens, for links to it
	rt, err := startRuntime(ctx, cfg, log, stateDir, []*relay.Upstream{up})
	if err != nil {
		return err
	}
	defer rt.close()
	if err := rt.listen(listen, up.Name); err != nil {
		return listenError(listen, err)
	}
	go func() {
		if err := rt.serve(); err != nil {
			log.Error("approval API stopped", "err", err)
		}
	}()
	log.Info("approval API ready", "url", rt.baseURL()+"/api/v1/", "state_dir", stateDir)
	rt.announceUI(os.Stderr, true)
	conn := wire.NewLineConn(os.Stdin, os.Stdout, os.Stdin, 0)
	// The session outlives ctx (a signal) until the held calls have had
	// their answers: ending it first would answer them "session closed".
	sessionCtx, endSession := context.WithCancel(context.WithoutCancel(ctx))
	defer endSession()
	go func() {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			rt.answerHeld()
			endSession()
		case <-sessionCtx.Done():
		}
	}()
	err = rt.relay.ServeConn(sessionCtx, up.Name, conn, osPrincipal())
	if err != nil {
		var ee *wire.ExitError
		if errors.As(err, &ee) {
			return &exitError{code: 1, msg: fmt.Sprintf("upstream %s %s", up.Name, ee.Status())}
		}
		return &exitError{code: 1, msg: err.Error()}
	}
	return nil
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
