package diskq

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"

	"github.com/logferry/logferry/forward"
)

// On-disk format, version 1. Integers are little-endian.
//
// Segment file: a 32-byte header, then frames back to back.
//
//	0  magic "LFQS"
//	4  u16 format version (1)
//	6  u16 flags (0)
//	8  u64 generation
//	16 u64 segment number within the generation
//	24 u32 reserved (0)
//	28 u32 CRC-32C of bytes 0..28
//
// Frame: a 12-byte header, then the payload.
//
//	0  u32 payload length (minPayload .. MaxRecordSize)
//	4  u32 CRC-32C of the payload
//	8  u32 CRC-32C of bytes 0..8
//
// The header checksum lets a reader that lost its way (after corrupt
// bytes) find the next frame by trying every offset, without reading a
// payload for each false candidate.
//
// Payload: one event.
//
//	0  u8  flags: bits 0-1 source (0 other, 1 stdout, 2 stderr),
//	       bit 2 partial, bit 3 last piece, bit 4 zero time; bits 5-7 are 0
//	1  i64 time, nanoseconds since 1970 (0 with the zero-time flag)
//	9  uvarint seq (the sink's number for the event, forward.Item.Seq)
//	   [uvarint length, source]          when the source is "other"
//	   [uvarint length, partial ID,
//	    varint ordinal]                  when partial
//	   line: the rest of the payload
//
// Acknowledgement file "ack" of a generation: 32 bytes, rewritten in place.
//
//	0  magic "LFQA"
//	4  u16 format version (1)
//	6  u16 flags (0)
//	8  u64 segment number
//	16 u64 offset in that segment
//	24 u32 reserved (0)
//	28 u32 CRC-32C of bytes 0..28
//
// It says that every entry of the earlier segments, and every entry of
// that segment ending at or before the offset, was acknowledged.
const (
	segMagic        = "LFQS"
	ackMagic        = "LFQA"
	formatVersion   = 1
	headerSize      = 32
	ackSize         = 32
	frameHeaderSize = 12
	// minPayload is the flags byte and the time.
	minPayload = 9
	// MaxRecordSize bounds the payload of one entry; a bigger event is
	// dropped (and counted) by Append.
	MaxRecordSize = 8 << 20
)

const (
	srcOther    = 0
	srcStdout   = 1
	srcStderr   = 2
	srcMask     = 3
	flagPartial = 1 << 2
	flagLast    = 1 << 3
	flagZero    = 1 << 4
	flagUnknown = 0xe0
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

var (
	errBadHeader  = errors.New("bad segment header")
	errBadPayload = errors.New("malformed entry")
)

// putFileHeader fills b (32 bytes) with a segment or ack file header.
func putFileHeader(b []byte, magic string, a, c uint64) {
	copy(b[0:4], magic)
	binary.LittleEndian.PutUint16(b[4:], formatVersion)
	binary.LittleEndian.PutUint16(b[6:], 0)
	binary.LittleEndian.PutUint64(b[8:], a)
	binary.LittleEndian.PutUint64(b[16:], c)
	binary.LittleEndian.PutUint32(b[24:], 0)
	binary.LittleEndian.PutUint32(b[28:], checksum(b[:28]))
}

// parseFileHeader checks a segment or ack file header and returns its two
// numbers.
func parseFileHeader(b []byte, magic string) (a, c uint64, err error) {
	if len(b) < headerSize || string(b[0:4]) != magic ||
		binary.LittleEndian.Uint16(b[4:]) != formatVersion ||
		binary.LittleEndian.Uint32(b[28:]) != checksum(b[:28]) {
		return 0, 0, errBadHeader
	}
	return binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]), nil
}

var zeroFrameHeader [frameHeaderSize]byte

// appendFrame appends the frame of ev and seq to b, with its checksums
// left for sealFrame to fill in: the queue's goroutine does that just
// before the write, so that Append, on the container's FIFO path, does
// not. It does not allocate when b has room.
func appendFrame(b []byte, ev *forward.Event, seq uint32) []byte {
	start := len(b)
	b = append(b, zeroFrameHeader[:]...)
	b = appendPayload(b, ev, seq)
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start-frameHeaderSize))
	return b
}

