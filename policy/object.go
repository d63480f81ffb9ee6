package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrNameVariant is returned when an object has a member whose name is one
// the reader looks for in another case (Name, NAME, or argumentſ with
// U+017F for arguments). encoding/json, and servers written with it, match
// such names to the member; servers in most other languages read only the
// exact name. Either reading could be the one that counts, so neither is
// chosen.
var ErrNameVariant = errors.New("member name differs from a known name only in case")

// Object is one JSON object read with exact member names: what Airlock
// reads from a client or an upstream (a tools/call's params, a tool
// definition, initialize params) before it judges, shows or forwards it.
// Each member keeps its exact bytes, which is what Airlock forwards.
//
// encoding/json must not be used for such reads: it matches names
// case-insensitively, with Unicode folding, and the last match wins, so a
// decoy member could be what Airlock judges while the server reads another.
type Object struct {
	data    []byte
	members []member
}

type member struct {
	name       string
	key        int // where the member's name starts in data
	start, end int // the value's bytes in data
}

// ParseObject reads data, which must be exactly one JSON object. The whole
// document must be strict JSON, as for Canonical: invalid UTF-8, lone
// surrogates, bad numbers and trailing data are errors. A member name that
// appears twice is an error (ErrDuplicateKey). Nested objects are checked
// for grammar only; a nested object that is read is read with ParseObject
// in turn. data must not change while the Object is used.
func ParseObject(data []byte) (*Object, error) {
	p := parser{data: data}
	p.skipSpace()
	if p.pos >= len(p.data) || p.data[p.pos] != '{' {
		return nil, p.errorf("expected a JSON object")
	}
	p.pos++
	o := &Object{data: data}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
	} else {
		for {
			if p.pos >= len(p.data) || p.data[p.pos] != '"' {
				return nil, p.errorf("expected a string key")
			}
			nameAt := p.pos
			name, err := p.string()
			if err != nil {
				return nil, err
			}
			if _, dup := o.find(name); dup {
				return nil, &syntaxError{offset: nameAt, msg: fmt.Sprintf("key %q appears twice: %v", name, ErrDuplicateKey), err: ErrDuplicateKey}
			}
			p.skipSpace()
			if p.pos >= len(p.data) || p.data[p.pos] != ':' {
				return nil, p.errorf("expected ':' after an object key")
			}
			p.pos++
			p.skipSpace()
			start := p.pos
			if err := p.skip(1); err != nil {
				return nil, err
			}
			o.members = append(o.members, member{name: name, key: nameAt, start: start, end: p.pos})
			p.skipSpace()
			if p.pos >= len(p.data) {
				return nil, p.errorf("unexpected end of input in an object")
			}
			if p.data[p.pos] == '}' {
				p.pos++
				break
			}
			if p.data[p.pos] != ',' {
				return nil, p.errorf("expected ',' or '}' in an object")
			}
			p.pos++
			p.skipSpace()
		}
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.errorf("unexpected data after the JSON value")
	}
	return o, nil
}

// ReadObject is ParseObject that also refuses (ErrNameVariant) a member
// whose name matches one of known under Unicode case folding, the way
// encoding/json matches names, without being it.
func ReadObject(data []byte, known ...string) (*Object, error) {
	o, err := ParseObject(data)
	if err != nil {
		return nil, err
	}
	if v := o.Variants(known...); len(v) > 0 {
		return nil, fmt.Errorf("policy: member %q: %w %q", v[0].Name, ErrNameVariant, v[0].Of)
	}
	return o, nil
}

// Variant is a member whose name is a known name in another case.
type Variant struct {
	Name string // the member's name
	Of   string // the known name it folds to
}

// Variants lists, in document order, the members whose names match one of
// known under Unicode case folding without being it.
func (o *Object) Variants(known ...string) []Variant {
	var out []Variant
	for _, m := range o.members {
		for _, k := range known {
			if m.name != k && strings.EqualFold(m.name, k) {
				out = append(out, Variant{Name: m.name, Of: k})
				break
			}
		}
	}
	return out
}

func (o *Object) find(name string) (member, bool) {
	for _, m := range o.members {
		if m.name == name {
			return m, true
		}
	}
	return member{}, false
}

// Get returns the exact bytes of the member named name.
func (o *Object) Get(name string) (json.RawMessage, bool) {
	m, ok := o.find(name)
	if !ok {
		return nil, false
	}
	return json.RawMessage(o.data[m.start:m.end:m.end]), true
}

