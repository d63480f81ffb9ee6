// Package auth is the door of the HTTP MCP endpoint: it says who sends a
// request (an Airlock agent token, an OAuth 2.1 access token, or nobody)
// as a broker.Principal, or answers 401, 403 or 503 itself, and serves the
// RFC 9728 metadata that tells a client where to get an access token.
//
// A credential that is given and wrong is refused, never downgraded to
// anonymous; an error of the core or of the authorization server refuses
// (503), never allows.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// Tokens finds the agent an Airlock token was made for. Errors wrap
// broker.ErrBadToken (401) or broker.ErrTokenScope (403); any other error
// is the core's (503).
type Tokens interface {
	TokenPrincipal(ctx context.Context, token, server string) (broker.Principal, error)
}

// Options configure a Door. The zero value refuses everyone.
type Options struct {
	// Tokens accepts Airlock agent tokens (those that start with
	// "airlock_"); nil refuses them.
	Tokens Tokens
	// OAuth makes the endpoints an OAuth 2.1 resource server; nil accepts
	// no access tokens and serves no metadata.
	OAuth *OAuth
	// Anonymous lets a request without credentials in as "anonymous".
	Anonymous bool
	// ResourceURL is the public URL of /mcp/{server} as r reached it: the
	// resource of RFC 8707 and RFC 9728. Required with OAuth.
	ResourceURL func(r *http.Request, server string) string
	// Refused audits a refused request. At most RefusalsPerMinute are
	// passed on; the next one passed on counts those left out.
	Refused func(ctx context.Context, r broker.AuthRefusal)
	// HTTPClient fetches the authorization server's metadata and keys and
	// calls its introspection endpoint; nil is a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger; nil discards.
	Logger *slog.Logger
}

// RefusalsPerMinute bounds the refusals passed to Options.Refused, so
// that a flood of bad requests cannot fill the audit log.
const RefusalsPerMinute = 10

// MaxTokenBytes is the longest credential read: a longer one is refused
// before any parsing (real access tokens are a few KiB).
const MaxTokenBytes = 16 << 10

// Door authenticates requests to the MCP endpoints. It is safe for
// concurrent use.
type Door struct {
	tokens    Tokens
	oauth     *resourceServer
	anonymous bool
	resource  func(r *http.Request, server string) string
	refused   func(ctx context.Context, r broker.AuthRefusal)
	log       *slog.Logger
	now       func() time.Time // replaced in tests

	mu         sync.Mutex // guards the refusal window
	window     time.Time  // start of the current minute of refusals
	audited    int        // refusals passed on in the window
	suppressed int        // refusals left out since the last one passed on
}

// New makes a Door. ctx bounds the door's fetches from the authorization
// server (discovery, keys, introspection); New itself contacts nothing, so
// an authorization server that is down at start does not stop Airlock
// from serving (requests needing it get 503 until it answers).
func New(ctx context.Context, o Options) (*Door, error) {
	d := &Door{
		tokens:    o.Tokens,
		anonymous: o.Anonymous,
		resource:  o.ResourceURL,
		refused:   o.Refused,
		log:       o.Logger,
		now:       time.Now,
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if o.OAuth != nil {
		if o.ResourceURL == nil {
			return nil, errors.New("auth: oauth needs ResourceURL: the metadata and the default audience are each endpoint's URL")
		}
		client := o.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		rs, err := newResourceServer(ctx, *o.OAuth, client, d.log, func() time.Time { return d.now() })
		if err != nil {
			return nil, err
		}
		d.oauth = rs
	}
	return d, nil
}

// refusal is why a request is refused, and how it is answered.
type refusal struct {
	status int
	code   string // RFC 6750 error code; "" when no credential was given
	desc   string // error_description, safe to show the client
	scope  string // for insufficient_scope
	source string // "token", "oauth", or "" when no credential was recognised
	err    error  // logged, never shown
}

// Authenticate says who sends r, a request to the endpoint of server. On
// refusal it has written the answer (401, 403, 503 or 400) and returns
// false; nothing else may be written then.
func (d *Door) Authenticate(w http.ResponseWriter, r *http.Request, server string) (broker.Principal, bool) {
	p, f := d.authenticate(r, server)
	if f == nil {
		return p, true
	}
	d.refuse(w, r, server, f)
	return broker.Principal{}, false
}

func (d *Door) authenticate(r *http.Request, server string) (broker.Principal, *refusal) {
	if r.URL.RawQuery != "" && r.URL.Query().Has("access_token") {
		// RFC 6750's query form leaks tokens into logs; the MCP spec forbids it.
		return broker.Principal{}, &refusal{status: http.StatusBadRequest, code: "invalid_request", desc: "an access token in the URL is not accepted; send it in the Authorization header"}
	}
	headers := r.Header.Values("Authorization")
	if len(headers) == 0 {
		if d.anonymous {
			return broker.Principal{Source: "anonymous"}, nil
		}
		return broker.Principal{}, &refusal{status: http.StatusUnauthorized, desc: "credentials are required"}
	}
	tok, f := bearer(headers)
	if f != nil {
		return broker.Principal{}, f
	}
	if strings.HasPrefix(tok, "airlock_") {
		return d.agent(r.Context(), tok, server)
	}
	if d.oauth == nil {
		return broker.Principal{}, &refusal{status: http.StatusUnauthorized, code: "invalid_token", desc: "not an Airlock agent token, and no OAuth access tokens are accepted here"}
	}
	return d.oauth.principal(r.Context(), tok, d.audience(r, server))
}

// bearer reads the one Bearer credential of an Authorization header.
func bearer(headers []string) (string, *refusal) {
	if len(headers) != 1 {
		return "", &refusal{status: http.StatusBadRequest, code: "invalid_request", desc: "more than one Authorization header"}
	}
	h := headers[0]
	if len(h) > MaxTokenBytes+len("Bearer ") {
		return "", &refusal{status: http.StatusUnauthorized, code: "invalid_token", desc: fmt.Sprintf("the token is longer than %d bytes", MaxTokenBytes)}
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", &refusal{status: http.StatusBadRequest, code: "invalid_request", desc: "the Authorization header must be: Bearer TOKEN"}
	}
	if tok == "" || !token68(tok) {
		return "", &refusal{status: http.StatusBadRequest, code: "invalid_request", desc: "the bearer token has characters a token cannot have"}
	}
	return tok, nil
}

// token68 reports whether s is RFC 6750's b64token.
func token68(s string) bool {
	s = strings.TrimRight(s, "=")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

func (d *Door) agent(ctx context.Context, tok, server string) (broker.Principal, *refusal) {
	if d.tokens == nil {
		return broker.Principal{}, &refusal{status: http.StatusUnauthorized, code: "invalid_token", source: "token", desc: "agent tokens are not accepted here"}
	}
	p, err := d.tokens.TokenPrincipal(ctx, tok, server)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, broker.ErrBadToken):
		return broker.Principal{}, &refusal{status: http.StatusUnauthorized, code: "invalid_token", source: "token", desc: "the agent token is unknown, expired or revoked", err: err}
	case errors.Is(err, broker.ErrTokenScope):
		return broker.Principal{}, &refusal{status: http.StatusForbidden, code: "insufficient_scope", source: "token", desc: "the agent token is not valid for server " + server, err: err}
	default:
		return broker.Principal{}, &refusal{status: http.StatusServiceUnavailable, source: "token", desc: "agent tokens cannot be checked now; try again later", err: err}
	}
}