// sealFrame fills in the checksums of the frame at the start of f, as
// appendFrame left it, and returns the frame's size.
func sealFrame(f []byte) int {
	l := frameHeaderSize + int(binaryLE32(f))
	binary.LittleEndian.PutUint32(f[4:], checksum(f[frameHeaderSize:l]))
	binary.LittleEndian.PutUint32(f[8:], checksum(f[:8]))
	return l
}

// frameSize returns the size of the frame of ev, without encoding it.
func frameSize(ev *forward.Event, seq uint32) int {
	n := frameHeaderSize + minPayload + uvarintLen(uint64(seq)) + len(ev.Line)
	switch ev.Source {
	case "stdout", "stderr":
	default:
		n += uvarintLen(uint64(len(ev.Source))) + len(ev.Source)
	}
	if p := ev.Partial; p != nil {
		n += uvarintLen(uint64(len(p.ID))) + len(p.ID) + varintLen(int64(p.Ordinal))
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func varintLen(v int64) int {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	return uvarintLen(u)
}

func appendPayload(b []byte, ev *forward.Event, seq uint32) []byte {
	var flags byte
	switch ev.Source {
	case "stdout":
		flags = srcStdout
	case "stderr":
		flags = srcStderr
	default:
		flags = srcOther
	}
	if p := ev.Partial; p != nil {
		flags |= flagPartial
		if p.Last {
			flags |= flagLast
		}
	}
	var ns int64
	if ev.Time.IsZero() {
		flags |= flagZero
	} else {
		ns = ev.Time.UnixNano()
	}
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint64(b, uint64(ns))
	b = binary.AppendUvarint(b, uint64(seq))
	if flags&srcMask == srcOther {
		b = binary.AppendUvarint(b, uint64(len(ev.Source)))
		b = append(b, ev.Source...)
	}
	if p := ev.Partial; p != nil {
		b = binary.AppendUvarint(b, uint64(len(p.ID)))
		b = append(b, p.ID...)
		b = binary.AppendVarint(b, int64(p.Ordinal))
	}
	return append(b, ev.Line...)
}

// decodePayload decodes an event from p into it (Token untouched). Line
// aliases p; Source is a constant for stdout and stderr.
func decodePayload(p []byte, it *forward.Item) error {
	if len(p) < minPayload {
		return errBadPayload
	}
	flags := p[0]
	if flags&flagUnknown != 0 || flags&srcMask == 3 || (flags&flagLast != 0 && flags&flagPartial == 0) {
		return errBadPayload
	}
	ns := int64(binary.LittleEndian.Uint64(p[1:9]))
	rest := p[9:]
	seq, n := binary.Uvarint(rest)
	if n <= 0 || seq > 1<<32-1 {
		return errBadPayload
	}
	rest = rest[n:]
	ev := forward.Event{}
	if flags&flagZero == 0 {
		ev.Time = time.Unix(0, ns)
	} else if ns != 0 {
		return errBadPayload
	}
	switch flags & srcMask {
	case srcStdout:
		ev.Source = "stdout"
	case srcStderr:
		ev.Source = "stderr"
	default:
		s, r, ok := cutBytes(rest)
		if !ok {
			return errBadPayload
		}
		ev.Source, rest = string(s), r
	}
	if flags&flagPartial != 0 {
		id, r, ok := cutBytes(rest)
		if !ok {
			return errBadPayload
		}
		ord, n := binary.Varint(r)
		if n <= 0 || ord != int64(int(ord)) {
			return errBadPayload
		}
		ev.Partial = &forward.Partial{ID: string(id), Ordinal: int(ord), Last: flags&flagLast != 0}
		rest = r[n:]
	}
	ev.Line = rest
	it.Event, it.Seq = ev, uint32(seq)
	return nil
}

// cutBytes splits a uvarint-length-prefixed byte string off b.
func cutBytes(b []byte) (s, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, false
	}
	return b[n : n+int(l)], b[n+int(l):], true
}

// frameHeaderOK checks a frame header and returns the payload length.
func frameHeaderOK(h []byte) (int, bool) {
	l := binary.LittleEndian.Uint32(h[0:])
	if l < minPayload || l > MaxRecordSize || binary.LittleEndian.Uint32(h[8:]) != checksum(h[:8]) {
		return 0, false
	}
	return int(l), true
}

// source gives a frame scanner the bytes of a segment.
type source interface {
	// window returns bytes [off, off+n) of the segment, n > 0, which the
	// caller knows to exist; the slice is valid until the next call.
	window(off int64, n int) ([]byte, error)
}

// nextFrame returns the payload of the first intact frame at or after pos
// that ends at or before limit, and the offset after it. A nil payload
// means there is none before limit (end is limit then). skipped reports
// that bytes which are not an intact frame were passed over: a torn write
// at the end of a segment, or corruption; the scan resynchronises on the
// next offset where a frame header and its payload check out.
func nextFrame(src source, pos, limit int64) (payload []byte, end int64, skipped bool, err error) {
	for pos+frameHeaderSize <= limit {
		h, err := src.window(pos, frameHeaderSize)
		if err != nil {
			return nil, pos, skipped, err
		}
		if l, ok := frameHeaderOK(h); ok && pos+frameHeaderSize+int64(l) <= limit {
			want := binaryLE32(h[4:])
			f, err := src.window(pos, frameHeaderSize+l)
			if err != nil {
				return nil, pos, skipped, err
			}
			if checksum(f[frameHeaderSize:]) == want {
				return f[frameHeaderSize:], pos + frameHeaderSize + int64(l), skipped, nil
			}
		}
		skipped = true
		pos++
	}
	if pos < limit {
		skipped = true // a tail too short for a frame header
	}
	return nil, limit, skipped, nil
}

// ownFrame returns the payload of the frame at pos, and the offset after
// it, in a segment this queue wrote, read no further than its recorded
// size: every frame there is as the writer sealed it (a write that failed
// was undone, or left past that size), so it is not checked again. A nil
// payload means pos is at limit.
func ownFrame(src source, pos, limit int64) (payload []byte, end int64, err error) {
	if pos+frameHeaderSize > limit {
		return nil, limit, nil
	}
	h, err := src.window(pos, frameHeaderSize)
	if err != nil {
		return nil, pos, err
	}
	end = pos + frameHeaderSize + int64(binaryLE32(h))
	if end > limit {
		return nil, pos, errBadPayload // not as written: give up on the segment
	}
	f, err := src.window(pos, int(end-pos))
	if err != nil {
		return nil, pos, err
	}
	return f[frameHeaderSize:], end, nil
}

func binaryLE32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// memSource is a source over a segment held in memory.
type memSource []byte

func (m memSource) window(off int64, n int) ([]byte, error) { return m[off : off+int64(n)], nil }

// DecodeSegment decodes a whole segment file held in memory, calling emit
// for each intact entry in order (the item's Line aliases data). It
// returns the number of entries and of corrupt regions skipped; a segment
// whose header is bad counts as one corrupt region and yields nothing.
// It is the decoder the queue uses, for tests, fuzzing and tools.
func DecodeSegment(data []byte, emit func(it *forward.Item)) (entries, corrupt int) {
	if _, _, err := parseFileHeader(data, segMagic); err != nil {
		return 0, 1
	}
	pos, limit := int64(headerSize), int64(len(data))
	var it forward.Item
	for {
		p, end, skipped, _ := nextFrame(memSource(data), pos, limit)
		if skipped {
			corrupt++
		}
		if p == nil {
			return entries, corrupt
		}
		pos = end
		if err := decodePayload(p, &it); err != nil {
			corrupt++
			continue
		}
		entries++
		if emit != nil {
			emit(&it)
		}
	}
}
