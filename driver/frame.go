package driver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
)

// DefaultMaxFrame is the largest frame body a Decoder accepts when it is
// given no limit. dockerd splits container output into lines of at most
// 16 KiB, so real frames stay far below it.
const DefaultMaxFrame = 1 << 20

// frameHeader is the size of the big-endian uint32 length before each frame.
const frameHeader = 4

// minBuffer is the size of a Decoder's first read buffer (when maxFrame
// allows it): a few hundred frames of ordinary lines per read. What gathers
// in the pipe during a pause (maxPause) takes a few such reads.
const minBuffer = 32 << 10

// bufPool holds the minBuffer-sized read buffers that Decoders give back
// when they have nothing buffered (Release).
var bufPool = sync.Pool{New: func() any { return new([minBuffer]byte) }}

// maxEmptyReads is how many reads in a row may return no data and no error
// before a Decoder gives up with io.ErrNoProgress.
const maxEmptyReads = 100

// Field numbers of LogEntry and PartialLogEntryMetadata in dockerd's
// entry.proto.
const (
	fieldSource      protowire.Number = 1
	fieldTimeNano    protowire.Number = 2
	fieldLine        protowire.Number = 3
	fieldPartial     protowire.Number = 4
	fieldPartialMeta protowire.Number = 5
	fieldAttrs       protowire.Number = 6

	fieldMetaLast    protowire.Number = 1
	fieldMetaID      protowire.Number = 2
	fieldMetaOrdinal protowire.Number = 3
)

// entryTypes and metaTypes give the wire type of each known field, indexed
// by field number; a known field with another wire type is corrupt.
var (
	entryTypes = [...]protowire.Type{
		fieldSource:      protowire.BytesType,
		fieldTimeNano:    protowire.VarintType,
		fieldLine:        protowire.BytesType,
		fieldPartial:     protowire.VarintType,
		fieldPartialMeta: protowire.BytesType,
		fieldAttrs:       protowire.BytesType,
	}
	metaTypes = [...]protowire.Type{
		fieldMetaLast:    protowire.VarintType,
		fieldMetaID:      protowire.BytesType,
		fieldMetaOrdinal: protowire.VarintType,
	}
)

// Sources dockerd uses, returned without allocating.
const (
	sourceStdout = "stdout"
	sourceStderr = "stderr"
)

// ErrFrameTooLarge reports a frame whose length is above the Decoder's
// limit. Its bytes are discarded without being stored and the next Decode
// continues with the frame after it.
var ErrFrameTooLarge = errors.New("log frame too large")

// ErrCorruptFrame reports a frame whose body is not a valid LogEntry
// message. The frame is skipped and the next Decode continues with the frame
// after it.
var ErrCorruptFrame = errors.New("corrupt log frame")

// errWireType reports a known field encoded with the wrong wire type.
var errWireType = errors.New("wrong wire type")

// LogEntry is one decoded frame. Line and PartialID alias the Decoder's
// buffer and are valid only until the next Decode.
type LogEntry struct {
	// Source is the stream the line came from: "stdout" and "stderr" are
	// returned as constants (no allocation); other values are allocated.
	Source string
	// TimeNano is when dockerd read the line, in nanoseconds since the Unix
	// epoch.
	TimeNano int64
	// Line is the text, without its trailing newline.
	Line []byte
	// Partial reports that the line is one piece of a longer line.
	Partial bool
	// HasPartialMeta reports that partial_log_metadata was present.
	HasPartialMeta bool
	// PartialLast reports that this is the last piece of a split line.
	PartialLast bool
	// PartialID identifies the line the piece belongs to.
	PartialID []byte
	// PartialOrdinal is the position of the piece in its line, from 1.
	PartialOrdinal int32
}

