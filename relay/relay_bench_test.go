package relay_test

import (
	"context"
	"testing"

	"github.com/airlock-mcp/airlock/relay/relaytest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/boltstore"
	"github.com/airlock-mcp/airlock/policy"
)

// BenchmarkAllowedCall measures an allowed tools/call through a broker in
// this process: a go-sdk client on stdio pipes, the default policy library,
// the audit in a real bbolt file, and the test server in memory. Profile it
// to see where Airlock spends its time:
//
//	go test -run '^$' -bench AllowedCall -cpuprofile /tmp/cpu.prof ./broker
func BenchmarkAllowedCall(b *testing.B) {
	for _, audit := range []bool{true, false} {
		name := "audit"
		if !audit {
			name = "no-audit"
		}
		b.Run(name, func(b *testing.B) {
			t := &testing.T{}
			engine, err := policy.New(context.Background(), policy.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer engine.Close()
			store, err := boltstore.Open(b.TempDir()+"/airlock.db", boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			srv := relaytest.NewServer()
			bk := relaytest.New(b, broker.Options{Policy: engine, Store: store, SkipAllowedAudit: !audit}, srv.Upstream("test"))
			cs := relaytest.StdioClient(t, bk, mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil))
			defer cs.Close()
			ctx := context.Background()
			args := map[string]any{"text": "hello"}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: args}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
