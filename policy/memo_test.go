package policy

import (
	"fmt"
	"strings"
	"testing"
)

func TestMemo(t *testing.T) {
	var m memo
	a, err := m.term("x", []byte(`{"a":[1,2]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.term("x", []byte(`{"a":[1,2]}`))
	if err != nil || a != b {
		t.Errorf("same bytes: %p and %p (%v), want the remembered term", a, b, err)
	}
	c, err := m.term("x", []byte(`{"a": [1,2]}`))
	if err != nil || c == a || c.Value.Compare(a.Value) != 0 {
		t.Errorf("other bytes, same value: got %v (%v)", c, err)
	}
	if _, err := m.term("tool.annotations", []byte(`{"a":1,"a":2}`)); err == nil || !strings.Contains(err.Error(), "tool.annotations") {
		t.Errorf("bad JSON: err = %v, want it named", err)
	}

	// Past the limit the memo starts over instead of growing.
	big := strings.Repeat(" ", memoLimit/32)
	for i := range 64 {
		if _, err := m.term("x", []byte(fmt.Sprintf("%s%d", big, i))); err != nil {
			t.Fatal(err)
		}
	}
	if m.bytes > memoLimit {
		t.Errorf("memo holds %d bytes, limit %d", m.bytes, memoLimit)
	}
	// A value too big to be worth remembering is parsed every time.
	huge := []byte(strings.Repeat(" ", memoLimit/8) + "1")
	if _, err := m.term("x", huge); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.terms[string(huge)]; ok {
		t.Error("a huge value was remembered")
	}
}