// Decoder reads frames from the stream dockerd writes to a logging plugin's
// FIFO: each a big-endian uint32 length followed by a protobuf LogEntry
// message of that length. It reuses one buffer that grows as larger frames
// arrive and never beyond the frame limit plus its 4-byte header.
type Decoder struct {
	r        io.Reader
	maxFrame int
	buf      []byte // buf[start:end] has been read and not yet decoded
	start    int
	end      int
	skip     uint64 // bytes of an oversized frame not yet discarded; buffer empty while > 0
	err      error  // read error held back until buffered data is used up
	resync   bool   // the next Decode first looks for the start of a frame
}

// NewDecoder returns a Decoder reading frames from r whose bodies are at most
// maxFrame bytes long; maxFrame <= 0 means DefaultMaxFrame.
func NewDecoder(r io.Reader, maxFrame int) *Decoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	// Keep frameHeader+maxFrame, the largest buffer, from overflowing.
	maxFrame = min(maxFrame, math.MaxInt-frameHeader)
	return &Decoder{r: r, maxFrame: maxFrame}
}

// Decode reads the next frame into e. It returns io.EOF when the stream ends
// between frames and io.ErrUnexpectedEOF when it ends inside one. An error
// wrapping ErrFrameTooLarge or ErrCorruptFrame means the frame was skipped:
// the next Decode continues with the frame after it. Read errors are
// returned wrapped. e is changed only when Decode returns nil.
func (d *Decoder) Decode(e *LogEntry) error {
	if d.resync {
		skipped, err := d.findFrame()
		if err != nil {
			return err
		}
		if skipped > 0 {
			return fmt.Errorf("%w: skipped %d bytes to find the start of a frame", ErrCorruptFrame, skipped)
		}
	}
	if d.skip > 0 {
		if err := d.discard(); err != nil {
			return err
		}
	}
	if err := d.fill(frameHeader); err != nil {
		if err == io.EOF && d.start == d.end {
			return io.EOF
		}
		return unexpected(err)
	}
	size := binary.BigEndian.Uint32(d.buf[d.start:])
	if uint64(size) > uint64(d.maxFrame) {
		d.start += frameHeader
		d.skip = uint64(size)
		d.dropBuffered()
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, size, d.maxFrame)
	}
	n := frameHeader + int(size)
	if err := d.fill(n); err != nil {
		return unexpected(err)
	}
	body := d.buf[d.start+frameHeader : d.start+n]
	d.start += n
	var entry LogEntry
	if err := unmarshalEntry(body, &entry); err != nil {
		// Not %w: protowire reports truncation as io.ErrUnexpectedEOF, which
		// would read as the stream ending.
		return fmt.Errorf("%w: %v", ErrCorruptFrame, err)
	}
	*e = entry
	return nil
}

// Buffered returns the number of bytes already read from the stream and not
// yet decoded. 0 means the next Decode may block reading the stream.
func (d *Decoder) Buffered() int {
	// While an oversized frame is being skipped the buffer is empty.
	return d.end - d.start
}

// Resync makes the next Decode look for the start of a frame first, for a
// stream that may begin in the middle of one: a FIFO whose previous reader
// died after reading part of a frame. A frame start is recognised by the
// way dockerd encodes every entry: a length within the limit, then field 1,
// the source, "stdout" or "stderr". Bytes skipped to find it are reported
// once as an error wrapping ErrCorruptFrame.
func (d *Decoder) Resync() {
	d.resync = true
}

// frameSignatures are how the body of every frame dockerd writes begins.
var frameSignatures = [][]byte{
	append([]byte{0x0a, byte(len(sourceStdout))}, sourceStdout...),
	append([]byte{0x0a, byte(len(sourceStderr))}, sourceStderr...),
}

// findFrame drops bytes until the buffer starts with a plausible frame.
func (d *Decoder) findFrame() (skipped int, err error) {
	d.skip = 0
	sig := len(frameSignatures[0])
	for {
		if err := d.fill(frameHeader + sig); err != nil {
			if err == io.EOF && d.start == d.end && skipped == 0 {
				return 0, io.EOF
			}
			return skipped, unexpected(err)
		}
		b := d.buf[d.start:d.end]
		size := binary.BigEndian.Uint32(b)
		if uint64(size) <= uint64(d.maxFrame) && int(size) >= sig &&
			(bytes.HasPrefix(b[frameHeader:], frameSignatures[0]) || bytes.HasPrefix(b[frameHeader:], frameSignatures[1])) {
			d.resync = false
			return skipped, nil
		}
		d.start++
		skipped++
	}
}

