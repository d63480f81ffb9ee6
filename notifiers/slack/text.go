package slack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Slack counts a text's length in characters and refuses a block whose text
// is too long. Every budget here is counted in UTF-16 code units, which is
// never less than the number of characters however Slack counts them, and
// stays under Slack's limits with room to spare.
const (
	headerBudget    = 140  // header text; Slack's limit is 150
	fieldBudget     = 1900 // section field; Slack's limit is 2,000
	sectionBudget   = 2900 // section text; Slack's limit is 3,000
	reasonBudget    = 1500 // the policy's reason and a denier's reason
	argumentsBudget = sectionBudget - 200
)

// escaper makes text safe inside mrkdwn. Slack reads &, < and > as the
// start of entities, mentions (<!channel>, <@U…>) and links (<url|text>);
// escaped, they are shown as typed and do nothing.
var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func escape(s string) string { return escaper.Replace(s) }

// units is the length of s in UTF-16 code units.
func units(s string) int {
	n := 0
	for _, r := range s {
		n += utf16Len(r)
	}
	return n
}

func utf16Len(r rune) int {
	if r >= 0x10000 {
		return 2
	}
	return 1
}

// truncate cuts s to at most budget UTF-16 units, ending with "…" when it
// cut. It returns how many characters it dropped.
func truncate(s string, budget int) (string, int) {
	if units(s) <= budget {
		return s, 0
	}
	n, cut := 0, 0
	for i, r := range s {
		if n+utf16Len(r) > budget-1 { // room for the ellipsis
			cut = i
			break
		}
		n += utf16Len(r)
	}
	return s[:cut] + "…", utf8.RuneCountInString(s[cut:])
}

// truncateEscaped escapes s for mrkdwn and cuts the result to budget units
// without splitting an entity such as &amp;.
func truncateEscaped(s string, budget int) (string, int) {
	var b strings.Builder
	n := 0
	for i, r := range s {
		e := string(r)
		switch r {
		case '&':
			e = "&amp;"
		case '<':
			e = "&lt;"
		case '>':
			e = "&gt;"
		}
		if n+units(e) > budget {
			return b.String(), utf8.RuneCountInString(s[i:])
		}
		b.WriteString(e)
		n += units(e)
	}
	return b.String(), 0
}

// redactedValue replaces what the policy hides from approvers.
const redactedValue = "[redacted]"

// prettyArguments renders a call's arguments as indented JSON, in the
// order the agent wrote them, with the values at the policy's redact paths
// replaced. It reports whether anything was hidden.
//
// Backticks in strings are written as \u0060: the JSON means the same, and
// an argument cannot close the code block it is shown in.
func prettyArguments(args json.RawMessage, redact []string) (string, bool, error) {
	if len(bytes.TrimSpace(args)) == 0 {
		args = json.RawMessage("{}")
	}
	var paths [][]string
	for _, p := range redact {
		segs := strings.Split(p, ".")
		if segs[0] != "arguments" {
			continue // the policy engine refuses these; nothing to match
		}
		paths = append(paths, segs[1:])
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.UseNumber()
	var out bytes.Buffer
	r := redactor{dec: dec, out: &out, paths: paths}
	if err := r.value(nil); err != nil {
		return "", false, fmt.Errorf("slack: arguments: %w", err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out.Bytes(), "", "  "); err != nil {
		return "", false, fmt.Errorf("slack: arguments: %w", err)
	}
	return pretty.String(), r.hid, nil
}

// redactor copies JSON token by token, which keeps the keys in their
// order, numbers as written, and skips the values it must hide.
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
		r.writeString(redactedValue)
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
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // escaped for mrkdwn later, once
	enc.Encode(s)            // a Go string always encodes
	r.out.Write(bytes.ReplaceAll(bytes.TrimSuffix(b.Bytes(), []byte("\n")), []byte("`"), []byte(`\u0060`)))
}
