package ui

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/airlock-mcp/airlock/broker"
)

// Bounds on the sign-ins the UI keeps in memory.
const (
	maxLinks    = 1000
	maxSessions = 10000
)

// auth holds the login links not yet used and the signed-in sessions. Both
// live in memory: a restarted broker prints a new link, and its browsers
// sign in again.
type auth struct {
	mu       sync.Mutex
	links    map[string]identity // token → who it signs in
	sessions map[string]identity // cookie value → who is signed in
}

// identity is who a link or a session signs in, and until when.
type identity struct {
	approver string
	expires  time.Time
}

func (a *auth) init() {
	a.links = make(map[string]identity)
	a.sessions = make(map[string]identity)
}

// add stores id under a new random key in m, after dropping expired
// entries; it fails when m is full of live ones.
func (a *auth) add(m map[string]identity, limit int, id identity, now time.Time) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range m {
		if now.After(v.expires) {
			delete(m, k)
		}
	}
	if len(m) >= limit {
		return "", errors.New("ui: too many outstanding sign-ins")
	}
	key := secret()
	m[key] = id
	return key, nil
}

// take returns the identity under key, removing it when once is set.
func (a *auth) take(m map[string]identity, key string, once bool, now time.Time) (identity, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := m[key]
	if !ok || key == "" {
		return identity{}, false
	}
	if once || now.After(g.expires) {
		delete(m, key)
	}
	return g, !now.After(g.expires)
}

// secret returns 256 random bits as text, for tokens, session ids and
// OIDC states.
func secret() string { return rand.Text() + rand.Text() }

func (a *auth) drop(m map[string]identity, key string) {
	a.mu.Lock()
	delete(m, key)
	a.mu.Unlock()
}

// LoginLink is a one-time URL that signs a browser in.
type LoginLink struct {
	URL       string    `json:"url"`
	Approver  string    `json:"approver"`
	ExpiresAt time.Time `json:"expires_at"`
}

// NewLoginLink makes a login link on base (the UI's address, like
// http://127.0.0.1:7420) that signs in as approver, or as the configured
// approver when that is empty. The link works once, within LinkTTL.
func (s *Server) NewLoginLink(base, approver string) (LoginLink, error) {
	approver = strings.TrimSpace(approver)
	if approver == "" {
		approver = s.approver
	}
	approver = s.person(approver)
	if s.public != nil {
		base = s.public.String()
	}
	exp := s.now().Add(LinkTTL)
	token, err := s.auth.add(s.auth.links, maxLinks, identity{approver: approver, expires: exp}, s.now())
	if err != nil {
		return LoginLink{}, err
	}
	return LoginLink{URL: strings.TrimSuffix(base, "/") + "/login?token=" + token, Approver: approver, ExpiresAt: exp.UTC()}, nil
}

// LoginLinkHandler serves POST /api/v1/login-links for `airlock login`:
// whoever holds the admin token may sign a browser in, as the configured
// approver and no one else. The admin token is one person; a link in
// another name would let them count twice towards a quorum. The body may
// name the approver, {"approver": "admin"}, which must be that one.
func (s *Server) LoginLinkHandler(adminToken string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !broker.AdminAuthorized(r, adminToken) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="airlock"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong admin token (it is in the state directory's admin-token file)"})
			return
		}
		var req struct {
			Approver string `json:"approver"`
		}
		// A struct is safe here: the body comes from a holder of the admin
		// token, an operator, not from an agent or a server.
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "login link request: " + err.Error()})
			return
		}
		if a := strings.TrimSpace(req.Approver); a != "" && a != s.approver {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf(
				"a login link signs in as %s (ui.approver), not as %s: the admin token is one person to Airlock; people sign in as themselves with ui.oidc", s.approver, a)})
			return
		}
		link, err := s.NewLoginLink(s.baseURL(r), "")
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		s.log.Info("login link issued", "approver", link.Approver)
		writeJSON(w, http.StatusOK, link)
	})
}

// login signs a browser in with a link's token, or shows how to sign in.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	if token == "" {
		if _, ok := s.signedIn(r); ok {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		s.render(w, r, http.StatusOK, loginPage(s.pageFor(r, "Sign in", ""), s.loginView(r, "")))
		return
	}
	id, ok := s.auth.take(s.auth.links, token, true, s.now())
	if !ok {
		s.log.Info("login link refused: unknown, used or expired")
		s.render(w, r, http.StatusForbidden, loginPage(s.pageFor(r, "Sign in", ""),
			s.loginView(r, "This login link has expired or was already used. Run airlock login on the broker's machine for a new one.")))
		return
	}
	if err := s.startSession(w, r, id.approver, "link"); err != nil {
		s.internal(w, r, "signing in", err)
		return
	}
	// Away from the URL with the token: no secret stays in the address bar
	// or the history.
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// person is who a web sign-in decides as: the person config maps the
// name to, so that the rule "the requester may not approve their own
// call" and a quorum see one person across channels; else the name.
func (s *Server) person(name string) string {
	return cmp.Or(s.broker.Person("web", name), name)
}

func (s *Server) startSession(w http.ResponseWriter, r *http.Request, approver, via string) error {
	exp := s.now().Add(s.ttl)
	id, err := s.auth.add(s.auth.sessions, maxSessions, identity{approver: approver, expires: exp}, s.now())
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name:     s.cookieName(r),
		Value:    id,
		Path:     "/",
		MaxAge:   int(s.ttl / time.Second),
		HttpOnly: true,
		Secure:   s.secure(r),
		SameSite: http.SameSiteStrictMode,
	})
	s.log.Info("signed in", "approver", approver, "via", via)
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(s.cookieName(r)); err == nil {
		s.auth.drop(s.auth.sessions, c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(r), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// signedIn returns the approver the request's session names.
func (s *Server) signedIn(r *http.Request) (string, bool) {
	c, err := r.Cookie(s.cookieName(r))
	if err != nil {
		return "", false
	}
	id, ok := s.auth.take(s.auth.sessions, c.Value, false, s.now())
	return id.approver, ok
}

// authed serves h to signed-in people only: anyone else is sent to the
// login page, and a request that would change something is refused.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.signedIn(r)
		if ok {
			h(w, r, who)
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		s.renderError(w, r, http.StatusUnauthorized, "Sign in first", "This needs a signed-in approver; nothing was changed.")
	})
}

// cookieName differs per port: browsers share cookies across the ports of
// one host, and each `airlock wrap` serves its own UI on its own port.
func (s *Server) cookieName(r *http.Request) string {
	host := r.Host
	if s.public != nil {
		host = s.public.Host
	}
	if _, port, err := net.SplitHostPort(host); err == nil && port != "" {
		return "airlock_session_" + port
	}
	return "airlock_session"
}

func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || (s.public != nil && s.public.Scheme == "https")
}

// baseURL is the UI's address for links: the public URL, or the one the
// request came to.
func (s *Server) baseURL(r *http.Request) string {
	if s.public != nil {
		return s.public.String()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// localPath keeps a "next" parameter on this site: a path, never a URL
// elsewhere ("//evil.example" or "/\evil.example" are URLs to browsers,
// which also drop tabs and newlines: "/\t/evil.example" is one too).
func localPath(next string) string {
	if strings.ContainsFunc(next, unicode.IsControl) ||
		!strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
