package broker

// What a grant is, which one an approval may make (grantFrom, checked by
// Vote), and how one is offered to a person. How the broker keeps them is
// in grantlifecycle.go.

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// GrantStatus is where a grant is in its life; only an active grant
// matches calls.
type GrantStatus string

const (
	GrantActive  GrantStatus = "active"
	GrantRevoked GrantStatus = "revoked"
	GrantExpired GrantStatus = "expired"
	GrantUsedUp  GrantStatus = "used_up" // it reached its maximum number of uses
)

// A grant is an "always allow" a person gave: later calls it covers reach
// the policy with it in input.grants, and the policy has the last word.
type Grant struct {
	ID     string      `json:"id"`
	Status GrantStatus `json:"status"`
	Server string      `json:"server"`
	Tool   string      `json:"tool"`
	// Scope says which calls it covers: exact (the same arguments),
	// arguments (the same values of KeyArguments), tool (any arguments).
	Scope string `json:"scope"`
	// ArgumentsDigest is what an exact grant matches.
	ArgumentsDigest string `json:"arguments_digest,omitempty"`
	// KeyArguments are what an arguments grant matches: each top-level
	// argument's value, as canonical JSON.
	KeyArguments map[string]json.RawMessage `json:"key_arguments,omitempty"`
	// ToolFingerprint binds the grant to the tool's definition: when the
	// tool changes, the grant stops matching.
	ToolFingerprint string `json:"tool_fingerprint"`
	// Anyone, or PrincipalSource and Principal, say whom it covers: every
	// caller, or the one identity (source, id); see Covers. "anonymous"
	// with no id is every caller the door let in without an identity.
	Anyone          bool   `json:"anyone,omitempty"`
	PrincipalSource string `json:"principal_source,omitempty"`
	Principal       string `json:"principal,omitempty"`

	CreatedBy  string    `json:"created_by"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Reason     string    `json:"reason,omitempty"`
	ApprovalID string    `json:"approval_id,omitempty"` // the approval it was made from, if any

	// MaxUses caps the calls it allows; 0 means no cap.
	MaxUses int       `json:"max_uses,omitempty"`
	Uses    int       `json:"uses"`
	LastUse time.Time `json:"last_use,omitzero"`

	EndedBy string    `json:"ended_by,omitempty"` // who revoked it, or "airlock"
	EndedAt time.Time `json:"ended_at,omitzero"`  // revoked, expired or used up

	// Capped says the grant is shorter than asked for, and why, so that
	// whoever asked can be told; nil when it lasts what was asked.
	Capped *GrantCap `json:"capped,omitempty"`
}

// GrantCap is how a grant's TTL was cut short.
type GrantCap struct {
	Requested policy.Duration `json:"requested"` // the TTL asked for
	Max       policy.Duration `json:"max"`       // the TTL it got
	By        string          `json:"by"`        // whose cap: one of the CapBy… values
}

// Whose cap shortened a grant.
const (
	CapByPolicy  = "policy"  // the policy's grantable.max_ttl
	CapByDefault = "default" // DefaultGrantTTL: the policy names no max_ttl
	CapByDirect  = "direct"  // MaxDirectGrantTTL: a grant made without an approval
)

// Grant scopes.
const (
	ScopeExact     = policy.ScopeExact
	ScopeArguments = policy.ScopeArguments
	ScopeTool      = policy.ScopeTool
)

// GrantQuery selects grants. Zero fields select everything.
type GrantQuery struct {
	Status []GrantStatus
	Server string
	Tool   string
	// Before returns only grants with a smaller id (ids sort by time).
	Before string
	// Limit caps the result; 0 means 100.
	Limit int
}

// Matches reports whether g passes the query's filters (not Before or
// Limit).
func (q GrantQuery) Matches(g *Grant) bool {
	if len(q.Status) > 0 && !slices.Contains(q.Status, g.Status) {
		return false
	}
	return (q.Server == "" || q.Server == g.Server) && (q.Tool == "" || q.Tool == g.Tool)
}

// Errors about grants. The first three are the finer reasons of a
// VoteError with code VoteNotGrantable.
var (
	ErrNotGrantable   = errors.New("the policy does not allow an \"always allow\" for this call")
	ErrGrantScope     = errors.New("the policy does not allow that scope here")
	ErrGrantQuorum    = errors.New("an \"always allow\" must come with the approval that completes the quorum")
	ErrGrantNotActive = errors.New("the grant is no longer active")
)

// GrantRequest asks for a grant along with an approval ("always allow"),
// or on its own.
type GrantRequest struct {
	Scope string          `json:"scope"`
	TTL   policy.Duration `json:"ttl"`
	// Anyone makes the grant cover every principal, not only the
	// requester of the call it was made from.
	Anyone  bool   `json:"anyone,omitempty"`
	MaxUses int    `json:"max_uses,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// DefaultGrantTTL caps grants when neither the policy nor the request says
// how long: no grant lives forever.
const DefaultGrantTTL = 24 * time.Hour

// grantFrom builds the grant an approver asked for when approving a,
// checking it against what the policy allows. The TTL is capped by the
// policy's max_ttl, and the grant's Capped says so.
func grantFrom(a *Approval, req GrantRequest, by string, now time.Time) (*Grant, *VoteError) {
	if req.MaxUses < 0 {
		return nil, refusal(VoteBad, errors.New("max_uses must not be negative"))
	}
	ga := a.Decision.Grantable
	if ga == nil || len(ga.Scopes) == 0 {
		return nil, refusal(VoteNotGrantable, ErrNotGrantable)
	}
	if !slices.Contains(ga.Scopes, req.Scope) {
		return nil, refusal(VoteNotGrantable, fmt.Errorf("%w: %q (allowed: %s)", ErrGrantScope, req.Scope, strings.Join(ga.Scopes, ", ")))
	}
	g := &Grant{
		Status:          GrantActive,
		Server:          a.Server,
		Tool:            a.Tool,
		Scope:           req.Scope,
		ToolFingerprint: a.ToolFingerprint,
		CreatedBy:       by,
		CreatedAt:       now,
		Reason:          req.Reason,
		ApprovalID:      a.ID,
		MaxUses:         req.MaxUses,
	}
	if req.Anyone {
		g.Anyone = true
	} else {
		// Bound to the requester as the door established them: the same
		// name from another source is someone else, and an anonymous
		// requester's grant covers only anonymous callers.
		g.PrincipalSource, g.Principal = sourceOf(a.Principal), a.Principal.ID
	}
	switch req.Scope {
	case ScopeExact:
		g.ArgumentsDigest = a.ArgumentsDigest
	case ScopeArguments:
		if len(ga.KeyArguments) == 0 {
			return nil, refusal(VoteNotGrantable, fmt.Errorf("%w: the policy names no key arguments for an arguments grant", ErrGrantScope))
		}
		keys, err := keyValues(a.Arguments, ga.KeyArguments)
		if err != nil {
			// The call cannot be told apart from others by these
			// arguments: no grant may stand for it.
			return nil, refusal(VoteNotGrantable, err)
		}
		g.KeyArguments = keys
	}
	ttl := time.Duration(req.TTL)
	maxTTL, by := time.Duration(ga.MaxTTL), CapByPolicy
	if maxTTL <= 0 {
		maxTTL, by = DefaultGrantTTL, CapByDefault
	}
	if ttl > maxTTL {
		g.Capped = &GrantCap{Requested: req.TTL, Max: policy.Duration(maxTTL), By: by}
	}
	if ttl <= 0 || ttl > maxTTL {
		ttl = maxTTL
	}
	g.ExpiresAt = now.Add(ttl)
	return g, nil
}

// keyValues picks the named top-level arguments' values as canonical JSON.
func keyValues(args json.RawMessage, keys []string) (map[string]json.RawMessage, error) {
	obj, err := policy.ReadObject(args, keys...)
	if err != nil {
		return nil, fmt.Errorf("the call's arguments are not an unambiguous object: %w", err)
	}
	out := make(map[string]json.RawMessage, len(keys))
	for _, k := range keys {
		raw, ok := obj.Get(k)
		if !ok {
			return nil, fmt.Errorf("%w: the call has no argument %q to key the grant on", ErrGrantScope, k)
		}
		c, err := policy.Canonical(raw)
		if err != nil {
			return nil, err
		}
		out[k] = c
	}
	return out, nil
}

// Covers says whom g covers: anyone, or the one identity (source, id).
//
// Grants stored before grants named the source are read failing closed:
// one with a principal covers that OS user (before, only stdio callers had
// an id: every HTTP caller was anonymous); one made from an approval for
// no principal covers only anonymous callers (it was made either for an
// anonymous requester or for anyone, and the grant does not say which);
// only a direct grant for no principal still covers anyone.
func (g *Grant) Covers() (source, id string, anyone bool) {
	switch {
	case g.Anyone:
		return "", "", true
	case g.PrincipalSource != "":
		return g.PrincipalSource, g.Principal, false
	case g.Principal != "":
		return SourceOS, g.Principal, false
	case g.ApprovalID != "":
		return SourceAnonymous, "", false
	default:
		return "", "", true
	}
}

// CoversWhom describes whom g covers, the way every channel says it:
// "anyone", or the identity as Principal.Describe puts it.
func (g *Grant) CoversWhom() string {
	source, id, anyone := g.Covers()
	if anyone {
		return "anyone"
	}
	return Principal{Source: source, ID: id}.Describe()
}

// sourceOf is p's source; a principal with none is anonymous, so that it
// can never pass for a grant's "anyone".
func sourceOf(p Principal) string {
	if p.Source == "" {
		return SourceAnonymous
	}
	return p.Source
}

// activeAt reports whether the grant may allow a call at now: active,
// unexpired, with uses left.
func (g *Grant) activeAt(now time.Time) bool {
	return g.Status == GrantActive && now.Before(g.ExpiresAt) && (g.MaxUses == 0 || g.Uses < g.MaxUses)
}

// use counts one call the grant allowed, ending it when it reaches its
// maximum. It changes nothing when it returns an error.
func (g *Grant) use(now time.Time) error {
	if !g.activeAt(now) {
		return ErrGrantNotActive
	}
	g.Uses++
	g.LastUse = now
	if g.MaxUses > 0 && g.Uses >= g.MaxUses {
		g.Status, g.EndedAt = GrantUsedUp, now
	}
	return nil
}

// end finishes an active grant: revoked or expired.
func (g *Grant) end(s GrantStatus, by string, now time.Time) error {
	if g.Status != GrantActive {
		return fmt.Errorf("%w (%s)", ErrGrantNotActive, g.Status)
	}
	g.Status, g.EndedAt, g.EndedBy = s, now, by
	return nil
}

// GrantChoice is one scope an approver may pick for an "always allow",
// described for a person.
type GrantChoice struct {
	Scope string
	Label string
}

// GrantChoices are the scopes the policy lets a grant from a have, in the
// policy's order; none when a cannot become a grant.
func (a *Approval) GrantChoices() []GrantChoice {
	g := a.Decision.Grantable
	if g == nil {
		return nil
	}
	var out []GrantChoice
	for _, sc := range g.Scopes {
		switch sc {
		case ScopeExact:
			out = append(out, GrantChoice{sc, "Exactly this call (the same arguments)"})
		case ScopeArguments:
			if len(g.KeyArguments) > 0 {
				out = append(out, GrantChoice{sc, "Calls with the same " + strings.Join(g.KeyArguments, ", ")})
			}
		case ScopeTool:
			out = append(out, GrantChoice{sc, "Every call of this tool"})
		}
	}
	return out
}

// grantDurations are the durations offered for a grant, before the
// policy's cap.
var grantDurations = []time.Duration{15 * time.Minute, time.Hour, 8 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}

// GrantDurations are the durations offered for a grant from a: the usual
// ones up to the policy's max_ttl, or the max_ttl itself when it is
// shorter than all of them.
func (a *Approval) GrantDurations() []time.Duration {
	maxTTL := DefaultGrantTTL
	if g := a.Decision.Grantable; g != nil && g.MaxTTL > 0 {
		maxTTL = time.Duration(g.MaxTTL)
	}
	var out []time.Duration
	for _, d := range grantDurations {
		if d <= maxTTL {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		out = []time.Duration{maxTTL}
	}
	return out
}

// HumanDuration says a grant's duration the way a person would: "15
// minutes", "1 hour", "7 days".
func HumanDuration(d time.Duration) string {
	plural := func(n time.Duration, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return plural(d/(24*time.Hour), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return plural(d/time.Hour, "hour")
	case d%time.Minute == 0:
		return plural(d/time.Minute, "minute")
	}
	return d.String()
}
