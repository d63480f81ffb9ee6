package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Action is what happens to a call.
type Action string

// The three actions a policy can take.
const (
	Allow Action = "allow" // forward the call
	Deny  Action = "deny"  // refuse it with the reason
	Hold  Action = "hold"  // wait for a person
)

// Risk levels a policy may attach to a decision. The default library only
// uses medium and high; critical turns grants off.
const (
	RiskLow      = "low"
	RiskMedium   = "medium"
	RiskHigh     = "high"
	RiskCritical = "critical"
)

// Grant scopes. An "exact" grant matches the same canonical arguments, an
// "arguments" grant the same values of the decision's key_arguments, a
// "tool" grant every call of the tool.
const (
	ScopeExact     = "exact"
	ScopeArguments = "arguments"
	ScopeTool      = "tool"
)

// Decision is what data.airlock.decision returned, checked and completed by
// the engine. A policy sets the fields above ID; the engine sets the rest.
type Decision struct {
	Action    Action     `json:"action"`
	Reason    string     `json:"reason,omitempty"`
	Risk      string     `json:"risk,omitempty"`
	Approvers Approvers  `json:"approvers"`
	Quorum    int        `json:"quorum,omitempty"`  // approvals needed; 1 when a hold does not say
	Timeout   Duration   `json:"timeout,omitempty"` // how long a hold waits; 0 = the broker's default
	Redact    []string   `json:"redact,omitempty"`  // paths such as "arguments.content", hidden from approvers
	Grantable *Grantable `json:"grantable,omitempty"`
	Channel   string     `json:"channel,omitempty"` // Slack channel for the hold message, overriding config
	Grant     string     `json:"grant,omitempty"`   // id of the input grant the policy relied on

	ID       string `json:"decision_id"`   // unique per evaluation
	Revision string `json:"revision"`      // the policy revision that decided
	Ref      string `json:"ref,omitempty"` // set when the engine failed closed; the log line carries it
}

// Approvers name who may decide a held call. All empty means anyone who can
// reach the approval (the configured channel, the web UI).
type Approvers struct {
	SlackUsers  []string `json:"slack_users"`
	SlackGroups []string `json:"slack_groups"`
	Users       []string `json:"users"`
}

// MarshalJSON writes empty lists as [] so that consumers never see null.
func (a Approvers) MarshalJSON() ([]byte, error) {
	type plain Approvers
	p := plain{SlackUsers: orEmpty(a.SlackUsers), SlackGroups: orEmpty(a.SlackGroups), Users: orEmpty(a.Users)}
	return json.Marshal(p)
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Grantable says whether approvers may turn an approval into a standing
// grant, and how far it may reach.
type Grantable struct {
	Scopes       []string `json:"scopes"`
	MaxTTL       Duration `json:"max_ttl,omitempty"`
	KeyArguments []string `json:"key_arguments,omitempty"` // argument names an "arguments" grant matches on
}

// Duration is a time.Duration written in JSON and Rego as a duration
// string such as "10m", "24h" or "7d" (ParseDuration). Anything else is
// refused.
type Duration time.Duration

// String formats d compactly: "10m", "1h30m", "24h".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts only a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("policy: duration must be a string such as \"10m\": %s", b)
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func parseDuration(s string) (Duration, error) {
	v, err := ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("policy: %w", err)
	}
	return Duration(v), nil
}

// decisionError is a policy result that is not a well-formed decision.
type decisionError struct{ msg string }

func (e *decisionError) Error() string { return "policy: malformed decision: " + e.msg }

func malformed(format string, args ...any) error {
	return &decisionError{msg: fmt.Sprintf(format, args...)}
}

var errUndefined = errors.New("policy: data.airlock.decision is undefined for this input")

// parseDecision checks the value of data.airlock.decision field by field.
// It is strict on purpose: a typo such as "quorom" or "aprovers" would
// otherwise be silently ignored and the call treated more loosely than the
// author meant, so anything unexpected fails closed.
func parseDecision(v ast.Value, in *Input) (Decision, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Decision{}, malformed("got %s, want an object", typeOf(v))
	}
	var d Decision
	var err error
	obj.Until(func(k, v *ast.Term) bool {
		name, ok := k.Value.(ast.String)
		if !ok {
			err = malformed("key %v is not a string", k)
			return true
		}
		err = d.setField(string(name), v.Value, in)
		return err != nil
	})
	if err != nil {
		return Decision{}, err
	}
	switch d.Action {
	case Allow, Deny:
	case Hold:
		if d.Quorum == 0 {
			d.Quorum = 1
		}
	case "":
		return Decision{}, malformed("action is missing")
	default:
		return Decision{}, malformed("unknown action %q (want allow, deny or hold)", d.Action)
	}
	return d, nil
}

