package relay_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/relay"
)

// A client that sends its headers and then drips its body is cut off
// after the body timeout; one that sends its body at once keeps its
// connection for as long as its response takes (a held call), past the
// timeout.
func TestBodyTimeout(t *testing.T) {
	const timeout = 50 * time.Millisecond
	bodyErr := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		bodyErr <- err
	})
	mux.HandleFunc("POST /held", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Wait past the body's deadline, as a held call does, and see
		// that the request is still alive.
		select {
		case <-time.After(8 * timeout):
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "released")
	})
	srv := httptest.NewServer(relay.BodyTimeout(timeout, mux))
	t.Cleanup(srv.Close)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
	// Drip a byte now and then; the handler must give up regardless.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < 90; i++ {
			select {
			case <-stop:
				return
			case <-time.After(timeout / 4):
			}
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-bodyErr:
		if err == nil {
			t.Fatal("the dripped body was read whole")
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("body read failed with %v, want a deadline", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a dripped body held its request open")
	}

	resp, err := http.Post(srv.URL+"/held", "application/json", strings.NewReader(`{"jsonrpc":"2.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "released" {
		t.Errorf("a request whose body was read lost its connection: %d %q", resp.StatusCode, body)
	}
}

// LimitListener hands out at most n connections until one closes.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := relay.LimitListener(inner, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	var got []net.Conn
	for range 2 {
		select {
		case c := <-accepted:
			got = append(got, c)
		case <-time.After(10 * time.Second):
			t.Fatal("the first two connections were not accepted")
		}
	}
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were open")
	case <-time.After(100 * time.Millisecond):
	}
	got[0].Close()
	got[0].Close() // a second Close must not free a second slot
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the third connection was not accepted after one closed")
	}
	// Slots: got[1] and the third are open; a fourth must wait.
	c4, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	select {
	case <-accepted:
		t.Fatal("a double Close freed two slots")
	case <-time.After(100 * time.Millisecond):
	}
	got[1].Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the fourth connection was not accepted")
	}
}
