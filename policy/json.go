package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// ErrDuplicateKey is returned when a JSON object repeats a key. Tool
// arguments with duplicate keys are refused outright: a server may read the
// first value while the policy (and the approver) saw the last one.
var ErrDuplicateKey = errors.New("duplicate object key")

const (
	// maxDepth bounds nesting so hostile arguments cannot exhaust the stack;
	// it matches encoding/json's limit.
	maxDepth = 10000
	// maxExponent bounds a number's decimal exponent. A number like 1e999999999
	// is valid JSON, but Rego compares numbers with math/big, which would
	// expand it to a billion digits: an agent could stall every evaluation.
	maxExponent = 10000
)

// parseJSON parses one JSON document into an OPA value. It is strict where
// encoding/json is lenient, because these bytes are forwarded to a server
// that may read them differently: it rejects duplicate keys, invalid UTF-8,
// lone UTF-16 surrogates and trailing data. Numbers keep their exact text.
func parseJSON(data []byte) (ast.Value, error) {
	return parser{data: data}.document()
}

// parseArgumentsJSON is parseJSON for a call's arguments, which also
// refuses an object whose keys differ only in case or Unicode folding
// ({"path": …, "Path": …}, or "paſs" beside "pass"): a server that decodes
// arguments with Go's encoding/json (as go-sdk tools do) reads the last of
// them, while the policy and the approver would judge the one named
// exactly. Schemas and definitions may hold such keys; arguments that are
// judged may not.
func parseArgumentsJSON(data []byte) (ast.Value, error) {
	return parser{data: data, foldUnique: true}.document()
}

func (p parser) document() (ast.Value, error) {
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.errorf("unexpected data after the JSON value")
	}
	return v, nil
}

type parser struct {
	data []byte
	pos  int
	// foldUnique refuses keys of one object that are equal under Unicode
	// case folding (parseArgumentsJSON).
	foldUnique bool
}

// syntaxError reports where a JSON document went wrong.
type syntaxError struct {
	offset int
	msg    string
	err    error
}

func (e *syntaxError) Error() string {
	return "policy: invalid JSON at offset " + strconv.Itoa(e.offset) + ": " + e.msg
}

func (e *syntaxError) Unwrap() error { return e.err }

func (p *parser) errorf(format string, args ...any) error {
	return &syntaxError{offset: p.pos, msg: fmt.Sprintf(format, args...)}
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (ast.Value, error) {
	if p.pos >= len(p.data) {
		return nil, p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, err := p.string()
		if err != nil {
			return nil, err
		}
		return ast.String(s), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case p.literal("true"):
		return ast.Boolean(true), nil
	case p.literal("false"):
		return ast.Boolean(false), nil
	case p.literal("null"):
		return ast.Null{}, nil
	default:
		return nil, p.errorf("unexpected character %q", c)
	}
}

func (p *parser) literal(word string) bool {
	if len(p.data)-p.pos >= len(word) && string(p.data[p.pos:p.pos+len(word)]) == word {
		p.pos += len(word)
		return true
	}
	return false
}

func (p *parser) object(depth int) (ast.Value, error) {
	if depth > maxDepth {
		return nil, p.errorf("nested deeper than %d levels", maxDepth)
	}
	p.pos++ // {
	obj := ast.NewObject()
	var folds foldSet
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return obj, nil
	}
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.errorf("expected a string key")
		}
		keyAt := p.pos
		k, err := p.string()
		if err != nil {
			return nil, err
		}
		key := ast.StringTerm(k)
		if obj.Get(key) != nil {
			return nil, &syntaxError{offset: keyAt, msg: fmt.Sprintf("key %q appears twice: %v", k, ErrDuplicateKey), err: ErrDuplicateKey}
		}
		if p.foldUnique {
			if other, ok := folds.add(k); ok {
				return nil, &syntaxError{offset: keyAt, msg: fmt.Sprintf("keys %q and %q differ only in case, and a server may read either: %v", other, k, ErrDuplicateKey), err: ErrDuplicateKey}
			}
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.errorf("expected ':' after an object key")
		}
		p.pos++
		p.skipSpace()
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		obj.Insert(key, ast.NewTerm(v))
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unexpected end of input in an object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
		case '}':
			p.pos++
			return obj, nil
		default:
			return nil, p.errorf("expected ',' or '}' in an object")
		}
	}
}

