package relay_test

import (
	"os"
	"testing"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// TestMain says which tests were skipped for a missing tool.
func TestMain(m *testing.M) { os.Exit(brokertest.Main(m)) }