// audience is what an access token for server must name.
func (d *Door) audience(r *http.Request, server string) string {
	if d.oauth.cfg.Audience != "" {
		return d.oauth.cfg.Audience
	}
	return d.resource(r, server)
}

// refuse answers a refused request and audits it, rate-limited.
func (d *Door) refuse(w http.ResponseWriter, r *http.Request, server string, f *refusal) {
	d.log.Debug("request refused", "server", server, "status", f.status, "reason", f.desc, "remote", r.RemoteAddr, "err", f.err)
	if f.status == http.StatusServiceUnavailable {
		d.log.Warn("request refused: credentials cannot be checked", "server", server, "err", f.err)
	}
	if f.status != http.StatusServiceUnavailable {
		w.Header().Set("WWW-Authenticate", d.challenge(r, server, f))
	} else {
		w.Header().Set("Retry-After", "5")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(f.status)
	code := f.code
	if code == "" {
		code = map[int]string{http.StatusUnauthorized: "unauthorized", http.StatusServiceUnavailable: "temporarily_unavailable"}[f.status]
	}
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": f.desc})
	w.Write(append(body, '\n'))
	http.NewResponseController(w).Flush() // the client need not wait for the audit record
	d.audit(r, server, f)
}

// challenge is the WWW-Authenticate header of a refusal: RFC 6750's, with
// RFC 9728's resource_metadata when there is metadata to point to. Its
// shape is the one the TypeScript SDK reads ("Bearer " then the params).
func (d *Door) challenge(r *http.Request, server string, f *refusal) string {
	var params []string
	if d.oauth != nil {
		params = append(params, "resource_metadata="+quote(metadataURL(d.resource(r, server))))
	}
	if f.code != "" {
		params = append(params, "error="+quote(f.code), "error_description="+quote(f.desc))
	}
	scope := f.scope
	if scope == "" && d.oauth != nil && f.code != "insufficient_scope" {
		scope = strings.Join(d.oauth.cfg.Scopes, " ")
	}
	if scope != "" {
		params = append(params, "scope="+quote(scope))
	}
	if len(params) == 0 {
		return `Bearer realm="airlock"`
	}
	return "Bearer " + strings.Join(params, ", ")
}

// quote makes s an RFC 9110 quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// audit passes the refusal on to Options.Refused, at most
// RefusalsPerMinute a minute; the next one passed on says how many were
// left out. It waits for the record (the answer is flushed already), so
// that a slow store slows only the few a minute that are recorded.
func (d *Door) audit(r *http.Request, server string, f *refusal) {
	if d.refused == nil {
		return
	}
	now := d.now()
	d.mu.Lock()
	if now.Sub(d.window) >= time.Minute || now.Before(d.window) {
		d.window, d.audited = now, 0
	}
	if d.audited >= RefusalsPerMinute {
		d.suppressed++
		d.mu.Unlock()
		return
	}
	d.audited++
	suppressed := d.suppressed
	d.suppressed = 0
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	d.refused(ctx, broker.AuthRefusal{
		Server: server, Source: f.source, Status: f.status, Reason: f.desc,
		Remote: r.RemoteAddr, Suppressed: suppressed,
	})
}
