// Package wire moves MCP's JSON-RPC messages over the transports Airlock
// speaks: newline-delimited JSON on stdio pipes (to a client or a child
// process) and streamable HTTP (to an upstream server).
//
// The broker relays messages raw: params and results stay json.RawMessage
// from end to end, so nothing the broker does not understand is lost and no
// message is re-encoded through typed structs. Connections here satisfy the
// go-sdk's mcp.Connection interface, which also lets tests plug in the SDK's
// in-memory transports and servers.
package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// DefaultMaxMessage bounds one newline-delimited message. MCP tool arguments
// can be large (file contents), but an unbounded line lets one peer exhaust
// the broker's memory.
const DefaultMaxMessage = 16 << 20

// ParseError reports a line that is not a JSON-RPC message. It does not
// break the connection: the reader should answer with a JSON-RPC parse error
// and carry on reading.
type ParseError struct {
	Err error
	// TooLarge is set when the line exceeded the size limit; its bytes were
	// discarded.
	TooLarge bool
}

func (e *ParseError) Error() string { return "wire: " + e.Err.Error() }
func (e *ParseError) Unwrap() error { return e.Err }

// LineConn is a JSON-RPC connection over newline-delimited JSON, as MCP's
// stdio transport defines it. Read may be called by one goroutine at a time;
// Write is safe for concurrent use.
type LineConn struct {
	r      *bufio.Reader
	max    int
	closer io.Closer

	wmu sync.Mutex
	w   io.Writer

	closeOnce sync.Once
	closeErr  error
}

// NewLineConn reads messages from r and writes them to w. Close calls
// closer, which should unblock a pending Read (for pipes, close the read
// side). max bounds one message; 0 means DefaultMaxMessage.
func NewLineConn(r io.Reader, w io.Writer, closer io.Closer, max int) *LineConn {
	if max <= 0 {
		max = DefaultMaxMessage
	}
	return &LineConn{r: bufio.NewReaderSize(r, 64<<10), w: w, closer: closer, max: max}
}

// Read returns the next message. Blank lines are skipped. A line that is not
// a message yields a *ParseError and the connection stays usable; io.EOF
// means the peer closed its side. ctx is not consulted: a blocked read ends
// when the connection is closed.
func (c *LineConn) Read(context.Context) (jsonrpc.Message, error) {
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		// Decode copies what it keeps: line is only valid until the next
		// read.
		msg, err := Decode(line)
		if err != nil {
			return nil, &ParseError{Err: err}
		}
		return msg, nil
	}
}

// readLine returns one line without its terminator. The returned slice is
// only valid until the next call.
func (c *LineConn) readLine() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err == nil {
		if len(line) > c.max+1 {
			return nil, &ParseError{Err: fmt.Errorf("message larger than %d bytes", c.max), TooLarge: true}
		}
		return line, nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return line, nil // a last message without a newline still counts
		}
		return nil, err
	}
	// The line is longer than the buffer: accumulate up to the limit.
	buf := append([]byte(nil), line...)
	for {
		line, err = c.r.ReadSlice('\n')
		if len(buf)+len(line) > c.max {
			return nil, c.discardLine(err)
		}
		buf = append(buf, line...)
		switch {
		case err == nil:
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return buf, nil
		default:
			return nil, err
		}
	}
}

// discardLine skips the rest of an oversized line so that the messages after
// it are still read.
func (c *LineConn) discardLine(err error) error {
	for errors.Is(err, bufio.ErrBufferFull) {
		_, err = c.r.ReadSlice('\n')
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return &ParseError{Err: fmt.Errorf("message larger than %d bytes", c.max), TooLarge: true}
}

// Write sends one message followed by a newline.
func (c *LineConn) Write(_ context.Context, msg jsonrpc.Message) error {
	data, err := AppendMessage(make([]byte, 0, 256), msg)
	if err != nil {
		return fmt.Errorf("wire: encode: %w", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// One Write call per message keeps concurrent writers from
	// interleaving and costs one syscall on a pipe.
	if _, err := c.w.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("wire: write: %w", err)
	}
	return nil
}

// WriteRaw sends an already encoded message. data must not contain a
// newline; encoding/json never produces one.
func (c *LineConn) WriteRaw(data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// One Write call per message keeps concurrent writers from interleaving
	// and costs one syscall on a pipe.
	buf := make([]byte, len(data)+1)
	copy(buf, data)
	buf[len(data)] = '\n'
	if _, err := c.w.Write(buf); err != nil {
		return fmt.Errorf("wire: write: %w", err)
	}
	return nil
}

// Close closes the underlying stream; it is safe to call more than once.
func (c *LineConn) Close() error {
	c.closeOnce.Do(func() {
		if c.closer != nil {
			c.closeErr = c.closer.Close()
		}
	})
	return c.closeErr
}

// SessionID is empty: a stdio connection is its own session.
func (c *LineConn) SessionID() string { return "" }
