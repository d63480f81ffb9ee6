package broker

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Redacted replaces a value the policy hid from approvers.
const Redacted = "[redacted]"

// ShownArguments returns the call's arguments as approvers may see them:
// every path in the policy's redact list ("arguments.content",
// "arguments.auth.token", or "arguments" for all) replaced by Redacted.
// Channels that show arguments (the web UI, Slack) use it, so that a
// policy hides a secret everywhere at once. Without redactions the bytes
// are returned as they were received.
func (a *Approval) ShownArguments() json.RawMessage {
	if len(a.Decision.Redact) == 0 || len(a.Arguments) == 0 {
		return a.Arguments
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(a.Arguments))
	dec.UseNumber() // keep numbers exactly as sent
	if err := dec.Decode(&v); err != nil {
		// The gate accepted only valid JSON; anything else is shown as
		// nothing rather than risk showing what should be hidden.
		return json.RawMessage(strconv.Quote(Redacted))
	}
	for _, p := range a.Decision.Redact {
		rest, ok := strings.CutPrefix(p, "arguments")
		switch {
		case !ok:
			continue
		case rest == "":
			return json.RawMessage(strconv.Quote(Redacted))
		case rest[0] == '.':
			v = redactPath(v, strings.Split(rest[1:], "."))
		}
	}
	out, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(strconv.Quote(Redacted))
	}
	return out
}

// redactPath replaces the value at path in v. A segment names an object
// key, or an array index; a path that leads nowhere changes nothing.
func redactPath(v any, path []string) any {
	if len(path) == 0 {
		return Redacted
	}
	switch x := v.(type) {
	case map[string]any:
		if child, ok := x[path[0]]; ok {
			x[path[0]] = redactPath(child, path[1:])
		}
	case []any:
		if i, err := strconv.Atoi(path[0]); err == nil && i >= 0 && i < len(x) {
			x[i] = redactPath(x[i], path[1:])
		}
	}
	return v
}
