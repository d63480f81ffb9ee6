package ui

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/airlock-mcp/airlock/broker"
)

// OIDC configures sign-in with an OpenID Connect provider (Google, Okta,
// Entra ID, Keycloak, Dex…). The approver's identity is a claim of the ID
// token, so that the same person has the same name here and in Slack.
type OIDC struct {
	// Issuer is the provider's issuer URL; its discovery document is at
	// Issuer + "/.well-known/openid-configuration".
	Issuer       string
	ClientID     string
	ClientSecret string // empty for a public client (PKCE is always used)
	// Claim is the ID token claim that names the approver; "" means
	// "email". An email that the token says is not verified is refused.
	Claim string
	// AllowedUsers and AllowedDomains limit who may sign in: identities
	// listed exactly (case-insensitively), or emails in these domains. Both
	// empty: anyone the provider signs in.
	AllowedUsers   []string
	AllowedDomains []string
	// HTTPClient reaches the provider; nil means one with a 10 s timeout.
	HTTPClient *http.Client
}

const (
	oidcStateTTL  = 10 * time.Minute // a sign-in at the provider must finish within this
	maxOIDCStates = 10000            // bounds what anonymous requests can make the UI remember
	oidcTimeout   = 10 * time.Second
)

// oidcLogin runs the authorization code flow with PKCE and a nonce.
type oidcLogin struct {
	cfg OIDC
	log *slog.Logger

	mu       sync.Mutex
	provider *oidc.Provider // found on first use: the broker starts even while the provider is down
	states   map[string]oidcState
}

// oidcState is one sign-in in progress, keyed by the state parameter.
type oidcState struct {
	nonce, verifier, next string
	expires               time.Time
}

func newOIDCLogin(cfg OIDC, log *slog.Logger) (*oidcLogin, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("ui: OIDC needs an issuer and a client id")
	}
	if cfg.Claim == "" {
		cfg.Claim = "email"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: oidcTimeout}
	}
	return &oidcLogin{cfg: cfg, log: log, states: make(map[string]oidcState)}, nil
}

func (o *oidcLogin) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, o.cfg.HTTPClient), oidcTimeout)
	defer cancel()
	p, err := oidc.NewProvider(ctx, o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("ui: OIDC discovery at %s: %w", o.cfg.Issuer, err)
	}
	o.provider = p
	return p, nil
}

func (o *oidcLogin) oauth(p *oidc.Provider, redirect string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     o.cfg.ClientID,
		ClientSecret: o.cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  redirect,
		Scopes:       []string{oidc.ScopeOpenID, "email", "profile"},
	}
}

// identity picks the approver's name out of verified claims, or says why
// this person may not sign in.
func (o *oidcLogin) identity(claims map[string]any) (string, error) {
	id, _ := claims[o.cfg.Claim].(string)
	id = strings.TrimSpace(id)
	if id == "" {
		return "", fmt.Errorf("the provider's ID token has no %q claim, which names approvers here", o.cfg.Claim)
	}
	if o.cfg.Claim == "email" {
		if v, ok := claims["email_verified"].(bool); ok && !v {
			return "", fmt.Errorf("the provider has not verified the email address %s", id)
		}
	}
	if len(o.cfg.AllowedUsers) == 0 && len(o.cfg.AllowedDomains) == 0 {
		return id, nil
	}
	for _, u := range o.cfg.AllowedUsers {
		if strings.EqualFold(u, id) {
			return id, nil
		}
	}
	for _, d := range o.cfg.AllowedDomains {
		if strings.HasSuffix(strings.ToLower(id), "@"+strings.ToLower(d)) {
			return id, nil
		}
	}
	return "", fmt.Errorf("%s is not among the approvers allowed here", id)
}

func (s *Server) oidcCookie(r *http.Request) string { return s.cookieName(r) + "_oidc" }

func (s *Server) redirectURL(r *http.Request) string { return s.baseURL(r) + "/oidc/callback" }

// oidcStart sends the browser to the provider.
func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		s.notFound(w, r, "")
		return
	}
	p, err := s.oidc.discover(r.Context())
	if err != nil {
		s.oidcFailed(w, r, "reaching the sign-in provider", err)
		return
	}
	st := oidcState{nonce: secret(), verifier: oauth2.GenerateVerifier(), next: localPath(r.URL.Query().Get("next")),
		expires: s.now().Add(oidcStateTTL)}
	state, err := s.oidc.addState(st, s.now())
	if err != nil {
		s.oidcFailed(w, r, "starting a sign-in", err)
		return
	}
	// The state cookie binds the sign-in to this browser. It is Lax, not
	// Strict: the provider's redirect back is a cross-site navigation.
	http.SetCookie(w, &http.Cookie{Name: s.oidcCookie(r), Value: state, Path: "/oidc/", MaxAge: int(oidcStateTTL / time.Second),
		HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteLaxMode})
	u := s.oidc.oauth(p, s.redirectURL(r)).AuthCodeURL(state, oidc.Nonce(st.nonce), oauth2.S256ChallengeOption(st.verifier))
	http.Redirect(w, r, u, http.StatusFound)
}

