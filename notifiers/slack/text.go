package slack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/broker"
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

// prettyArguments renders a call's arguments as approvers may see them
// (broker.Approval.ShowArguments: redactions applied, the agent's key
// order, exact numbers) as indented JSON, and reports whether anything was
// hidden.
//
// Backticks are written as \u0060: the JSON means the same (a backtick can
// only be inside a string), and an argument cannot close the code block it
// is shown in.
func prettyArguments(a *broker.Approval) (string, bool, error) {
	shown, hid := a.ShowArguments()
	if len(bytes.TrimSpace(shown)) == 0 {
		shown = json.RawMessage("{}")
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, shown, "", "  "); err != nil {
		return "", false, fmt.Errorf("slack: arguments: %w", err)
	}
	return strings.ReplaceAll(pretty.String(), "`", `\u0060`), hid, nil
}