// Pending returns the bytes read from the stream and not decoded yet: the
// start of a frame whose rest has not arrived. A later reader of the same
// stream that is given them first continues where this one stopped. aligned
// is false when the Decoder is inside a frame it is skipping, and a later
// reader must then Resync.
func (d *Decoder) Pending() (pending []byte, aligned bool) {
	return bytes.Clone(d.buf[d.start:d.end]), d.skip == 0 && !d.resync
}

// Release gives the read buffer back to a pool shared by all Decoders if
// nothing is buffered, so that an idle stream holds none; the next Decode
// takes one again. The entries decoded so far are invalid afterwards.
func (d *Decoder) Release() {
	if d.start != d.end || d.skip > 0 || d.buf == nil {
		return
	}
	if len(d.buf) == minBuffer {
		bufPool.Put((*[minBuffer]byte)(d.buf))
	}
	d.buf, d.start, d.end = nil, 0, 0
}

// unexpected maps the end of the stream inside a frame to
// io.ErrUnexpectedEOF and passes other errors through.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// dropBuffered discards as much of an oversized frame as is buffered.
func (d *Decoder) dropBuffered() {
	n := min(d.skip, uint64(d.end-d.start))
	d.start += int(n)
	d.skip -= n
}

// discard reads and drops the rest of an oversized frame, reusing the
// buffer; what it reads past the frame stays buffered.
func (d *Decoder) discard() error {
	for d.skip > 0 {
		d.start, d.end = 0, 0
		if err := d.read(); err != nil {
			return unexpected(err)
		}
		d.dropBuffered()
	}
	return nil
}

// fill reads until at least n bytes are buffered, growing the buffer if it
// is smaller than n. It returns io.EOF unwrapped if the stream ends first.
func (d *Decoder) fill(n int) error {
	if d.end-d.start >= n {
		return nil
	}
	buf := d.buf
	if len(buf) < n {
		if size := min(max(n, 2*len(buf), minBuffer), frameHeader+d.maxFrame); size == minBuffer {
			buf = bufPool.Get().(*[minBuffer]byte)[:]
		} else {
			buf = make([]byte, size)
		}
	}
	d.end = copy(buf, d.buf[d.start:d.end])
	d.start = 0
	d.buf = buf
	for d.end < n {
		if err := d.read(); err != nil {
			return err
		}
	}
	return nil
}

