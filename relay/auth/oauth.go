package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/airlock-mcp/airlock/broker"
)

// OAuth configures the door as an OAuth 2.1 resource server. Zero values
// are the documented defaults.
type OAuth struct {
	// Issuer is the authorization server. Its metadata is found with RFC
	// 8414, then OpenID discovery; an access token's iss must be the
	// issuer the metadata names. https, or http on a loopback address.
	Issuer string
	// Audience is what an access token's aud must contain; "" is the
	// public URL of each endpoint, Options.ResourceURL (RFC 8707).
	Audience string
	// PrincipalClaim is the claim that names the caller: sub (default),
	// email, client_id, preferred_username, or any string claim.
	PrincipalClaim string
	// GroupsClaim is the claim that lists the caller's groups (default
	// groups); absent is no groups.
	GroupsClaim string
	// Scopes must all be granted to the token (scope, or scp).
	Scopes []string
	// Claims are copied into Principal.Claims, as one JSON object, when
	// the token has them.
	Claims []string
	// IntrospectionURL, ClientID and ClientSecret check tokens that are not
	// JWTs with RFC 7662 introspection; without it only JWTs are accepted.
	IntrospectionURL string
	ClientID         string
	ClientSecret     string
}

// Timings of the key cache. Keys are refetched when a token names a kid
// the cache lacks, at most once per keysRetry (so a flood of tokens with
// made-up kids costs the authorization server one fetch in ten seconds),
// and when they are older than keysMaxAge. A failed fetch keeps the keys
// cached before it.
const (
	keysRetry  = 10 * time.Second
	keysMaxAge = time.Hour
	// leeway is the clock skew allowed on exp and nbf.
	leeway = 30 * time.Second
	// maxDocument bounds a document read from the authorization server.
	maxDocument = 1 << 20
	// maxVerified bounds the cache of verified tokens.
	maxVerified = 4096
)

// algorithms are the signatures accepted: asymmetric only. Never none, and
// never HMAC, whose key a public JWKS would hand to anyone.
var algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// resourceServer validates access tokens of one issuer.
type resourceServer struct {
	cfg    OAuth
	ctx    context.Context // bounds fetches; New's
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu        sync.Mutex // guards what follows; never held over a fetch
	issuer    string     // the metadata's issuer, once discovered
	jwksURI   string
	keys      map[string][]jose.JSONWebKey // by kid ("" for keys without one)
	fetchedAt time.Time                    // of the keys cached
	triedAt   time.Time                    // of the last discovery or key fetch, for keysRetry
	fetching  chan struct{}                // closed when the fetch under way ends; nil when none is
	verified  map[[32]byte]*verified       // tokens whose signature was checked, by hash
}

// verified is what a checked token says, kept until it expires.
type verified struct {
	aud       []string
	exp, nbf  time.Time
	principal broker.Principal
	scopes    []string
}

func newResourceServer(ctx context.Context, cfg OAuth, client *http.Client, log *slog.Logger, now func() time.Time) (*resourceServer, error) {
	if err := checkURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("auth: oauth issuer: %w", err)
	}
	if cfg.Audience != "" {
		if u, err := url.Parse(cfg.Audience); err != nil || !u.IsAbs() || u.Host == "" {
			return nil, fmt.Errorf("auth: oauth audience: %q is not an absolute URL", cfg.Audience)
		}
	}
	if cfg.IntrospectionURL != "" {
		if err := checkFetchString(cfg.IntrospectionURL); err != nil {
			return nil, fmt.Errorf("auth: oauth introspection URL: %w", err)
		}
		if cfg.ClientID == "" || cfg.ClientSecret == "" {
			return nil, errors.New("auth: oauth introspection needs a client id and secret")
		}
	}
	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			return nil, fmt.Errorf("auth: oauth scope %q is not one word", s)
		}
	}
	if cfg.PrincipalClaim == "" {
		cfg.PrincipalClaim = "sub"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	return &resourceServer{cfg: cfg, ctx: ctx, client: client, log: log, now: now, verified: map[[32]byte]*verified{}}, nil
}

// checkURL accepts https, or http on a loopback address: anything else
// would let someone on the network serve the keys Airlock trusts. An
// issuer has no query or fragment (RFC 8414).
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q is not a URL such as https://idp.example.com/", s)
	}
	return checkFetch(u)
}

func checkFetchString(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL such as https://idp.example.com/", s)
	}
	return checkFetch(u)
}

