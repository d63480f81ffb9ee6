package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

var codecCases = []string{
	`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":[1,2,{"b":"}"}]}}}`,
	`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	` { "jsonrpc" : "2.0" , "id" : "abc\"def" , "method" : "ping" } `,
	`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"\u00e9\n"}]}}`,
	`{"jsonrpc":"2.0","id":7,"error":{"code":-32042,"message":"nope","data":{"why":"test"}}}`,
	`{"id":9007199254740993,"jsonrpc":"2.0","method":"x","params":null}`,
	`{"jsonrpc":"2.0","id":null,"method":"x","extra":[true,false,null,1e3]}`,
	`{"jsonrpc":"2.0","id":3,"result":null}`,
}

// Decode agrees with the SDK's decoder on what it accepts.
func TestDecodeAgreesWithSDK(t *testing.T) {
	for _, c := range codecCases {
		checkAgainstSDK(t, []byte(c))
	}
}

func checkAgainstSDK(t *testing.T, data []byte) {
	t.Helper()
	want, werr := jsonrpc.DecodeMessage(data)
	got, gerr := Decode(data)
	if werr != nil {
		return // Decode may refuse more, or explain differently
	}
	if gerr != nil {
		// The two differences: member names are exact and unique, and
		// nothing may follow the message (the SDK reads the first value
		// and ignores the rest).
		if strings.Contains(gerr.Error(), "appears twice") || !json.Valid(data) {
			return
		}
		t.Fatalf("%s: SDK accepted, Decode refused: %v", data, gerr)
	}
	// The third difference: ids keep their exact text, where the SDK
	// reads numbers as float64. TestIDsKeepTheirBytes checks ids.
	w, _ := jsonrpc.EncodeMessage(withID(want, sameID))
	g, _ := jsonrpc.EncodeMessage(withID(got, sameID))
	if !bytes.Equal(w, g) {
		t.Fatalf("%s:\nSDK    %s\nDecode %s", data, w, g)
	}
}

var sameID, _ = jsonrpc.MakeID("id")

// withID returns a copy of m with its id replaced, when it has one.
func withID(m jsonrpc.Message, id jsonrpc.ID) jsonrpc.Message {
	switch m := m.(type) {
	case *jsonrpc.Request:
		r := *m
		if r.ID.IsValid() {
			r.ID = id
		}
		return &r
	case *jsonrpc.Response:
		r := *m
		r.ID = id
		return &r
	}
	return m
}

// A peer gets back the id it sent, byte for byte, and ids it sent apart
// stay apart: 1.5 is not 1, nor 2^53+1 2^53, nor 1e300 the smallest int64.
func TestIDsKeepTheirBytes(t *testing.T) {
	ids := []string{
		`0`, `1`, `-7`, `9007199254740992`, `-9007199254740992`,
		`1.5`, `9007199254740993`, `-9007199254740993`, `18446744073709551616`,
		`1e300`, `-1e300`, `1E300`, `-0`, `1.0`, `10e-1`, `0.0`,
		`"abc"`, `""`, `"A"`, `"\u0041"`, `"\ud800"`, `"\ufffd"`, `"\u00e9"`, `"é"`, `"a\"b"`, "\"\xff1.5\"",
	}
	seen := map[jsonrpc.ID]string{}
	for _, id := range ids {
		for _, msg := range []string{
			`{"jsonrpc":"2.0","id":` + id + `,"method":"ping"}`,
			`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`,
		} {
			m, err := Decode([]byte(msg))
			if err != nil {
				t.Fatalf("%s: %v", msg, err)
			}
			out, err := Encode(m)
			if err != nil {
				t.Fatalf("%s: %v", msg, err)
			}
			if !bytes.Contains(out, []byte(`"id":`+id+`,`)) {
				t.Errorf("id %s came back as %s", id, out)
			}
		}
		m, _ := Decode([]byte(`{"jsonrpc":"2.0","id":` + id + `,"method":"ping"}`))
		key := m.(*jsonrpc.Request).ID
		if other, dup := seen[key]; dup {
			t.Errorf("ids %s and %s are one id", other, id)
		}
		seen[key] = id
	}
	// The ids the SDK's type holds exactly stay plain, so that Airlock's
	// own code and the SDK read them as usual.
	for id, want := range map[string]any{`1`: int64(1), `-9007199254740992`: int64(-1 << 53), `"abc"`: "abc"} {
		m, _ := Decode([]byte(`{"jsonrpc":"2.0","id":` + id + `,"method":"ping"}`))
		if got := m.(*jsonrpc.Request).ID.Raw(); got != want {
			t.Errorf("id %s: %#v, want %#v", id, got, want)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	for name, c := range map[string]string{
		"not JSON":          `{"jsonrpc":"2.0",`,
		"not an object":     `[1,2]`,
		"wrong version":     `{"jsonrpc":"1.0","id":1,"method":"x"}`,
		"response no id":    `{"jsonrpc":"2.0","result":{}}`,
		"method twice":      `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`,
		"id of other type":  `{"jsonrpc":"2.0","id":{},"method":"x"}`,
		"method not string": `{"jsonrpc":"2.0","id":1,"method":5}`,
		"error code twice":  `{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"a","code":2}}`,
		"error not object":  `{"jsonrpc":"2.0","id":1,"error":"oops"}`,
	} {
		if m, err := Decode([]byte(c)); err == nil {
			t.Errorf("%s: decoded %+v", name, m)
		}
	}
}

// An error object is read by its exact member names, as the envelope is.
func TestDecodeErrorExactNames(t *testing.T) {
	m, err := Decode([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"real","Message":"decoy","Code":7}}`))
	if err != nil {
		t.Fatal(err)
	}
	we := m.(*jsonrpc.Response).Error.(*jsonrpc.Error)
	if we.Code != -1 || we.Message != "real" {
		t.Errorf("read %+v", we)
	}
}

// Encode round-trips through Decode, and keeps a message on one line.
func TestEncode(t *testing.T) {
	for _, c := range codecCases {
		m, err := Decode([]byte(c))
		if err != nil {
			t.Fatal(err)
		}
		data, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.ContainsAny(data, "\n\r") || !json.Valid(data) {
			t.Fatalf("encoded %q", data)
		}
		back, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := Encode(back)
		if !bytes.Equal(data, again) {
			t.Fatalf("round trip:\n%s\n%s", data, again)
		}
		sdk, _ := jsonrpc.EncodeMessage(withID(m, sameID))
		data, _ = Encode(withID(m, sameID))
		var a, b any
		json.Unmarshal(data, &a)
		json.Unmarshal(sdk, &b)
		if ja, jb := mustJSON(a), mustJSON(b); ja != jb {
			t.Fatalf("means something else than the SDK's encoding:\n%s\n%s", data, sdk)
		}
	}
	pretty := &jsonrpc.Request{Method: "x", Params: json.RawMessage("{\n  \"a\": 1\n}")}
	data, _ := Encode(pretty)
	if string(data) != `{"jsonrpc":"2.0","method":"x","params":{"a":1}}` {
		t.Errorf("pretty params: %s", data)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func FuzzDecode(f *testing.F) {
	for _, c := range codecCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstSDK(t, data)
		if m, err := Decode(data); err == nil {
			out, err := Encode(m)
			if err != nil || bytes.ContainsAny(out, "\n\r") || !json.Valid(out) {
				t.Fatalf("%q encoded as %q, %v", data, out, err)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	data := []byte(codecCases[0])
	b.Run("sdk", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			jsonrpc.DecodeMessage(data)
		}
	})
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			Decode(data)
		}
	})
}
