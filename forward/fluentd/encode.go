package fluentd

import (
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/tinylib/msgp/msgp"

	"github.com/logferry/logferry/forward"
)

// batch is a set of events encoded as requests; it is kept, unchanged,
// until every request is delivered, so that a resend is byte-identical and
// carries the same chunk IDs. With a disk buffer its memory is given back
// once its requests are written (reqs are then nil): a failed batch is
// taken back and read from disk again rather than kept.
type batch struct {
	events   int
	reqs     [][]byte // encoded requests, slices of buf.B
	chunks   []string // chunk ID of each request, "" without acks
	counts   []int    // events in each request
	acked    []bool   // which requests are acknowledged (or written, without acks)
	attempts int      // failed delivery attempts so far
	buf      *forward.Slab
	// ackFrom and ackTo are the buffer tokens of the batch's events, to
	// acknowledge once it is delivered (0, 0 for a memory queue); toks is
	// the token of the event of each request, in the message mode.
	ackFrom, ackTo uint64
	toks           []uint64
}

// pendingEvents returns how many events are in requests not yet delivered.
func (b *batch) pendingEvents() int {
	n := 0
	for i, c := range b.counts {
		if !b.acked[i] {
			n += c
		}
	}
	return n
}

// release gives the batch's slab back to m; its requests can no longer
// be written.
func (b *batch) release(m *forward.Batches) {
	if b.buf == nil {
		return
	}
	m.Put(b.buf)
	b.buf = nil
	clear(b.reqs)
}

// reset empties b for the next batch, keeping its slices unless they grew
// big (the message mode has one entry per event).
func (b *batch) reset() {
	keep := func(n int) bool { return n <= 1024 }
	*b = batch{
		reqs: b.reqs[:0], chunks: b.chunks[:0], counts: b.counts[:0], acked: b.acked[:0], toks: b.toks[:0],
	}
	clear(b.reqs[:cap(b.reqs)])
	clear(b.chunks[:cap(b.chunks)])
	if !keep(cap(b.reqs)) {
		b.reqs, b.chunks, b.counts, b.acked, b.toks = nil, nil, nil, nil, nil
	}
}

// encoder turns events into the requests of a batch, written straight
// into the batch's slab. It is used by one goroutine at a time.
type encoder struct {
	tag        string
	mode       Mode
	gzip       bool
	ack        bool
	seconds    bool
	jsonFields bool
	layout     *layout

	rec     record
	seed    [16]byte // for chunk IDs derived from buffer tokens
	entry   []byte   // the entry of the event being added, [time, record]
	prefix  []byte   // scratch for a request's head
	buf     *forward.Slab
	reserve int      // bytes kept free at the start of buf for the head
	raw     int      // bytes of the entries added (before compression)
	n       int      // events added
	ends    []int    // the message mode: end of each request in buf
	chunks  []string // the message mode: chunk of each request
	zw      *gzip.Writer
	zout    appender
}

func newEncoder(cfg Config, c forward.Container) *encoder {
	tag := c.Tag
	if tag == "" {
		// Docker's default tag, {{.ID}}.
		tag = c.ShortID()
	}
	e := &encoder{
		tag:        tag,
		mode:       cfg.Mode,
		gzip:       cfg.Gzip,
		ack:        cfg.RequestAck,
		seconds:    cfg.SecondPrecision,
		jsonFields: cfg.JSONFields,
		layout:     newLayout(c),
	}
	if e.mode != ModeMessage {
		// The request's array header, the tag and a 5-byte bin or array
		// header, written once the entries are there.
		e.reserve = 1 + msgp.StringPrefixSize + len(tag) + 5
	}
	_, _ = rand.Read(e.seed[:]) // crypto/rand.Read never fails
	return e
}

// chunkID returns the chunk option of a request of the events with
// buffer tokens [from, to): derived from them, so that a batch read again
// from the disk buffer for another attempt is sent with the same chunk
// as before, as a batch kept in memory is; random without tokens (a
// memory queue). Either way base64 of 128 bits, as the specification
// asks.
func (e *encoder) chunkID(from, to uint64) string {
	if to == 0 {
		return newChunkID()
	}
	var b [32]byte
	copy(b[:16], e.seed[:])
	binary.BigEndian.PutUint64(b[16:], from)
	binary.BigEndian.PutUint64(b[24:], to)
	sum := sha256.Sum256(b[:])
	return base64.StdEncoding.EncodeToString(sum[:16])
}

// overhead is what a request adds to its entries, at most: the head and
// the option map.
func (e *encoder) overhead() int {
	return e.reserve + 64
}

// begin starts a batch in buf, which it owns until finish or reset.
func (e *encoder) begin(buf *forward.Slab) {
	e.buf = buf
	e.buf.B = append(e.buf.B[:0], make([]byte, e.reserve)...)
	e.raw, e.n = 0, 0
	e.ends, e.chunks = e.ends[:0], e.chunks[:0]
	if e.gzip {
		e.zout.b = &e.buf.B
		e.zw = getGzipWriter(&e.zout)
	}
}

