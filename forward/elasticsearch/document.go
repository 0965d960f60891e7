package elasticsearch

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/document"
)

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

// encoder turns items into actions. Not safe for concurrent use: the
// batcher has its own.
type encoder struct {
	containerID string
	parseJSON   bool
	index       *indexCache
	doc         *document.Encoder
	// lastIndex is the index of the previous action, and actionHead its
	// action line up to the _id's value.
	lastIndex  string
	actionHead []byte
	// over is what the previous action took beyond its line, for
	// estimate.
	over int
}

func newEncoder(c forward.Container, p *indexPattern, parseJSON bool) *encoder {
	return &encoder{
		containerID: c.ID,
		parseJSON:   parseJSON,
		index:       newIndexCache(p),
		doc:         document.NewEncoder(c, parseJSON),
	}
}

// appendAction appends the create action of it, as the two lines it takes
// in a _bulk body, to b; the action returned points into the b returned.
// The document is document.Encoder's.
func (e *encoder) appendAction(b []byte, it *item) ([]byte, action) {
	ev := &it.ev
	start := len(b)
	a := action{index: e.index.name(ev.Time)}
	if a.index != e.lastIndex || e.actionHead == nil {
		e.lastIndex = a.index
		e.actionHead = append(document.AppendString(append(e.actionHead[:0], `{"create":{"_index":`...), a.index), `,"_id":"`...)
	}
	b = append(b, e.actionHead...)
	idStart := len(b)
	b = appendDocumentID(b, e.containerID, ev, it.seq)
	b = append(b, idEnd...)
	docStart := len(b)
	b = append(e.doc.Append(b, ev), '\n')

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