// checkFetch is checkURL for a URL Airlock fetches from.
func checkFetch(u *url.URL) error {
	s := u.String()
	if u.Host == "" || u.User != nil {
		return fmt.Errorf("%q is not a URL such as https://idp.example.com/", s)
	}
	if u.Scheme == "https" || (u.Scheme == "http" && loopback(u.Hostname())) {
		return nil
	}
	return fmt.Errorf("%q must be an https URL (http only on a loopback address)", s)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// principal validates tok as an access token for audience.
func (rs *resourceServer) principal(ctx context.Context, tok, audience string) (broker.Principal, *refusal) {
	v, f := rs.check(ctx, tok)
	if f != nil {
		f.source = "oauth"
		return broker.Principal{}, f
	}
	now := rs.now()
	switch {
	case now.After(v.exp.Add(leeway)):
		return broker.Principal{}, invalid("the access token has expired")
	case !v.nbf.IsZero() && now.Add(leeway).Before(v.nbf):
		return broker.Principal{}, invalid("the access token is not valid yet")
	case !slices.Contains(v.aud, audience):
		return broker.Principal{}, invalid("the access token is not for this resource (aud must contain " + audience + ")")
	}
	if missing := slices.DeleteFunc(slices.Clone(rs.cfg.Scopes), func(s string) bool { return slices.Contains(v.scopes, s) }); len(missing) > 0 {
		return broker.Principal{}, &refusal{status: http.StatusForbidden, code: "insufficient_scope", source: "oauth",
			scope: strings.Join(rs.cfg.Scopes, " "), desc: "the access token lacks the scope " + strings.Join(missing, " ")}
	}
	return v.principal, nil
}

func invalid(desc string) *refusal {
	return &refusal{status: http.StatusUnauthorized, code: "invalid_token", source: "oauth", desc: desc}
}

// check returns what tok says once its signature and issuer are checked
// (or the introspection endpoint vouched for it), from the cache when it
// was checked before. Time, audience and scopes are the caller's to check,
// on every request.
func (rs *resourceServer) check(ctx context.Context, tok string) (*verified, *refusal) {
	if strings.Count(tok, ".") != 2 {
		if rs.cfg.IntrospectionURL != "" {
			return rs.introspect(ctx, tok)
		}
		return nil, invalid("the access token is not a JWT")
	}
	sum := sha256.Sum256([]byte(tok))
	rs.mu.Lock()
	v := rs.verified[sum]
	rs.mu.Unlock()
	if v != nil {
		return v, nil
	}
	v, f := rs.verify(ctx, tok)
	if f != nil {
		return nil, f
	}
	rs.remember(sum, v)
	return v, nil
}

// remember caches a verified token until it expires. A full cache drops
// the expired entries, then, if that is not enough, all of them.
func (rs *resourceServer) remember(sum [32]byte, v *verified) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.verified) >= maxVerified {
		now := rs.now()
		for k, e := range rs.verified {
			if now.After(e.exp.Add(leeway)) {
				delete(rs.verified, k)
			}
		}
		if len(rs.verified) >= maxVerified {
			clear(rs.verified)
		}
	}
	rs.verified[sum] = v
}

// verify checks a JWT's signature, type and issuer and reads its claims.
func (rs *resourceServer) verify(ctx context.Context, tok string) (*verified, *refusal) {
	jws, err := jose.ParseSignedCompact(tok, algorithms)
	if err != nil {
		// go-jose names an algorithm outside the list; say it plainly.
		if strings.Contains(err.Error(), "algorithm") {
			return nil, invalid("the access token's signature algorithm is not accepted (asymmetric ones only)")
		}
		return nil, invalid("the access token is not a well-formed JWT")
	}
	if len(jws.Signatures) != 1 {
		return nil, invalid("the access token is not a well-formed JWT")
	}
	h := jws.Signatures[0].Protected
	if typ, ok := h.ExtraHeaders[jose.HeaderType]; ok {
		s, _ := typ.(string)
		switch strings.ToLower(s) {
		case "at+jwt", "application/at+jwt", "jwt":
		default:
			return nil, invalid("the token's typ is not at+jwt or JWT: not an access token")
		}
	}
	issuer, f := rs.discover(ctx)
	if f != nil {
		return nil, f
	}
	keys, f := rs.keysFor(ctx, h.KeyID)
	if f != nil {
		return nil, f
	}
	var payload []byte
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if payload, err = jws.Verify(k.Key); err == nil {
			break
		}
	}
	if payload == nil {
		return nil, invalid("the access token's signature does not verify")
	}
	claims, err := object(payload)
	if err != nil {
		return nil, invalid("the access token's claims are not one JSON object")
	}
	var iss string
	if json.Unmarshal(claims["iss"], &iss) != nil || iss != issuer {
		return nil, invalid("the access token is not from the issuer " + issuer)
	}
	return rs.read(claims, true)
}

