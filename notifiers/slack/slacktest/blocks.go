package slacktest

import (
	"encoding/json"
	"fmt"
)

// checkBlocks applies Slack's Block Kit limits to a list of blocks and
// returns what is wrong, in Slack's style ("… [json-pointer:/blocks/3/text]").
func checkBlocks(raw []byte, maxBlocks int) []string {
	var blocks []map[string]any
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return []string{"blocks must be a JSON array of objects"}
	}
	c := &checker{}
	if len(blocks) > maxBlocks {
		c.fail("/blocks", "no more than %d items allowed", maxBlocks)
	}
	ids := map[string]bool{}
	for i, b := range blocks {
		at := fmt.Sprintf("/blocks/%d", i)
		if id, ok := b["block_id"].(string); ok {
			c.length(at+"/block_id", id, MaxBlockID)
			if ids[id] {
				c.fail(at+"/block_id", "block_id must be unique")
			}
			ids[id] = true
		}
		switch b["type"] {
		case "header":
			c.text(at+"/text", b["text"], MaxHeaderText, "plain_text")
		case "section":
			fields, _ := b["fields"].([]any)
			if b["text"] == nil && len(fields) == 0 {
				c.fail(at, "must have text or fields")
			}
			if b["text"] != nil {
				c.text(at+"/text", b["text"], MaxSectionText, "")
			}
			if len(fields) > MaxFields {
				c.fail(at+"/fields", "no more than %d items allowed", MaxFields)
			}
			for j, f := range fields {
				c.text(fmt.Sprintf("%s/fields/%d", at, j), f, MaxFieldText, "")
			}
		case "context":
			elems, _ := b["elements"].([]any)
			if len(elems) == 0 || len(elems) > MaxContextElems {
				c.fail(at+"/elements", "must have 1 to %d items", MaxContextElems)
			}
			for j, e := range elems {
				c.text(fmt.Sprintf("%s/elements/%d", at, j), e, MaxSectionText, "")
			}
		case "actions":
			elems, _ := b["elements"].([]any)
			if len(elems) == 0 || len(elems) > MaxActionsElems {
				c.fail(at+"/elements", "must have 1 to %d items", MaxActionsElems)
			}
			actionIDs := map[string]bool{}
			for j, e := range elems {
				c.button(fmt.Sprintf("%s/elements/%d", at, j), e, actionIDs)
			}
		case "input":
			c.text(at+"/label", b["label"], 2000, "plain_text")
			el, _ := b["element"].(map[string]any)
			switch el["type"] {
			case "plain_text_input":
				if n, _ := el["max_length"].(float64); n > 3000 {
					c.fail(at+"/element/max_length", "must be at most 3000")
				}
			case "static_select":
				c.staticSelect(at+"/element", el)
			default:
				c.fail(at+"/element", "the fake only knows plain_text_input and static_select")
			}
		case "divider":
		default:
			c.fail(at+"/type", "unknown block type %v", b["type"])
		}
	}
	return c.errs
}

// checkModal applies Slack's limits to a modal view.
func checkModal(raw []byte) []string {
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return []string{"view must be a JSON object"}
	}
	c := &checker{}
	if v["type"] != "modal" {
		c.fail("/view/type", "must be modal")
	}
	c.text("/view/title", v["title"], MaxModalTitle, "plain_text")
	if v["submit"] != nil {
		c.text("/view/submit", v["submit"], MaxModalTitle, "plain_text")
	}
	if v["close"] != nil {
		c.text("/view/close", v["close"], MaxModalTitle, "plain_text")
	}
	if m, _ := v["private_metadata"].(string); units(m) > MaxPrivateMeta {
		c.fail("/view/private_metadata", "must be at most %d characters", MaxPrivateMeta)
	}
	blocks, _ := json.Marshal(v["blocks"])
	c.errs = append(c.errs, checkBlocks(blocks, MaxModalBlocks)...)
	return c.errs
}

// staticSelect checks a menu of options.
func (c *checker) staticSelect(at string, el map[string]any) {
	if el["placeholder"] != nil {
		c.text(at+"/placeholder", el["placeholder"], 150, "plain_text")
	}
	opts, _ := el["options"].([]any)
	if len(opts) == 0 || len(opts) > 100 {
		c.fail(at+"/options", "must have 1 to 100 items")
	}
	values := map[string]bool{}
	for i, o := range opts {
		opt, _ := o.(map[string]any)
		oat := fmt.Sprintf("%s/options/%d", at, i)
		c.text(oat+"/text", opt["text"], 75, "plain_text")
		v, _ := opt["value"].(string)
		c.length(oat+"/value", v, 150)
		values[v] = true
	}
	if init, ok := el["initial_option"].(map[string]any); ok {
		if v, _ := init["value"].(string); !values[v] {
			c.fail(at+"/initial_option", "must be one of the options")
		}
	}
}

type checker struct{ errs []string }

func (c *checker) fail(at, format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...)+" [json-pointer:"+at+"]")
}

func (c *checker) length(at, s string, max int) {
	if units(s) > max {
		c.fail(at, "must be at most %d characters, not %d", max, units(s))
	}
}

// text checks a text object: its type (only kind when kind is set), that
// it is not empty, and its length.
func (c *checker) text(at string, v any, max int, kind string) {
	t, ok := v.(map[string]any)
	if !ok {
		c.fail(at, "must be a text object")
		return
	}
	typ, _ := t["type"].(string)
	if typ != "plain_text" && typ != "mrkdwn" || kind != "" && typ != kind {
		c.fail(at+"/type", "must be %s, not %q", map[bool]string{true: kind, false: "plain_text or mrkdwn"}[kind != ""], typ)
	}
	if _, has := t["emoji"]; has && typ == "mrkdwn" {
		c.fail(at+"/emoji", "only plain_text has emoji")
	}
	s, _ := t["text"].(string)
	if s == "" {
		c.fail(at+"/text", "must not be empty")
	}
	c.length(at+"/text", s, max)
}

func (c *checker) button(at string, v any, actionIDs map[string]bool) {
	b, _ := v.(map[string]any)
	if b["type"] != "button" {
		c.fail(at+"/type", "the fake only knows buttons")
		return
	}
	c.text(at+"/text", b["text"], MaxButtonText, "plain_text")
	id, _ := b["action_id"].(string)
	c.length(at+"/action_id", id, MaxActionID)
	if id != "" && actionIDs[id] {
		c.fail(at+"/action_id", "action_id must be unique in the block")
	}
	actionIDs[id] = true
	if val, _ := b["value"].(string); units(val) > MaxButtonValue {
		c.fail(at+"/value", "must be at most %d characters", MaxButtonValue)
	}
	if u, _ := b["url"].(string); units(u) > MaxURL {
		c.fail(at+"/url", "must be at most %d characters", MaxURL)
	}
	if st, ok := b["style"].(string); ok && st != "primary" && st != "danger" {
		c.fail(at+"/style", "must be primary or danger")
	}
}
