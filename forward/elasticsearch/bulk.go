package elasticsearch

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// batch is the actions of one _bulk request and the buffer they were
// encoded into, back to back: for a fresh batch, the request's body.
// Batches are reused (getBatch, release), so that encoding a document
// allocates nothing.
type batch struct {
	actions []action
	buf     []byte
}

var batchPool = sync.Pool{New: func() any { return new(batch) }}

func getBatch() *batch { return batchPool.Get().(*batch) }

// release empties b and returns it to the pool; its actions must no longer
// be used.
func (b *batch) release() {
	clear(b.actions)
	b.actions, b.buf = b.actions[:0], b.buf[:0]
	batchPool.Put(b)
}

// size is the bytes the actions add to a _bulk body.
func (b *batch) size() int { return len(b.buf) }

// add encodes it as the next action of b.
func (b *batch) add(enc *encoder, it *item, tok uint64) {
	var a action
	b.buf, a = enc.appendAction(b.buf, it)
	a.tok = tok
	b.actions = append(b.actions, a)
}

// moveLast moves the last action of b to the end of to.
func (b *batch) moveLast(to *batch) {
	a := b.actions[len(b.actions)-1]
	b.actions = b.actions[:len(b.actions)-1]
	b.buf = b.buf[:len(b.buf)-len(a.line)]
	start := len(to.buf)
	to.buf = append(to.buf, a.line...)
	a.line = to.buf[start:len(to.buf):len(to.buf)]
	to.actions = append(to.actions, a)
}

// tokens returns the range of buffer tokens of b's actions, to acknowledge
// once they are all settled.
func (b *batch) tokens() (from, to uint64) {
	if len(b.actions) == 0 {
		return 0, 0
	}
	return b.actions[0].tok, b.actions[len(b.actions)-1].tok + 1
}

// bulkBody returns the _bulk body of actions, gzip-compressed with gz
// (reset to write it) unless gz is nil. A string, because the client takes
// bodies as strings; strings.Builder makes one without copying.
func bulkBody(actions []action, gz *gzip.Writer) (string, error) {
	n := 0
	for i := range actions {
		n += actions[i].size()
	}
	var sb strings.Builder
	if gz == nil {
		sb.Grow(n)
		for i := range actions {
			sb.Write(actions[i].line)
		}
		return sb.String(), nil
	}
	sb.Grow(n/4 + 64)
	gz.Reset(&sb)
	for i := range actions {
		if _, err := gz.Write(actions[i].line); err != nil {
			return "", fmt.Errorf("compress bulk body: %w", err)
		}
	}
	if err := gz.Close(); err != nil {
		return "", fmt.Errorf("compress bulk body: %w", err)
	}
	return sb.String(), nil
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
