// Package document builds the JSON document of a log line as Elasticsearch
// gets it, and as the object-storage archive keeps it: the record of
// Docker's fluentd driver with "@timestamp" and "@log_name" as
// fluent-plugin-elasticsearch adds them, so that existing index patterns,
// and tools reading either, keep working. Encoding is the hot path of
// both destinations: it appends to a caller's buffer and allocates
// nothing for a whole line.
package document

import (
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logferry/logferry/forward"
)

// Fields of every document, named as fluent-plugin-elasticsearch names them
// for records of Docker's fluentd driver (logstash_format, include_tag_key,
// tag_key @log_name), so that existing index patterns keep working; all but
// @timestamp and @log_name are the keys of that record, which the Fluentd
// destination sends too. Every value Docker sends is a string:
// container_name keeps the leading "/" of Docker's container name,
// partial_message is "true", partial_ordinal a decimal number and
// partial_last "true" or "false".
const (
	FieldTimestamp     = "@timestamp"
	FieldLog           = "log"
	FieldSource        = "source"
	FieldContainerID   = "container_id"
	FieldContainerName = "container_name"
	FieldLogName       = "@log_name"
	// Pieces of a line dockerd split, as Docker's fluentd driver marks them.
	FieldPartialMessage = "partial_message"
	FieldPartialID      = "partial_id"
	FieldPartialOrdinal = "partial_ordinal"
	FieldPartialLast    = "partial_last"
)

// PartialFields mark the pieces of a split line, in the order Docker's
// fluentd driver adds them.
var PartialFields = []string{FieldPartialMessage, FieldPartialID, FieldPartialOrdinal, FieldPartialLast}

// timestampLayout is RFC 3339 to the second, in UTC, with the dot before
// the nine digits of nanoseconds that follow it.
const timestampLayout = "2006-01-02T15:04:05."

// docLayout is what every document of a container has, whole line or
// piece (newDocLayout's partial), encoded once.
//
// Documents are the record Docker's fluentd driver (and the Fluentd sink)
// sends, plus "@timestamp" and "@log_name" as fluent-plugin-elasticsearch
// adds them. Docker builds that record as a map: "container_id",
// "container_name", "source" and "log" first, then the selected labels and
// env, which replace those of the same name, then the partial_* fields of
// a piece, which replace labels of the same name. "@timestamp" and
// "@log_name" are the sink's own: a label cannot replace them (the index
// is chosen on "@timestamp", and include_tag_key sets "@log_name" after
// the record is built). With log-format=json, the fields of a JSON line
// are added when the document does not have them already.
type docLayout struct {
	// log and source are set when the event's line and stream are the
	// values of "log" and "source" (no label replaces them).
	log, source bool
	// fixed holds `,"key":"value"` for container_id, container_name,
	// @log_name and the labels and env, in that order (labels and env in
	// key order, with those that replace the container's fields).
	fixed []byte
	// keys are the document's fields, which a JSON line cannot replace.
	keys map[string]bool
}

func newDocLayout(c forward.Container, partial bool) docLayout {
	l := docLayout{keys: map[string]bool{FieldTimestamp: true, FieldLogName: true}}
	extra := maps.Clone(c.Extra)
	delete(extra, FieldTimestamp)
	delete(extra, FieldLogName)
	if partial {
		for _, k := range PartialFields {
			delete(extra, k)
			l.keys[k] = true
		}
	}
	b := l.fixed
	own := func(k, v string) {
		if _, replaced := extra[k]; !replaced {
			b = appendField(b, k, v)
			l.keys[k] = true
		}
	}
	own(FieldContainerID, c.ID)
	// As Docker's fluentd driver sends it: with the leading "/".
	own(FieldContainerName, "/"+strings.TrimPrefix(c.Name, "/"))
	b = appendField(b, FieldLogName, c.Tag)
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		b = appendField(b, k, extra[k])
		l.keys[k] = true
	}
	l.fixed = b
	_, replaced := extra[FieldLog]
	l.log = !replaced
	_, replaced = extra[FieldSource]
	l.source = !replaced
	l.keys[FieldLog], l.keys[FieldSource] = true, true
	return l
}

