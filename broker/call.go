package broker

import (
	"context"
	"encoding/json"
	"time"
)

// The seam between the relay and the approval core: the relay hands Check
// one Call per tools/call and a Caller, and carries out the Outcome.

// Call is one tools/call as the relay hands it to the core. The relay
// fills in the fields down to Progress; Check reads the tool and its
// arguments from Params and fills in the rest.
type Call struct {
	Server    string
	Transport string
	// TrustAnnotations says whether the policy may believe the server's
	// tool annotations (readOnlyHint and the like).
	TrustAnnotations bool
	// Params are the tools/call params: exactly the bytes forwarded if the
	// call goes ahead.
	Params    json.RawMessage
	Client    ClientInfo
	Session   string // the session's ref, never its id
	Principal Principal
	Received  time.Time
	// Progress says the caller gave a progress token: a held call is kept
	// waiting with progress notifications (Caller.Waiting) instead of being
	// told to call again after Options.HoldWait.
	Progress bool
	// Holder names the process whose client waits for the call when it is
	// not this broker's: a wrap attached to it (see broker/remote), which
	// holds a lease of its own, so that the call's approval outlives this
	// broker's stop while that wrap goes on waiting. Empty means this
	// broker (Options.Replica).
	Holder string
	// Task says the caller is answered through a task (MCP's tasks
	// utility): its client polls the task rather than holding a request
	// open, so a held call waits until a decision or expiry, with no
	// per-attempt cap (Options.HoldWait) and no progress heartbeats. A
	// caller that is a HeldCaller is told at once that the call is held.
	Task bool

	// Set by Check from Params.
	Tool string
	// Arguments are the bytes of params.arguments, as forwarded.
	Arguments json.RawMessage
	// Definition is the tool as the upstream lists it; nil when the
	// upstream does not list it.
	Definition *ToolDefinition
}

// Caller is what the core may ask of a call's client session while it
// decides the call and while the call waits. The relay implements it; its
// methods are safe for concurrent use.
type Caller interface {
	// Definition returns the named tool's definition as the upstream lists
	// it, nil if it does not. With fresh set the upstream is asked again;
	// otherwise a definition the session listed and still believes current
	// will do.
	Definition(ctx context.Context, tool string, fresh bool) (*ToolDefinition, error)
	// Waiting tells a caller that gave a progress token (Call.Progress)
	// that its call still waits, with message for the person: a progress
	// notification, which also resets the client's request timeout.
	Waiting(message string)
}

// A HeldCaller is a Caller that hears which approval its held call waits
// on, as soon as the call is held and before anyone else can decide it:
// a call answered through a task tells its client then (Call.Task), and a
// wrap attached to another process's broker can go on waiting for the same
// approval through the next broker if that one stops (Broker.Resume).
type HeldCaller interface {
	Caller
	Held(p Pending)
}

// Pending is what a HeldCaller is told of its held call's approval.
type Pending struct {
	ApprovalID string
	Reason     string // the policy's, for the person and the agent
	// Left is how long the approval may still wait for a decision: a task
	// for the call must outlive it.
	Left time.Duration
}

// Outcome is what Check made of a call: forward it, or answer the client
// with Refusal. Neither means the client is gone and nobody is left to
// answer.
type Outcome struct {
	Forward bool
	// Audited, when not nil, yields the outcome of the call's audit write:
	// the call's result must not reach the client before it is in, nor at
	// all if it failed.
	Audited <-chan error
	// Refusal is the text of the tool error (isError) the client reads
	// instead of a result: a denial, a refusal, or what became of a held
	// call. Airlock answers with tool errors, never JSON-RPC errors, so
	// that the model reads why.
	Refusal string
	// Malformed is set instead when the call cannot be read one way only:
	// the client gets an invalid-params error with this message.
	Malformed string
}

func refuse(text string) Outcome { return Outcome{Refusal: text} }

// ClientInfo is what the client said about itself in initialize.
type ClientInfo struct {
	Name            string          `json:"name"`
	Version         string          `json:"version"`
	ProtocolVersion string          `json:"protocol_version"`
	Capabilities    json.RawMessage `json:"capabilities,omitempty"`
}

// Principal is who is behind a client session. Identities are compared
// by (Source, ID): the same name established two ways is two identities,
// unless config maps both to one Person.
type Principal struct {
	ID string `json:"id"`
	// Source says how the identity was established: "token" (an agent
	// token made with airlock tokens create), "oauth" (an OAuth 2.1 access
	// token), "os" (the user running a stdio client), or "anonymous".
	Source string `json:"source"`
	// Groups are the token's groups, or the access token's groups claim.
	Groups []string `json:"groups,omitempty"`
	// ClientID is the OAuth client the access token was issued to.
	ClientID string `json:"client_id,omitempty"`
	// Claims are the access token's claims that config selects for the
	// policy, as one JSON object; they come from a verified token.
	Claims json.RawMessage `json:"claims,omitempty"`
	// Person is the person config's identities map this identity to; ""
	// when none does. The rule that a requester may not approve their own
	// call compares it as well as ID.
	Person string `json:"person,omitempty"`
}