// read reads at least one byte into the free end of the buffer, which must
// not be full. A read error that came with data is held back and returned
// by the next read.
func (d *Decoder) read() error {
	if d.err != nil {
		err := d.err
		d.err = nil
		return err
	}
	for range maxEmptyReads {
		n, err := d.r.Read(d.buf[d.end:])
		d.end += n
		if err != nil && err != io.EOF {
			err = fmt.Errorf("read log stream: %w", err)
		}
		if n > 0 {
			d.err = err
			return nil
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("read log stream: %w", io.ErrNoProgress)
}

// field is one field of a protobuf message: its number and wire type, and
// its value when that is a varint or length-delimited.
type field struct {
	num  protowire.Number
	typ  protowire.Type
	v    uint64 // varint value
	data []byte // length-delimited value
}

// nextField parses the field at the start of b and returns it and the rest
// of b. known gives the wire type of each known field number.
func nextField(b []byte, known []protowire.Type) (field, []byte, error) {
	var f field
	var n int
	f.num, f.typ, n = protowire.ConsumeTag(b)
	if n < 0 {
		return f, nil, protowire.ParseError(n)
	}
	if f.num > protowire.MaxValidNumber {
		return f, nil, fmt.Errorf("field number %d out of range", f.num)
	}
	b = b[n:]
	if f.num < protowire.Number(len(known)) && known[f.num] != f.typ {
		return f, nil, fmt.Errorf("field %d: %w %d", f.num, errWireType, f.typ)
	}
	switch f.typ {
	case protowire.VarintType:
		f.v, n = protowire.ConsumeVarint(b)
	case protowire.BytesType:
		f.data, n = protowire.ConsumeBytes(b)
	default:
		n = protowire.ConsumeFieldValue(f.num, f.typ, b)
	}
	if n < 0 {
		return f, nil, fmt.Errorf("field %d: %w", f.num, protowire.ParseError(n))
	}
	return f, b[n:], nil
}

// One-byte tags of the fields dockerd writes for every entry.
const (
	tagSource   = byte(fieldSource)<<3 | byte(protowire.BytesType)
	tagTimeNano = byte(fieldTimeNano)<<3 | byte(protowire.VarintType)
	tagLine     = byte(fieldLine)<<3 | byte(protowire.BytesType)
)

// unmarshalEntry parses a LogEntry message into e, which must be zero. Like
// protobuf, it skips unknown fields, keeps the last of repeated scalar
// fields and merges repeated sub-messages.
func unmarshalEntry(b []byte, e *LogEntry) error {
	for len(b) > 0 {
		if rest, ok := commonField(b, e); ok {
			b = rest
			continue
		}
		f, rest, err := nextField(b, entryTypes[:])
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case fieldSource:
			e.Source = source(f.data)
		case fieldTimeNano:
			e.TimeNano = int64(f.v)
		case fieldLine:
			e.Line = f.data
		case fieldPartial:
			e.Partial = protowire.DecodeBool(f.v)
		case fieldPartialMeta:
			e.HasPartialMeta = true
			if err := unmarshalMeta(f.data, e); err != nil {
				return fmt.Errorf("partial_log_metadata: %w", err)
			}
		}
	}
	return nil
}

// commonField parses the field at the start of b into e if it is a well
// formed source, time_nano or line, the fields of every entry, and returns
// the rest of b. ok is false for any other field, left to nextField.
func commonField(b []byte, e *LogEntry) (rest []byte, ok bool) {
	switch b[0] {
	case tagSource:
		var v []byte
		if v, rest, ok = lengthDelimited(b[1:]); ok {
			e.Source = source(v)
		}
		return rest, ok
	case tagTimeNano:
		v, n := protowire.ConsumeVarint(b[1:])
		if n < 0 {
			return nil, false
		}
		e.TimeNano = int64(v)
		return b[1+n:], true
	case tagLine:
		var v []byte
		if v, rest, ok = lengthDelimited(b[1:]); ok {
			e.Line = v
		}
		return rest, ok
	}
	return nil, false
}

// lengthDelimited splits b, which starts with a length-delimited value
// after its tag, into that value and the rest, as protowire.ConsumeBytes
// does; ok is false if b is malformed.
func lengthDelimited(b []byte) (v, rest []byte, ok bool) {
	if len(b) == 0 {
		return nil, nil, false
	}
	m, n := uint64(b[0]), 1
	if m >= 0x80 {
		if m, n = protowire.ConsumeVarint(b); n < 0 {
			return nil, nil, false
		}
	}
	if m > uint64(len(b)-n) {
		return nil, nil, false
	}
	return b[n:][:m], b[n+int(m):], true
}

// unmarshalMeta parses a PartialLogEntryMetadata message into the partial
// fields of e, over what an earlier occurrence put there.
func unmarshalMeta(b []byte, e *LogEntry) error {
	for len(b) > 0 {
		f, rest, err := nextField(b, metaTypes[:])
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case fieldMetaLast:
			e.PartialLast = protowire.DecodeBool(f.v)
		case fieldMetaID:
			e.PartialID = f.data
		case fieldMetaOrdinal:
			e.PartialOrdinal = int32(f.v)
		}
	}
	return nil
}