// read takes what the door needs from verified claims.
func (rs *resourceServer) read(claims map[string]json.RawMessage, needExp bool) (*verified, *refusal) {
	v := &verified{}
	var ok bool
	if v.aud, ok = stringOrList(claims["aud"]); !ok {
		return nil, invalid("the access token's aud is not a string or a list of strings")
	}
	exp, hasExp := numericDate(claims["exp"])
	if !hasExp && (needExp || claims["exp"] != nil) {
		return nil, invalid("the access token has no valid exp")
	}
	v.exp = exp
	if claims["nbf"] != nil {
		if v.nbf, ok = numericDate(claims["nbf"]); !ok {
			return nil, invalid("the access token's nbf is not a time")
		}
	}
	if raw, has := claims["scope"]; has {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, invalid("the access token's scope is not a string")
		}
		v.scopes = strings.Fields(s)
	} else if raw, has := claims["scp"]; has {
		// Entra ID and Okta say scp: a string of words, or a list.
		l, ok := stringOrList(raw)
		if !ok {
			return nil, invalid("the access token's scp is not a string or a list")
		}
		for _, s := range l {
			v.scopes = append(v.scopes, strings.Fields(s)...)
		}
	}
	var id string
	if json.Unmarshal(claims[rs.cfg.PrincipalClaim], &id) != nil || id == "" {
		return nil, invalid("the access token has no " + rs.cfg.PrincipalClaim + " claim naming the caller")
	}
	p := broker.Principal{ID: id, Source: "oauth"}
	if raw, has := claims[rs.cfg.GroupsClaim]; has && string(raw) != "null" {
		var groups []string
		if json.Unmarshal(raw, &groups) != nil {
			return nil, invalid("the access token's " + rs.cfg.GroupsClaim + " claim is not a list of strings")
		}
		p.Groups = groups
	}
	for _, c := range []string{"client_id", "azp"} {
		if json.Unmarshal(claims[c], &p.ClientID) == nil && p.ClientID != "" {
			break
		}
	}
	if len(rs.cfg.Claims) > 0 {
		sel := map[string]json.RawMessage{}
		for _, c := range rs.cfg.Claims {
			if raw, has := claims[c]; has {
				sel[c] = raw
			}
		}
		if len(sel) > 0 {
			b, err := json.Marshal(sel)
			if err != nil {
				return nil, invalid("the access token's claims cannot be copied")
			}
			p.Claims = b
		}
	}
	v.principal = p
	return v, nil
}

// stringOrList reads a JSON string or a list of strings.
func stringOrList(raw json.RawMessage) ([]string, bool) {
	if raw == nil {
		return nil, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, true
	}
	var l []string
	if json.Unmarshal(raw, &l) == nil {
		return l, true
	}
	return nil, false
}

