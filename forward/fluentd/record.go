package fluentd

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/tinylib/msgp/msgp"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/document"
)

// The record's keys are Docker's fluentd driver's, shared with the
// documents of the other destinations: document.Field* and
// document.PartialFields.

// layout is the part of a record that is the same for every event of a
// container, encoded once. Docker builds the record as a map in this order
// of precedence: its own keys, then labels/env (which replace them), then
// the partial_* keys on pieces (which replace those). The layout keeps the
// same outcome without duplicate keys.
type layout struct {
	whole, piece recordLayout
}

type recordLayout struct {
	head, tail []byte // encoded pairs before and after source and log
	n          int    // number of pairs in head and tail
	source     bool   // the event's source is the value of "source"
	log        bool   // the event's line is the value of "log"
	partial    bool   // partial_* keys are added
	keys       map[string]bool
}

func newLayout(c forward.Container) *layout {
	return &layout{whole: newRecordLayout(c, false), piece: newRecordLayout(c, true)}
}

func newRecordLayout(c forward.Container, partial bool) recordLayout {
	l := recordLayout{source: true, log: true, partial: partial, keys: map[string]bool{}}
	extra := maps.Clone(c.Extra)
	if partial {
		for _, k := range document.PartialFields {
			delete(extra, k)
			l.keys[k] = true
		}
	}
	own := func(k, v string) {
		if _, replaced := extra[k]; replaced {
			return
		}
		l.head = msgp.AppendString(msgp.AppendString(l.head, k), v)
		l.n++
		l.keys[k] = true
	}
	own(document.FieldContainerID, c.ID)
	own(document.FieldContainerName, "/"+strings.TrimPrefix(c.Name, "/"))
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		l.tail = msgp.AppendString(msgp.AppendString(l.tail, k), extra[k])
		l.n++
		l.keys[k] = true
	}
	if _, ok := extra[document.FieldSource]; ok {
		l.source = false
	}
	if _, ok := extra[document.FieldLog]; ok {
		l.log = false
	}
	l.keys[document.FieldSource], l.keys[document.FieldLog] = true, true
	return l
}

// record is one event's record, encoded by MarshalMsg.
type record struct {
	l      *recordLayout
	ev     *forward.Event
	fields map[string]any // fields of a JSON line, nil for none
}

// set points r at ev. With jsonFields, the fields of a JSON-object line
// that the record does not have already are added.
func (r *record) set(l *layout, ev *forward.Event, jsonFields bool) {
	r.ev, r.fields = ev, nil
	r.l = &l.whole
	if ev.Partial != nil {
		r.l = &l.piece
	}
	if !jsonFields {
		return
	}
	fields, ok := forward.JSONFields(ev.Line)
	if !ok {
		return
	}
	for k := range fields {
		if r.l.keys[k] {
			delete(fields, k) // the record's own keys win
		}
	}
	if len(fields) > 0 {
		r.fields = fields
	}
}

// MarshalMsg implements msgp.Marshaler.
func (r *record) MarshalMsg(b []byte) ([]byte, error) {
	l, ev := r.l, r.ev
	n := l.n + len(r.fields)
	if l.source {
		n++
	}
	if l.log {
		n++
	}
	if l.partial {
		n += len(document.PartialFields)
	}
	b = msgp.AppendMapHeader(b, uint32(n))
	b = append(b, l.head...)
	if l.source {
		b = msgp.AppendString(msgp.AppendString(b, document.FieldSource), ev.Source)
	}
	if l.log {
		b = msgp.AppendStringFromBytes(msgp.AppendString(b, document.FieldLog), ev.Line)
	}
	b = append(b, l.tail...)
	if l.partial {
		p := ev.Partial
		b = msgp.AppendString(msgp.AppendString(b, document.FieldPartialMessage), "true")
		b = msgp.AppendString(msgp.AppendString(b, document.FieldPartialID), p.ID)
		b = msgp.AppendString(msgp.AppendString(b, document.FieldPartialOrdinal), strconv.Itoa(p.Ordinal))
		b = msgp.AppendString(msgp.AppendString(b, document.FieldPartialLast), strconv.FormatBool(p.Last))
	}
	if r.fields == nil {
		return b, nil
	}
	for _, k := range slices.Sorted(maps.Keys(r.fields)) {
		var err error
		b = msgp.AppendString(b, k)
		if b, err = appendJSON(b, r.fields[k]); err != nil {
			return b, fmt.Errorf("field %q: %w", k, err)
		}
	}
	return b, nil
}

// Msgsize implements msgp.Sizer: an upper bound for a record without JSON
// fields, a guess with them.
func (r *record) Msgsize() int {
	n := 5 + len(r.l.head) + len(r.l.tail) + 2*(5+len(document.FieldSource)) + len(r.ev.Source) + len(r.ev.Line)
	if r.l.partial {
		n += 128 + len(r.ev.Partial.ID)
	}
	if r.fields != nil {
		n += len(r.ev.Line) // the fields are re-encoded from the line
	}
	return n
}

// appendJSON appends a value decoded by forward.JSONFields as msgpack:
// numbers become integers when they are whole and fit, floats otherwise.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return msgp.AppendNil(b), nil
	case bool:
		return msgp.AppendBool(b, v), nil
	case string:
		return msgp.AppendString(b, v), nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return msgp.AppendInt64(b, i), nil
		}
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return msgp.AppendUint64(b, u), nil
		}
		if f, err := v.Float64(); err == nil {
			return msgp.AppendFloat64(b, f), nil
		}
		return msgp.AppendString(b, string(v)), nil
	case float64:
		return msgp.AppendFloat64(b, v), nil
	case []any:
		b = msgp.AppendArrayHeader(b, uint32(len(v)))
		for _, e := range v {
			var err error
			if b, err = appendJSON(b, e); err != nil {
				return b, err
			}
		}
		return b, nil
	case map[string]any:
		b = msgp.AppendMapHeader(b, uint32(len(v)))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			var err error
			b = msgp.AppendString(b, k)
			if b, err = appendJSON(b, v[k]); err != nil {
				return b, err
			}
		}
		return b, nil
	default:
		return b, fmt.Errorf("unexpected JSON value of type %T", v)
	}
}
