package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode"
)

// How a Principal's identity was established (Principal.Source).
const (
	SourceToken     = "token"     // an agent token (airlock tokens create)
	SourceOAuth     = "oauth"     // an OAuth 2.1 access token
	SourceOS        = "os"        // the OS user running a stdio client
	SourceAnonymous = "anonymous" // no identity: the door let the caller in without one
)

// Describe says who p is and how that was established, in the words
// every channel (the CLI, the web pages, Slack) uses, so that they agree:
// "ci-bot (token)", "alice@example.com (OAuth, client claude-code)",
// "tom (OS user)", "anonymous". A person config maps the identity to
// follows: "ci-bot (token), person alice". The text is the agent's or the
// IdP's: each channel escapes it for its medium.
func (p Principal) Describe() string {
	id := p.ID
	if id == "" {
		if p.Source == "" || p.Source == SourceAnonymous {
			return "anonymous"
		}
		id = "(no name)"
	}
	var how string
	switch p.Source {
	case SourceToken:
		how = "token"
	case SourceOAuth:
		how = "OAuth"
		if p.ClientID != "" && p.ClientID != p.ID { // a client's own token names it once
			how += ", client " + p.ClientID
		}
	case SourceOS:
		how = "OS user"
	case "":
		how = SourceAnonymous
	default:
		how = p.Source
	}
	s := id + " (" + how + ")"
	if p.Person != "" && p.Person != p.ID {
		s += ", person " + p.Person
	}
	return s
}

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
	check("the requester", a.Principal.ID+a.Principal.ClientID+a.Principal.Person)
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
