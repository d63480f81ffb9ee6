package relay

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logEvery spaces the lines of a message a peer can make Airlock repeat.
const logEvery = 10 * time.Second

// logLimiter keeps a peer from flooding the log: a hostile upstream that
// sends garbage would otherwise cost a line per message. The first
// occurrence of a message is logged; after it, at most one line per
// logEvery, carrying "repeated": how many occurrences before it, since the
// last line, were not logged. So each line stands for 1+repeated. Flush
// logs the last occurrence still counted, so nothing is lost but lines.
// Messages are constants, so the map stays small.
type logLimiter struct {
	mu   sync.Mutex
	seen map[string]*repeats
}

type repeats struct {
	level   slog.Level
	next    time.Time // before this, occurrences are only counted
	skipped int
	args    []any // the last skipped occurrence's, for Flush
}

// Log logs msg with args through log, unless msg was logged less than
// logEvery ago.
func (l *logLimiter) Log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	if !log.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	l.mu.Lock()
	if l.seen == nil {
		l.seen = map[string]*repeats{}
	}
	r := l.seen[msg]
	if r == nil {
		r = &repeats{}
		l.seen[msg] = r
	}
	if now.Before(r.next) {
		r.skipped++
		r.level, r.args = level, args
		l.mu.Unlock()
		return
	}
	skipped := r.skipped
	r.next, r.skipped, r.args = now.Add(logEvery), 0, nil
	l.mu.Unlock()
	if skipped > 0 {
		args = append(args[:len(args):len(args)], "repeated", skipped)
	}
	log.Log(context.Background(), level, msg, args...)
}

// Flush logs the occurrences counted since each message's last line; a
// session calls it when it ends.
func (l *logLimiter) Flush(log *slog.Logger) {
	l.mu.Lock()
	var pending []func()
	for msg, r := range l.seen {
		if r.skipped > 0 {
			// The last occurrence, standing for the ones before it.
			level, args := r.level, r.args
			if r.skipped > 1 {
				args = append(args[:len(args):len(args)], "repeated", r.skipped-1)
			}
			pending = append(pending, func() { log.Log(context.Background(), level, msg, args...) })
		}
		delete(l.seen, msg)
	}
	l.mu.Unlock()
	for _, f := range pending {
		f()
	}
}
