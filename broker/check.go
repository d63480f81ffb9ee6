package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/airlock-mcp/airlock/policy"
)

// Check takes one tools/call through the gate: it reads the call, lets
// the policy decide it, and for a held call waits for people (or until
// ctx ends) before it returns. Every tools/call passes here before it is
// forwarded.
func (b *Broker) Check(ctx context.Context, call *Call, caller Caller) Outcome {
	p, err := readCallParams(call.Params)
	if err != nil {
		ref := b.refuseParams(call, err)
		return Outcome{Malformed: fmt.Sprintf("tools/call: %v; Airlock did not run it (ref %s)", err, ref)}
	}
	call.Tool, call.Arguments = p.Name, p.Arguments
	call.Principal.Person = b.Person(call.Principal.Source, call.Principal.ID)
	def, err := caller.Definition(ctx, p.Name, false)
	if err != nil {
		ref := NewRef()
		b.log.Warn("tool definition unavailable", "ref", ref, "server", call.Server, "tool", p.Name, "err", err)
		return refuse(fmt.Sprintf("Airlock could not read the definition of tool %s from %s, so the call was not run (ref %s).", p.Name, call.Server, ref))
	}
	call.Definition = def
	o, held := b.gate(ctx, call)
	if held == nil {
		return o
	}
	return b.hold(ctx, held, caller)
}

// callParams are the members of a tools/call's params the gate reads.
type callParams struct {
	Name      string
	Arguments json.RawMessage // exactly the bytes forwarded; nil when absent
}

// callMembers are the params members Airlock reads: the tool, its
// arguments, and _meta for the progress token.
var callMembers = []string{"name", "arguments", "_meta"}

// readCallParams reads a tools/call's params with exact member names. A
// member that is one of callMembers in another case ("Name", "argumentſ")
// is refused: a server decoding with encoding/json would read it, one in
// another language would not, and the gate must judge what the server runs.
func readCallParams(raw json.RawMessage) (callParams, error) {
	if len(raw) == 0 {
		return callParams{}, errors.New("params are missing; they need a tool name")
	}
	o, err := policy.ReadObject(raw, callMembers...)
	if err != nil {
		return callParams{}, fmt.Errorf("params are not unambiguous JSON: %w", err)
	}
	name, ok, err := o.String("name")
	switch {
	case err != nil:
		return callParams{}, fmt.Errorf("the tool name is not a string: %w", err)
	case !ok || name == "":
		return callParams{}, errors.New("params need a tool name")
	}
	args, _ := o.Get("arguments")
	return callParams{Name: name, Arguments: args}, nil
}

// refuseParams audits a tools/call refused for its params: a decoy member
// is an attack on the gate, and the log of calls must show it.
func (b *Broker) refuseParams(call *Call, err error) (ref string) {
	ref = NewRef()
	b.metrics.Call(call.Server, "refused")
	b.record(&AuditRecord{
		Time: b.now(), Event: EventRefused, Server: call.Server,
		Principal: call.Principal.ID, PrincipalSource: call.Principal.Source, PrincipalGroups: call.Principal.Groups, ClientID: call.Principal.ClientID,
		Client: clientLabel(call.Client), Session: call.Session, Reason: "tools/call: " + err.Error(), Ref: ref, Actor: Airlock,
	})
	return ref
}