// foldSet finds keys of one object that are equal under Unicode case
// folding, as encoding/json matches names. Most objects in arguments are
// small, and a scan of their keys costs less than a map; past a few keys
// it keeps a map of folded keys, so that an object with many keys costs
// linear time, not quadratic.
type foldSet struct {
	keys   [foldScanMax]string // the first keys, without allocating
	n      int
	folded map[string]string
}

const foldScanMax = 8

// add records k and returns an earlier key it folds to, if any.
func (f *foldSet) add(k string) (twin string, found bool) {
	if f.folded == nil {
		for _, o := range f.keys[:f.n] {
			if strings.EqualFold(o, k) {
				return o, true
			}
		}
		if f.n < foldScanMax {
			f.keys[f.n] = k
			f.n++
			return "", false
		}
		f.folded = make(map[string]string, 2*foldScanMax)
		for _, o := range f.keys {
			f.folded[foldKey(o)] = o
		}
	}
	fk := foldKey(k)
	if o, ok := f.folded[fk]; ok {
		return o, true
	}
	f.folded[fk] = k
	return "", false
}

// foldKey maps each rune of s to the smallest rune of its case-folding
// orbit, so that two strings are strings.EqualFold exactly when their
// foldKeys are equal.
func foldKey(s string) string {
	b := make([]rune, 0, len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b = append(b, least)
	}
	return string(b)
}

func (p *parser) array(depth int) (ast.Value, error) {
	if depth > maxDepth {
		return nil, p.errorf("nested deeper than %d levels", maxDepth)
	}
	p.pos++ // [
	var elems []*ast.Term
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return ast.NewArray(), nil
	}
	for {
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		elems = append(elems, ast.NewTerm(v))
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unexpected end of input in an array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
		case ']':
			p.pos++
			return ast.NewArray(elems...), nil
		default:
			return nil, p.errorf("expected ',' or ']' in an array")
		}
	}
}

// string parses a JSON string starting at the opening quote.
func (p *parser) string() (string, error) {
	p.pos++ // "
	start := p.pos
	// Fast path: plain ASCII without escapes needs no copy.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		p.pos++
	}
	buf := append([]byte(nil), p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c < 0x20:
			return "", p.errorf("control character %#x in a string must be escaped", c)
		case c == '\\':
			r, err := p.escape()
			if err != nil {
				return "", err
			}
			buf = utf8.AppendRune(buf, r)
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", p.errorf("invalid UTF-8 in a string")
			}
			buf = append(buf, p.data[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
	return "", p.errorf("unterminated string")
}

// escape decodes one backslash escape, joining UTF-16 surrogate pairs. A lone
// surrogate is refused rather than replaced: replacing it would give two
// different argument strings the same canonical form and the same digest.
func (p *parser) escape() (rune, error) {
	if p.pos+1 >= len(p.data) {
		return 0, p.errorf("unterminated escape")
	}
	c := p.data[p.pos+1]
	p.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		r, err := p.hex4()
		if err != nil {
			return 0, err
		}
		if !utf16.IsSurrogate(r) {
			return r, nil
		}
		if r < 0xdc00 && p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
			p.pos += 2
			r2, err := p.hex4()
			if err != nil {
				return 0, err
			}
			if joined := utf16.DecodeRune(r, r2); joined != utf8.RuneError {
				return joined, nil
			}
		}
		return 0, p.errorf("lone UTF-16 surrogate in a \\u escape")
	default:
		p.pos -= 2
		return 0, p.errorf("invalid escape \\%c", c)
	}
}

func (p *parser) hex4() (rune, error) {
	if p.pos+4 > len(p.data) {
		return 0, p.errorf("short \\u escape")
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, p.errorf("invalid hex digit %q in a \\u escape", c)
		}
	}
	p.pos += 4
	return r, nil
}

