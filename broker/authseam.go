package broker

import "errors"

// The door's side of the tokens contract (issue 15): what relay/auth needs
// of the core to tell a bad agent token from one not good for a server,
// and to audit a refusal. The tokens helper's broker/token.go defines the
// same names with the store behind them; on merge this file goes.

// ErrBadToken is an agent token that is unknown, expired, revoked or
// malformed: the caller's fault, answered 401 invalid_token.
var ErrBadToken = errors.New("broker: bad token")

// ErrTokenScope is a valid token that is not for this server (or an
// approver token at an MCP endpoint), answered 403.
var ErrTokenScope = errors.New("broker: token not valid for this server")

// AuthRefusal is one request refused at the door, for the audit log.
type AuthRefusal struct {
	Server     string `json:"server"`
	Source     string `json:"source,omitempty"` // "token", "oauth", or "" when no credential was given
	Status     int    `json:"status"`
	Reason     string `json:"reason"`
	Remote     string `json:"remote,omitempty"`
	Suppressed int    `json:"suppressed,omitempty"` // refusals not audited since the last record
}