// source returns b as a string, without allocating for dockerd's two
// streams.
func source(b []byte) string {
	switch string(b) {
	case sourceStdout:
		return sourceStdout
	case sourceStderr:
		return sourceStderr
	}
	return string(b)
}

// AppendFrame appends e to dst as one frame: the big-endian uint32 length
// and the LogEntry message, without the fields that have their default
// value, as protobuf encodes them. partial_log_metadata is written when
// HasPartialMeta is set or any of its fields is not zero. AppendFrame does
// not allocate when dst has room for the frame.
func AppendFrame(dst []byte, e *LogEntry) []byte {
	meta := metaSize(e)
	size := entrySize(e, meta)
	dst = slices.Grow(dst, frameHeader+size)
	dst = binary.BigEndian.AppendUint32(dst, uint32(size))
	if e.Source != "" {
		dst = protowire.AppendTag(dst, fieldSource, protowire.BytesType)
		dst = protowire.AppendString(dst, e.Source)
	}
	if e.TimeNano != 0 {
		dst = protowire.AppendTag(dst, fieldTimeNano, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(e.TimeNano))
	}
	if len(e.Line) != 0 {
		dst = protowire.AppendTag(dst, fieldLine, protowire.BytesType)
		dst = protowire.AppendBytes(dst, e.Line)
	}
	if e.Partial {
		dst = protowire.AppendTag(dst, fieldPartial, protowire.VarintType)
		dst = protowire.AppendVarint(dst, protowire.EncodeBool(true))
	}
	if meta < 0 {
		return dst
	}
	dst = protowire.AppendTag(dst, fieldPartialMeta, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(meta))
	if e.PartialLast {
		dst = protowire.AppendTag(dst, fieldMetaLast, protowire.VarintType)
		dst = protowire.AppendVarint(dst, protowire.EncodeBool(true))
	}
	if len(e.PartialID) != 0 {
		dst = protowire.AppendTag(dst, fieldMetaID, protowire.BytesType)
		dst = protowire.AppendBytes(dst, e.PartialID)
	}
	if e.PartialOrdinal != 0 {
		dst = protowire.AppendTag(dst, fieldMetaOrdinal, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(e.PartialOrdinal)))
	}
	return dst
}

// metaSize returns the encoded size of e's partial_log_metadata message, or
// -1 when AppendFrame leaves it out.
func metaSize(e *LogEntry) int {
	if !e.HasPartialMeta && !e.PartialLast && len(e.PartialID) == 0 && e.PartialOrdinal == 0 {
		return -1
	}
	n := 0
	if e.PartialLast {
		n += protowire.SizeTag(fieldMetaLast) + 1
	}
	if len(e.PartialID) != 0 {
		n += protowire.SizeTag(fieldMetaID) + protowire.SizeBytes(len(e.PartialID))
	}
	if e.PartialOrdinal != 0 {
		n += protowire.SizeTag(fieldMetaOrdinal) + protowire.SizeVarint(uint64(int64(e.PartialOrdinal)))
	}
	return n
}

// entrySize returns the encoded size of e's LogEntry message, given the
// size of its partial_log_metadata from metaSize.
func entrySize(e *LogEntry, meta int) int {
	n := 0
	if e.Source != "" {
		n += protowire.SizeTag(fieldSource) + protowire.SizeBytes(len(e.Source))
	}
	if e.TimeNano != 0 {
		n += protowire.SizeTag(fieldTimeNano) + protowire.SizeVarint(uint64(e.TimeNano))
	}
	if len(e.Line) != 0 {
		n += protowire.SizeTag(fieldLine) + protowire.SizeBytes(len(e.Line))
	}
	if e.Partial {
		n += protowire.SizeTag(fieldPartial) + 1
	}
	if meta >= 0 {
		n += protowire.SizeTag(fieldPartialMeta) + protowire.SizeBytes(meta)
	}
	return n
}
