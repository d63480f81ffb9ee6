package broker

// A grant's life in the broker: made (with an approval, by Vote, or
// directly), loaded into the index, counted on each call it allows, swept
// when it expires, revoked. What a grant is, and which one an approval may
// make, is in grant.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// Audit events about grants.
const (
	EventGrantCreated Event = "grant.created"
	EventGrantRevoked Event = "grant.revoked"
	EventGrantExpired Event = "grant.expired"
)

// MaxDirectGrantTTL caps grants made without an approval (airlock grants
// add, the API), which no policy decision bounds.
const MaxDirectGrantTTL = 30 * 24 * time.Hour

// grantSweepInterval spaces the sweeps that end expired grants in the store
// and the audit log. Matching checks expiry itself, so the sweep's timing
// never lets an expired grant allow a call.
const grantSweepInterval = 30 * time.Second

// loadGrants reads the active grants into the index and starts the sweep.
// The store's change feed keeps the index current from then on (New
// watches it already, so that no change falls between the load and the
// watch).
func (b *Broker) loadGrants(ctx context.Context) error {
	b.grants.loading(true)
	defer b.grants.loading(false)
	before := ""
	for {
		page, err := b.store.Grants(ctx, GrantQuery{Status: []GrantStatus{GrantActive}, Before: before, Limit: 10000})
		if err != nil {
			return fmt.Errorf("broker: loading grants: %w", err)
		}
		for _, g := range page {
			b.grants.load(g)
		}
		if len(page) < 10000 {
			break
		}
		before = page[len(page)-1].ID
	}
	b.bg.Go(b.sweepGrants)
	return nil
}

func (b *Broker) sweepGrants() {
	t := time.NewTicker(grantSweepInterval)
	defer t.Stop()
	for {
		for _, id := range b.grants.expired(b.now()) {
			b.endGrant(context.Background(), id, GrantExpired, Airlock, EventGrantExpired)
		}
		select {
		case <-t.C:
		case <-b.done:
			return
		}
	}
}

// endGrant ends an active grant (revoked or expired), records it, and stops
// it matching at once.
func (b *Broker) endGrant(ctx context.Context, id string, s GrantStatus, by string, ev Event) (*Grant, error) {
	g, err := b.store.UpdateGrant(ctx, id, func(g *Grant) (*AuditRecord, error) {
		if err := g.end(s, by, b.now()); err != nil {
			return nil, err
		}
		return grantRecord(ev, g, by, b.now()), nil
	})
	if err != nil {
		if errors.Is(err, ErrGrantNotActive) {
			b.grants.remove(id) // ended elsewhere already
		}
		return nil, err
	}
	b.grants.remove(id)
	b.log.Info("grant ended", "grant_id", id, "status", s, "by", by)
	return g, nil
}

func grantRecord(ev Event, g *Grant, actor string, at time.Time) *AuditRecord {
	return &AuditRecord{
		Time: at, Event: ev, Server: g.Server, Tool: g.Tool, ArgumentsDigest: g.ArgumentsDigest,
		Principal: g.Principal, PrincipalSource: g.PrincipalSource, GrantID: g.ID, ApprovalID: g.ApprovalID, Actor: actor, Ref: g.ID,
		Reason: fmt.Sprintf("%s grant until %s%s", g.Scope, g.ExpiresAt.UTC().Format(time.RFC3339), colon(g.Reason)),
	}
}

// RevokeGrant ends a grant: the next call it would have covered is decided
// without it.
func (b *Broker) RevokeGrant(ctx context.Context, id, by string) (*Grant, error) {
	return b.endGrant(ctx, id, GrantRevoked, by, EventGrantRevoked)
}

// Grant returns one grant, saying whom it covers as matching reads it
// (see Grant.Covers).
func (b *Broker) Grant(ctx context.Context, id string) (*Grant, error) {
	g, err := b.store.Grant(ctx, id)
	if err != nil {
		return nil, err
	}
	return g.asRead(), nil
}

