package diskq

import (
	"context"
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

// Read waits until an entry can be read and then passes entries to fn,
// oldest first: up to maxEvents of them, and maxBytes by
// forward.EventSize (but always at least one). Each item has a Token for
// Ack; the item and its Line are valid only during the call to fn, which
// copies what it keeps. fn returns false to leave that entry, and those
// after it, for the next Read: the first entry of a Read cannot be left.
// It returns how many entries fn took. Entries stay in the queue, and are
// handed out again by a queue opened after this one is closed, until they
// are acknowledged. The only memory Read uses is a read window from a
// pool shared by every queue, given back before it returns. Read returns
// ctx.Err() if ctx ends before an entry can be read, and
// forward.ErrQueueClosed once CloseWrite was called and everything was
// handed out, or after Close.
func (q *Queue) Read(ctx context.Context, maxEvents, maxBytes int, fn func(*forward.Item) bool) (int, error) {
	q.readMu.Lock()
	defer q.readMu.Unlock()
	return q.readLocked(ctx, maxEvents, maxBytes, fn)
}

func (q *Queue) readLocked(ctx context.Context, maxEvents, maxBytes int, fn func(*forward.Item) bool) (int, error) {
	if maxEvents <= 0 {
		maxEvents = 1
	}
	if err := q.waitReady(ctx); err != nil {
		return 0, err
	}
	r := &q.r
	defer r.putWindow()
	total, totalBytes := 0, 0
	for {
		select {
		case <-q.stop:
			return total, forward.ErrQueueClosed
		default:
		}
		q.mu.Lock()
		seg := q.readableLocked()
		if seg == nil {
			drained := q.closedW && q.drainedLocked()
			q.wantEvents, q.wantBytes = 1, 1
			q.mu.Unlock()
			if total > 0 {
				return total, nil
			}
			if drained {
				r.release()
				return 0, forward.ErrQueueClosed
			}
			if err := q.waitRead(ctx); err != nil {
				return 0, err
			}
			continue
		}
		limit, sealed, pos, token := seg.size, seg.sealed, seg.rpos, q.nextToken
		q.mu.Unlock()

		var err error
		var n, bytes int
		pass := min(maxEvents-total, readPass)
		r.skips = 0
		r.starts, r.ends = r.starts[:0], r.ends[:0]
		if pos < limit {
			if err = r.open(q.fs, seg); err == nil {
				n, pos, bytes, err = r.read(pos, limit, pass, maxBytes-totalBytes, total > 0, token, fn)
			}
		}
		total += n
		totalBytes += bytes

		q.mu.Lock()
		q.corrupt += uint64(r.skips)
		for i := range n {
			q.ring.push(handout{seg: seg, start: uint32(r.starts[i]), end: uint32(r.ends[i])})
		}
		q.nextToken += uint64(n)
		seg.handed += n
		if seg.dropped || seg.deleted {
			// Dropped while it was read: these entries were counted as
			// dropped, yet fn has them now; they are in flight.
			q.dropped -= uint64(min(n, int(q.dropped)))
			q.mu.Unlock()
			if total > 0 {
				return total, nil
			}
			continue
		}
		seg.rpos = pos
		if err != nil {
			// The file cannot be read (it vanished, or an I/O error):
			// give up on the rest of it rather than loop.
			q.corrupt++
			if k := seg.records - seg.handed; k > 0 {
				q.dropped += uint64(k)
			}
			seg.rpos, seg.sealed, sealed = limit, true, true
		}
		if seg.rpos >= limit && sealed {
			seg.done = true
			r.release()
			q.wakeWriter() // it may be deletable
		}
		q.mu.Unlock()
		if r.skips > 0 {
			q.log.Warn("disk buffer: skipped corrupt or torn data", "segment", seg.path, "regions", r.skips)
		}
		if err != nil {
			q.log.Error("disk buffer: cannot read a segment, skipping it", "segment", seg.path, "error", err)
		}
		// A full pass: more may be there, in this segment or the next.
		if r.refused || total >= maxEvents || (total > 0 && n < pass) {
			return total, nil
		}
	}
}

// waitReady waits until the first adoption of what earlier queues left
// is done, so that it is handed out first.
func (q *Queue) waitReady(ctx context.Context) error {
	select {
	case <-q.ready:
		return nil
	default:
	}
	select {
	case <-q.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-q.stop:
		return forward.ErrQueueClosed
	}
}

// Wait waits until at least minEvents entries or minBytes bytes of them
// are written and not handed out yet (and at least one entry is), or,
// once CloseWrite was called, any entry is; it returns ctx.Err() if ctx
// ends first, and forward.ErrQueueClosed once CloseWrite was called and
// everything was handed out, or after Close. It reads nothing: a sink
// waits with it for a batch to fill on disk, not in memory.
func (q *Queue) Wait(ctx context.Context, minEvents int, minBytes int64) error {
	q.readMu.Lock()
	defer q.readMu.Unlock()
	if err := q.waitReady(ctx); err != nil {
		return err
	}
	minEvents, minBytes = max(minEvents, 1), max(minBytes, 1)
	for {
		select {
		case <-q.stop:
			return forward.ErrQueueClosed
		default:
		}
		q.mu.Lock()
		q.passReadLocked()
		events, bytes := q.unreadLocked()
		switch {
		case events > 0 && (events >= minEvents || bytes >= minBytes || q.closedW):
			q.wantEvents, q.wantBytes = 1, 1
			q.mu.Unlock()
			return nil
		case q.closedW && q.drainedLocked():
			q.mu.Unlock()
			return forward.ErrQueueClosed
		}
		q.wantEvents, q.wantBytes = minEvents, minBytes
		q.mu.Unlock()
		if err := q.waitRead(ctx); err != nil {
			q.mu.Lock()
			q.wantEvents, q.wantBytes = 1, 1
			q.mu.Unlock()
			return err
		}
	}
}

// passReadLocked marks done the segments read to their end that were
// sealed after the last Read: Read passes them too, but a Wait that found
// nothing else to hand out would otherwise never see the queue drained.
// q.readMu is held.
func (q *Queue) passReadLocked() {
	for _, s := range q.segs {
		if s.done || s.dropped || s.deleted || !s.sealed || s.rpos < s.size {
			continue
		}
		s.done = true
		if q.r.seg == s {
			q.r.release()
		}
		q.wakeWriter() // it may be deletable
	}
}

// unreadLocked returns the entries written and not handed out yet, and
// their bytes (frames, corrupt regions included).
func (q *Queue) unreadLocked() (events int, bytes int64) {
	for _, s := range q.segs {
		if s.done || s.dropped || s.deleted {
			continue
		}
		events += max(s.records-s.handed, 0)
		bytes += s.size - s.rpos
	}
	return events, bytes
}

// Rewind takes back the entries handed out with tokens from and later:
// they are handed out again by the next reads, in order and with the same
// tokens, as if they had never been. A sink that could not deliver a
// batch rewinds it and reads it again for its next attempt, instead of
// keeping it in memory meanwhile. Entries of a segment dropped since
// cannot be read again: they are lost, and counted in Dropped.
func (q *Queue) Rewind(from uint64) {
	q.readMu.Lock()
	defer q.readMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	from = max(from, q.ringBase)
	if from >= q.nextToken {
		return
	}
	first := int(from - q.ringBase)
	for i := q.ring.len() - 1; i >= first; i-- {
		h := q.ring.at(i)
		s := h.seg
		if s.dropped || s.deleted {
			if !h.lost && !h.acked {
				q.dropped++
			}
			continue
		}
		s.handed--
		s.rpos = min(s.rpos, int64(h.start))
		s.done = false
	}
	q.ring.truncate(first)
	q.nextToken = from
}

// Reread passes the entries handed out with tokens in [from, to), and not
// acknowledged yet, to fn again, in order, with their tokens, as Read did
// (the item is valid only during the call): a sink that gave back the
// memory of a batch it could not deliver reads it again with Reread for
// the next attempt. Entries of a segment dropped since are lost: skipped,
// and counted in Dropped (once). It returns how many entries fn got.
func (q *Queue) Reread(from, to uint64, fn func(*forward.Item)) (int, error) {
	q.readMu.Lock()
	defer q.readMu.Unlock()
	r := &q.r
	defer r.putWindow()
	spans := r.spans[:0]
	q.mu.Lock()
	from, to = max(from, q.ringBase), min(to, q.nextToken)
	for t := from; t < to; t++ {
		h := q.ring.at(int(t - q.ringBase))
		switch {
		case h.acked || h.lost:
		case h.seg.dropped || h.seg.deleted:
			h.lost = true
			q.dropped++
		default:
			spans = append(spans, span{seg: h.seg, start: int64(h.start), end: int64(h.end), limit: h.seg.size, token: t})
		}
	}
	q.mu.Unlock()
	defer func() {
		clear(spans)
		r.spans = spans[:0]
		if cap(spans) > 4096 {
			r.spans = nil
		}
	}()
	n := 0
	for _, sp := range spans {
		if err := r.open(q.fs, sp.seg); err != nil {
			return n, err
		}
		r.src.limit = sp.limit
		payload, _, _, err := nextFrame(&r.src, sp.start, sp.end)
		if err != nil {
			return n, err
		}
		it := &r.item
		*it = forward.Item{}
		if payload == nil || decodePayload(payload, it) != nil {
			continue // it read back intact before: the file was damaged since
		}
		it.Token = sp.token
		fn(it)
		n++
	}
	return n, nil
}

// readableLocked returns the first segment the reader has something to do
// with: entries to read, or a sealed end to pass. The segment being
// written, once read to its end, is passed over: segments adopted later
// may come after it. nil when there is nothing to do for now.
func (q *Queue) readableLocked() *segment {
	for _, s := range q.segs {
		if s.done || s.dropped || s.deleted {
			continue
		}
		if s.rpos < s.size || s.sealed {
			return s
		}
	}
	return nil
}

// drainedLocked reports whether nothing is left to hand out or to write.
func (q *Queue) drainedLocked() bool {
	return len(q.pending) == q.pstart && q.writing == 0 && q.readableLocked() == nil
}

func (q *Queue) waitRead(ctx context.Context) error {
	select {
	case <-q.readWake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-q.stop:
		return forward.ErrQueueClosed
	}
}

func (q *Queue) wakeReader() {
	select {
	case q.readWake <- struct{}{}:
	default:
	}
}

// wakeReaderIfDueLocked wakes the reader if what it waits for is there.
func (q *Queue) wakeReaderIfDueLocked() {
	if events, bytes := q.unreadLocked(); events >= q.wantEvents || bytes >= q.wantBytes {
		q.wakeReader()
	}
}