// prepare encodes the entry of ev, to be added by commit; it returns its
// size, which counts against the batch.
func (e *encoder) prepare(ev *forward.Event) (int, error) {
	e.rec.set(e.layout, ev, e.jsonFields)
	ent := entry{Time: eventTime{t: ev.Time, seconds: e.seconds}, Record: &e.rec}
	b, err := ent.MarshalMsg(e.entry[:0])
	if err != nil && e.rec.fields != nil {
		// Not expected, but a line is better sent as text than lost.
		e.rec.fields = nil
		b, err = ent.MarshalMsg(e.entry[:0])
	}
	e.entry = b
	if err != nil {
		return 0, fmt.Errorf("encode event: %w", err)
	}
	return len(b), nil
}

// commit adds the entry prepare encoded to the batch; tok is the event's
// buffer token (0 from a memory queue).
func (e *encoder) commit(tok uint64) error {
	if e.buf == nil {
		e.begin(&forward.Slab{})
	}
	switch {
	case e.mode == ModeMessage:
		// [tag, time, record, option]: the entry without its array header.
		b := append(e.buf.B, 0x94)
		b = msgp.AppendString(b, e.tag)
		b = append(b, e.entry[1:]...)
		opt := options{}
		if e.ack {
			opt.Chunk = e.chunkID(tok, tok+min(tok, 1))
		}
		b, _ = opt.MarshalMsg(b)
		e.buf.B = b
		e.ends = append(e.ends, len(b))
		e.chunks = append(e.chunks, opt.Chunk)
	case e.gzip:
		if _, err := e.zw.Write(e.entry); err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
	default:
		e.buf.B = append(e.buf.B, e.entry...)
	}
	e.raw += len(e.entry)
	e.n++
	if cap(e.entry) > 64<<10 {
		e.entry = nil // a big line passed: do not keep its memory
	}
	return nil
}

// add encodes ev and adds it to the batch.
func (e *encoder) add(ev *forward.Event) error {
	if _, err := e.prepare(ev); err != nil {
		return err
	}
	return e.commit(0)
}

// size returns the encoded size of the entries added so far.
func (e *encoder) size() int { return e.raw }

// count returns the number of entries added so far.
func (e *encoder) count() int { return e.n }

// finish turns the entries added since begin into the requests of b,
// which takes the slab, and makes the encoder ready for the next batch.
// from and to are the buffer tokens of the events (0, 0 from a memory
// queue).
func (e *encoder) finish(b *batch, from, to uint64) error {
	b.reset()
	b.events = e.n
	if e.buf == nil {
		e.begin(&forward.Slab{})
	}
	buf := e.buf
	e.buf = nil
	b.buf = buf
	add := func(req []byte, chunk string, count int) {
		b.reqs = append(b.reqs, req)
		b.chunks = append(b.chunks, chunk)
		b.counts = append(b.counts, count)
		b.acked = append(b.acked, false)
	}
	if e.mode == ModeMessage {
		start := 0
		for i, end := range e.ends {
			add(buf.B[start:end:end], e.chunks[i], 1)
			start = end
		}
		return nil
	}
	if e.gzip {
		err := e.zw.Close()
		putGzipWriter(e.zw)
		e.zw = nil
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
	}
	body := len(buf.B) - e.reserve
	p := msgp.AppendArrayHeader(e.prefix[:0], 3)
	p = msgp.AppendString(p, e.tag)
	if e.mode == ModeForward {
		p = msgp.AppendArrayHeader(p, uint32(e.n))
	} else {
		p = msgp.AppendBytesHeader(p, uint32(body))
	}
	e.prefix = p
	start := e.reserve - len(p)
	copy(buf.B[start:], p)
	opt := options{Size: e.n}
	if e.ack {
		opt.Chunk = e.chunkID(from, to)
	}
	if e.gzip {
		opt.Compressed = "gzip"
	}
	var err error
	if buf.B, err = opt.MarshalMsg(buf.B); err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	add(buf.B[start:len(buf.B):len(buf.B)], opt.Chunk, e.n)
	return nil
}

// reset forgets the entries added since begin and returns the slab.
func (e *encoder) reset() *forward.Slab {
	if e.zw != nil {
		putGzipWriter(e.zw)
		e.zw = nil
	}
	buf := e.buf
	e.buf = nil
	e.raw, e.n = 0, 0
	return buf
}

// appender is an io.Writer appending to a byte slice.
type appender struct{ b *[]byte }

func (a *appender) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}

// gzipWriters are shared by every sink: a compressor holds hundreds of
// KiB, and only the sinks encoding at the moment need one.
var gzipWriters sync.Pool

func getGzipWriter(w io.Writer) *gzip.Writer {
	if zw, ok := gzipWriters.Get().(*gzip.Writer); ok {
		zw.Reset(w)
		return zw
	}
	// Speed over ratio: a logging plugin shares the host with the
	// workload, and log lines compress well at any level.
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	return zw
}

func putGzipWriter(zw *gzip.Writer) {
	zw.Reset(io.Discard) // let go of the batch's slab
	gzipWriters.Put(zw)
}

// newChunkID returns a chunk option value: base64 of 128 random bits, as
// the specification asks.
func newChunkID() string {
	var id [16]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	return base64.StdEncoding.EncodeToString(id[:])
}
