package ui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/a-h/templ"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

// Broker is what the pages need of the broker core (*broker.Broker).
type Broker interface {
	Approvals(ctx context.Context, q broker.ApprovalQuery) ([]*broker.Approval, error)
	Approval(ctx context.Context, id string) (*broker.Approval, error)
	Vote(ctx context.Context, id string, v broker.Vote) (*broker.Approval, error)
	Audit(ctx context.Context, q broker.AuditQuery) ([]*broker.AuditRecord, error)
	// Subscribe follows approvals as they are held, voted on and decided.
	Subscribe() (<-chan broker.ApprovalEvent, func())
	// Servers names the servers Airlock guards.
	Servers() []string
	Grants(ctx context.Context, q broker.GrantQuery) ([]*broker.Grant, error)
	RevokeGrant(ctx context.Context, id, by string) (*broker.Grant, error)
	// Person is the person config maps an identity to, or "": a web
	// sign-in ("web", its name) decides as that person.
	Person(source, id string) string
}

// Policy is what the Policy page needs (*policy.Engine): what is loaded,
// and a way to try an input.
type Policy interface {
	Status() policy.Status
	DecideJSON(ctx context.Context, input []byte) (policy.Decision, error)
}

// Defaults for Options.
const (
	// DefaultSessionTTL is how long a browser stays signed in: a working day.
	DefaultSessionTTL = 12 * time.Hour
	// LinkTTL bounds a login link nobody used: a link printed to a log must
	// not stay a key for long. `airlock login` prints a fresh one.
	LinkTTL = time.Hour
)

// Options configure the UI. Broker and Policy are required.
type Options struct {
	Broker Broker
	Policy Policy
	// Logger receives the UI's logs; nil discards them.
	Logger *slog.Logger
	// Approver is who signs in with a login link, unless the link names
	// someone else; empty means broker.AdminIdentity, as for the CLI. Like
	// every web sign-in, it decides as the person Broker.Person("web", …)
	// maps it to, when there is one.
	Approver string
	// PublicURL is the UI's address as browsers reach it, such as
	// https://airlock.example.com behind a reverse proxy. Empty means the
	// Host of each request. An https URL makes cookies Secure.
	PublicURL string
	// SessionTTL is how long a sign-in lasts; 0 means DefaultSessionTTL.
	SessionTTL time.Duration
	// OIDC, when set, offers sign-in with an OpenID Connect provider.
	OIDC *OIDC
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server serves the pages. Mount it at "/" and, behind the admin token,
// LoginLinkHandler for `airlock login`.
type Server struct {
	broker   Broker
	policy   Policy
	log      *slog.Logger
	now      func() time.Time
	approver string
	public   *url.URL // nil: each request's own host
	ttl      time.Duration
	handler  http.Handler
	auth     auth
	oidc     *oidcLogin // nil without OIDC

	done      chan struct{} // closed by Close: live streams end
	closeOnce sync.Once
}

// New returns the UI.
func New(opts Options) (*Server, error) {
	if opts.Broker == nil || opts.Policy == nil {
		return nil, errors.New("ui: a broker and a policy are required")
	}
	s := &Server{
		broker:   opts.Broker,
		policy:   opts.Policy,
		log:      opts.Logger,
		now:      opts.Now,
		approver: strings.TrimSpace(opts.Approver),
		ttl:      opts.SessionTTL,
		done:     make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.approver == "" {
		s.approver = broker.AdminIdentity
	}
	if s.ttl <= 0 {
		s.ttl = DefaultSessionTTL
	}
	if opts.PublicURL != "" {
		u, err := url.Parse(strings.TrimSuffix(opts.PublicURL, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
			return nil, fmt.Errorf("ui: public URL %q must be http(s)://host[:port], without a path", opts.PublicURL)
		}
		s.public = u
	}
	if opts.OIDC != nil {
		o, err := newOIDCLogin(*opts.OIDC, s.log)
		if err != nil {
			return nil, err
		}
		s.oidc = o
	}
	s.auth.init()
	s.handler = s.routes()
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.HandlerFunc(serveStatic))
	mux.HandleFunc("GET /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /oidc/login", s.oidcStart)
	mux.HandleFunc("GET /oidc/callback", s.oidcCallback)

	mux.Handle("GET /{$}", s.authed(s.pending))
	mux.Handle("GET /pending/table", s.authed(s.pendingTable))
	mux.Handle("GET /events", s.authed(s.events))
	mux.Handle("GET /approvals/{id}", s.authed(s.approval))
	mux.Handle("GET /approvals/{id}/status", s.authed(s.approvalStatus))
	mux.Handle("POST /approvals/{id}/decision", s.authed(s.vote))
	mux.Handle("GET /history", s.authed(s.history))
	mux.Handle("GET /history/{seq}", s.authed(s.record))
	mux.Handle("GET /grants", s.authed(s.grantsPage))
	mux.Handle("POST /grants/{id}/revoke", s.authed(s.revokeGrant))
	mux.Handle("GET /policy", s.authed(s.policyPage))
	mux.Handle("POST /policy", s.authed(s.evaluate))
	mux.Handle("/", s.authed(s.notFound))

	cop := http.NewCrossOriginProtection()
	if s.public != nil {
		// Behind a proxy the Host header may not be the public name; the
		// public origin is ours all the same.
		cop.AddTrustedOrigin(s.public.Scheme + "://" + s.public.Host)
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		s.renderError(w, r, http.StatusForbidden, "Cross-origin request refused",
			"Airlock only accepts changes made from its own pages.")
	}))
	return securityHeaders(cop.Handler(mux))
}

