package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/relay/auth"
)

// AuthConfig is the auth section: how serve's MCP endpoints know who is
// asking (docs/auth.md). Without it, a loopback listener lets callers
// without credentials in as "anonymous" (as one person's machine wants),
// and serve refuses to listen anywhere else.
type AuthConfig struct {
	// Tokens accepts agent tokens made with `airlock tokens create`
	// (default true).
	Tokens *bool `yaml:"tokens"`
	// OAuth makes the endpoints an OAuth 2.1 resource server.
	OAuth *OAuthConfig `yaml:"oauth"`
	// Anonymous lets requests without credentials in as "anonymous": the
	// explicit opt-out of authentication. A credential that is given and
	// wrong is refused all the same.
	Anonymous bool `yaml:"anonymous"`
}

// OAuthConfig is auth.oauth.
type OAuthConfig struct {
	// Issuer is the authorization server; its metadata is found through
	// RFC 8414 or OpenID discovery.
	Issuer string `yaml:"issuer"`
	// Audience is what an access token's aud must hold (default: the
	// public URL of each endpoint, /mcp/{name}, the RFC 8707 resource).
	Audience string `yaml:"audience"`
	// PrincipalClaim names the caller (default sub).
	PrincipalClaim string `yaml:"principal_claim"`
	// GroupsClaim lists the caller's groups (default groups).
	GroupsClaim string `yaml:"groups_claim"`
	// Scopes must all be granted to the token.
	Scopes []string `yaml:"scopes"`
	// Claims are copied into the policy's input.principal.claims.
	Claims []string `yaml:"claims"`
	// IntrospectionURL, with ClientID and ClientSecretFile, checks opaque
	// tokens with RFC 7662 introspection.
	IntrospectionURL string `yaml:"introspection_url"`
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`

	clientSecret string // read from ClientSecretFile
}

// tokens says whether agent tokens are accepted.
func (a *AuthConfig) tokens() bool { return a == nil || a.Tokens == nil || *a.Tokens }

// resolve checks the section. Paths are already relative to the config
// file (resolvePaths).
func (a *AuthConfig) resolve() error {
	if a == nil {
		return nil
	}
	if !a.tokens() && a.OAuth == nil && !a.Anonymous {
		return errors.New("config: auth lets nobody in: turn on tokens, configure auth.oauth, or set auth.anonymous: true")
	}
	o := a.OAuth
	if o == nil {
		return nil
	}
	if err := checkSecureURL(o.Issuer); err != nil {
		return fmt.Errorf("config: auth.oauth.issuer: %w", err)
	}
	if o.Audience != "" {
		if u, err := url.Parse(o.Audience); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("config: auth.oauth.audience: %q must be an absolute URL (the resource, as RFC 8707 names it)", o.Audience)
		}
	}
	if o.PrincipalClaim == "" {
		o.PrincipalClaim = "sub"
	}
	if o.GroupsClaim == "" {
		o.GroupsClaim = "groups"
	}
	if slices.Contains(o.Scopes, "") || slices.ContainsFunc(o.Scopes, func(s string) bool { return strings.ContainsAny(s, " \"") }) {
		return fmt.Errorf("config: auth.oauth.scopes: %q: a scope is one word", o.Scopes)
	}
	if o.IntrospectionURL != "" {
		if err := checkSecureURL(o.IntrospectionURL); err != nil {
			return fmt.Errorf("config: auth.oauth.introspection_url: %w", err)
		}
		if o.ClientID == "" || o.ClientSecretFile == "" {
			return errors.New("config: auth.oauth.introspection_url needs client_id and client_secret_file: Airlock authenticates to the introspection endpoint")
		}
	}
	if o.ClientSecretFile != "" {
		var err error
		if o.clientSecret, err = readSecretFile(o.ClientSecretFile); err != nil {
			return fmt.Errorf("config: auth.oauth.client_secret_file: %w", err)
		}
	}
	return nil
}

// checkSecureURL accepts an https URL, or http on a loopback host (for
// development and tests): anything else would let a network attacker
// serve the keys Airlock trusts, or read the tokens it sends.
func checkSecureURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil {
		return fmt.Errorf("%q is not a URL such as https://idp.example.com/", s)
	}
	if u.Scheme == "https" || (u.Scheme == "http" && loopbackHost(u.Hostname())) {
		return nil
	}
	return fmt.Errorf("%q must be an https URL (http only on a loopback address, for testing)", s)
}

// errOpenDoor is why serve will not listen beyond the machine with nobody
// checked at the door.
func errOpenDoor(listen string) error {
	return fmt.Errorf(`airlock serve: refusing to listen on %s with no auth configured: anyone who can reach it could call your servers as "anonymous".
Configure who may call (docs/auth.md):
  auth:
    tokens: true            # then: airlock tokens create NAME, one per agent
    # oauth: {issuer: https://idp.example.com/}
or opt out explicitly with "auth: {anonymous: true}", or listen on 127.0.0.1`, listen)
}

// door is who checks serve's callers, as cfg.Auth says. Without an auth
// section (serve has made sure the listener is on loopback), callers
// without credentials are anonymous, and agent tokens are still checked.
func (rt *runtime) door(ctx context.Context) (*auth.Door, error) {
	a := rt.cfg.Auth
	o := auth.Options{
		Anonymous:   a == nil || a.Anonymous,
		ResourceURL: rt.resourceURL,
		Refused: func(ctx context.Context, r broker.AuthRefusal) {
			if err := rt.broker.RecordAuthRefusal(ctx, r); err != nil {
				rt.log.Error("auditing a refused request failed", "server", r.Server, "err", err)
			}
		},
		Logger: rt.log,
	}
	if a.tokens() {
		o.Tokens = rt.broker
	}
	if a != nil && a.OAuth != nil {
		c := a.OAuth
		o.OAuth = &auth.OAuth{Issuer: c.Issuer, Audience: c.Audience, PrincipalClaim: c.PrincipalClaim,
			GroupsClaim: c.GroupsClaim, Scopes: c.Scopes, Claims: c.Claims,
			IntrospectionURL: c.IntrospectionURL, ClientID: c.ClientID, ClientSecret: c.clientSecret}
	}
	return auth.New(ctx, o)
}

// doorway says whom the door lets in, for the log at start.
func (a *AuthConfig) doorway() string {
	var in []string
	if a.tokens() {
		in = append(in, "agent tokens")
	}
	if a != nil && a.OAuth != nil {
		in = append(in, "OAuth access tokens from "+a.OAuth.Issuer)
	}
	if a == nil || a.Anonymous {
		in = append(in, "callers without credentials, as anonymous")
	}
	return strings.Join(in, "; ")
}

// resourceURL is the public URL of /mcp/{server} as r reached it: under
// ui.url behind a proxy, else at the request's own host, which the host
// guard has checked is one of the listener's names.
func (rt *runtime) resourceURL(r *http.Request, server string) string {
	if rt.cfg.UI.URL != "" {
		return strings.TrimSuffix(rt.cfg.UI.URL, "/") + "/mcp/" + server
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/mcp/" + server
}

// knownServer serves h only for the names of configured servers.
func (rt *runtime) knownServer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.relay.Upstream(r.PathValue("server")) == nil {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