// numericDate reads a JWT NumericDate: seconds since the epoch.
func numericDate(raw json.RawMessage) (time.Time, bool) {
	var f float64
	if raw == nil || json.Unmarshal(raw, &f) != nil || f <= 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// unavailable is a refusal for an authorization server that cannot be
// reached: 503, never allow.
func unavailable(what string, err error) *refusal {
	return &refusal{status: http.StatusServiceUnavailable, source: "oauth", desc: "the authorization server cannot be reached to check the token (" + what + "); try again later", err: err}
}

// discover finds the issuer's metadata once; until it succeeds, it is
// tried again at most once per keysRetry.
func (rs *resourceServer) discover(ctx context.Context) (string, *refusal) {
	for {
		rs.mu.Lock()
		if rs.issuer != "" {
			iss := rs.issuer
			rs.mu.Unlock()
			return iss, nil
		}
		done, f := rs.start(ctx)
		if f != nil {
			return "", f
		}
		if done == nil {
			continue // another fetch ended while we waited: look again
		}
		iss, jwks, err := rs.fetchMetadata()
		rs.mu.Lock()
		rs.fetching = nil
		close(done)
		if err == nil {
			rs.issuer, rs.jwksURI = iss, jwks
			rs.triedAt = time.Time{} // the first key fetch may follow at once
		}
		rs.mu.Unlock()
		if err != nil {
			rs.log.Warn("oauth discovery failed", "issuer", rs.cfg.Issuer, "err", err)
			return "", unavailable("discovery", err)
		}
		return iss, nil
	}
}

// start, called with rs.mu held, releases it and either starts a fetch
// (returning the channel to close when it ends, with rs.fetching set),
// waits for the fetch under way to end (returning nil, nil), or refuses:
// the last attempt was too recent, or ctx ended.
func (rs *resourceServer) start(ctx context.Context) (chan struct{}, *refusal) {
	if done := rs.fetching; done != nil {
		rs.mu.Unlock()
		select {
		case <-done:
			return nil, nil
		case <-ctx.Done():
			return nil, unavailable("request cancelled", ctx.Err())
		}
	}
	if rs.recent() {
		rs.mu.Unlock()
		return nil, unavailable("it failed moments ago", nil)
	}
	rs.triedAt = rs.now()
	done := make(chan struct{})
	rs.fetching = done
	rs.mu.Unlock()
	return done, nil
}

// recent, with rs.mu held, reports whether the last fetch began less than
// keysRetry ago.
func (rs *resourceServer) recent() bool {
	now := rs.now()
	return !rs.triedAt.IsZero() && now.Sub(rs.triedAt) < keysRetry && !now.Before(rs.triedAt)
}

// keysFor returns the keys a token with kid may be signed with: the cached
// ones, refetched when they lack kid or are old, at most once per
// keysRetry. A failed fetch keeps the cached keys; with none cached it is
// 503.
func (rs *resourceServer) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, *refusal) {
	for {
		rs.mu.Lock()
		ks, have := rs.lookup(kid)
		now := rs.now()
		fresh := now.Sub(rs.fetchedAt) < keysMaxAge && !now.Before(rs.fetchedAt)
		switch {
		case have && (fresh || rs.fetching != nil || rs.recent()):
			// a stale key keeps working while it is refetched, or when
			// the refetch failed
			rs.mu.Unlock()
			return ks, nil
		case rs.fetching == nil && rs.recent():
			cached := rs.keys != nil
			rs.mu.Unlock()
			if !cached {
				return nil, unavailable("no signing keys yet", nil)
			}
			return nil, invalid("the access token's key (kid " + kid + ") is not one of the issuer's")
		}
		uri := rs.jwksURI
		done, f := rs.start(ctx)
		if f != nil {
			return nil, f
		}
		if done == nil {
			continue
		}
		keys, err := rs.fetchKeys(uri)
		rs.mu.Lock()
		rs.fetching = nil
		close(done)
		if err == nil {
			rs.keys, rs.fetchedAt = keys, rs.now()
		}
		ks, have = rs.lookup(kid)
		cached := rs.keys != nil
		rs.mu.Unlock()
		if err != nil {
			rs.log.Warn("oauth keys fetch failed", "jwks_uri", uri, "err", err, "cached", cached)
		}
		switch {
		case have:
			return ks, nil
		case err != nil:
			return nil, unavailable("its keys cannot be fetched", err)
		default:
			return nil, invalid("the access token's key (kid " + kid + ") is not one of the issuer's")
		}
	}
}

// lookup, with rs.mu held, finds the keys for kid: a token without a kid
// may be signed by any key.
func (rs *resourceServer) lookup(kid string) ([]jose.JSONWebKey, bool) {
	if kid != "" {
		ks, ok := rs.keys[kid]
		return ks, ok
	}
	var all []jose.JSONWebKey
	for _, ks := range rs.keys {
		all = append(all, ks...)
	}
	return all, len(all) > 0
}

