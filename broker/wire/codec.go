package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

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
	seen := map[string]bool{}
	for i := 1; ; {
		i = skipSpace(data, i)
		if data[i] == '}' {
			break
		}
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		keyEnd := skipString(data, i)
		var key string
		if err := json.Unmarshal(data[i:keyEnd], &key); err != nil {
			return nil, fmt.Errorf("unmarshaling jsonrpc message: %w", err)
		}
		i = skipSpace(data, keyEnd)
		i = skipSpace(data, i+1) // the colon
		end := skipValue(data, i)
		value := data[i:end]
		i = end
		if seen[key] {
			return nil, fmt.Errorf("unmarshaling jsonrpc message: member %q appears twice", key)
		}
		seen[key] = true
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
		var we jsonrpc.Error
		if err := json.Unmarshal(e, &we); err != nil {
			return nil, fmt.Errorf("unmarshaling jsonrpc message: error: %w", err)
		}
		resp.Error = &we
	}
	return resp, nil
}

// nullAsAbsent treats an error member whose value is null as missing, as
// the SDK's decoder does.
func nullAsAbsent(v []byte) json.RawMessage {
	if v == nil || string(v) == "null" {
		return nil
	}
	return v
}

// decodeID reads a request id: absent or null (none), a string, or a
// number, which must be an integer.
func decodeID(raw []byte) (jsonrpc.ID, error) {
	if raw == nil || string(raw) == "null" {
		return jsonrpc.ID{}, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return jsonrpc.ID{}, err
		}
		return jsonrpc.MakeID(s)
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil && n >= -(1<<53) && n <= 1<<53 {
		return jsonrpc.MakeID(float64(n))
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return jsonrpc.ID{}, fmt.Errorf("JSON RPC parse error: id %s is not a string or a number", raw)
	}
	return jsonrpc.MakeID(f)
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