// oidcCallback finishes a sign-in: it checks the state, exchanges the code,
// verifies the ID token and its nonce, and starts a session.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		s.notFound(w, r, "")
		return
	}
	q := r.URL.Query()
	http.SetCookie(w, &http.Cookie{Name: s.oidcCookie(r), Value: "", Path: "/oidc/", MaxAge: -1, HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteLaxMode})
	if e := q.Get("error"); e != "" {
		s.log.Info("OIDC sign-in refused by the provider", "error", e, "description", q.Get("error_description"))
		s.loginRefused(w, r, "The sign-in provider refused: "+e+".")
		return
	}
	state := q.Get("state")
	c, err := r.Cookie(s.oidcCookie(r))
	if err != nil || state == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 {
		s.loginRefused(w, r, "This sign-in did not start in this browser, or took too long. Try again.")
		return
	}
	st, ok := s.oidc.takeState(state, s.now())
	if !ok {
		s.loginRefused(w, r, "This sign-in did not start in this browser, or took too long. Try again.")
		return
	}
	p, err := s.oidc.discover(r.Context())
	if err != nil {
		s.oidcFailed(w, r, "reaching the sign-in provider", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), oauth2.HTTPClient, s.oidc.cfg.HTTPClient), oidcTimeout)
	defer cancel()
	tok, err := s.oidc.oauth(p, s.redirectURL(r)).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(st.verifier))
	if err != nil {
		s.oidcFailed(w, r, "exchanging the sign-in code", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		s.oidcFailed(w, r, "reading the ID token", errors.New("the token response has no id_token"))
		return
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: s.oidc.cfg.ClientID}).Verify(oidc.ClientContext(ctx, s.oidc.cfg.HTTPClient), raw)
	if err != nil {
		s.oidcFailed(w, r, "verifying the ID token", err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.nonce)) != 1 {
		s.oidcFailed(w, r, "verifying the ID token", errors.New("the nonce does not match"))
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		s.oidcFailed(w, r, "reading the ID token", err)
		return
	}
	who, err := s.oidc.identity(claims)
	if err != nil {
		s.log.Info("OIDC sign-in refused", "subject", idt.Subject, "reason", err)
		s.loginRefused(w, r, err.Error()+".")
		return
	}
	if p := s.person(who); p != who {
		s.log.Info("OIDC sign-in is a person", "claim", who, "person", p)
		who = p
	}
	if err := s.startSession(w, r, who, "oidc"); err != nil {
		s.internal(w, r, "signing in", err)
		return
	}
	// A page that moves on, not a redirect: this request came from the
	// provider's site, and a browser would not send the new SameSite=Strict
	// cookie along a redirect that started there.
	s.render(w, r, http.StatusOK, signedInPage(s.pageFor(r, "Signed in", ""), who, st.next))
}

func (s *Server) loginRefused(w http.ResponseWriter, r *http.Request, msg string) {
	s.render(w, r, http.StatusForbidden, loginPage(s.pageFor(r, "Sign in", ""), s.loginView(r, msg)))
}

func (s *Server) oidcFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	ref := broker.NewRef()
	s.log.Error("OIDC sign-in failed", "ref", ref, "what", what, "err", err)
	s.render(w, r, http.StatusBadGateway, loginPage(s.pageFor(r, "Sign in", ""),
		s.loginView(r, fmt.Sprintf("Signing in failed while %s (ref %s).", what, ref))))
}

func (o *oidcLogin) addState(st oidcState, now time.Time) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, v := range o.states {
		if now.After(v.expires) {
			delete(o.states, k)
		}
	}
	if len(o.states) >= maxOIDCStates {
		return "", errors.New("too many sign-ins in progress")
	}
	state := secret()
	o.states[state] = st
	return state, nil
}

func (o *oidcLogin) takeState(state string, now time.Time) (oidcState, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, ok := o.states[state]
	delete(o.states, state)
	return st, ok && !now.After(st.expires)
}

// loginView describes the login page's choices.
type loginView struct {
	Error    string
	OIDC     string // the provider's host, when OIDC is on
	OIDCLink string
}

func (s *Server) loginView(r *http.Request, msg string) loginView {
	v := loginView{Error: msg}
	if s.oidc != nil {
		v.OIDC = s.oidc.cfg.Issuer
		if u, err := url.Parse(s.oidc.cfg.Issuer); err == nil && u.Host != "" {
			v.OIDC = u.Host
		}
		v.OIDCLink = "/oidc/login?next=" + url.QueryEscape(localPath(r.URL.Query().Get("next")))
	}
	return v
}