// fetchMetadata finds the issuer's metadata: RFC 8414's path-inserted
// well-known URL, then OpenID discovery's (inserted, then appended). The
// metadata must name the configured issuer (a trailing slash aside).
func (rs *resourceServer) fetchMetadata() (issuer, jwksURI string, err error) {
	u, _ := url.Parse(rs.cfg.Issuer)
	path := strings.TrimSuffix(u.Path, "/")
	origin := u.Scheme + "://" + u.Host
	candidates := []string{origin + "/.well-known/oauth-authorization-server" + path}
	if path != "" {
		candidates = append(candidates, origin+"/.well-known/openid-configuration"+path)
	}
	candidates = append(candidates, origin+path+"/.well-known/openid-configuration")
	var errs []error
	for _, c := range candidates {
		doc, status, err := rs.get(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if status == http.StatusNotFound {
			continue
		}
		var iss, jwks string
		if json.Unmarshal(doc["issuer"], &iss) != nil || json.Unmarshal(doc["jwks_uri"], &jwks) != nil {
			return "", "", fmt.Errorf("%s: no issuer or jwks_uri", c)
		}
		if strings.TrimSuffix(iss, "/") != strings.TrimSuffix(rs.cfg.Issuer, "/") {
			return "", "", fmt.Errorf("%s names the issuer %q, not %q", c, iss, rs.cfg.Issuer)
		}
		if err := checkFetchString(jwks); err != nil {
			return "", "", fmt.Errorf("%s: jwks_uri: %w", c, err)
		}
		return iss, jwks, nil
	}
	if len(errs) == 0 {
		return "", "", fmt.Errorf("no metadata for %s at %s", rs.cfg.Issuer, strings.Join(candidates, ", "))
	}
	return "", "", errors.Join(errs...)
}

// fetchKeys reads a JWKS: its public signing keys, by kid.
func (rs *resourceServer) fetchKeys(uri string) (map[string][]jose.JSONWebKey, error) {
	doc, status, err := rs.get(uri)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%s: %d", uri, status)
	}
	var raw []json.RawMessage
	if json.Unmarshal(doc["keys"], &raw) != nil {
		return nil, fmt.Errorf("%s: no keys", uri)
	}
	keys := map[string][]jose.JSONWebKey{}
	for _, r := range raw {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			continue // a key of a type go-jose does not know cannot sign what we accept
		}
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if k.Algorithm != "" && !slices.Contains(algorithms, jose.SignatureAlgorithm(k.Algorithm)) {
			continue
		}
		keys[k.KeyID] = append(keys[k.KeyID], k)
	}
	return keys, nil
}

// get fetches a JSON object; a status other than 200 is returned, without
// the document.
func (rs *resourceServer) get(u string) (map[string]json.RawMessage, int, error) {
	ctx, cancel := context.WithTimeout(rs.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	return rs.do(req)
}

func (rs *resourceServer) do(req *http.Request) (map[string]json.RawMessage, int, error) {
	resp, err := rs.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if err := checkFetch(resp.Request.URL); err != nil {
		// a redirect may not lead where the configured URL could not
		return nil, 0, fmt.Errorf("%s redirected: %w", req.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocument))
		return nil, resp.StatusCode, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", req.URL, err)
	}
	if len(b) > maxDocument {
		return nil, 0, fmt.Errorf("%s: longer than %d bytes", req.URL, maxDocument)
	}
	doc, err := object(b)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", req.URL, err)
	}
	return doc, resp.StatusCode, nil
}

// introspect asks the introspection endpoint about an opaque token, on
// every request: a revoked token stops working at once. The answer must
// be active, name the issuer when it names one, and carry the audience.
func (rs *resourceServer) introspect(ctx context.Context, tok string) (*verified, *refusal) {
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stop := context.AfterFunc(rs.ctx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rs.cfg.IntrospectionURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, unavailable("introspection", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(rs.cfg.ClientID), url.QueryEscape(rs.cfg.ClientSecret))
	doc, status, err := rs.do(req)
	if err != nil || status != http.StatusOK {
		if err == nil {
			err = fmt.Errorf("introspection answered %d", status)
		}
		rs.log.Warn("oauth introspection failed", "url", rs.cfg.IntrospectionURL, "err", err)
		return nil, unavailable("introspection", err)
	}
	var active bool
	if json.Unmarshal(doc["active"], &active) != nil || !active {
		return nil, invalid("the access token is not active")
	}
	if raw, has := doc["iss"]; has {
		var iss string
		if json.Unmarshal(raw, &iss) != nil || strings.TrimSuffix(iss, "/") != strings.TrimSuffix(rs.cfg.Issuer, "/") {
			return nil, invalid("the access token is not from the issuer " + rs.cfg.Issuer)
		}
	}
	v, f := rs.read(doc, false)
	if f != nil {
		return nil, f
	}
	if v.exp.IsZero() {
		v.exp = rs.now() // introspected just now; not cached
	}
	return v, nil
}

// object reads one JSON object, refusing duplicate member names (whose
// meaning decoders disagree on).
func object(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("member %q appears twice", k)
		}
		m[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}
