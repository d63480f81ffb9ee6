package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// failingAudit is a memory store that cannot write the audit log.
type failingAudit struct{ *brokertest.MemStore }

func (failingAudit) AppendAudit(context.Context, ...*broker.AuditRecord) error {
	return errors.New("injected audit failure")
}

// An allowed call whose record could not be made durable has run, but its
// result is withheld, and the agent is told why.
func TestResultWithheldWhenAuditFails(t *testing.T) {
	srv := brokertest.NewServer()
	bk, err := broker.New(broker.Options{Policy: brokertest.AllowAll(), Store: failingAudit{brokertest.NewMemStore()}}, srv.Upstream("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer bk.Close()
	cs := stdioClient(t, bk, mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil))
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "secret result"}})
	if err != nil {
		t.Fatal(err)
	}
	text := res.Content[0].(*mcp.TextContent).Text
	if !res.IsError || !strings.Contains(text, "could not write this call to its audit log") || strings.Contains(text, "secret result") {
		t.Errorf("result of a call whose audit write failed: %q (isError %v)", text, res.IsError)
	}
	if srv.Count("tools/call") != 1 {
		t.Errorf("the upstream saw %d calls; the call runs while its record is written", srv.Count("tools/call"))
	}
}
