package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/airlock-mcp/airlock/relay"
)

// rawClient speaks just enough streamable HTTP to open sessions and call
// tools: one POST per message, JSON answers only. The load tests and
// benchmarks drive hundreds of sessions with it, where the SDK's client
// (its standalone stream, its goroutines per session) would measure
// itself.
type rawClient struct {
	http     *http.Client
	endpoint string // http://host:port/mcp/server
	token    string // a bearer token, or ""
}

// rawSession is one MCP session opened by a rawClient.
type rawSession struct {
	c    *rawClient
	id   string // Mcp-Session-Id
	next atomic.Int64
}

// rawResult is a tools/call answer: the text of its content and whether it
// is a tool error.
type rawResult struct {
	Text    string
	IsError bool
}

func (c *rawClient) post(ctx context.Context, session string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("MCP-Protocol-Version", relay.LatestProtocolVersion)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.http.Do(req)
}

// open initializes a session and sends notifications/initialized.
func (c *rawClient) open(ctx context.Context) (*rawSession, error) {
	init := fmt.Sprintf(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":"airlock-raw","version":"1"}}}`,
		relay.LatestProtocolVersion)
	resp, err := c.post(ctx, "", []byte(init))
	if err != nil {
		return nil, err
	}
	_, err = readRaw(resp)
	if err != nil {
		return nil, fmt.Errorf("initialize at %s: %w", c.endpoint, err)
	}
	s := &rawSession{c: c, id: resp.Header.Get("Mcp-Session-Id")}
	if s.id == "" {
		return nil, fmt.Errorf("initialize at %s: no Mcp-Session-Id in the answer", c.endpoint)
	}
	resp, err = c.post(ctx, s.id, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("notifications/initialized at %s: HTTP %d", c.endpoint, resp.StatusCode)
	}
	s.next.Store(1)
	return s, nil
}

// call calls tool with args (a JSON object). A JSON-RPC error is an error;
// a tool error is a result with IsError.
func (s *rawSession) call(ctx context.Context, tool string, args []byte) (rawResult, error) {
	id := s.next.Add(1)
	body := fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%s,"arguments":%s}}`, id, strconv.Quote(tool), args)
	resp, err := s.c.post(ctx, s.id, body)
	if err != nil {
		return rawResult{}, err
	}
	data, err := readRaw(resp)
	if err != nil {
		return rawResult{}, fmt.Errorf("tools/call %s: %w", tool, err)
	}
	// Airlock's own answer, read by its own bench and tests.
	var m struct {
		ID     json.RawMessage
		Result *struct {
			IsError bool
			Content []struct{ Text string }
		}
		Error *struct {
			Code    int
			Message string
		}
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return rawResult{}, fmt.Errorf("tools/call %s: %w: %s", tool, err, data)
	}
	if string(m.ID) != strconv.FormatInt(id, 10) {
		return rawResult{}, fmt.Errorf("tools/call %s: answer for id %s, sent %d", tool, m.ID, id)
	}
	if m.Error != nil {
		return rawResult{}, fmt.Errorf("tools/call %s: JSON-RPC error %d: %s", tool, m.Error.Code, m.Error.Message)
	}
	if m.Result == nil {
		return rawResult{}, fmt.Errorf("tools/call %s: an answer without a result: %s", tool, data)
	}
	var text []string
	for _, c := range m.Result.Content {
		text = append(text, c.Text)
	}
	return rawResult{Text: strings.Join(text, "\n"), IsError: m.Result.IsError}, nil
}

// close ends the session.
func (s *rawSession) close(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.c.endpoint, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Mcp-Session-Id", s.id)
	if s.c.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.c.token)
	}
	resp, err := s.c.http.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// readRaw reads a JSON answer, or fails with what the server said.
func readRaw(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, errors.New("answer of type " + ct + ", want application/json")
	}
	return data, nil
}
