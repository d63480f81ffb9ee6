package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode"
)

// HasHiddenChars reports format characters (zero-width spaces, direction
// overrides and the like) and other invisible code points: text with them
// can read differently to a person than it acts.
func HasHiddenChars(s string) bool {
	for _, r := range s {
		if unicode.Is(unicode.Cf, r) || (unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r') {
			return true
		}
	}
	return false
}

// HiddenIn names the parts of a held call, as approvers see it, that hold
// hidden characters (HasHiddenChars): every string the agent, its client or
// the server chose — the tool's name, the requester, the client, argument
// names and values at any depth, the tool's title and description. Every
// channel that shows an approval warns with it.
func (a *Approval) HiddenIn() []string {
	var out []string
	check := func(what, s string) {
		if HasHiddenChars(s) {
			out = append(out, what)
		}
	}
	check("the tool's name", a.Tool)
	check("the requester", a.Principal.ID)
	check("the client's name", a.Client.Name+a.Client.Version)
	shown, _ := a.ShowArguments()
	// Tokens, not a struct: every key and string is visited, duplicates
	// and all, with its escapes decoded as an approver's screen shows it.
	dec := json.NewDecoder(bytes.NewReader(shown))
	names, values := false, false
	inObject := []bool{}
	expectKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				inObject = append(inObject, true)
				expectKey = true
				continue
			case '[':
				inObject = append(inObject, false)
			default:
				inObject = inObject[:len(inObject)-1]
			}
		case string:
			if expectKey {
				names = names || HasHiddenChars(t)
				expectKey = false
				continue
			}
			values = values || HasHiddenChars(t)
		}
		expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
	}
	if names {
		out = append(out, "argument names")
	}
	if values {
		out = append(out, "argument values")
	}
	if d := a.Definition; d != nil {
		check("the tool's title", d.Title)
		check("the tool's description", d.Description)
	}
	return out
}

// HiddenWarning is the sentence every channel shows for HiddenIn, or "".
func (a *Approval) HiddenWarning() string {
	in := a.HiddenIn()
	if len(in) == 0 {
		return ""
	}
	s := in[0]
	for i, w := range in[1:] {
		if i == len(in)-2 {
			s += " and " + w
		} else {
			s += ", " + w
		}
	}
	return fmt.Sprintf("Invisible or direction-changing characters in %s: what you read may not be what runs.", s)
}
