// Package remote carries the seam between the relay and the approval core
// (broker.Call, broker.Caller, broker.Outcome) over a Unix socket, so that
// every `airlock wrap` of one user shares one broker: the first wrap to
// open a state directory owns it and serves its broker on the socket
// (Server); later wraps attach to it (Conn) through a Switch, which moves
// their calls to whichever broker owns the state next when the owner goes.
//
// The socket sits in the state directory (mode 0700) and a peer must show
// the state directory's admin token before anything else: whoever can read
// that token can approve calls anyway.
package remote

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/airlock-mcp/airlock/broker"
)

// SocketName is the socket's file name in the state directory.
const SocketName = "gate.sock"

// frame is one message either way, one JSON object per line. The peer is
// authenticated before its frames are read as anything but a hello; the
// call's params and the tools' definitions, which come from the MCP
// client and server, travel as bytes ([]byte is base64 in JSON), so that
// the broker judges exactly the bytes the wrap forwards.
type frame struct {
	Op string `json:"op"`
	// ID names the check a frame belongs to; Req one of the broker's
	// definition requests within it.
	ID  uint64 `json:"id,omitempty"`
	Req uint64 `json:"req,omitempty"`

	// hello
	Token   string `json:"token,omitempty"`
	Replica string `json:"replica,omitempty"`

	// check, resume
	Call     *wireCall `json:"call,omitempty"`
	Approval string    `json:"approval,omitempty"` // resume, held
	Left     int64     `json:"left,omitempty"`     // held: milliseconds the approval may still wait

	// cancel
	Causes []string `json:"causes,omitempty"` // keys of causes
	Text   string   `json:"text,omitempty"`   // the cause's own words; held: the policy's reason

	// outcome
	Forward   bool   `json:"forward,omitempty"`
	Audited   bool   `json:"audited,omitempty"` // an "audited" frame follows
	Refusal   string `json:"refusal,omitempty"`
	Malformed string `json:"malformed,omitempty"`

	// definition (broker → wrap), its reply, and listed
	Tool   string   `json:"tool,omitempty"`
	Fresh  bool     `json:"fresh,omitempty"`
	Raw    []byte   `json:"raw,omitempty"`  // one tool definition as listed
	Defs   [][]byte `json:"defs,omitempty"` // listed: the definitions as listed
	Server string   `json:"server,omitempty"`

	// waiting
	Message string `json:"message,omitempty"`

	// audited, definition reply, hello reply
	Err string `json:"err,omitempty"`
}

// Frame ops.
const (
	opHello      = "hello"      // wrap → broker: the admin token, then "ok" or an error back
	opOK         = "ok"         // broker → wrap
	opCheck      = "check"      // wrap → broker: Check(call)
	opResume     = "resume"     // wrap → broker: Resume(approval, call)
	opCancel     = "cancel"     // wrap → broker: the check's context ended
	opListed     = "listed"     // wrap → broker: Listed(server, defs)
	opOutcome    = "outcome"    // broker → wrap: the check's Outcome
	opAudited    = "audited"    // broker → wrap: the Outcome's audit write is in (or failed)
	opHeld       = "held"       // broker → wrap: the call waits for approval
	opWaiting    = "waiting"    // broker → wrap: Caller.Waiting
	opDefinition = "definition" // broker → wrap: Caller.Definition; the reply has the same op
)

// wireCall is a broker.Call as the relay fills it in.
type wireCall struct {
	Server           string            `json:"server"`
	Transport        string            `json:"transport"`
	TrustAnnotations bool              `json:"trust_annotations,omitempty"`
	Params           []byte            `json:"params"`
	Client           broker.ClientInfo `json:"client"`
	Session          string            `json:"session"`
	Principal        broker.Principal  `json:"principal"`
	Received         int64             `json:"received"` // Unix nanoseconds
	Progress         bool              `json:"progress,omitempty"`
	Task             bool              `json:"task,omitempty"`
}

// causes names the reasons a held call's context ends, so that the broker
// records the one the wrap's relay gave. A cause may be several (a
// cancellation because the client timed out): each that it is travels.
var causes = []struct {
	key string
	err error
}{
	{"cancelled", broker.ErrClientCancelled},
	{"timedout", broker.ErrClientTimedOut},
	{"gone", broker.ErrClientGone},
	{"closed", broker.ErrSessionClosed},
}

// causeKeys names cause for the wire.
func causeKeys(cause error) []string {
	var keys []string
	for _, c := range causes {
		if errors.Is(cause, c.err) {
			keys = append(keys, c.key)
		}
	}
	return keys
}

// wireCause is a cause as the wrap gave it: its words, and the sentinels
// it wraps, so that the broker can tell a timeout from a disconnection.
type wireCause struct {
	sentinels []error
	text      string
}

func (c *wireCause) Error() string   { return c.text }
func (c *wireCause) Unwrap() []error { return c.sentinels }

// readCause rebuilds a cause from a cancel frame. One that names none the
// broker knows is a client gone.
func readCause(f *frame) error {
	var sentinels []error
	for _, k := range f.Causes {
		for _, c := range causes {
			if c.key == k {
				sentinels = append(sentinels, c.err)
			}
		}
	}
	if len(sentinels) == 0 {
		sentinels = []error{broker.ErrClientGone}
	}
	text := strings.TrimSpace(f.Text)
	if text == "" {
		text = sentinels[0].Error()
	}
	return &wireCause{sentinels: sentinels, text: text}
}

// definition reads a definition sent as bytes, as the relay parsed it.
func definition(raw []byte) (*broker.ToolDefinition, error) {
	if raw == nil {
		return nil, nil
	}
	return broker.ParseDefinition(json.RawMessage(raw))
}
