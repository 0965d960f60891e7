package elasticsearch

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/logferry/logferry/forward"
)

// batch is the actions of one _bulk request, encoded back to back into a
// slab from forward.Batches: buf.B, exactly the request's body. The
// sink keeps the slab until every action is settled, retries included:
// without a disk buffer the events are nowhere else, and the buffer stays
// charged to the batch memory, which bounds what all sinks hold. Batches
// are reused (getBatch, release), so that encoding a document allocates
// nothing.
type batch struct {
	buf     *forward.Slab
	actions []action
	// full is set when an action was left for the next batch for want of
	// room: the events after it are waiting already.
	full bool
	// held is set when the transport may still read buf.B after a
	// request returned (an answer came before the body was sent in full,
	// or the request was cancelled): buf.B must then not be written to,
	// nor reused.
	held bool
}

var batchPool = sync.Pool{New: func() any { return new(batch) }}

// getBatch returns an empty batch to be encoded into buf.
func getBatch(buf *forward.Slab) *batch {
	b := batchPool.Get().(*batch)
	b.buf = buf
	return b
}

// release gives b's slab back to m (to be forgotten if the transport
// may still read it) and b to the pool; its actions must no longer be
// used.
func (b *batch) release(m *forward.Batches) {
	if b.held {
		m.Forget(b.buf)
	} else {
		m.Put(b.buf)
	}
	clear(b.actions)
	*b = batch{actions: b.actions[:0]}
	batchPool.Put(b)
}

// body returns the _bulk body: the actions' lines back to back.
func (b *batch) body() []byte { return b.buf.B }

// add encodes it as the next action of b, unless b holds an action already
// and this one would take its body past limit bytes: then it sets b.full
// and reports false, and it is to start the next batch. The slab is
// meant to hold limit bytes without growing: an action is refused before
// it is encoded when it might not fit (see encoder.estimate), so that the
// one that does not fit seldom makes the slab grow.
func (b *batch) add(enc *encoder, it *item, tok uint64, limit int) bool {
	first := len(b.actions) == 0
	start := len(b.buf.B)
	if !first && start+enc.estimate(&it.ev) > limit {
		b.full = true
		return false
	}
	var a action
	b.buf.B, a = enc.appendAction(b.buf.B, it)
	if !first && len(b.buf.B) > limit {
		b.buf.B = b.buf.B[:start]
		b.full = true
		return false
	}
	a.tok = tok
	b.actions = append(b.actions, a)
	return true
}

// repoint points the actions' lines at their bytes in buf.B, where they
// are back to back: after the slab grew (moved) while an action was
// encoded, or the lines were moved.
func (b *batch) repoint() {
	off := 0
	for i := range b.actions {
		a := &b.actions[i]
		n := len(a.line)
		a.line = b.buf.B[off : off+n : off+n]
		off += n
	}
}

// linesSize returns the bytes of the actions' lines: their body.
func linesSize(actions []action) int {
	n := 0
	for i := range actions {
		n += actions[i].size()
	}
	return n
}

// compact moves the lines of b's actions (those left to retry, in their
// order in buf.B) to the front of buf.B, back to back, so that buf.B is
// their body again. Not while b.held.
func (b *batch) compact() {
	dst := 0
	for i := range b.actions {
		a := &b.actions[i]
		n := copy(b.buf.B[dst:], a.line) // dst <= the line's own place: a forward move
		a.line = b.buf.B[dst : dst+n : dst+n]
		dst += n
	}
	b.buf.B = b.buf.B[:dst]
}

// moveTo copies the lines of b's actions into the empty slab to, back
// to back, makes it b's slab and returns the one they were in, which
// the transport may still read (b.held).
func (b *batch) moveTo(to *forward.Slab) (old *forward.Slab) {
	for i := range b.actions {
		to.B = append(to.B, b.actions[i].line...)
	}
	old, b.buf, b.held = b.buf, to, false
	b.repoint()
	return old
}

// splitOff moves the actions of b from the n-th on to a new batch, in the
// empty slab to, and returns it; b keeps the first n.
func (b *batch) splitOff(n int, to *forward.Slab) *batch {
	rest := getBatch(to)
	end := linesSize(b.actions[:n])
	rest.actions = append(rest.actions, b.actions[n:]...)
	rest.buf.B = append(rest.buf.B, b.buf.B[end:]...)
	rest.repoint()
	clear(b.actions[n:])
	b.actions, b.buf.B = b.actions[:n], b.buf.B[:end]
	return rest
}