// Grants lists grants, newest first, each as Grant returns it.
func (b *Broker) Grants(ctx context.Context, q GrantQuery) ([]*Grant, error) {
	gs, err := b.store.Grants(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]*Grant, len(gs))
	for i, g := range gs {
		out[i] = g.asRead()
	}
	return out, nil
}

// asRead is a copy of g whose Anyone, PrincipalSource and Principal say
// whom it covers, so that a grant stored before grants named a source is
// shown as it matches. The store's copy is left alone.
func (g *Grant) asRead() *Grant {
	c := *g
	c.PrincipalSource, c.Principal, c.Anyone = g.Covers()
	return &c
}

// storeGrant stores a new grant with its audit record and lets it match.
func (b *Broker) storeGrant(ctx context.Context, g *Grant) error {
	if err := b.store.CreateGrant(ctx, g, grantRecord(EventGrantCreated, g, g.CreatedBy, g.CreatedAt)); err != nil {
		return err
	}
	// The store's change feed has put it in the index.
	b.log.Info("grant created", "grant_id", g.ID, "server", g.Server, "tool", g.Tool, "scope", g.Scope, "by", g.CreatedBy, "expires_at", g.ExpiresAt)
	return nil
}

// GrantSpec describes a grant made without an approval.
type GrantSpec struct {
	Server string `json:"server"`
	Tool   string `json:"tool"`
	Scope  string `json:"scope"`
	// Arguments are the exact arguments an exact grant covers.
	Arguments json.RawMessage `json:"arguments,omitempty"`
	// KeyArguments are the argument values an arguments grant covers.
	KeyArguments map[string]json.RawMessage `json:"key_arguments,omitempty"`
	// PrincipalSource and Principal are whom it covers: both, or neither
	// for anyone. "anonymous" without a principal covers the callers the
	// door let in without an identity.
	PrincipalSource string          `json:"principal_source,omitempty"`
	Principal       string          `json:"principal,omitempty"`
	TTL             policy.Duration `json:"ttl"`
	MaxUses         int             `json:"max_uses,omitempty"`
	Reason          string          `json:"reason,omitempty"`
	CreatedBy       string          `json:"created_by,omitempty"`
}

