package relay

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// After its first line, a message is logged at most once per logEvery,
// with the count of those not logged.
func TestLogLimiterInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
		var l logLimiter
		for i := range 5 {
			l.Log(log, slog.LevelWarn, "dropped", "i", i)
		}
		l.Log(log, slog.LevelWarn, "other")
		time.Sleep(logEvery)
		l.Log(log, slog.LevelWarn, "dropped", "i", 5)
		l.Log(log, slog.LevelWarn, "dropped", "i", 6)
		l.Log(log, slog.LevelWarn, "dropped", "i", 7)
		l.Flush(log)
		want := []string{
			"level=WARN msg=dropped i=0",
			"level=WARN msg=other",
			"level=WARN msg=dropped i=5 repeated=4",
			"level=WARN msg=dropped i=7 repeated=1",
		}
		if got := strings.Split(strings.TrimSpace(buf.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("log:\n%s\nwant:\n%s", buf.String(), strings.Join(want, "\n"))
		}
	})
}
