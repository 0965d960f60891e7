package fluentd

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/tinylib/msgp/msgp"

	"github.com/logferry/logferry/forward"
)

// batch is a set of events encoded as requests; it is kept, unchanged,
// until every request is delivered, so that a resend is byte-identical and
// carries the same chunk IDs.
type batch struct {
	events   int
	reqs     [][]byte // encoded requests, slices of buf
	chunks   []string // chunk ID of each request, "" without acks
	counts   []int    // events in each request
	acked    []bool   // which requests are acknowledged (or written, without acks)
	attempts int      // failed delivery attempts so far
	buf      []byte
	// ackFrom and ackTo are the buffer tokens of the batch's events, to
	// acknowledge once it is delivered (0, 0 for a memory queue).
	ackFrom, ackTo uint64
}

// size returns the encoded size of the requests still to be delivered.
func (b *batch) size() int {
	n := 0
	for i, r := range b.reqs {
		if !b.acked[i] {
			n += len(r)
		}
	}
	return n
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

// encoder turns events into entries and entries into a batch of requests.
// It is used by one goroutine at a time.
type encoder struct {
	tag        string
	mode       Mode
	gzip       bool
	ack        bool
	seconds    bool
	jsonFields bool
	layout     *layout

	entries []byte // the entries of the batch being built, back to back
	starts  []int  // offset of each entry in entries
	rec     record
	fwd     []byte // the Forward mode's entries array
	zbuf    bytes.Buffer
	zw      *gzip.Writer
}

func newEncoder(cfg Config, c forward.Container) *encoder {
	tag := c.Tag
	if tag == "" {
		// Docker's default tag, {{.ID}}.
		tag = c.ID[:min(12, len(c.ID))]
	}
	return &encoder{
		tag:        tag,
		mode:       cfg.Mode,
		gzip:       cfg.Gzip,
		ack:        cfg.RequestAck,
		seconds:    cfg.SecondPrecision,
		jsonFields: cfg.JSONFields,
		layout:     newLayout(c),
	}
}

// add appends the entry of ev to the batch being built.
func (e *encoder) add(ev *forward.Event) error {
	e.rec.set(e.layout, ev, e.jsonFields)
	start := len(e.entries)
	ent := entry{Time: eventTime{t: ev.Time, seconds: e.seconds}, Record: &e.rec}
	b, err := ent.MarshalMsg(e.entries)
	if err != nil && e.rec.fields != nil {
		// Not expected, but a line is better sent as text than lost.
		e.rec.fields = nil
		b, err = ent.MarshalMsg(e.entries[:start])
	}
	if err != nil {
		e.entries = e.entries[:start]
		return fmt.Errorf("encode event: %w", err)
	}
	e.entries = b
	e.starts = append(e.starts, start)
	return nil
}

// size returns the encoded size of the entries added so far.
func (e *encoder) size() int { return len(e.entries) }

// count returns the number of entries added so far.
func (e *encoder) count() int { return len(e.starts) }

// finish encodes the entries added since the last finish into requests,
// reusing b's memory, and starts a new batch.
func (e *encoder) finish(b *batch) error {
	buf := b.buf[:0]
	*b = batch{events: len(e.starts), reqs: b.reqs[:0], chunks: b.chunks[:0], counts: b.counts[:0], acked: b.acked[:0]}
	var ends []int
	var err error
	add := func(count int, marshal func([]byte, options) ([]byte, error)) {
		if err != nil {
			return
		}
		opt := options{}
		if e.mode != ModeMessage {
			opt.Size = count
		}
		if e.ack {
			opt.Chunk = newChunkID()
		}
		if e.gzip {
			opt.Compressed = "gzip"
		}
		buf, err = marshal(buf, opt)
		ends = append(ends, len(buf))
		b.chunks = append(b.chunks, opt.Chunk)
		b.counts = append(b.counts, count)
		b.acked = append(b.acked, false)
	}
	switch e.mode {
	case ModeMessage:
		for i, start := range e.starts {
			end := len(e.entries)
			if i+1 < len(e.starts) {
				end = e.starts[i+1]
			}
			ent := e.entries[start+1 : end] // without the array header
			rest, serr := msgp.Skip(ent)
			if serr != nil {
				return fmt.Errorf("split entry: %w", serr)
			}
			timeEnd := len(ent) - len(rest)
			add(1, func(dst []byte, opt options) ([]byte, error) {
				m := messageRequest{Tag: e.tag, Time: ent[:timeEnd], Record: ent[timeEnd:], Option: opt}
				return m.MarshalMsg(dst)
			})
		}
	case ModeForward:
		raw := msgp.AppendArrayHeader(e.fwd[:0], uint32(len(e.starts)))
		raw = append(raw, e.entries...)
		e.fwd = raw
		add(len(e.starts), func(dst []byte, opt options) ([]byte, error) {
			f := forwardRequest{Tag: e.tag, Entries: raw, Option: opt}
			return f.MarshalMsg(dst)
		})
	default:
		entries := e.entries
		if e.gzip {
			if entries, err = e.compress(entries); err != nil {
				return err
			}
		}
		add(len(e.starts), func(dst []byte, opt options) ([]byte, error) {
			p := packedRequest{Tag: e.tag, Entries: entries, Option: opt}
			return p.MarshalMsg(dst)
		})
	}
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	start := 0
	for _, end := range ends {
		b.reqs = append(b.reqs, buf[start:end:end])
		start = end
	}
	b.buf = buf
	e.reset()
	return nil
}

// reset forgets the entries added since the last finish.
func (e *encoder) reset() {
	e.entries = e.entries[:0]
	e.starts = e.starts[:0]
}

func (e *encoder) compress(p []byte) ([]byte, error) {
	e.zbuf.Reset()
	if e.zw == nil {
		// Speed over ratio: a logging plugin shares the host with the
		// workload, and log lines compress well at any level.
		e.zw, _ = gzip.NewWriterLevel(&e.zbuf, gzip.BestSpeed)
	} else {
		e.zw.Reset(&e.zbuf)
	}
	if _, err := e.zw.Write(p); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := e.zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return e.zbuf.Bytes(), nil
}

// newChunkID returns a chunk option value: base64 of 128 random bits, as
// the specification asks.
func newChunkID() string {
	var id [16]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	return base64.StdEncoding.EncodeToString(id[:])
}
