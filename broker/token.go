package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Tokens are the credentials Airlock issues itself: an agent token makes
// the caller of an MCP endpoint that agent (Principal{Source: "token"}),
// and an approver token makes the holder of the CLI a person who decides
// through the API. A token is shown once, when it is made; the store keeps
// only its SHA-256.
//
// A token reads "airlock_at_" (agent) or "airlock_ap_" (approver), then
// its record's id, "_" and 32 random bytes in base64url. The prefix lets
// secret scanners find a leaked one; the id lets the broker find its
// record without looking at any other.

// Token prefixes, which secret scanners can match.
const (
	AgentTokenPrefix    = "airlock_at_"
	ApproverTokenPrefix = "airlock_ap_"
)

const (
	tokenIDLen     = 16 // newApprovalID's length
	tokenSecretLen = 43 // 32 bytes, base64url without padding
	tokenLen       = len(AgentTokenPrefix) + tokenIDLen + 1 + tokenSecretLen
)

// ErrBadToken is a token that is unknown, expired, revoked or malformed:
// the caller's fault, answered 401 invalid_token.
var ErrBadToken = errors.New("broker: bad token")

// ErrTokenScope is a valid token that is not for this server (or an
// approver token at an MCP endpoint, or an agent token at the API),
// answered 403.
var ErrTokenScope = errors.New("broker: token not valid for this server")

// ErrTokenExists is a token name already held by a token not revoked.
var ErrTokenExists = errors.New("a token of that name exists; revoke it first")

// Token is a token's record: everything about it but the secret.
type Token struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Hash is the hex SHA-256 of the whole token. It stays in the store
	// and the core: Broker.Tokens leaves it out.
	Hash string `json:"hash,omitempty"`
	// Approver marks a person's token for the API, which no MCP endpoint
	// accepts.
	Approver bool `json:"approver,omitempty"`
	// Servers are the servers an agent token may call; none means every
	// one.
	Servers    []string  `json:"servers,omitempty"`
	Groups     []string  `json:"groups,omitempty"`
	CreatedBy  string    `json:"created_by"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"` // zero: never
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	RevokedBy  string    `json:"revoked_by,omitempty"`
}

// Kind is "agent" or "approver".
func (t *Token) Kind() string {
	if t.Approver {
		return "approver"
	}
	return "agent"
}

// Revoked reports whether the token was revoked.
func (t *Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// Expired reports whether the token's time is up at now.
func (t *Token) Expired(now time.Time) bool { return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) }

func (t *Token) prefix() string {
	if t.Approver {
		return ApproverTokenPrefix
	}
	return AgentTokenPrefix
}

// TokenSpec asks for a new token.
type TokenSpec struct {
	Name    string
	Servers []string
	Groups  []string
	// TTL is how long the token lasts; 0 means it never expires.
	TTL      time.Duration
	Approver bool
	// By is who makes it, for the record and the audit log.
	By string
}

