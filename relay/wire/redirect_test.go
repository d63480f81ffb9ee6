package wire

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// recorder is an upstream that notes every request that reaches it.
type recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path+" key="+req.Header.Get("X-Api-Key")+" body="+string(body))
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

func callRequest(t *testing.T) *jsonrpc.Request {
	t.Helper()
	id, err := jsonrpc.MakeID(float64(1))
	if err != nil {
		t.Fatal(err)
	}
	return &jsonrpc.Request{ID: id, Method: "tools/call", Params: []byte(`{"name":"secret_tool","arguments":{}}`)}
}

func TestUpstreamRefusesCrossOriginRedirect(t *testing.T) {
	for name, code := range map[string]int{"307": http.StatusTemporaryRedirect, "308": http.StatusPermanentRedirect, "302": http.StatusFound} {
		t.Run(name, func(t *testing.T) {
			other := &recorder{}
			target := httptest.NewServer(other)
			defer target.Close()
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+"/collect", code)
			}))
			defer upstream.Close()

			c := &HTTPClient{URL: upstream.URL + "/mcp", Header: http.Header{"X-Api-Key": {"sekrit"}}}
			conn, err := c.Connect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			err = conn.Write(context.Background(), callRequest(t))
			if err == nil {
				t.Fatal("Write followed a redirect to another origin")
			}
			if !strings.Contains(err.Error(), target.URL+"/collect") || !strings.Contains(err.Error(), "another origin") {
				t.Errorf("error does not name the refused target: %v", err)
			}
			if got := other.seen(); len(got) != 0 {
				t.Errorf("the redirect target received %q", got)
			}
		})
	}
}

func TestUpstreamFollowsSameOriginRedirect(t *testing.T) {
	rec := &recorder{}
	mux := http.NewServeMux()
	mux.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/mcp/", http.StatusTemporaryRedirect)
	})
	mux.Handle("/mcp/", rec)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	c := &HTTPClient{URL: srv.URL + "/mcp", Header: http.Header{"X-Api-Key": {"sekrit"}}}
	conn, err := c.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Write(context.Background(), callRequest(t)); err != nil {
		t.Fatal(err)
	}
	msg, err := conn.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := msg.(*jsonrpc.Response); !ok || r.Error != nil {
		t.Fatalf("got %#v", msg)
	}
	got := rec.seen()
	if len(got) != 1 || !strings.Contains(got[0], "key=sekrit") || !strings.Contains(got[0], "secret_tool") {
		t.Errorf("same-origin target saw %q", got)
	}
}

func TestUpstreamBoundsRedirects(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		http.Redirect(w, r, r.URL.Path+"x", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	conn, err := (&HTTPClient{URL: srv.URL + "/m"}).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Write(context.Background(), callRequest(t))
	if err == nil || !strings.Contains(err.Error(), "redirected more than") {
		t.Fatalf("got %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != MaxRedirects+1 {
		t.Errorf("%d requests reached the upstream, want %d", hits, MaxRedirects+1)
	}
}

func TestSameOrigin(t *testing.T) {
	for a, b := range map[string]string{
		"http://a.example/x":     "http://A.example:80/y",
		"https://a.example/":     "https://a.example:443/z",
		"http://127.0.0.1:7/mcp": "http://127.0.0.1:7/other",
	} {
		ua, _ := http.NewRequest("GET", a, nil)
		ub, _ := http.NewRequest("GET", b, nil)
		if origin(ua.URL) != origin(ub.URL) {
			t.Errorf("%s and %s differ: %s vs %s", a, b, origin(ua.URL), origin(ub.URL))
		}
	}
	for _, b := range []string{"https://a.example/", "http://a.example:8080/", "http://b.example/"} {
		a := "http://a.example/"
		ua, _ := http.NewRequest("GET", a, nil)
		ub, _ := http.NewRequest("GET", b, nil)
		if origin(ua.URL) == origin(ub.URL) {
			t.Errorf("%s and %s are one origin", a, b)
		}
	}
}
