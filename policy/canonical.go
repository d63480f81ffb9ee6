package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Canonical returns the canonical form of one JSON document, so that two
// documents with the same meaning hash the same: object keys sorted by their
// UTF-8 bytes, no insignificant whitespace, strings escaped minimally (only
// '"', '\\' and control characters), and numbers written from their exact
// decimal value (1, 1.0 and 1e0 are the same; 2^53 and 2^53+1 are not).
// The layout follows RFC 8785 except that numbers are never rounded through
// float64. Invalid JSON, trailing data, invalid UTF-8, lone surrogates and
// duplicate keys at any depth (ErrDuplicateKey) are errors.
func Canonical(raw []byte) ([]byte, error) {
	v, err := parseJSON(raw)
	if err != nil {
		return nil, err
	}
	return appendValue(make([]byte, 0, len(raw)), v), nil
}

// Digest returns "sha256:<hex>" of Canonical(raw). Grants of scope "exact"
// match on it, so a call that differs only in key order or whitespace is
// still the same call.
func Digest(raw []byte) (string, error) {
	c, err := Canonical(raw)
	if err != nil {
		return "", err
	}
	return sha256Hex(c), nil
}

// Arguments are a call's arguments parsed once, for everything that reads
// them: their digest, the canonical JSON of the top-level members that
// arguments-scope grants match on, and Rego's input (Input.SetArguments).
type Arguments struct {
	raw    []byte
	v      ast.Value
	digest string
}

// ParseArguments parses raw as Digest does. It keeps raw, which must not
// change afterwards.
func ParseArguments(raw []byte) (*Arguments, error) {
	v, err := parseArgumentsJSON(raw)
	if err != nil {
		return nil, err
	}
	return &Arguments{raw: raw, v: v, digest: sha256Hex(appendValue(make([]byte, 0, len(raw)), v))}, nil
}

// Digest is Digest of the arguments.
func (a *Arguments) Digest() string { return a.digest }

// AppendMember appends the canonical JSON of the top-level member key to
// b. It reports false, appending nothing, when the arguments are not an
// object or have no such member.
func (a *Arguments) AppendMember(b []byte, key string) ([]byte, bool) {
	obj, ok := a.v.(ast.Object)
	if !ok {
		return b, false
	}
	t := obj.Get(ast.InternedTerm(key))
	if t == nil {
		return b, false
	}
	return appendValue(b, t.Value), true
}

// FingerprintFields are the parts of a tool definition that change what
// the tool does or what the model, the policy or an approver is told about
// it. A change in any of them marks the tool as changed
// (input.tool.changed), the rug-pull defence.
var FingerprintFields = []string{"name", "title", "description", "inputSchema", "outputSchema", "annotations", "_meta", "icons"}

// Fingerprint returns "sha256:<hex>" over the canonical JSON of a tool's
// FingerprintFields. tool is one raw tool object from a tools/list result,
// read as ParseObject reads it; absent fields are left out, others ignored.
// A member whose name is one of FingerprintFields in another case
// ("Annotations") is covered too, under its own name: a server could not
// change what a case-insensitive reader sees without changing the
// fingerprint.
func Fingerprint(tool []byte) (string, error) {
	o, err := ParseObject(tool)
	if err != nil {
		return "", fmt.Errorf("policy: fingerprint: %w", err)
	}
	return FingerprintObject(o)
}

// FingerprintObject is Fingerprint of a tool already read.
func FingerprintObject(o *Object) (string, error) {
	picked := ast.NewObject()
	for _, m := range o.members {
		if !fingerprinted(m.name) {
			continue
		}
		v, err := parseJSON(o.data[m.start:m.end])
		if err != nil {
			return "", fmt.Errorf("policy: fingerprint: %s: %w", m.name, err)
		}
		picked.Insert(ast.StringTerm(m.name), ast.NewTerm(v))
	}
	return sha256Hex(appendValue(nil, picked)), nil
}

func fingerprinted(name string) bool {
	for _, f := range FingerprintFields {
		if strings.EqualFold(name, f) {
			return true
		}
	}
	return false
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// appendValue writes v canonically. v comes from parseJSON, so it only holds
// JSON types and its numbers are valid.
func appendValue(b []byte, v ast.Value) []byte {
	switch v := v.(type) {
	case ast.Null:
		return append(b, "null"...)
	case ast.Boolean:
		if v {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case ast.Number:
		d, _ := decimalOf(string(v))
		return d.appendCanonical(b)
	case ast.String:
		return appendString(b, string(v))
	case *ast.Array:
		b = append(b, '[')
		for i := range v.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, v.Elem(i).Value)
		}
		return append(b, ']')
	case ast.Object:
		b = append(b, '{')
		// Keys() is sorted, and OPA orders strings by their bytes.
		for i, k := range v.Keys() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, string(k.Value.(ast.String)))
			b = append(b, ':')
			b = appendValue(b, v.Get(k).Value)
		}
		return append(b, '}')
	default:
		panic(fmt.Sprintf("policy: canonical: unexpected %T", v))
	}
}

const hexDigits = "0123456789abcdef"

// appendString escapes only what JSON requires, with RFC 8785's short forms.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