// gate lets the policy decide a call: the policy sees exactly the bytes
// the upstream would, and anything it does not clearly allow is not
// forwarded. A call the policy holds comes back as a heldCall for hold.
func (b *Broker) gate(ctx context.Context, call *Call) (Outcome, *heldCall) {
	args := call.Arguments
	if len(args) == 0 {
		args = json.RawMessage(`{}`) // what a server makes of absent arguments
	}
	parsed, err := policy.ParseArguments(args)
	if err != nil {
		ref := NewRef()
		b.metrics.Call(call.Server, "refused")
		b.record(&AuditRecord{
			Time: b.now(), Event: EventRefused, Server: call.Server, Tool: call.Tool,
			Principal: call.Principal.ID, PrincipalSource: call.Principal.Source, PrincipalGroups: call.Principal.Groups,
			ClientID: call.Principal.ClientID, Person: call.Principal.Person,
			Client: clientLabel(call.Client), Session: call.Session, Reason: err.Error(), Ref: ref, Actor: Airlock,
		})
		return refuse(fmt.Sprintf("Airlock refused the call to %s: its arguments are not unambiguous JSON (%v). "+
			"A policy must see exactly what the server would see (ref %s).", call.Tool, err, ref)), nil
	}
	tool, first, err := b.toolInput(ctx, call)
	if err != nil {
		ref := NewRef()
		b.log.Error("reading a tool's first definition failed", "ref", ref, "tool", call.Tool, "err", err)
		return refuse(fmt.Sprintf("Airlock could not check the definition of %s, so the call was not run (ref %s).", call.Tool, ref)), nil
	}
	in := &policy.Input{
		Server: policy.Server{Name: call.Server, Transport: call.Transport, TrustAnnotations: call.TrustAnnotations},
		Tool:   tool,
		Principal: policy.Principal{ID: call.Principal.ID, Source: call.Principal.Source,
			Groups: call.Principal.Groups, ClientID: call.Principal.ClientID, Claims: call.Principal.Claims,
			Client: policy.Client{Name: call.Client.Name, Version: call.Client.Version}},
		Session: policy.Session{ID: call.Session},
		Time:    b.now(),
	}
	in.SetArguments(parsed)
	// Only the grants that cover this call reach the policy. A grant that
	// stops covering it between the decision and its use (revoked, used up)
	// is dropped and the call decided again without it.
	grants := b.grants.matching(call.Server, call.Tool, call.Principal, tool.Fingerprint, parsed, in.Time)
	for attempt := 0; ; attempt++ {
		in.Grants = policyGrants(grants)
		t0 := time.Now()
		d := b.policy.Decide(ctx, in)
		b.metrics.PolicyEval(time.Since(t0))
		d = holdSuspicious(call.Definition, d)
		log := func(level slog.Level, msg string, args ...any) { b.logDecision(ctx, level, call, d, msg, args...) }

		switch d.Action {
		case policy.Allow:
			if err := b.auditOpen(ctx); err != nil {
				return b.refuseUnaudited(call, err), nil
			}
			rec := callRecord(EventAllowed, call, in, d)
			if d.Grant == "" {
				b.metrics.Call(call.Server, "allowed")
				log(slog.LevelDebug, "call allowed", "reason", d.Reason)
				o := Outcome{Forward: true}
				if !b.skipAllowed {
					o.Audited = b.recordAsync(rec)
				}
				return o, nil
			}
			g := grantByID(grants, d.Grant)
			if g == nil {
				// The engine refuses such decisions; any other Policy
				// that names a grant it was not offered fails closed.
				log(slog.LevelError, "the policy relied on a grant it was not offered", "grant_id", d.Grant)
				return refuse(deniedText(call.Tool, policy.Decision{ID: d.ID, Reason: "the policy named a grant that does not cover this call"})), nil
			}
			rec.Reason = grantedReason(g)
			audit, err := b.useGrant(ctx, g, rec)
			if errors.Is(err, ErrGrantNotActive) && attempt < 3 {
				grants = slices.DeleteFunc(grants, func(x *Grant) bool { return x.ID == g.ID })
				continue
			}
			if err != nil {
				ref := NewRef()
				log(slog.LevelError, "counting a grant's use failed", "ref", ref, "grant_id", g.ID, "err", err)
				return refuse(fmt.Sprintf("Airlock could not record this call's use of grant %s, so it was not run (ref %s).", g.ID, ref)), nil
			}
			b.metrics.Call(call.Server, "allowed")
			log(slog.LevelDebug, "call allowed by a grant", "grant_id", g.ID)
			return Outcome{Forward: true, Audited: audit}, nil
		case policy.Hold:
			b.metrics.Call(call.Server, "held")
			log(slog.LevelInfo, "call held", "reason", d.Reason, "risk", d.Risk)
			hc := &heldCall{call: call, in: in, decision: d}
			if tool.Changed {
				hc.previous = first.Definition
			}
			return Outcome{}, hc
		default:
			// Deny, and whatever else: the engine fails closed to deny.
			b.metrics.Call(call.Server, "denied")
			log(slog.LevelInfo, "call denied", "reason", d.Reason)
			b.record(callRecord(EventDenied, call, in, d))
			return refuse(deniedText(call.Tool, d)), nil
		}
	}
}