// appendField appends `,"key":"value"`.
func appendField[T string | []byte](b []byte, key string, value T) []byte {
	b = append(b, ',')
	b = AppendString(b, key)
	b = append(b, ':')
	return AppendString(b, value)
}

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string, as encoding/json would without
// HTML escaping: invalid UTF-8 becomes U+FFFD.
func AppendString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Most lines are plain ASCII: pass 8 bytes at a time.
		for i+8 <= len(s) && plain8(uint64(s[i])|uint64(s[i+1])<<8|uint64(s[i+2])<<16|uint64(s[i+3])<<24|
			uint64(s[i+4])<<32|uint64(s[i+5])<<40|uint64(s[i+6])<<48|uint64(s[i+7])<<56) {
			i += 8
		}
		if i == len(s) {
			break
		}
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

// plain8 reports whether none of the 8 bytes of x needs escaping in a JSON
// string or is outside ASCII: no control character, '"', '\\' or byte of
// 0x80 or more. Each term has its high bit set in some byte exactly when
// some byte of x is such a byte.
func plain8(x uint64) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	below := (x - 0x20*ones) &^ x // a byte below 0x20
	quote := x ^ '"'*ones
	quote = (quote - ones) &^ quote // a byte equal to '"'
	slash := x ^ '\\'*ones
	slash = (slash - ones) &^ slash // a byte equal to '\\'
	return (below|quote|slash|x)&highs == 0
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
		return AppendString(b, v)
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
			b = AppendString(b, k)
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

// Encoder builds the documents of one container's lines. Not safe for
// concurrent use.
type Encoder struct {
	parseJSON    bool
	whole, piece docLayout
	// sec is the Unix second of the previous document's time, and clock
	// its formatted date and clock, up to the nanoseconds.
	sec   int64
	clock []byte
	// lastSource is the stream of the previous document, and sourceField
	// its "source" field.
	lastSource  string
	sourceField []byte
}

// NewEncoder returns an Encoder for the lines of c; with jsonFields
// (log-format=json) the fields of a line that is one JSON object are
// added to its document.
func NewEncoder(c forward.Container, jsonFields bool) *Encoder {
	return &Encoder{
		parseJSON: jsonFields,
		whole:     newDocLayout(c, false),
		piece:     newDocLayout(c, true),
		sec:       math.MinInt64,
	}
}

// Append appends the document of ev to b, without a newline:
//
//	{"@timestamp":…,"log":…,"source":…,"container_id":…,"container_name":…,
//	 "@log_name":…, labels and env…, partial_*…, fields of a JSON line…}
//
// with the labels and env, and the fields of a JSON line, in key order;
// see docLayout for the fields a label replaces.
func (e *Encoder) Append(b []byte, ev *forward.Event) []byte {
	l := &e.whole
	if ev.Partial != nil {
		l = &e.piece
	}
	b = append(b, `{"`+FieldTimestamp+`":"`...)
	b = e.appendTime(b, ev.Time)
	b = append(b, '"')
	if l.log {
		b = append(b, `,"`+FieldLog+`":`...)
		b = AppendString(b, ev.Line)
	}
	if l.source {
		if ev.Source != e.lastSource || e.sourceField == nil {
			e.lastSource = ev.Source
			e.sourceField = appendField(e.sourceField[:0], FieldSource, ev.Source)
		}
		b = append(b, e.sourceField...)
	}
	b = append(b, l.fixed...)
	if p := ev.Partial; p != nil {
		b = appendField(b, FieldPartialMessage, "true")
		b = appendField(b, FieldPartialID, p.ID)
		b = append(b, `,"`+FieldPartialOrdinal+`":"`...)
		b = strconv.AppendInt(b, int64(p.Ordinal), 10)
		b = append(b, `","`+FieldPartialLast+`":"`...)
		b = strconv.AppendBool(b, p.Last)
		b = append(b, '"')
	}
	if e.parseJSON {
		if fields, ok := forward.JSONFields(ev.Line); ok {
			keys := make([]string, 0, len(fields))
			for k := range fields {
				if !l.keys[k] {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				b = append(b, ',')
				b = AppendString(b, k)
				b = append(b, ':')
				b = appendValue(b, fields[k])
			}
		}
	}
	return append(b, '}')
}

// appendTime appends t in UTC as RFC 3339 with all nine digits of
// nanoseconds; the date and clock are formatted once a second.
func (e *Encoder) appendTime(b []byte, t time.Time) []byte {
	if sec := t.Unix(); sec != e.sec {
		e.sec = sec
		e.clock = t.UTC().AppendFormat(e.clock[:0], timestampLayout)
	}
	b = append(b, e.clock...)
	ns := t.Nanosecond()
	var digits [9]byte
	for i := len(digits) - 1; i >= 0; i-- {
		digits[i] = byte('0' + ns%10)
		ns /= 10
	}
	b = append(b, digits[:]...)
	return append(b, 'Z')
}
