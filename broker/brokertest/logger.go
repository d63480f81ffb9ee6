package brokertest

import (
	"log/slog"
	"os"
)

// Logger shows logs with -v when AIRLOCK_TEST_LOG is set; otherwise it is
// nil, which discards them.
func Logger() *slog.Logger {
	if os.Getenv("AIRLOCK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}