// parseBulkResponse reads Elasticsearch's answer to a _bulk request into
// results, one per action, in order (Elasticsearch answers the items in
// the order of the actions): each item's status and, when it failed, its
// error's type and reason. Everything else is skipped without being
// decoded. It fails when the answer is not a JSON object with an "items"
// array of exactly len(results) objects.
func parseBulkResponse(body []byte, results []itemResult) error {
	s := scanner{b: body}
	n, seen := 0, false
	ok := s.object(func(key []byte) bool {
		if string(key) != "items" {
			return s.skip()
		}
		seen = true
		return s.array(func() bool {
			n++
			if n > len(results) {
				return s.skip()
			}
			return s.item(&results[n-1])
		})
	})
	switch {
	case !ok || s.peek() != 0:
		return fmt.Errorf("malformed bulk response near byte %d", s.i)
	case !seen:
		return errors.New("bulk response has no items")
	case n != len(results):
		return fmt.Errorf("bulk response has %d items for %d actions", n, len(results))
	}
	return nil
}

// scanner walks JSON without decoding what it skips. Its methods report
// false on malformed input; they never read past b.
type scanner struct {
	b []byte
	i int
}

// peek returns the next byte that is not white space, 0 at the end.
func (s *scanner) peek() byte {
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// expect consumes c if it comes next.
func (s *scanner) expect(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// str consumes a string and returns what is between its quotes, escapes
// left as they are.
func (s *scanner) str() ([]byte, bool) {
	if !s.expect('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
		case '"':
			s.i++
			return s.b[start : s.i-1], true
		default:
			s.i++
		}
	}
	return nil, false
}

// skip consumes one value of any kind.
func (s *scanner) skip() bool {
	switch s.peek() {
	case 0:
		return false
	case '"':
		_, ok := s.str()
		return ok
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if _, ok := s.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	default: // a number, true, false or null
		start := s.i
		for s.i < len(s.b) && !delimiter(s.b[s.i]) {
			s.i++
		}
		return s.i > start
	}
}

// delimiter reports whether c ends a number or a literal.
func delimiter(c byte) bool {
	switch c {
	case ',', ':', ']', '}', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// object consumes an object, calling field for each key with the scanner
// before its value, which field must consume.
func (s *scanner) object(field func(key []byte) bool) bool {
	if !s.expect('{') {
		return false
	}
	if s.expect('}') {
		return true
	}
	for {
		key, ok := s.str()
		if !ok || !s.expect(':') || !field(key) {
			return false
		}
		if !s.expect(',') {
			return s.expect('}')
		}
	}
}

// array consumes an array, calling elem before each element, which elem
// must consume.
func (s *scanner) array(elem func() bool) bool {
	if !s.expect('[') {
		return false
	}
	if s.expect(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if !s.expect(',') {
			return s.expect(']')
		}
	}
}

// int consumes a non-negative integer that fits in an int32.
func (s *scanner) int() (int, bool) {
	s.peek()
	n, start := 0, s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' && s.i-start < 9 {
		n = n*10 + int(s.b[s.i]-'0')
		s.i++
	}
	return n, s.i > start
}

// item consumes one item of a _bulk answer, {"create":{…,"status":201}},
// into r. An item without a status leaves it 0, which the sink retries.
func (s *scanner) item(r *itemResult) bool {
	*r = itemResult{}
	return s.object(func([]byte) bool { // the action: create, index …
		return s.object(func(key []byte) bool {
			switch string(key) {
			case "status":
				n, ok := s.int()
				r.status = n
				return ok
			case "error":
				s.peek()
				start := s.i
				if !s.skip() {
					return false
				}
				r.errType, r.reason = errorDetails(s.b[start:s.i])
				return true
			}
			return s.skip()
		})
	})
}

// errorDetails returns the type and reason of an item's error: an object
// with "type" and "reason", or, from old versions, a string.
func errorDetails(raw []byte) (typ, reason string) {
	var details struct{ Type, Reason string }
	if err := json.Unmarshal(raw, &details); err == nil {
		return details.Type, details.Reason
	}
	if err := json.Unmarshal(raw, &reason); err == nil {
		return "", reason
	}
	return "", string(raw)
}
