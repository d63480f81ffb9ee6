package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/wire"
)

// newUpstream turns a configured server into something the broker can dial:
// a child process per session for a command, an HTTP session for a URL.
// The child's stderr goes to stderr.
func newUpstream(name string, sc *ServerConfig, log *slog.Logger, stderr io.Writer) *relay.Upstream {
	up := &relay.Upstream{Name: name, TrustAnnotations: sc.trustAnnotations()}
	if sc.URL != "" {
		header := http.Header{}
		for k, v := range sc.Headers {
			header.Set(k, v)
		}
		up.Transport = "http"
		up.Dial = func(ctx context.Context) (mcp.Connection, error) {
			t := &wire.HTTPClient{URL: sc.URL, Header: header, Logger: log}
			return t.Connect(ctx)
		}
		return up
	}
	env := os.Environ()
	for k, v := range sc.Env {
		env = append(env, k+"="+v)
	}
	up.Transport = "stdio"
	up.Dial = func(context.Context) (mcp.Connection, error) {
		cmd := &wire.Command{Path: sc.Command, Args: sc.Args, Env: env, Dir: sc.Cwd, Stderr: stderr}
		return cmd.Start()
	}
	return up
}

// prefixWriter prefixes each line with the server's name, so that the
// stderr of several children stays readable in one log.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix []byte
	buf    []byte
}

func newPrefixWriter(mu *sync.Mutex, w io.Writer, name string) *prefixWriter {
	return &prefixWriter{mu: mu, w: w, prefix: []byte("[" + name + "] ")}
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		line := append(append([]byte(nil), p.prefix...), p.buf[:i+1]...)
		if _, err := p.w.Write(line); err != nil {
			return len(b), err
		}
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) > 64<<10 { // a child that never writes a newline
		p.w.Write(append(append([]byte(nil), p.prefix...), append(p.buf, '\n')...))
		p.buf = p.buf[:0]
	}
	return len(b), nil
}
