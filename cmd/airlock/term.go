package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// What the CLI prints comes in good part from agents and MCP servers: tool
// names, arguments, reasons, client names, the requester's identity. A
// terminal acts on escape sequences (ESC, and in some modes the C1 controls
// such as U+009B), and bidi overrides make text read differently than it
// is. So every such string is escaped before it reaches the terminal.

// hiddenRune reports a rune a terminal could act on or that would not
// show as itself: C0 and C1 controls, DEL, format characters (bidi
// controls, zero-width characters) and line and paragraph separators.
func hiddenRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.In(r, unicode.Zl, unicode.Zp)
}

// termSafe returns s as one line that is safe to print: every hidden rune
// (tabs and newlines too, which would break a table's rows and columns)
// and every invalid byte written as a Go escape, \x1b or \u202e.
func termSafe(s string) string { return escapeHidden(s, false) }

// termText is termSafe for text of several lines, such as an error
// message: it keeps newlines and tabs.
func termText(s string) string { return escapeHidden(s, true) }

func escapeHidden(s string, keepLines bool) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || hiddenRune(r) && !(keepLines && (r == '\n' || r == '\t')) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case r < 0x80 && hiddenRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case hiddenRune(r) || r == utf8.RuneError:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// jsonSafe rewrites JSON so that no hidden rune is left raw: encoding/json
// escapes the C0 controls but writes C1 controls and format characters as
// they are. They can only occur inside strings, where \uXXXX means the same.
func jsonSafe(data []byte) []byte {
	if !bytes.ContainsFunc(data, func(r rune) bool { return r >= 0x80 && hiddenRune(r) }) {
		return data
	}
	out := make([]byte, 0, len(data)+32)
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r >= 0x80 && hiddenRune(r) {
			if r > 0xFFFF {
				r1, r2 := utf16.EncodeRune(r)
				out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
			} else {
				out = fmt.Appendf(out, `\u%04x`, r)
			}
		} else {
			out = append(out, data[i:i+n]...)
		}
		i += n
	}
	return out
}

// writeJSON writes v as JSON with every hidden rune escaped; indent ""
// writes one line (JSON lines).
func writeJSON(w io.Writer, v any, indent string) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(jsonSafe(buf.Bytes()))
	return err
}
