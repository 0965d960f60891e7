package elasticsearch

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/logferry/logferry/forward"
)

// Fields of every document, named as fluent-plugin-elasticsearch names them
// for records of Docker's fluentd driver (logstash_format, include_tag_key,
// tag_key @log_name), so that existing index patterns keep working.
const (
	fieldTimestamp     = "@timestamp"
	fieldLog           = "log"
	fieldSource        = "source"
	fieldContainerID   = "container_id"
	fieldContainerName = "container_name"
	fieldLogName       = "@log_name"
	// Pieces of a line dockerd split, as Docker's fluentd driver marks them.
	fieldPartialMessage = "partial_message"
	fieldPartialID      = "partial_id"
	fieldPartialOrdinal = "partial_ordinal"
	fieldPartialLast    = "partial_last"
)

// reserved are the fields the sink sets itself: neither Extra nor the
// fields of a JSON line can replace them.
var reserved = []string{
	fieldTimestamp, fieldLog, fieldSource, fieldContainerID, fieldContainerName, fieldLogName,
	fieldPartialMessage, fieldPartialID, fieldPartialOrdinal, fieldPartialLast,
}

// timestampLayout is RFC 3339 with all nine digits of nanoseconds, in UTC.
const timestampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// item is an event waiting in the queue, with its place in the stream.
type item struct {
	ev forward.Event
	// seq counts the earlier events of the stream with the same time, so
	// that identical lines logged in the same nanosecond get distinct ids.
	seq uint32
}

// action is one create action of a _bulk request.
type action struct {
	index string
	id    string
	doc   string
	// size is what the action adds to the body: two lines and newlines.
	size int
	// tok is the buffer token of the event, to acknowledge once the
	// document is settled (0 for a memory queue).
	tok uint64
}

// actionOverhead is the length of `{"create":{"_index":"","_id":""}}` and
// the two newlines around a document.
const actionOverhead = len(`{"create":{"_index":"","_id":""}}`) + 2

// encoder turns items into actions. Not safe for concurrent use: each
// worker has its own.
type encoder struct {
	containerID string
	parseJSON   bool
	index       *indexCache
	// fixed holds the container fields and Extra, encoded once: they are
	// the same in every document.
	fixed []byte
	// keys are the reserved fields and those of Extra, which the fields of
	// a JSON line cannot replace.
	keys map[string]bool
	// buf is reused for each document.
	buf []byte
}

func newEncoder(c forward.Container, p *indexPattern, parseJSON bool) *encoder {
	e := &encoder{
		containerID: c.ID,
		parseJSON:   parseJSON,
		index:       newIndexCache(p),
		keys:        make(map[string]bool, len(reserved)+len(c.Extra)),
	}
	for _, k := range reserved {
		e.keys[k] = true
	}
	b := e.fixed
	b = appendField(b, fieldContainerID, c.ID)
	// As Docker's fluentd driver sends it, so that documents match those
	// of the Fluentd pipeline: with the leading "/".
	b = appendField(b, fieldContainerName, "/"+c.Name)
	b = appendField(b, fieldLogName, c.Tag)
	extra := make([]string, 0, len(c.Extra))
	for k := range c.Extra {
		if !e.keys[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		b = appendField(b, k, c.Extra[k])
		e.keys[k] = true
	}
	e.fixed = b
	return e
}

// encode returns the action that creates the document of it. The document is
//
//	{"@timestamp":…,"log":…,"source":…,"container_id":…,"container_name":…,
//	 "@log_name":…, Extra…, partial_*…, fields of a JSON line…}
//
// with Extra and the fields of a JSON line in key order.
func (e *encoder) encode(it *item) action {
	ev := &it.ev
	b := append(e.buf[:0], `{"`+fieldTimestamp+`":"`...)
	b = ev.Time.UTC().AppendFormat(b, timestampLayout)
	b = append(b, '"')
	b = appendField(b, fieldLog, ev.Line)
	b = appendField(b, fieldSource, ev.Source)
	b = append(b, e.fixed...)
	if p := ev.Partial; p != nil {
		b = appendField(b, fieldPartialMessage, "true")
		b = appendField(b, fieldPartialID, p.ID)
		b = appendField(b, fieldPartialOrdinal, strconv.Itoa(p.Ordinal))
		b = appendField(b, fieldPartialLast, strconv.FormatBool(p.Last))
	}
	if e.parseJSON {
		if fields, ok := forward.JSONFields(ev.Line); ok {
			keys := make([]string, 0, len(fields))
			for k := range fields {
				if !e.keys[k] {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				b = append(b, ',')
				b = appendString(b, k)
				b = append(b, ':')
				b = appendValue(b, fields[k])
			}
		}
	}
	b = append(b, '}')
	e.buf = b

	a := action{
		index: e.index.name(ev.Time),
		id:    documentID(e.containerID, ev, it.seq),
		doc:   string(b),
	}
	a.size = actionOverhead + len(a.index) + len(a.id) + len(a.doc)
	return a
}

// documentID is the _id of an entry: the same entry always gets the same
// id, so that a replay is refused with 409 instead of indexed twice, and
// different entries of a container get different ids. An entry is known by
// its container, time, stream, place among the entries of the same time
// (seq) and, for a piece of a split line, the line's id and the ordinal.
// The line itself is left out: its identity is already there, and hashing
// 16 KiB pieces costs more than it buys.
func documentID(containerID string, ev *forward.Event, seq uint32) string {
	var stack [256]byte
	b := append(stack[:0], containerID...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(ev.Time.UnixNano()))
	b = append(b, ev.Source...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, seq)
	if p := ev.Partial; p != nil {
		b = append(b, 1)
		b = append(b, p.ID...)
		b = append(b, 0)
		b = binary.BigEndian.AppendUint64(b, uint64(p.Ordinal))
	}
	sum := sha256.Sum256(b)
	// 128 bits: 22 characters, as short as Elasticsearch's own ids.
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// appendField appends `,"key":"value"`.
func appendField[T string | []byte](b []byte, key string, value T) []byte {
	b = append(b, ',')
	b = appendString(b, key)
	b = append(b, ':')
	return appendString(b, value)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string, as encoding/json would without
// HTML escaping: invalid UTF-8 becomes U+FFFD.
func appendString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		var r rune
		var size int
		switch v := any(s).(type) {
		case string:
			r, size = utf8.DecodeRuneInString(v[i:])
		case []byte:
			r, size = utf8.DecodeRune(v[i:])
		}
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript readers.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendValue appends a value of forward.JSONFields as JSON, objects with
// their keys in order.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case string:
		return appendString(b, v)
	case json.Number:
		return append(b, v...)
	case float64:
		return strconv.AppendFloat(b, v, 'g', -1, 64)
	case []any:
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, x)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendValue(b, v[k])
		}
		return append(b, '}')
	default:
		// JSONFields produces none of these; keep the document valid.
		out, err := json.Marshal(v)
		if err != nil {
			return append(b, "null"...)
		}
		return append(b, out...)
	}
}