// number checks the JSON number grammar and keeps the text as it was written,
// so that Rego sees exactly the value the server will receive.
func (p *parser) number() (ast.Value, error) {
	start := p.pos
	if p.data[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(p.data) && p.data[p.pos] == '0':
		p.pos++
	case p.pos < len(p.data) && p.data[p.pos] >= '1' && p.data[p.pos] <= '9':
		p.digits()
	default:
		return nil, p.errorf("invalid number")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if p.digits() == 0 {
			return nil, p.errorf("invalid number: no digits after '.'")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return nil, p.errorf("invalid number: no digits in the exponent")
		}
	}
	text := string(p.data[start:p.pos])
	if _, ok := decimalOf(text); !ok {
		return nil, &syntaxError{offset: start, msg: fmt.Sprintf("number %.40s is out of range (decimal exponent beyond ±%d)", text, maxExponent)}
	}
	return ast.Number(text), nil
}

func (p *parser) digits() int {
	n := 0
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
		n++
	}
	return n
}

// decimal is an exact number: (-1)^neg × 0.digits × 10^point, where digits
// has no leading or trailing zeros. Zero is the empty digit string.
type decimal struct {
	neg    bool
	digits string
	point  int
}

// decimalOf reduces the text of a valid JSON number to its exact value. It
// never goes through float64, so 2^53 and 2^53+1 stay different while 1,
// 1.0 and 10e-1 become the same. ok is false when the exponent is out of
// range.
func decimalOf(text string) (d decimal, ok bool) {
	i := 0
	if text[0] == '-' {
		d.neg = true
		i++
	}
	var digits []byte
	point := 0
	for ; i < len(text) && text[i] >= '0' && text[i] <= '9'; i++ {
		digits = append(digits, text[i])
		point++
	}
	if i < len(text) && text[i] == '.' {
		for i++; i < len(text) && text[i] >= '0' && text[i] <= '9'; i++ {
			digits = append(digits, text[i])
		}
	}
	if i < len(text) { // exponent
		i++
		expNeg := false
		if text[i] == '+' || text[i] == '-' {
			expNeg = text[i] == '-'
			i++
		}
		exp := 0
		for ; i < len(text); i++ {
			exp = exp*10 + int(text[i]-'0')
			if exp > 2*maxExponent {
				// Zero with a huge exponent is still zero.
				exp = 2*maxExponent + 1
			}
		}
		if expNeg {
			exp = -exp
		}
		point += exp
	}
	lead := 0
	for lead < len(digits) && digits[lead] == '0' {
		lead++
	}
	point -= lead
	digits = digits[lead:]
	trail := len(digits)
	for trail > 0 && digits[trail-1] == '0' {
		trail--
	}
	digits = digits[:trail]
	if len(digits) == 0 {
		return decimal{}, true // -0 and 0e5 are zero
	}
	if point > maxExponent || point < -maxExponent {
		return decimal{}, false
	}
	d.digits = string(digits)
	d.point = point
	return d, true
}

// appendCanonical writes d the way ECMAScript's Number::toString lays out
// digits (RFC 8785 uses the same layout), but from the exact decimal digits
// instead of a float64's shortest round-trip form.
func (d decimal) appendCanonical(b []byte) []byte {
	if d.digits == "" {
		return append(b, '0')
	}
	if d.neg {
		b = append(b, '-')
	}
	k, n := len(d.digits), d.point
	switch {
	case k <= n && n <= 21:
		b = append(b, d.digits...)
		for range n - k {
			b = append(b, '0')
		}
	case 0 < n && n <= 21:
		b = append(b, d.digits[:n]...)
		b = append(b, '.')
		b = append(b, d.digits[n:]...)
	case -6 < n && n <= 0:
		b = append(b, "0."...)
		for range -n {
			b = append(b, '0')
		}
		b = append(b, d.digits...)
	default:
		b = append(b, d.digits[0])
		if k > 1 {
			b = append(b, '.')
			b = append(b, d.digits[1:]...)
		}
		b = append(b, 'e')
		if n-1 >= 0 {
			b = append(b, '+')
		}
		b = strconv.AppendInt(b, int64(n-1), 10)
	}
	return b
}
