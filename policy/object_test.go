package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestReadObject(t *testing.T) {
	known := []string{"name", "arguments", "_meta"}
	good := map[string]string{
		"exact":           `{"name":"read","arguments":{"path":"a"}}`,
		"escaped name":    `{"n\u0061me":"read"}`,
		"other members":   `{"name":"read","task":{"ttl":1},"Other":1}`,
		"empty":           ` {} `,
		"nested variants": `{"name":"read","arguments":{"Name":1,"name":2}}`,
	}
	for what, in := range good {
		if _, err := ReadObject([]byte(in), known...); err != nil {
			t.Errorf("%s: %s: %v", what, in, err)
		}
	}
	bad := map[string]struct {
		in   string
		want error
	}{
		"variant after":      {`{"name":"write","Name":"read"}`, ErrNameVariant},
		"variant instead":    {`{"NAME":"read"}`, ErrNameVariant},
		"long s":             {`{"name":"w","argumentſ":{}}`, ErrNameVariant},
		"upper _meta":        {`{"name":"w","_meta":{},"_META":{}}`, ErrNameVariant},
		"escaped variant":    {`{"name":"w","N\u0061me":"r"}`, ErrNameVariant},
		"duplicate":          {`{"name":"w","name":"r"}`, ErrDuplicateKey},
		"escaped duplicate":  {`{"name":"w","\u006eame":"r"}`, ErrDuplicateKey},
		"invalid UTF-8":      {"{\"name\":\"w\xff\"}", nil},
		"invalid UTF-8 deep": {"{\"name\":\"w\",\"x\":[\"\xff\"]}", nil},
		"lone surrogate":     {`{"name":"\ud800"}`, nil},
		"trailing":           {`{"name":"w"} {}`, nil},
		"not an object":      {`["name"]`, nil},
		"truncated":          {`{"name":"w"`, nil},
		"bad number":         {`{"name":"w","x":01}`, nil},
	}
	for what, c := range bad {
		_, err := ReadObject([]byte(c.in), known...)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: ReadObject(%s) = %v, want %v", what, c.in, err, c.want)
		}
	}
}

func TestObjectReplace(t *testing.T) {
	o, err := ParseObject([]byte(`{ "a" : 1, "b":[2] }`))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(o.Replace("a", []byte(`"x"`))); got != `{ "a" : "x", "b":[2] }` {
		t.Errorf("Replace(a) = %s", got)
	}
	if got := string(o.Replace("c", []byte(`3`))); got != `{ "a" : 1, "b":[2] ,"c":3}` {
		t.Errorf("Replace(c) = %s", got)
	}
	e, _ := ParseObject([]byte(`{}`))
	if got := string(e.Replace("c", []byte(`3`))); got != `{"c":3}` {
		t.Errorf("Replace on {} = %s", got)
	}
}

// Remove leaves every other byte as it was, and the result is one
// object with the other members.
func TestObjectRemove(t *testing.T) {
	for in, want := range map[string]string{
		`{ "a" : 1, "b":[2] , "c" : {} }`: `{ "b":[2] , "c" : {} }`,
		`{"b":[2], "a" :1 ,"c":3}`:        `{"b":[2], "c":3}`,
		`{"b":[2] , "a" : 1 }`:            `{"b":[2] }`,
		`{ "a" : 1 }`:                     `{  }`,
		`{"b":1}`:                         `{"b":1}`,
	} {
		o, err := ParseObject([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		got := o.Remove("a")
		if string(got) != want {
			t.Errorf("Remove(a) of %s = %s, want %s", in, got, want)
		}
		if _, err := ParseObject(got); err != nil {
			t.Errorf("Remove(a) of %s is not an object: %v", in, err)
		}
	}
}

// FuzzReadObject checks that what ReadObject accepts, every reader agrees
// on: the exact-name scan of encoding/json's tokens finds the same members
// with the same bytes, and encoding/json's case-insensitive struct decoding
// (what the gate used before) reads the same name and arguments.
func FuzzReadObject(f *testing.F) {
	for _, s := range []string{
		`{"name":"write_file","arguments":{"path":"a"},"Name":"read_text_file","Arguments":{}}`,
		`{"name":"r","arguments":{"x":1},"_meta":{"progressToken":1}}`,
		`{"NAME":"r"}`, `{"argumentſ":{}}`, `{"n\u0061me":"x","arguments":null}`, `{}`, `{"name":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ReadObject(data, "name", "arguments", "_meta")
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		// Reference: an exact-name scan with encoding/json's tokenizer.
		dec := json.NewDecoder(bytes.NewReader(data))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("accepted a non-object %q", data)
		}
		ref := map[string]json.RawMessage{}
		var names []string
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			name := tok.(string)
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			if _, dup := ref[name]; dup {
				t.Fatalf("accepted duplicate %q in %q", name, data)
			}
			ref[name] = v
			names = append(names, name)
		}
		got := o.Names()
		if len(got) != len(names) {
			t.Fatalf("members %q, reference %q", got, names)
		}
		for i, name := range names {
			raw, _ := o.Get(got[i])
			if got[i] != name || !bytes.Equal(raw, ref[name]) {
				t.Fatalf("member %d: %q=%s, reference %q=%s", i, got[i], raw, name, ref[name])
			}
		}
		// The lenient reader sees the same name and arguments.
		var loose struct {
			Name      json.RawMessage `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
			Meta      json.RawMessage `json:"_meta"`
		}
		if err := json.Unmarshal(data, &loose); err != nil {
			t.Fatal(err)
		}
		for name, l := range map[string]json.RawMessage{"name": loose.Name, "arguments": loose.Arguments, "_meta": loose.Meta} {
			raw, _ := o.Get(name)
			if !bytes.Equal(raw, l) {
				t.Fatalf("%s: exact %s, encoding/json %s in %q", name, raw, l, data)
			}
		}
	})
}
