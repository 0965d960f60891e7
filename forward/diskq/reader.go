package diskq

import (
	"io"
	"os"

	"github.com/logferry/logferry/forward"
)

// readChunk is how much the reader reads from a segment file at a time.
const readChunk = 64 << 10

// reader is the state of the reading methods, guarded by Queue.readMu.
type reader struct {
	seg     *segment
	f       File
	src     fileSource
	starts  []int64 // start and end offsets of each entry taken by the last read
	ends    []int64
	skips   int  // corrupt regions passed over by the last read
	refused bool // the last read stopped at an entry fn left
	spans   []span
	// item is the entry passed to fn: one for every entry, so that
	// passing it does not allocate.
	item forward.Item
}

// span is an entry to read again, for Reread.
type span struct {
	seg               *segment
	start, end, limit int64
	token             uint64
}

// open makes seg the segment read, opening its file.
func (r *reader) open(fsys FS, seg *segment) error {
	if r.seg == seg && r.f != nil {
		return nil
	}
	r.release()
	f, err := fsys.OpenFile(seg.path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	r.seg, r.f = seg, f
	r.src.f, r.src.off = f, 0
	r.src.buf = r.src.buf[:0]
	return nil
}

// release closes the segment file read, if any.
func (r *reader) release() {
	if r.f != nil {
		r.f.Close()
	}
	r.seg, r.f, r.src.f = nil, nil, nil
	r.src.buf = r.src.buf[:0]
}

// putWindow gives the read window back to the pool, once a reading method
// is done: a queue holds no read buffer between reads.
func (r *reader) putWindow() {
	putReadBuf(r.src.buf)
	r.src.buf, r.src.off = nil, 0
	r.item = forward.Item{}

}

// read passes the intact entries of the open segment from pos to fn (up
// to maxEvents, and maxBytes by forward.EventSize but at least one unless
// some were taken already), the first with Token token, and returns how
// many fn took, the offset reached and their bytes. It notes the offsets
// of the entries taken in starts and ends.
func (r *reader) read(pos, limit int64, maxEvents, maxBytes int, taken bool, token uint64, fn func(*forward.Item) bool) (int, int64, int, error) {
	r.src.limit = limit
	r.refused = false
	n, bytes := 0, 0
	own := r.seg.gen.own
	for n < maxEvents {
		var payload []byte
		var end int64
		var skipped bool
		var err error
		if own {
			payload, end, err = ownFrame(&r.src, pos, limit)
		} else {
			payload, end, skipped, err = nextFrame(&r.src, pos, limit)
		}
		if skipped {
			r.skips++
		}
		if err != nil {
			return n, pos, bytes, err
		}
		if payload == nil {
			return n, limit, bytes, nil
		}
		start := end - int64(frameHeaderSize+len(payload))
		it := &r.item
		*it = forward.Item{}
		if err := decodePayload(payload, it); err != nil {
			r.skips++ // intact, yet not an entry this version can read
			pos = end
			continue
		}
		size := forward.EventSize(&it.Event)
		if (n > 0 || taken) && bytes+size > maxBytes {
			r.refused = true // full: as if fn had left it
			return n, start, bytes, nil
		}
		it.Token = token + uint64(n)
		if !fn(it) {
			r.refused = true
			return n, start, bytes, nil
		}
		r.starts = append(r.starts, start)
		r.ends = append(r.ends, end)
		pos = end
		bytes += size
		n++
	}
	r.item = forward.Item{}
	return n, pos, bytes, nil
}

// fileSource is a source over a segment file, read in chunks into a
// window from the pool.
type fileSource struct {
	f     File
	buf   []byte
	off   int64 // file offset of buf[0]
	limit int64 // readable end of the file
}

func (s *fileSource) window(off int64, n int) ([]byte, error) {
	if off >= s.off && off+int64(n) <= s.off+int64(len(s.buf)) {
		i := off - s.off
		return s.buf[i : i+int64(n)], nil
	}
	size := int64(max(n, readChunk))
	size = min(size, s.limit-off)
	if size < int64(n) {
		return nil, io.ErrUnexpectedEOF
	}
	if s.buf == nil {
		s.buf = getReadBuf()
	}
	if int64(cap(s.buf)) < size {
		putReadBuf(s.buf)
		s.buf = make([]byte, size) // a big entry: not kept after this read
	}
	b := s.buf[:size]
	got, err := s.f.ReadAt(b, off)
	if got < n {
		s.buf = s.buf[:0]
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF // the file is shorter than it was
		}
		return nil, err
	}
	s.buf, s.off = b[:got], off
	return s.buf[:n], nil
}