// holdSuspicious holds a call that the policy would let through when its
// tool's definition is suspicious: what the policy read of the tool may not
// be what the client or the server reads, so a person must look. A denial
// stays a denial. Such a hold makes no grant: a grant would let later
// calls to the same unreadable tool through.
func holdSuspicious(def *ToolDefinition, d policy.Decision) policy.Decision {
	if def == nil || def.Suspicious == "" || d.Action == policy.Deny {
		return d
	}
	why := "Airlock holds every call to this tool" + colon(def.Suspicious)
	switch d.Action {
	case policy.Allow:
		d.Action, d.Reason = policy.Hold, why+" (the policy alone would have allowed it"+colon(d.Reason)+")"
	case policy.Hold:
		d.Reason = why + " (the policy holds it too" + colon(d.Reason) + ")"
	default:
		return d
	}
	d.Grant, d.Grantable = "", nil
	if d.Risk == "" || d.Risk == "low" || d.Risk == "medium" {
		d.Risk = "high"
	}
	return d
}

// logDecision logs one of the gate's messages about decision d. At a level
// that is off it costs a level check and the boxing of its arguments:
// slog's With, used before, formatted the attributes for every call (0.9 µs
// and 9 allocations on the allowed path, which logs nothing by default).
func (b *Broker) logDecision(ctx context.Context, level slog.Level, call *Call, d policy.Decision, msg string, args ...any) {
	if !b.log.Enabled(ctx, level) {
		return
	}
	b.log.Log(ctx, level, msg, append([]any{"server", call.Server, "tool", call.Tool, "decision_id", d.ID}, args...)...)
}

// grantByID finds the grant the policy relied on, or nil.
func grantByID(gs []*Grant, id string) *Grant {
	for _, g := range gs {
		if g.ID == id {
			return g
		}
	}
	return nil
}

// deniedText tells a caller that the policy denied its call. A reason that
// already names the decision's reference (a policy error's does) does not
// name it twice.
func deniedText(tool string, d policy.Decision) string {
	reason := clause(d.Reason)
	if d.ID != "" {
		reason = clause(strings.TrimSuffix(reason, "(ref "+d.ID+")"))
	}
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Sprintf("The call to %s was denied by policy: %s (ref %s).", tool, reason, d.ID)
}

// The message templates embed free text (a policy's reason, an approver's
// note) written with or without a final full stop, or left empty. These
// helpers fit it into a sentence so that the result reads right either way:
// never "it.." or "it.;" or a colon followed by nothing.

// clause readies free text to sit inside a sentence: surrounding space and
// the final punctuation the template supplies itself (. , ; :) go.
func clause(s string) string {
	return strings.TrimRightFunc(strings.TrimSpace(s), func(r rune) bool {
		return r == '.' || r == ',' || r == ';' || r == ':' || unicode.IsSpace(r)
	})
}

// colon introduces free text after a colon, or is empty when there is none.
func colon(s string) string {
	if c := clause(s); c != "" {
		return ": " + c
	}
	return ""
}

// paren puts free text in parentheses after a space, or is empty when
// there is none.
func paren(s string) string {
	if c := clause(s); c != "" {
		return " (" + c + ")"
	}
	return ""
}

// colonSentence ends a sentence with free text after a colon, or just ends
// it when there is none.
func colonSentence(s string) string {
	if c := sentence(s); c != "" {
		return ": " + c
	}
	return "."
}

// sentence ends free text as a sentence: it keeps a final '!' or '?' and
// otherwise ends with one full stop. Empty text stays empty.
func sentence(s string) string {
	c := clause(s)
	if c == "" || strings.HasSuffix(c, "!") || strings.HasSuffix(c, "?") {
		return c
	}
	return c + "."
}

// toolInput describes the called tool to the policy: its definition as
// last listed, its fingerprint, and whether it changed since it was first
// seen for this server.
// It also returns the first-seen record.
func (b *Broker) toolInput(ctx context.Context, call *Call) (policy.Tool, *ToolRecord, error) {
	d := call.Definition
	if d == nil {
		// The upstream does not list it; the policy sees only the name.
		return policy.Tool{Name: call.Tool}, nil, nil
	}
	first, err := b.tools.firstSeen(ctx, b, call.Server, d)
	if err != nil {
		return policy.Tool{}, nil, err
	}
	return policy.Tool{
		Name:         d.Name,
		Title:        d.Title,
		Description:  d.Description,
		Annotations:  d.Annotations,
		InputSchema:  d.InputSchema,
		OutputSchema: d.OutputSchema,
		Fingerprint:  d.Fingerprint,
		FirstSeen:    first.FirstSeen,
		Changed:      first.Fingerprint != d.Fingerprint,
	}, first, nil
}