// CreateGrant makes a grant without an approval, bound to the tool's
// current definition, which Airlock must have seen listed.
func (b *Broker) CreateGrant(ctx context.Context, spec GrantSpec) (*Grant, error) {
	if !slices.Contains(b.servers, spec.Server) {
		return nil, fmt.Errorf("no server named %q", spec.Server)
	}
	fp := b.tools.latest(spec.Server, spec.Tool)
	if fp == "" {
		return nil, fmt.Errorf("Airlock has not seen %q list tool %q since it started; a grant is bound to the tool's definition, so let a client list the server's tools first", spec.Server, spec.Tool)
	}
	ttl := time.Duration(spec.TTL)
	if ttl <= 0 {
		return nil, errors.New("a grant needs a ttl: no grant lives forever")
	}
	switch spec.PrincipalSource {
	case "":
		if spec.Principal != "" {
			return nil, fmt.Errorf("a grant for %q needs how that identity is established (principal_source): %s, %s, %s or %s; "+
				"the same name from another source is someone else", spec.Principal, SourceToken, SourceOAuth, SourceOS, SourceAnonymous)
		}
	case SourceAnonymous:
		if spec.Principal != "" {
			return nil, fmt.Errorf("an anonymous caller has no name: a grant for anonymous callers takes no principal (got %q)", spec.Principal)
		}
	case SourceToken, SourceOAuth, SourceOS:
		if spec.Principal == "" {
			return nil, fmt.Errorf("a grant for a %s identity needs its principal", spec.PrincipalSource)
		}
	default:
		return nil, fmt.Errorf("principal_source %q is not %s, %s, %s or %s", spec.PrincipalSource, SourceToken, SourceOAuth, SourceOS, SourceAnonymous)
	}
	now := b.now()
	g := &Grant{
		ID: newApprovalID(now), Status: GrantActive, Server: spec.Server, Tool: spec.Tool, Scope: spec.Scope,
		ToolFingerprint: fp, Anyone: spec.PrincipalSource == "", PrincipalSource: spec.PrincipalSource, Principal: spec.Principal,
		CreatedBy: spec.CreatedBy, CreatedAt: now,
		ExpiresAt: now.Add(min(ttl, MaxDirectGrantTTL)), Reason: spec.Reason, MaxUses: spec.MaxUses,
	}
	if ttl > MaxDirectGrantTTL {
		g.Capped = &GrantCap{Requested: spec.TTL, Max: policy.Duration(MaxDirectGrantTTL), By: CapByDirect}
	}
	if g.CreatedBy == "" {
		g.CreatedBy = AdminIdentity
	}
	if spec.MaxUses < 0 {
		return nil, errors.New("max_uses must not be negative")
	}
	switch spec.Scope {
	case ScopeTool:
	case ScopeExact:
		args := spec.Arguments
		if len(args) == 0 {
			return nil, errors.New("an exact grant needs the arguments it covers")
		}
		d, err := policy.Digest(args)
		if err != nil {
			return nil, fmt.Errorf("arguments: %w", err)
		}
		g.ArgumentsDigest = d
	case ScopeArguments:
		if len(spec.KeyArguments) == 0 {
			return nil, errors.New("an arguments grant needs key_arguments, the values it covers")
		}
		g.KeyArguments = make(map[string]json.RawMessage, len(spec.KeyArguments))
		for k, v := range spec.KeyArguments {
			c, err := policy.Canonical(v)
			if err != nil {
				return nil, fmt.Errorf("key_arguments.%s: %w", k, err)
			}
			g.KeyArguments[k] = c
		}
	default:
		return nil, fmt.Errorf("scope %q is not exact, arguments or tool", spec.Scope)
	}
	if err := b.storeGrant(ctx, g); err != nil {
		return nil, err
	}
	return g, nil
}

// useGrant counts a call the policy allowed because of grant g, with the
// call's audit record in the same transaction. A grant with a maximum of
// uses is counted before the call goes ahead (a compare-and-set, so no
// more calls pass than allowed); any other grant is counted alongside the
// forward, like any allowed call's record.
func (b *Broker) useGrant(ctx context.Context, g *Grant, rec *AuditRecord) (<-chan error, error) {
	strict := g.MaxUses > 0
	count := func() error {
		_, err := b.store.UpdateGrant(context.WithoutCancel(ctx), g.ID, func(g *Grant) (*AuditRecord, error) {
			now := b.now()
			if strict {
				if err := g.use(now); err != nil {
					return nil, err
				}
			} else {
				// The call was allowed while the grant was active; a
				// revocation landing meanwhile does not undo the use.
				g.Uses++
				g.LastUse = now
			}
			return rec, nil
		})
		// A use that ended the grant reached the index through the
		// store's change feed, in the order of the grant's changes; so
		// must every other, or a use stored before a revocation could
		// put the revoked grant back.
		if errors.Is(err, ErrGrantNotActive) {
			b.grants.remove(g.ID)
		}
		return err
	}
	if strict {
		return nil, count()
	}
	done := make(chan error, 1)
	b.bg.Go(func() {
		err := count()
		if err != nil {
			b.log.Error("audit write failed", "event", rec.Event, "grant_id", g.ID, "err", err)
			b.auditFailed(rec, err) // the call goes ahead; its use is recorded late, uncounted
		}
		done <- err
	})
	return done, nil
}

// grantedReason describes a call a grant allowed, for the audit.
func grantedReason(g *Grant) string {
	if g.ApprovalID != "" {
		return fmt.Sprintf("allowed by grant %s (made by %s on approval %s)", g.ID, g.CreatedBy, g.ApprovalID)
	}
	return fmt.Sprintf("allowed by grant %s (made by %s)", g.ID, g.CreatedBy)
}