// CreateToken makes a token, stores its record and audits it. The secret
// is returned here and never again.
func (b *Broker) CreateToken(ctx context.Context, spec TokenSpec) (string, *Token, error) {
	if err := checkTokenName(spec.Name); err != nil {
		return "", nil, err
	}
	if spec.TTL < 0 {
		return "", nil, specError("token: the ttl must not be negative (0: never expires)")
	}
	if spec.Approver && (len(spec.Servers) > 0 || len(spec.Groups) > 0) {
		return "", nil, specError("token: an approver token is a person's, for deciding through the API: it takes no servers or groups")
	}
	for _, s := range spec.Servers {
		if !slices.Contains(b.servers, s) {
			return "", nil, specErrorf("token: no server %q is configured (servers: %s)", s, strings.Join(b.servers, ", "))
		}
	}
	for _, g := range spec.Groups {
		if g == "" || strings.TrimSpace(g) != g || strings.ContainsFunc(g, unicode.IsControl) {
			return "", nil, specErrorf("token: group %q is empty, or has spaces around it or control characters", g)
		}
	}
	by := spec.By
	if by == "" {
		by = b.admin
	}
	now := b.now().UTC()
	t := &Token{
		ID:        newApprovalID(now),
		Name:      spec.Name,
		Approver:  spec.Approver,
		Servers:   slices.Compact(slices.Sorted(slices.Values(spec.Servers))),
		Groups:    slices.Compact(slices.Sorted(slices.Values(spec.Groups))),
		CreatedBy: by,
		CreatedAt: now,
	}
	if spec.TTL > 0 {
		t.ExpiresAt = now.Add(spec.TTL)
	}
	var secret [32]byte
	rand.Read(secret[:])
	token := t.prefix() + t.ID + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(token))
	t.Hash = hex.EncodeToString(sum[:])
	rec := tokenRecord(EventTokenCreated, t, by, now)
	rec.Reason = tokenSummary(t)
	if err := b.store.CreateToken(ctx, t, rec); err != nil {
		if errors.Is(err, ErrTokenExists) {
			return "", nil, fmt.Errorf("token %s: %w", spec.Name, ErrTokenExists)
		}
		return "", nil, fmt.Errorf("token %s: storing it: %w", spec.Name, err)
	}
	b.log.Info("token created", "token", t.Name, "kind", t.Kind(), "by", by)
	t.Hash = ""
	return token, t, nil
}

// specError is a TokenSpec's own fault: the API answers it 400.
type specError string

func (e specError) Error() string { return string(e) }

func specErrorf(format string, args ...any) error { return specError(fmt.Sprintf(format, args...)) }

// IsTokenSpecError reports whether err is CreateToken refusing what it was
// asked for, rather than failing.
func IsTokenSpecError(err error) bool {
	_, ok := errors.AsType[specError](err)
	return ok
}

// checkTokenName keeps names to what reads plainly in a log, a policy and
// a terminal: a token's name is the agent's (or the person's) identity.
func checkTokenName(name string) error {
	if name == "" || len(name) > 64 {
		return specError("token: a name of 1 to 64 characters is required")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._@-", c)) {
			return specErrorf("token: name %q: only letters, digits and . _ @ - are allowed", name)
		}
	}
	return nil
}

func tokenSummary(t *Token) string {
	var parts []string
	parts = append(parts, t.Kind()+" token")
	if len(t.Servers) > 0 {
		parts = append(parts, "servers "+strings.Join(t.Servers, ","))
	}
	if len(t.Groups) > 0 {
		parts = append(parts, "groups "+strings.Join(t.Groups, ","))
	}
	if t.ExpiresAt.IsZero() {
		parts = append(parts, "never expires")
	} else {
		parts = append(parts, "expires "+t.ExpiresAt.Format(time.RFC3339))
	}
	return strings.Join(parts, "; ")
}

// tokenRecord is the audit record of a change to a token: the identity it
// establishes is the record's principal.
func tokenRecord(ev Event, t *Token, by string, at time.Time) *AuditRecord {
	return &AuditRecord{Time: at, Event: ev, Principal: t.Name, PrincipalSource: "token", Actor: by, Ref: t.ID}
}

// RevokeToken revokes the token called name, which is refused from its
// next request on, in sessions already open too. A name without a token
// that is not revoked is ErrNotFound.
func (b *Broker) RevokeToken(ctx context.Context, name, by string) (*Token, error) {
	if by == "" {
		by = b.admin
	}
	ts, err := b.store.Tokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("token %s: %w", name, err)
	}
	i := slices.IndexFunc(ts, func(t *Token) bool { return t.Name == name && !t.Revoked() })
	if i < 0 {
		return nil, fmt.Errorf("no token %s that is not revoked: %w", name, ErrNotFound)
	}
	now := b.now().UTC()
	t, err := b.store.UpdateToken(ctx, ts[i].ID, func(t *Token) (*AuditRecord, error) {
		if t.Revoked() {
			return nil, fmt.Errorf("token %s was revoked already by %s: %w", name, t.RevokedBy, ErrNotFound)
		}
		t.RevokedAt, t.RevokedBy = now, by
		return tokenRecord(EventTokenRevoked, t, by, now), nil
	})
	if err != nil {
		return nil, err
	}
	b.log.Info("token revoked", "token", name, "by", by)
	t.Hash = ""
	return t, nil
}

