package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Event is one server-sent event.
type Event struct {
	Type  string // "" means "message"
	ID    string
	Data  []byte
	Retry int // reconnection delay in ms, 0 if unset
}

// EventReader parses a text/event-stream body as the HTML standard defines
// it: lines end in LF, CRLF or CR; "data" lines accumulate; a blank line
// dispatches the event.
type EventReader struct {
	r       *bufio.Reader
	max     int
	pending []byte // the rest of a line split at a lone CR
	// LastID is the last event id seen, kept across events as the standard
	// asks, for resumption with Last-Event-ID.
	LastID string
}

// NewEventReader reads events from r, refusing events larger than max bytes
// (0 means DefaultMaxMessage).
func NewEventReader(r io.Reader, max int) *EventReader {
	if max <= 0 {
		max = DefaultMaxMessage
	}
	return &EventReader{r: bufio.NewReaderSize(r, 32<<10), max: max}
}

// Next returns the next event with data. At the end of the stream it
// returns io.EOF; an event cut off by the end of the stream is dropped, as
// the standard says.
func (er *EventReader) Next() (Event, error) {
	var ev Event
	var data bytes.Buffer
	hasData := false
	for {
		line, err := er.readLine()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			if !hasData {
				ev = Event{}
				continue
			}
			ev.Data = bytes.TrimSuffix(data.Bytes(), []byte("\n"))
			ev.ID = er.LastID
			return ev, nil
		}
		if line[0] == ':' {
			continue // comment, used as a keep-alive
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if data.Len()+len(value) > er.max {
				return Event{}, fmt.Errorf("wire: event larger than %d bytes", er.max)
			}
			data.Write(value)
			data.WriteByte('\n')
			hasData = true
		case "event":
			ev.Type = string(value)
		case "id":
			if !bytes.ContainsRune(value, 0) {
				er.LastID = string(value)
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 {
				ev.Retry = n
			}
		}
	}
}

// readLine returns the next line without its terminator. Lines are read up
// to LF in bulk; a lone CR inside splits them further, which only old or
// unusual servers produce.
func (er *EventReader) readLine() ([]byte, error) {
	if len(er.pending) > 0 {
		return er.splitCR(), nil
	}
	var line []byte
	for {
		chunk, err := er.r.ReadSlice('\n')
		if len(line)+len(chunk) > er.max+2 {
			return nil, fmt.Errorf("wire: event line larger than %d bytes", er.max)
		}
		line = append(line, chunk...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if bytes.IndexByte(line, '\r') < 0 {
		return line, nil
	}
	er.pending = line
	return er.splitCR(), nil
}

func (er *EventReader) splitCR() []byte {
	line, rest, found := bytes.Cut(er.pending, []byte("\r"))
	if found {
		er.pending = rest
	} else {
		er.pending = nil
	}
	return line
}

// AppendEvent appends a "message" event carrying data (a JSON-RPC message,
// which has no newlines) to buf.
func AppendEvent(buf []byte, id string, data []byte) []byte {
	buf = append(buf, "event: message\n"...)
	if id != "" {
		buf = append(buf, "id: "...)
		buf = append(buf, id...)
		buf = append(buf, '\n')
	}
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	return append(buf, "\n\n"...)
}