func (d *Decision) setField(name string, v ast.Value, in *Input) error {
	var err error
	switch name {
	case "action":
		var s string
		s, err = stringField(name, v)
		d.Action = Action(s)
	case "reason":
		d.Reason, err = stringField(name, v)
	case "risk":
		d.Risk, err = stringField(name, v)
		switch d.Risk {
		case RiskLow, RiskMedium, RiskHigh, RiskCritical:
		default:
			if err == nil {
				err = malformed("unknown risk %q (want low, medium, high or critical)", d.Risk)
			}
		}
	case "approvers":
		err = d.Approvers.set(v)
	case "quorum":
		d.Quorum, err = intField(name, v)
		if err == nil && d.Quorum < 1 {
			err = malformed("quorum must be at least 1, got %d", d.Quorum)
		}
	case "timeout":
		d.Timeout, err = durationField(name, v)
	case "redact":
		d.Redact, err = stringsField(name, v)
		for _, p := range d.Redact {
			if err == nil && p != "arguments" && (!strings.HasPrefix(p, "arguments.") || strings.Contains(p, "..") || strings.HasSuffix(p, ".")) {
				err = malformed("redact path %q must be \"arguments\" or start with \"arguments.\"", p)
			}
		}
	case "grantable":
		d.Grantable, err = grantableField(v)
	case "channel":
		d.Channel, err = stringField(name, v)
	case "grant":
		d.Grant, err = stringField(name, v)
		if err == nil {
			err = checkGrant(in, d.Grant)
		}
	case "decision_id", "revision", "ref":
		err = malformed("%s is set by Airlock, not by the policy", name)
	default:
		err = malformed("unknown field %q", name)
	}
	return err
}

// checkGrant refuses a decision that names a grant the input does not
// hold. It is the one check of a decision that reads the input in Go
// rather than through a rule, so the memo (see decisions.lookup) makes it
// again before it replays a decision naming a grant.
func checkGrant(in *Input, id string) error {
	for _, g := range in.Grants {
		if g.ID == id {
			return nil
		}
	}
	return malformed("grant %q is not one of input.grants", id)
}

func (a *Approvers) set(v ast.Value) error {
	obj, ok := v.(ast.Object)
	if !ok {
		return malformed("approvers is %s, want an object", typeOf(v))
	}
	var err error
	obj.Until(func(k, v *ast.Term) bool {
		name, _ := k.Value.(ast.String)
		switch name {
		case "slack_users":
			a.SlackUsers, err = stringsField("approvers.slack_users", v.Value)
		case "slack_groups":
			a.SlackGroups, err = stringsField("approvers.slack_groups", v.Value)
		case "users":
			a.Users, err = stringsField("approvers.users", v.Value)
		default:
			err = malformed("unknown field %v in approvers (want slack_users, slack_groups, users)", k)
		}
		return err != nil
	})
	return err
}

func grantableField(v ast.Value) (*Grantable, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, malformed("grantable is %s, want an object", typeOf(v))
	}
	g := &Grantable{}
	var err error
	obj.Until(func(k, v *ast.Term) bool {
		name, _ := k.Value.(ast.String)
		switch name {
		case "scopes":
			g.Scopes, err = stringsField("grantable.scopes", v.Value)
			for _, s := range g.Scopes {
				if err == nil && s != ScopeExact && s != ScopeArguments && s != ScopeTool {
					err = malformed("unknown grant scope %q (want exact, arguments or tool)", s)
				}
			}
		case "max_ttl":
			g.MaxTTL, err = durationField("grantable.max_ttl", v.Value)
		case "key_arguments":
			g.KeyArguments, err = stringsField("grantable.key_arguments", v.Value)
		default:
			err = malformed("unknown field %v in grantable (want scopes, max_ttl, key_arguments)", k)
		}
		return err != nil
	})
	if err != nil {
		return nil, err
	}
	if len(g.Scopes) == 0 {
		return nil, malformed("grantable.scopes is empty; leave grantable out to forbid grants")
	}
	return g, nil
}

func stringField(name string, v ast.Value) (string, error) {
	s, ok := v.(ast.String)
	if !ok {
		return "", malformed("%s is %s, want a string", name, typeOf(v))
	}
	return string(s), nil
}

func intField(name string, v ast.Value) (int, error) {
	n, ok := v.(ast.Number)
	if !ok {
		return 0, malformed("%s is %s, want a number", name, typeOf(v))
	}
	i, ok := n.Int()
	if !ok {
		return 0, malformed("%s is %v, want a whole number", name, n)
	}
	return i, nil
}

func durationField(name string, v ast.Value) (Duration, error) {
	s, ok := v.(ast.String)
	if !ok {
		return 0, malformed("%s is %s, want a duration string such as \"10m\"", name, typeOf(v))
	}
	d, err := parseDuration(string(s))
	if err != nil {
		return 0, malformed("%s: %v", name, err)
	}
	return d, nil
}

// stringsField accepts an array or a set of strings: sets are the natural
// way to collect approvers from several rules in Rego.
func stringsField(name string, v ast.Value) ([]string, error) {
	var out []string
	var bad *ast.Term
	collect := func(t *ast.Term) bool {
		s, ok := t.Value.(ast.String)
		if !ok {
			bad = t
			return true
		}
		out = append(out, string(s))
		return false
	}
	switch v := v.(type) {
	case *ast.Array:
		v.Until(collect)
	case ast.Set:
		v.Until(collect)
	default:
		return nil, malformed("%s is %s, want an array of strings", name, typeOf(v))
	}
	if bad != nil {
		return nil, malformed("%s holds %v, want only strings", name, bad)
	}
	return out, nil
}

// typeOf names v's type with its article: "an array", "a string".
func typeOf(v ast.Value) string {
	name := ast.ValueName(v)
	if strings.ContainsRune("aeiou", rune(name[0])) {
		return "an " + name
	}
	return "a " + name
}
