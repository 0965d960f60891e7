package elasticsearch

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
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

// partialFields mark the pieces of a split line.
var partialFields = []string{fieldPartialMessage, fieldPartialID, fieldPartialOrdinal, fieldPartialLast}

// timestampLayout is RFC 3339 to the second, in UTC, with the dot before
// the nine digits of nanoseconds that follow it.
const timestampLayout = "2006-01-02T15:04:05."

// item is an event waiting in the queue, with its place in the stream.
type item struct {
	ev forward.Event
	// seq counts the earlier events of the stream with the same time, so
	// that identical lines logged in the same nanosecond get distinct ids.
	seq uint32
}

// action is one create action of a _bulk request: the two lines it adds
// to the body, and what the sink needs to know of them.
type action struct {
	index string
	// line is the action and its document, each ending with a newline:
	// exactly what the action adds to a _bulk body. It points into the
	// buffer of the batch the action was encoded in.
	line []byte
	// idAt and docAt are where the _id's value and the document start in
	// line; the _id ends 4 bytes before the document (`"}}\n`), the
	// document 1 byte before the end of line.
	idAt, docAt int
	// tok is the buffer token of the event, to acknowledge once the
	// document is settled (0 for a memory queue).
	tok uint64
}

// size is what a adds to a _bulk body, in bytes.
func (a *action) size() int { return len(a.line) }

// id returns the document's _id.
func (a *action) id() []byte { return a.line[a.idAt : a.docAt-len(idEnd)] }

// doc returns the document.
func (a *action) doc() []byte { return a.line[a.docAt : len(a.line)-1] }

// idEnd closes the action line after the _id's value.
const idEnd = "\"}}\n"

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
	l := docLayout{keys: map[string]bool{fieldTimestamp: true, fieldLogName: true}}
	extra := maps.Clone(c.Extra)
	delete(extra, fieldTimestamp)
	delete(extra, fieldLogName)
	if partial {
		for _, k := range partialFields {
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
	own(fieldContainerID, c.ID)
	// As Docker's fluentd driver sends it: with the leading "/".
	own(fieldContainerName, "/"+strings.TrimPrefix(c.Name, "/"))
	b = appendField(b, fieldLogName, c.Tag)
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		b = appendField(b, k, extra[k])
		l.keys[k] = true
	}
	l.fixed = b
	_, replaced := extra[fieldLog]
	l.log = !replaced
	_, replaced = extra[fieldSource]
	l.source = !replaced
	l.keys[fieldLog], l.keys[fieldSource] = true, true
	return l
}

// encoder turns items into actions. Not safe for concurrent use: the
// batcher has its own.
type encoder struct {
	containerID  string
	parseJSON    bool
	index        *indexCache
	whole, piece docLayout
	// lastIndex is the index of the previous action, and actionHead its
	// action line up to the _id's value.
	lastIndex  string
	actionHead []byte
	// sec is the Unix second of the previous document's time, and clock
	// its formatted date and clock, up to the nanoseconds.
	sec   int64
	clock []byte
	// lastSource is the stream of the previous document, and sourceField
	// its "source" field.
	lastSource  string
	sourceField []byte
	// over is what the previous action took beyond its line, for
	// estimate.
	over int
}

func newEncoder(c forward.Container, p *indexPattern, parseJSON bool) *encoder {
	return &encoder{
		containerID: c.ID,
		parseJSON:   parseJSON,
		index:       newIndexCache(p),
		whole:       newDocLayout(c, false),
		piece:       newDocLayout(c, true),
		sec:         math.MinInt64,
	}
}

// appendAction appends the create action of it, as the two lines it takes
// in a _bulk body, to b; the action returned points into the b returned.
// The document is
//
//	{"@timestamp":…,"log":…,"source":…,"container_id":…,"container_name":…,
//	 "@log_name":…, labels and env…, partial_*…, fields of a JSON line…}
//
// with the labels and env, and the fields of a JSON line, in key order;
// see docLayout for the fields a label replaces.
func (e *encoder) appendAction(b []byte, it *item) ([]byte, action) {
	ev := &it.ev
	start := len(b)
	a := action{index: e.index.name(ev.Time)}
	if a.index != e.lastIndex || e.actionHead == nil {
		e.lastIndex = a.index
		e.actionHead = append(appendString(append(e.actionHead[:0], `{"create":{"_index":`...), a.index), `,"_id":"`...)
	}
	b = append(b, e.actionHead...)
	idStart := len(b)
	b = appendDocumentID(b, e.containerID, ev, it.seq)
	b = append(b, idEnd...)

	docStart := len(b)
	l := &e.whole
	if ev.Partial != nil {
		l = &e.piece
	}
	b = append(b, `{"`+fieldTimestamp+`":"`...)
	b = e.appendTime(b, ev.Time)
	b = append(b, '"')
	if l.log {
		b = append(b, `,"`+fieldLog+`":`...)
		b = appendString(b, ev.Line)
	}
	if l.source {
		if ev.Source != e.lastSource || e.sourceField == nil {
			e.lastSource = ev.Source
			e.sourceField = appendField(e.sourceField[:0], fieldSource, ev.Source)
		}
		b = append(b, e.sourceField...)
	}
	b = append(b, l.fixed...)
	if p := ev.Partial; p != nil {
		b = appendField(b, fieldPartialMessage, "true")
		b = appendField(b, fieldPartialID, p.ID)
		b = append(b, `,"`+fieldPartialOrdinal+`":"`...)
		b = strconv.AppendInt(b, int64(p.Ordinal), 10)
		b = append(b, `","`+fieldPartialLast+`":"`...)
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
				b = appendString(b, k)
				b = append(b, ':')
				b = appendValue(b, fields[k])
			}
		}
	}
	b = append(b, '}', '\n')

	a.line = b[start:len(b):len(b)]
	a.idAt, a.docAt = idStart-start, docStart-start
	e.over = max(len(a.line)-len(ev.Line), 0)
	return b, a
}

// estimate returns about the most bytes the action of ev may take: what
// the previous action took beyond its line (the action line and fields,
// with log-format=json those of its JSON line too), and twice ev's line
// (escaped, and its JSON fields). It errs on the large side for most
// lines, but is no bound: a line of control characters takes six bytes
// for one.
func (e *encoder) estimate(ev *forward.Event) int {
	n := e.over + 2*len(ev.Line)
	if e.parseJSON {
		n += len(ev.Line)
	}
	return n
}

// appendTime appends t in UTC as RFC 3339 with all nine digits of
// nanoseconds; the date and clock are formatted once a second.
func (e *encoder) appendTime(b []byte, t time.Time) []byte {
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

// appendDocumentID appends the _id of an entry: the same entry always gets
// the same id, so that a replay is refused with 409 instead of indexed
// twice, and different entries of a container get different ids. An entry
// is known by its container, time, stream, place among the entries of the
// same time (seq) and, for a piece of a split line, the line's id and the
// ordinal. The line itself is left out: its identity is already there, and
// hashing 16 KiB pieces costs more than it buys. Ids must never change
// between versions: a disk buffer written by one is replayed by the next.
func appendDocumentID(dst []byte, containerID string, ev *forward.Event, seq uint32) []byte {
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
	return base64.RawURLEncoding.AppendEncode(dst, sum[:16])
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
