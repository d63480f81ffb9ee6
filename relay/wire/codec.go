package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Decode reads one JSON-RPC message, like jsonrpc.DecodeMessage, with two
// differences that matter to a relay. It allocates one copy of data and
// slices params, result and error data out of it, where the SDK's decoder
// allocates a 32 KiB read buffer per message (which made the garbage
// collector Airlock's main cost). And it is strict where a relay must be:
// member names are exact, so a duplicated "method" or "id" is refused
// rather than resolved one way here and maybe another way by the peer, and
// nothing may follow the message.
func Decode(data []byte) (jsonrpc.Message, error) {
	if !json.Valid(data) {
		// The standard decoder says what is wrong, and where.
		var v any
		err := json.Unmarshal(data, &v)
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, fmt.Errorf("unmarshaling jsonrpc message: %w", err)
	}
	data = bytes.Clone(bytes.TrimSpace(data))
	if len(data) == 0 || data[0] != '{' {
		return nil, errors.New("unmarshaling jsonrpc message: not a JSON object")
	}
	var version, id, method, params, result, errorRaw []byte
	err := eachMember(data, func(key string, value []byte) {
		switch key {
		case "jsonrpc":
			version = value
		case "id":
			id = value
		case "method":
			method = value
		case "params":
			params = value
		case "result":
			result = value
		case "error":
			errorRaw = value
		}
	})
	if err != nil {
		return nil, fmt.Errorf("unmarshaling jsonrpc message: %w", err)
	}
	if string(version) != `"2.0"` {
		var v string
		json.Unmarshal(version, &v)
		return nil, fmt.Errorf("invalid message version tag %q; expected %q", v, "2.0")
	}
	msgID, err := decodeID(id)
	if err != nil {
		return nil, err
	}
	if method != nil {
		var m string
		if err := json.Unmarshal(method, &m); err != nil {
			return nil, fmt.Errorf("unmarshaling jsonrpc message: method: %w", err)
		}
		return &jsonrpc.Request{ID: msgID, Method: m, Params: params}, nil
	}
	if !msgID.IsValid() {
		return nil, errors.New("JSON RPC invalid request: a response needs an id")
	}
	resp := &jsonrpc.Response{ID: msgID, Result: result}
	if e := nullAsAbsent(errorRaw); e != nil {
		we, err := decodeError(e)
		if err != nil {
			return nil, fmt.Errorf("unmarshaling jsonrpc message: error: %w", err)
		}
		resp.Error = we
	}
	return resp, nil
}

// eachMember calls fn with each member of the JSON object obj, which
// json.Valid has accepted, by its exact name. A name that appears twice is
// refused: a peer may keep the first where Airlock kept the last.
func eachMember(obj []byte, fn func(key string, value []byte)) error {
	seen := map[string]bool{}
	for i := 1; ; {
		i = skipSpace(obj, i)
		if obj[i] == '}' {
			return nil
		}
		if obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
		keyEnd := skipString(obj, i)
		var key string
		if err := json.Unmarshal(obj[i:keyEnd], &key); err != nil {
			return err
		}
		i = skipSpace(obj, keyEnd)
		i = skipSpace(obj, i+1) // the colon
		end := skipValue(obj, i)
		if seen[key] {
			return fmt.Errorf("member %q appears twice", key)
		}
		seen[key] = true
		fn(key, obj[i:end])
		i = end
	}
}