// Names returns the member names in document order.
func (o *Object) Names() []string {
	out := make([]string, len(o.members))
	for i, m := range o.members {
		out[i] = m.name
	}
	return out
}

// String returns the member named name, which must be a JSON string. ok is
// false when there is no such member; a member of another type is an error.
func (o *Object) String(name string) (s string, ok bool, err error) {
	raw, ok := o.Get(name)
	if !ok {
		return "", false, nil
	}
	s, err = DecodeString(raw)
	if err != nil {
		return "", true, fmt.Errorf("policy: member %q: %w", name, err)
	}
	return s, true, nil
}

// Replace returns the object's bytes with the value of the member named
// name replaced by raw, or raw added as the last member when there is no
// such member. Everything else keeps its bytes. raw must be valid JSON.
func (o *Object) Replace(name string, raw []byte) []byte {
	if m, ok := o.find(name); ok {
		out := make([]byte, 0, len(o.data)-(m.end-m.start)+len(raw))
		out = append(out, o.data[:m.start]...)
		out = append(out, raw...)
		return append(out, o.data[m.end:]...)
	}
	key, _ := json.Marshal(name)
	end := len(o.data) - 1
	for o.data[end] != '}' {
		end--
	}
	out := append([]byte(nil), o.data[:end]...)
	if len(o.members) > 0 {
		out = append(out, ',')
	}
	out = append(append(append(out, key...), ':'), raw...)
	return append(out, o.data[end:]...)
}

// Remove returns the object's bytes without the member named name (and
// the comma that joined it to a neighbour); everything else keeps its
// bytes. Without such a member it returns the bytes unchanged.
func (o *Object) Remove(name string) []byte {
	i := -1
	for j, m := range o.members {
		if m.name == name {
			i = j
			break
		}
	}
	if i < 0 {
		return o.data
	}
	from, to := o.members[i].key, o.members[i].end
	switch {
	case i+1 < len(o.members):
		to = o.members[i+1].key // through the comma after it
	case i > 0:
		from = o.members[i-1].end // from the comma before it
	}
	out := make([]byte, 0, len(o.data)-(to-from))
	out = append(out, o.data[:from]...)
	return append(out, o.data[to:]...)
}

// DecodeString decodes raw, which must be exactly one JSON string, with the
// strict rules of ParseObject.
func DecodeString(raw []byte) (string, error) {
	p := parser{data: raw}
	p.skipSpace()
	if p.pos >= len(p.data) || p.data[p.pos] != '"' {
		return "", p.errorf("expected a string")
	}
	s, err := p.string()
	if err != nil {
		return "", err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return "", p.errorf("unexpected data after the JSON value")
	}
	return s, nil
}

// skip checks one value with parseJSON's grammar without building it.
// Duplicate keys in nested objects are not looked for.
func (p *parser) skip(depth int) error {
	if depth > maxDepth {
		return p.errorf("nested deeper than %d levels", maxDepth)
	}
	if p.pos >= len(p.data) {
		return p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		p.pos++
		p.skipSpace()
		if p.pos < len(p.data) && p.data[p.pos] == closer {
			p.pos++
			return nil
		}
		for {
			if c == '{' {
				if p.pos >= len(p.data) || p.data[p.pos] != '"' {
					return p.errorf("expected a string key")
				}
				if err := p.skipString(); err != nil {
					return err
				}
				p.skipSpace()
				if p.pos >= len(p.data) || p.data[p.pos] != ':' {
					return p.errorf("expected ':' after an object key")
				}
				p.pos++
				p.skipSpace()
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			p.skipSpace()
			if p.pos >= len(p.data) {
				return p.errorf("unexpected end of input")
			}
			switch p.data[p.pos] {
			case ',':
				p.pos++
				p.skipSpace()
			case closer:
				p.pos++
				return nil
			default:
				return p.errorf("expected ',' or '%c'", closer)
			}
		}
	case c == '"':
		return p.skipString()
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := p.number()
		return err
	case p.literal("true"), p.literal("false"), p.literal("null"):
		return nil
	default:
		return p.errorf("unexpected character %q", c)
	}
}

// skipString checks a string as string does, without copying it.
func (p *parser) skipString() error {
	p.pos++ // "
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return nil
		case c < 0x20:
			return p.errorf("control character %#x in a string must be escaped", c)
		case c == '\\':
			if _, err := p.escape(); err != nil {
				return err
			}
		case c < utf8.RuneSelf:
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return p.errorf("invalid UTF-8 in a string")
			}
			p.pos += size
		}
	}
	return p.errorf("unterminated string")
}
