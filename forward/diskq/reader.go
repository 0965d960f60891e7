package diskq

import (
	"io"
	"os"

	"github.com/logferry/logferry/forward"
)

// readChunk is how much the reader reads from a segment file at a time.
const readChunk = 64 << 10

// reader is Next's state, guarded by Queue.readMu.
type reader struct {
	seg   *segment
	f     File
	src   fileSource
	arena []byte  // the lines handed out by the last Next
	ends  []int64 // end offset of each entry read by the last read
	skips int     // corrupt regions passed over by the last read
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
	r.src.f, r.src.buf, r.src.off = f, r.src.buf[:0], 0
	return nil
}

// release closes the segment file read, if any.
func (r *reader) release() {
	if r.f != nil {
		r.f.Close()
	}
	r.seg, r.f, r.src.f = nil, nil, nil
	if cap(r.src.buf) > 4*readChunk {
		r.src.buf = nil // a big entry passed: do not keep its memory
	} else {
		r.src.buf = r.src.buf[:0]
	}
}

// read appends the intact entries of the open segment from pos (up to
// maxEvents, and maxBytes by forward.EventSize but at least one) to dst,
// copying their lines into the arena, and returns the offset reached.
func (r *reader) read(dst []forward.Item, pos, limit int64, maxEvents, maxBytes int) ([]forward.Item, int64, error) {
	r.ends = r.ends[:0]
	r.src.limit = limit
	n, bytes := 0, 0
	for n < maxEvents {
		payload, end, skipped, err := nextFrame(&r.src, pos, limit)
		if skipped {
			r.skips++
		}
		if err != nil {
			return dst, pos, err
		}
		if payload == nil {
			return dst, limit, nil
		}
		var it forward.Item
		if err := decodePayload(payload, &it); err != nil {
			r.skips++ // intact, yet not an entry this version can read
			pos = end
			continue
		}
		size := forward.EventSize(&it.Event)
		if n > 0 && bytes+size > maxBytes {
			return dst, end - int64(frameHeaderSize+len(payload)), nil
		}
		start := len(r.arena)
		r.arena = append(r.arena, it.Line...)
		it.Line = r.arena[start:len(r.arena):len(r.arena)]
		dst = append(dst, it)
		r.ends = append(r.ends, end)
		pos = end
		bytes += size
		n++
	}
	return dst, pos, nil
}

// fileSource is a source over a segment file, read in chunks.
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
	if int64(cap(s.buf)) < size {
		s.buf = make([]byte, size)
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