// decodeError reads a JSON-RPC error object by its exact member names, as
// the envelope is read: encoding/json would take "Message" or "messAge"
// for "message".
func decodeError(raw []byte) (*jsonrpc.Error, error) {
	if raw[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	var code, message, data []byte
	err := eachMember(raw, func(key string, value []byte) {
		switch key {
		case "code":
			code = value
		case "message":
			message = value
		case "data":
			data = value
		}
	})
	if err != nil {
		return nil, err
	}
	we := &jsonrpc.Error{Data: nullAsAbsent(data)}
	if code != nil {
		if err := json.Unmarshal(code, &we.Code); err != nil {
			return nil, fmt.Errorf("code: %w", err)
		}
	}
	if message != nil {
		if err := json.Unmarshal(message, &we.Message); err != nil {
			return nil, fmt.Errorf("message: %w", err)
		}
	}
	return we, nil
}

// nullAsAbsent treats an error member whose value is null as missing, as
// the SDK's decoder does.
func nullAsAbsent(v []byte) json.RawMessage {
	if v == nil || string(v) == "null" {
		return nil
	}
	return v
}

// decodeID reads a request id: absent or null (none), a string, or any
// JSON number. A peer must get back the id it sent, byte for byte, and two
// ids it sent apart must stay apart; jsonrpc.ID holds only an int64 or a
// string, and float64 on the way in (1.5 became 1, 2^53+1 became 2^53). So
// only the ids that the SDK's type holds exactly are converted: strings
// that need no escaping and integers of at most 2^53 written plainly.
// Every other id is kept as its exact text, in a string ID marked with a
// byte that no decoded string can hold (verbatimID).
func decodeID(raw []byte) (jsonrpc.ID, error) {
	if raw == nil || string(raw) == "null" {
		return jsonrpc.ID{}, nil
	}
	switch {
	case raw[0] == '"':
		if plainString(raw) {
			return jsonrpc.MakeID(string(raw[1 : len(raw)-1]))
		}
		return verbatimID(raw), nil
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		if plainInteger(raw) {
			if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil && n >= -(1<<53) && n <= 1<<53 {
				return jsonrpc.MakeID(float64(n))
			}
		}
		return verbatimID(raw), nil // json.Valid has checked the number's grammar
	}
	return jsonrpc.ID{}, fmt.Errorf("JSON RPC parse error: id %s is not a string or a number", raw)
}

// verbatimMark starts the string of an ID kept as its exact JSON text. It
// is not UTF-8, and a decoded JSON string always is (encoding/json
// replaces what is not), so no string id a peer sends can take this form.
const verbatimMark = "\xff"

func verbatimID(raw []byte) jsonrpc.ID {
	id, _ := jsonrpc.MakeID(verbatimMark + string(raw)) // a string is always a valid ID
	return id
}

// plainString reports whether a JSON string literal is its value in
// quotes: printable ASCII without escapes, so StringID(value) encodes back
// to the same bytes.
func plainString(lit []byte) bool {
	for _, c := range lit[1 : len(lit)-1] {
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

// plainInteger reports whether a JSON number is an integer written the way
// strconv.AppendInt writes it back: no fraction, no exponent, no "-0".
func plainInteger(num []byte) bool {
	digits := num
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] == '0' && (len(digits) > 1 || num[0] == '-') {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// The skip functions walk JSON that json.Valid has already accepted, so
// they need not check it again.

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at i.
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index just past the value starting at i.
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for ; i < len(data); i++ {
			switch data[i] {
			case '"':
				i = skipString(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	default: // number, true, false, null
		for ; i < len(data); i++ {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return i
	}
}

// Encode writes one JSON-RPC message on a single line, with params and
// results passed through as they came, compacted only when they hold a
// newline (which would end a stdio message early).
func Encode(msg jsonrpc.Message) ([]byte, error) {
	return AppendMessage(nil, msg)
}

// AppendMessage appends msg, encoded as Encode does, to buf.
func AppendMessage(buf []byte, msg jsonrpc.Message) ([]byte, error) {
	buf = append(buf, `{"jsonrpc":"2.0"`...)
	var err error
	switch m := msg.(type) {
	case *jsonrpc.Request:
		if m.ID.IsValid() {
			if buf, err = appendID(append(buf, `,"id":`...), m.ID); err != nil {
				return nil, err
			}
		}
		buf = append(buf, `,"method":`...)
		buf = appendString(buf, m.Method)
		if len(m.Params) > 0 {
			if buf, err = appendRaw(append(buf, `,"params":`...), m.Params); err != nil {
				return nil, err
			}
		}
	case *jsonrpc.Response:
		if buf, err = appendID(append(buf, `,"id":`...), m.ID); err != nil {
			return nil, err
		}
		if m.Error != nil {
			we, ok := m.Error.(*jsonrpc.Error)
			if !ok {
				we = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: m.Error.Error()}
				var inner *jsonrpc.Error
				if errors.As(m.Error, &inner) {
					we.Code = inner.Code
				}
			}
			e, err := json.Marshal(we)
			if err != nil {
				return nil, err
			}
			buf = append(append(buf, `,"error":`...), e...)
		} else {
			result := m.Result
			if len(result) == 0 {
				result = json.RawMessage("null")
			}
			if buf, err = appendRaw(append(buf, `,"result":`...), result); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("wire: cannot encode %T", msg)
	}
	return append(buf, '}'), nil
}

func appendID(buf []byte, id jsonrpc.ID) ([]byte, error) {
	switch v := id.Raw().(type) {
	case nil:
		return append(buf, "null"...), nil
	case int64:
		return strconv.AppendInt(buf, v, 10), nil
	case string:
		if text, ok := strings.CutPrefix(v, verbatimMark); ok {
			return append(buf, text...), nil
		}
		return appendString(buf, v), nil
	default:
		return nil, fmt.Errorf("wire: id of type %T", v)
	}
}

func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			b, _ := json.Marshal(s) // rare: let the standard library escape it
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

func appendRaw(buf, raw []byte) ([]byte, error) {
	if bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		return append(buf, raw...), nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, fmt.Errorf("wire: encode: %w", err)
	}
	return append(buf, b.Bytes()...), nil
}
