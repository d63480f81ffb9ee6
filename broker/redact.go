package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Redacted replaces a value the policy hid from approvers.
const Redacted = "[redacted]"

// ShowArguments returns the call's arguments as approvers may see them,
// and whether anything was hidden: every path in the policy's redact list
// ("arguments.content", "arguments.auth.token", "arguments.items.0", or
// "arguments" for all) replaced by Redacted. Keys keep the order the agent
// sent them in, and numbers their exact text. Every channel that shows
// arguments (the web UI, Slack) uses it, so that a policy hides a secret
// everywhere at once. Without redactions the bytes are returned as they
// were received.
func (a *Approval) ShowArguments() (json.RawMessage, bool) {
	if len(a.Decision.Redact) == 0 || len(a.Arguments) == 0 {
		return a.Arguments, false
	}
	var paths [][]string
	for _, p := range a.Decision.Redact {
		if rest, ok := strings.CutPrefix(p, "arguments"); ok && (rest == "" || rest[0] == '.') {
			var segs []string
			if rest != "" {
				segs = strings.Split(rest[1:], ".")
			}
			paths = append(paths, segs)
		}
	}
	// Tokens, not a struct: every name is copied exactly as sent, and a
	// path is matched by exact names. The arguments passed the gate's
	// strict parse, so none is repeated.
	dec := json.NewDecoder(bytes.NewReader(a.Arguments))
	dec.UseNumber()
	var out bytes.Buffer
	r := redactor{dec: dec, out: &out, paths: paths}
	if err := r.value(nil); err != nil {
		// The gate only accepts valid JSON; anything else is shown as
		// nothing rather than risk showing what should be hidden.
		return json.RawMessage(strconv.Quote(Redacted)), true
	}
	return out.Bytes(), r.hid
}

// redactor copies JSON token by token, which keeps the keys in their
// order and numbers as written, and skips the values it must hide.
type redactor struct {
	dec   *json.Decoder
	out   *bytes.Buffer
	paths [][]string
	hid   bool
}

func (r *redactor) hidden(path []string) bool {
	for _, p := range r.paths {
		if len(p) == len(path) && equalPath(p, path) {
			return true
		}
	}
	return false
}

func equalPath(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (r *redactor) value(path []string) error {
	if r.hidden(path) {
		r.hid = true
		r.writeString(Redacted)
		return r.skip()
	}
	tok, err := r.dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			r.out.WriteByte('{')
			for first := true; r.dec.More(); first = false {
				k, err := r.dec.Token()
				if err != nil {
					return err
				}
				key, ok := k.(string)
				if !ok {
					return errors.New("object key is not a string")
				}
				if !first {
					r.out.WriteByte(',')
				}
				r.writeString(key)
				r.out.WriteByte(':')
				if err := r.value(append(path[:len(path):len(path)], key)); err != nil {
					return err
				}
			}
			r.out.WriteByte('}')
		case '[':
			r.out.WriteByte('[')
			for i := 0; r.dec.More(); i++ {
				if i > 0 {
					r.out.WriteByte(',')
				}
				if err := r.value(append(path[:len(path):len(path)], strconv.Itoa(i))); err != nil {
					return err
				}
			}
			r.out.WriteByte(']')
		default:
			return fmt.Errorf("unexpected %q", t)
		}
		_, err := r.dec.Token() // the closing delimiter
		return err
	case string:
		r.writeString(t)
	case json.Number:
		r.out.WriteString(t.String())
	case bool:
		r.out.WriteString(strconv.FormatBool(t))
	case nil:
		r.out.WriteString("null")
	}
	return nil
}

// skip consumes the next value without writing it.
func (r *redactor) skip() error {
	depth := 0
	for {
		tok, err := r.dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

func (r *redactor) writeString(s string) {
	enc := json.NewEncoder(r.out)
	enc.SetEscapeHTML(false) // channels escape for their own markup
	enc.Encode(s)            // a Go string always encodes
	r.out.Truncate(r.out.Len() - 1)
}