// Tokens lists every token, newest first, with last-used times as of now
// (the store's are written back only now and then), without hashes.
func (b *Broker) Tokens(ctx context.Context) ([]*Token, error) {
	ts, err := b.store.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	b.tokens.mu.Lock()
	for _, t := range ts {
		if at, ok := b.tokens.used[t.ID]; ok && at.After(t.LastUsedAt) {
			t.LastUsedAt = at
		}
		t.Hash = ""
	}
	b.tokens.mu.Unlock()
	slices.SortFunc(ts, func(x, y *Token) int { return strings.Compare(y.ID, x.ID) })
	return ts, nil
}

// TokenPrincipal is who an agent token makes its bearer at the MCP
// endpoint of server: Principal{ID: name, Source: "token", Groups}. A
// token unknown, expired, revoked or malformed is ErrBadToken; one not for
// server, or an approver token, is ErrTokenScope; any other error is the
// store's, and must never let the request through.
func (b *Broker) TokenPrincipal(ctx context.Context, token, server string) (Principal, error) {
	t, err := b.lookupToken(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	if t.Approver {
		return Principal{}, fmt.Errorf("an approver token is a person's, for the API, not an agent's: %w", ErrTokenScope)
	}
	if len(t.Servers) > 0 && !slices.Contains(t.Servers, server) {
		return Principal{}, fmt.Errorf("token %s is not for server %s: %w", t.Name, server, ErrTokenScope)
	}
	return Principal{ID: t.Name, Source: "token", Groups: slices.Clone(t.Groups)}, nil
}

// TokenApprover is the person an approver token makes its bearer at the
// API: the person config maps the token to, else the token's name. An
// agent token is ErrTokenScope; errors are otherwise TokenPrincipal's.
func (b *Broker) TokenApprover(ctx context.Context, token string) (string, error) {
	t, err := b.lookupToken(ctx, token)
	if err != nil {
		return "", err
	}
	if !t.Approver {
		return "", fmt.Errorf("an agent token cannot use the API: %w", ErrTokenScope)
	}
	if p := b.Person("token", t.Name); p != "" {
		return p, nil
	}
	return t.Name, nil
}

// tokenCache keeps the records of tokens in use, so that a request costs a
// hash and a map lookup rather than a store read. It is dropped whenever
// the store's TokenGeneration moves, so a revocation made through the
// store is seen at the next request.
type tokenCache struct {
	mu      sync.Mutex
	gen     uint64
	byID    map[string]*cachedToken
	used    map[string]time.Time // last use since the last write-back, by id
	flushed time.Time            // when last-used times were last written back
	busy    bool                 // a write-back is under way
}

type cachedToken struct {
	t    *Token
	hash [sha256.Size]byte
}

// lastUsedEvery spaces the write-backs of last-used times: a store write
// per request would cost every call an fsync.
const lastUsedEvery = time.Minute

func (b *Broker) lookupToken(ctx context.Context, token string) (*Token, error) {
	if len(token) != tokenLen || token[len(AgentTokenPrefix)+tokenIDLen] != '_' {
		return nil, fmt.Errorf("token is malformed: %w", ErrBadToken)
	}
	prefix, id := token[:len(AgentTokenPrefix)], token[len(AgentTokenPrefix):len(AgentTokenPrefix)+tokenIDLen]
	if prefix != AgentTokenPrefix && prefix != ApproverTokenPrefix || !crockfordString(id) {
		return nil, fmt.Errorf("token is malformed: %w", ErrBadToken)
	}
	c := &b.tokens
	gen := b.store.TokenGeneration()
	c.mu.Lock()
	if c.gen != gen || c.byID == nil {
		c.gen, c.byID = gen, map[string]*cachedToken{}
	}
	e := c.byID[id]
	c.mu.Unlock()
	if e == nil {
		t, err := b.store.Token(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("token is unknown: %w", ErrBadToken)
		}
		if err != nil {
			return nil, fmt.Errorf("broker: reading a token: %w", err)
		}
		e = &cachedToken{t: t}
		if n, err := hex.Decode(e.hash[:], []byte(t.Hash)); err != nil || n != sha256.Size {
			return nil, fmt.Errorf("broker: token %s has a malformed hash in the store", t.Name)
		}
		c.mu.Lock()
		if c.gen == gen { // else it changed while we read: keep nothing
			c.byID[id] = e
		}
		c.mu.Unlock()
	}
	sum := sha256.Sum256([]byte(token))
	t := e.t
	if subtle.ConstantTimeCompare(sum[:], e.hash[:]) != 1 || prefix != t.prefix() {
		return nil, fmt.Errorf("token is unknown: %w", ErrBadToken)
	}
	now := b.now()
	switch {
	case t.Revoked():
		return nil, fmt.Errorf("token %s was revoked: %w", t.Name, ErrBadToken)
	case t.Expired(now):
		return nil, fmt.Errorf("token %s expired: %w", t.Name, ErrBadToken)
	}
	b.tokenUsed(id, now)
	return t, nil
}

func crockfordString(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(crockfordAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// tokenUsed notes a token's use in memory, and starts a write-back when
// the last is older than lastUsedEvery.
func (b *Broker) tokenUsed(id string, now time.Time) {
	c := &b.tokens
	c.mu.Lock()
	if c.used == nil {
		c.used, c.flushed = map[string]time.Time{}, now
	}
	c.used[id] = now
	due := !c.busy && now.Sub(c.flushed) >= lastUsedEvery
	if due {
		c.busy = true
	}
	c.mu.Unlock()
	if due {
		b.bg.Go(func() { b.flushTokenUse(context.Background()) })
	}
}

// flushTokenUse writes the last-used times noted since the last write-back
// to the store. A failure is logged and the times kept for the next.
func (b *Broker) flushTokenUse(ctx context.Context) {
	c := &b.tokens
	c.mu.Lock()
	used := c.used
	c.used, c.flushed = map[string]time.Time{}, b.now()
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	failed := map[string]time.Time{}
	for id, at := range used {
		_, err := b.store.UpdateToken(ctx, id, func(t *Token) (*AuditRecord, error) {
			if at.After(t.LastUsedAt) {
				t.LastUsedAt = at.UTC()
			}
			return nil, nil
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			b.log.Warn("writing a token's last use failed", "token_id", id, "err", err)
			failed[id] = at
		}
	}
	c.mu.Lock()
	for id, at := range failed {
		if cur, ok := c.used[id]; !ok || at.After(cur) {
			c.used[id] = at
		}
	}
	c.busy = false
	c.mu.Unlock()
}

// AuthRefusal is one request refused at the door, for the audit log.
type AuthRefusal struct {
	Server     string `json:"server"`
	Source     string `json:"source,omitempty"` // "token", "oauth", or "" when no credential was given
	Status     int    `json:"status"`
	Reason     string `json:"reason"`
	Remote     string `json:"remote,omitempty"`
	Suppressed int    `json:"suppressed,omitempty"` // refusals not audited since the last record
}

// RecordAuthRefusal audits one request refused at the door. The door
// rate-limits these, and says in Suppressed how many it left out.
func (b *Broker) RecordAuthRefusal(_ context.Context, r AuthRefusal) error {
	reason := fmt.Sprintf("HTTP %d: %s", r.Status, r.Reason)
	if r.Remote != "" {
		reason += " (from " + r.Remote + ")"
	}
	if r.Suppressed > 0 {
		reason += fmt.Sprintf("; %d more refused since the last record, not recorded one by one", r.Suppressed)
	}
	return b.record(&AuditRecord{Time: b.now().UTC(), Event: EventRequestRefused, Server: r.Server, PrincipalSource: r.Source, Reason: reason, Actor: Airlock})
}