// ServeHTTP serves the pages.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Close ends the live event streams, so that an HTTP server's Shutdown
// does not wait for them.
func (s *Server) Close() { s.closeOnce.Do(func() { close(s.done) }) }

// contentSecurityPolicy allows nothing inline and nothing from elsewhere:
// even if a value from a tool call escaped templ's escaping, a browser
// would not run it.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// A login link carries its token in the URL; no other site may see it.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// render writes a whole page, or only the named fragments of it. It
// renders into a buffer first, so that a failure becomes an error page
// rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component, fragments ...any) {
	var buf bytes.Buffer
	var err error
	if len(fragments) > 0 {
		err = templ.RenderFragments(r.Context(), &buf, c, fragments...)
	} else {
		err = c.Render(r.Context(), &buf)
	}
	if err != nil {
		s.internal(w, r, "rendering a page", err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Pages show who asked for what; no cache should keep them.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	s.render(w, r, status, errorPage(s.pageFor(r, title, ""), title, msg, ""))
}

// internal logs a failure under a reference id and shows the person only
// the id, which links what they see to the log line.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	ref := broker.NewRef()
	s.log.Error("UI request failed", "ref", ref, "what", what, "method", r.Method, "path", r.URL.Path, "err", err)
	var buf bytes.Buffer
	title := "Something went wrong"
	if errorPage(s.pageFor(r, title, ""), title, what+" failed.", ref).Render(r.Context(), &buf) != nil {
		http.Error(w, what+" failed (ref "+ref+")", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusInternalServerError)
	w.Write(buf.Bytes())
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, _ string) {
	s.renderError(w, r, http.StatusNotFound, "Not found", "There is no page at "+r.URL.Path+".")
}

//go:embed static
var staticFiles embed.FS

// staticVersions maps each static file to a hash of its contents. Pages
// link to /static/NAME?v=HASH, so a file can be cached for good and a new
// build is still fetched at once.
var staticVersions = func() map[string]string {
	m := make(map[string]string)
	fs.WalkDir(staticFiles, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := staticFiles.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		m[strings.TrimPrefix(path, "static/")] = hex.EncodeToString(sum[:6])
		return nil
	})
	return m
}()

// staticURL is the versioned address of a static file.
func staticURL(name string) string {
	return "/static/" + name + "?v=" + staticVersions[name]
}

var staticServer = http.FileServerFS(staticFiles)

func serveStatic(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	v, ok := staticVersions[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.URL.Query().Get("v") == v {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	staticServer.ServeHTTP(w, r)
}
