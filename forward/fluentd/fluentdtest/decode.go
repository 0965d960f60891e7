package fluentdtest

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Mode is the carrier mode of a request.
type Mode int

// The carrier modes of the Forward protocol.
const (
	Message Mode = iota + 1
	Forward
	PackedForward
	CompressedPackedForward
)

func (m Mode) String() string {
	switch m {
	case Message:
		return "Message"
	case Forward:
		return "Forward"
	case PackedForward:
		return "PackedForward"
	case CompressedPackedForward:
		return "CompressedPackedForward"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Event is one event as received.
type Event struct {
	Tag  string
	Time time.Time
	// EventTime is set when the time came as EventTime, not integer seconds.
	EventTime bool
	// Record holds the record with msgpack str as string, bin as []byte,
	// integers as int64 (uint64 beyond), floats as float64, arrays as []any
	// and maps as map[string]any.
	Record map[string]any
}

// Request is one request as received.
type Request struct {
	// Conn numbers the connection the request came on, from 1.
	Conn int
	Mode Mode
	Tag  string
	// Events are the request's events, in order.
	Events []Event
	// Option is the option map, nil when the request had none.
	Option map[string]any
	// Size is the size option, -1 when absent.
	Size int
	// Chunk is the chunk option, "" when absent.
	Chunk string
	// StrEntries is set when PackedForward entries came as msgpack str,
	// which the specification allows but discourages.
	StrEntries bool
	// Bytes is the encoded size of the request.
	Bytes int
	// At is when the Server received it.
	At time.Time
}

// Parse decodes one encoded request strictly, as a Server does, and returns
// it with the deviations from the specification it found. The request is
// nil when it could not be understood at all (heartbeats included: a
// Server handles msgpack nil before calling Parse).
func Parse(raw []byte) (*Request, []error) {
	p := &parser{}
	req := p.request(raw)
	return req, p.errs
}

type parser struct {
	errs []error
}

func (p *parser) fail(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

func (p *parser) request(b []byte) *Request {
	req := &Request{Size: -1, Bytes: len(b)}
	if t := msgp.NextType(b); t != msgp.ArrayType {
		p.fail("request is a msgpack %v, not an array", t)
		return nil
	}
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		p.fail("request array: %v", err)
		return nil
	}
	if n < 2 || n > 4 {
		p.fail("request array has %d elements, want 2 to 4", n)
		return nil
	}
	if t := msgp.NextType(b); t != msgp.StrType {
		p.fail("tag is a msgpack %v, not a str", t)
		return nil
	}
	req.Tag, b, err = msgp.ReadStringBytes(b)
	if err != nil {
		p.fail("tag: %v", err)
		return nil
	}
	// The carrier mode is told by the second element.
	second := b
	var entries []byte
	switch t := msgp.NextType(b); {
	case t == msgp.ArrayType:
		req.Mode = Forward
		if n > 3 {
			p.fail("Forward request has %d elements, want 2 or 3", n)
			return nil
		}
		if b, err = msgp.Skip(b); err != nil {
			p.fail("Forward entries: %v", err)
			return nil
		}
	case t == msgp.StrType || t == msgp.BinType:
		req.Mode = PackedForward
		req.StrEntries = t == msgp.StrType
		if n > 3 {
			p.fail("PackedForward request has %d elements, want 2 or 3", n)
			return nil
		}
		if entries, b, err = msgp.ReadBytesZC(b); err != nil && t == msgp.StrType {
			var s string
			s, b, err = msgp.ReadStringBytes(second)
			entries = []byte(s)
		}
		if err != nil {
			p.fail("PackedForward entries: %v", err)
			return nil
		}
	case isTime(b):
		req.Mode = Message
		if n < 3 {
			p.fail("Message request has %d elements, want 3 or 4", n)
			return nil
		}
		ev, rest := p.timeRecord(req.Tag, b)
		if rest == nil {
			return nil
		}
		req.Events = []Event{*ev}
		b = rest
	default:
		p.fail("second element is a msgpack %v: not a time, an array, a bin or a str", t)
		return nil
	}
	hasOption := (req.Mode == Message && n == 4) || (req.Mode != Message && n == 3)
	if hasOption {
		if b = p.option(req, b); b == nil {
			return nil
		}
	}
	if len(b) != 0 {
		p.fail("%d bytes after the request", len(b))
	}
	compressed, _ := req.Option["compressed"].(string)
	switch req.Mode {
	case Message:
		if compressed == "gzip" {
			p.fail(`option compressed "gzip" on a Message request`)
		}
	case Forward:
		m, rest, _ := msgp.ReadArrayHeaderBytes(second)
		for i := range m {
			ev, r := p.entry(req.Tag, rest, int(i))
			if r == nil {
				return req
			}
			req.Events = append(req.Events, *ev)
			rest = r
		}
		if compressed == "gzip" {
			p.fail(`option compressed "gzip" on a Forward request`)
		}
	case PackedForward:
		if compressed == "gzip" {
			req.Mode = CompressedPackedForward
			if req.StrEntries {
				p.fail("CompressedPackedForward entries must be bin, not str")
			}
			zr, err := gzip.NewReader(bytes.NewReader(entries))
			if err != nil {
				p.fail("CompressedPackedForward entries: %v", err)
				return req
			}
			plain, err := io.ReadAll(zr) // concatenated gzip members too
			if err != nil {
				p.fail("CompressedPackedForward entries: %v", err)
				return req
			}
			entries = plain
		}
		for i := 0; len(entries) > 0; i++ {
			ev, rest := p.entry(req.Tag, entries, i)
			if rest == nil {
				return req
			}
			req.Events = append(req.Events, *ev)
			entries = rest
		}
	}
	if req.Size >= 0 && req.Size != len(req.Events) {
		p.fail("option size is %d, but the request has %d events", req.Size, len(req.Events))
	}
	return req
}

// option parses the option map into req, returning what follows it (nil
// on a fatal error).
func (p *parser) option(req *Request, b []byte) []byte {
	if t := msgp.NextType(b); t != msgp.MapType {
		p.fail("option is a msgpack %v, not a map", t)
		return nil
	}
	v, rest := p.value(b, "option")
	if rest == nil {
		return nil
	}
	req.Option = v.(map[string]any)
	for k, v := range req.Option {
		switch k {
		case "size":
			switch n := v.(type) {
			case int64:
				if n < 0 {
					p.fail("option size %d is negative", n)
				}
				req.Size = int(n)
			case uint64:
				req.Size = int(n)
			default:
				p.fail("option size is a %T, not an integer", v)
			}
		case "chunk":
			s, ok := v.(string)
			if !ok {
				p.fail("option chunk is a %T, not a str", v)
				break
			}
			req.Chunk = s
			if id, err := base64.StdEncoding.DecodeString(s); err != nil || len(id) != 16 {
				p.fail("option chunk %q is not the base64 of 128 bits", s)
			}
		case "compressed":
			if _, ok := v.(string); !ok {
				p.fail("option compressed is a %T, not a str", v)
			}
		}
		// Other keys are allowed: "Server MAY just ignore any options".
	}
	return rest
}

// entry parses the i-th [time, record] entry.
func (p *parser) entry(tag string, b []byte, i int) (*Event, []byte) {
	if t := msgp.NextType(b); t != msgp.ArrayType {
		p.fail("entry %d is a msgpack %v, not an array", i, t)
		return nil, nil
	}
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		p.fail("entry %d: %v", i, err)
		return nil, nil
	}
	if n != 2 {
		p.fail("entry %d has %d elements, want 2 (time, record)", i, n)
		return nil, nil
	}
	return p.timeRecord(tag, b)
}

// timeRecord parses a time then a record.
func (p *parser) timeRecord(tag string, b []byte) (*Event, []byte) {
	ev := &Event{Tag: tag}
	var ok bool
	if ev.Time, ev.EventTime, b, ok = p.time(b); !ok {
		return nil, nil
	}
	if t := msgp.NextType(b); t != msgp.MapType {
		p.fail("record is a msgpack %v, not a map", t)
		return nil, nil
	}
	v, rest := p.value(b, "record")
	if rest == nil {
		return nil, nil
	}
	ev.Record = v.(map[string]any)
	return ev, rest
}

// isTime reports whether b starts with an integer or an extension, the two
// encodings of a time.
func isTime(b []byte) bool {
	switch msgp.NextType(b) {
	case msgp.IntType, msgp.UintType, msgp.ExtensionType, msgp.TimeType, msgp.Complex64Type, msgp.Complex128Type:
		return true
	}
	return false
}

// time parses integer seconds or EventTime: ext type 0 with 8 bytes as
// fixext8 or ext8, 32-bit big-endian seconds then nanoseconds.
func (p *parser) time(b []byte) (t time.Time, eventTime bool, rest []byte, ok bool) {
	switch msgp.NextType(b) {
	case msgp.IntType:
		sec, rest, err := msgp.ReadInt64Bytes(b)
		if err != nil {
			p.fail("time: %v", err)
			return t, false, nil, false
		}
		if sec < 0 {
			p.fail("time %d is before the epoch", sec)
		}
		return time.Unix(sec, 0), false, rest, true
	case msgp.UintType:
		sec, rest, err := msgp.ReadUint64Bytes(b)
		if err != nil {
			p.fail("time: %v", err)
			return t, false, nil, false
		}
		return time.Unix(int64(sec), 0), false, rest, true
	}
	var data []byte
	switch {
	case len(b) >= 10 && b[0] == 0xd7 && b[1] == eventTimeType:
		data, rest = b[2:10], b[10:]
	case len(b) >= 11 && b[0] == 0xc7 && b[1] == 8 && b[2] == eventTimeType:
		data, rest = b[3:11], b[11:]
	default:
		p.fail("time is neither an integer nor EventTime (ext type 0, 8 bytes): % x", b[:min(len(b), 3)])
		return t, false, nil, false
	}
	sec, nsec := binary.BigEndian.Uint32(data[:4]), binary.BigEndian.Uint32(data[4:])
	if nsec >= 1e9 {
		p.fail("EventTime nanoseconds %d are not below 1e9", nsec)
	}
	return time.Unix(int64(sec), int64(nsec)), true, rest, true
}

const eventTimeType = 0

// value decodes any msgpack value; maps must have str keys, once each.
// what names the value in errors. rest is nil on a fatal error.
func (p *parser) value(b []byte, what string) (v any, rest []byte) {
	var err error
	switch t := msgp.NextType(b); t {
	case msgp.StrType:
		v, rest, err = msgp.ReadStringBytes(b)
	case msgp.BinType:
		v, rest, err = msgp.ReadBytesBytes(b, nil)
	case msgp.IntType:
		v, rest, err = msgp.ReadInt64Bytes(b)
	case msgp.UintType:
		v, rest, err = msgp.ReadUint64Bytes(b)
	case msgp.Float64Type:
		v, rest, err = msgp.ReadFloat64Bytes(b)
	case msgp.Float32Type:
		var f float32
		f, rest, err = msgp.ReadFloat32Bytes(b)
		v = float64(f)
	case msgp.BoolType:
		v, rest, err = msgp.ReadBoolBytes(b)
	case msgp.NilType:
		rest, err = msgp.ReadNilBytes(b)
	case msgp.ArrayType:
		var n uint32
		if n, rest, err = msgp.ReadArrayHeaderBytes(b); err != nil {
			break
		}
		a := make([]any, 0, min(n, 1024))
		for i := range n {
			var e any
			if e, rest = p.value(rest, fmt.Sprintf("%s[%d]", what, i)); rest == nil {
				return nil, nil
			}
			a = append(a, e)
		}
		return a, rest
	case msgp.MapType:
		var n uint32
		if n, rest, err = msgp.ReadMapHeaderBytes(b); err != nil {
			break
		}
		m := make(map[string]any, min(n, 1024))
		for range n {
			if kt := msgp.NextType(rest); kt != msgp.StrType {
				p.fail("%s has a key that is a msgpack %v, not a str", what, kt)
				return nil, nil
			}
			var k string
			if k, rest, err = msgp.ReadStringBytes(rest); err != nil {
				p.fail("%s key: %v", what, err)
				return nil, nil
			}
			if _, dup := m[k]; dup {
				p.fail("%s has the key %q twice", what, k)
			}
			var e any
			if e, rest = p.value(rest, what+"."+k); rest == nil {
				return nil, nil
			}
			m[k] = e
		}
		return m, rest
	default:
		// Extensions: kept raw; EventTime is not expected inside records.
		typeAt := map[byte]int{0xd4: 1, 0xd5: 1, 0xd6: 1, 0xd7: 1, 0xd8: 1, 0xc7: 2, 0xc8: 3, 0xc9: 5}
		i, ok := 0, false
		if len(b) > 0 {
			i, ok = typeAt[b[0]]
		}
		if !ok || len(b) <= i {
			p.fail("%s: unexpected msgpack %v", what, t)
			return nil, nil
		}
		raw := &msgp.RawExtension{Type: int8(b[i])}
		rest, err = msgp.ReadExtensionBytes(b, raw)
		v = raw
	}
	if err != nil {
		p.fail("%s: %v", what, err)
		return nil, nil
	}
	if rest == nil {
		rest = []byte{}
	}
	return v, rest
}
