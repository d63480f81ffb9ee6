package relay

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/relay/wire"
)

// ServeConn relays between an MCP client on conn (stdio, in practice) and a
// new session with the named upstream, until one side goes away or ctx ends.
// It returns nil when the client closed the connection or ctx ended, and the
// upstream's failure otherwise.
func (r *Relay) ServeConn(ctx context.Context, server string, conn mcp.Connection, p broker.Principal) error {
	up := r.upstreams[server]
	if up == nil {
		return fmt.Errorf("broker: no upstream named %q", server)
	}
	s, err := r.startSession(ctx, up, connClient{conn}, p)
	if err != nil {
		return err
	}
	clientDone := make(chan error, 1)
	go func() {
		for {
			msg, err := conn.Read(ctx)
			if err != nil {
				var pe *wire.ParseError
				if errors.As(err, &pe) {
					s.log.Warn("bad message from client", "err", err)
					writeParseError(conn, pe)
					continue
				}
				clientDone <- err
				return
			}
			s.handle(ctx, msg)
		}
	}()
	select {
	case err := <-clientDone:
		if !errors.Is(err, io.EOF) {
			s.log.Warn("client connection failed", "err", err)
		}
		s.close(nil)
		// The session may have failed first, and the client hung up
		// because of it: the failure is the news.
		return s.Err()
	case <-s.Done():
		return s.Err()
	case <-ctx.Done():
		s.close(nil)
		return nil
	}
}

// connClient sends to a client over a plain connection, where every message
// shares one stream.
type connClient struct{ conn mcp.Connection }

func (c connClient) send(msg jsonrpc.Message, _ jsonrpc.ID) error {
	return c.conn.Write(context.Background(), msg)
}

// writeParseError answers a line that was not JSON-RPC. The id must be null,
// which the SDK's encoder cannot express, so the bytes are written directly.
func writeParseError(conn mcp.Connection, pe *wire.ParseError) {
	code := int64(jsonrpc.CodeParseError)
	if pe.TooLarge {
		code = jsonrpc.CodeInvalidRequest
	}
	raw := errorJSON(code, pe.Err.Error())
	if w, ok := conn.(interface{ WriteRaw([]byte) error }); ok {
		w.WriteRaw(raw)
	}
}
