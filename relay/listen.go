package relay

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// LimitListener accepts at most n connections at a time from ln; further
// clients wait in the listen backlog until one closes. Held calls and
// event streams keep their connections for long, so a bound on requests
// in flight has to be a bound on connections.
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	slots     chan struct{}
	closeOnce sync.Once
	done      chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// BodyTimeout gives every request d to send its whole body, from when its
// handler starts; a client that drips its body slower is cut off, and its
// connection freed. The server's ReadTimeout cannot do this: it would also
// end the long-lived streams of held calls and events, whose requests are
// read at once but whose connections then stay open for minutes. The
// deadline ends with the body: Go's server lifts it when it starts its
// background read at the body's end (TestBodyTimeout checks that a held
// request outlives it).
func BodyTimeout(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			// Not every ResponseWriter has a connection under it (a test
			// recorder); there is then nothing to bound.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		next.ServeHTTP(w, r)
	})
}
