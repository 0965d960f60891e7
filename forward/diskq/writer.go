package diskq

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// writer is the state of writing to segment files, guarded by Queue.wmu:
// whoever writes (Append, Flush, the I/O goroutine) holds it.
type writer struct {
	wbuf  []byte // frames taken from pending, written from wpos
	wpos  int
	f     File     // file of seg, open for appending
	seg   *segment // segment being written
	dirty int64    // bytes written to f since its last fsync
	// retired are files no longer written (sealed, or dropped), for the
	// I/O goroutine to fsync and close: a writer never waits for fsync.
	retired []retiredFile
	// dirSync is set when a segment was created: the I/O goroutine
	// fsyncs the directory, so that the file survives a power loss.
	dirSync bool
	closed  bool // Close wrote what it could: no more writes
}

type retiredFile struct {
	f     File
	seg   *segment
	dirty bool
	// due is when the file is fsynced if its segment is still needed
	// then; set by closeRetired.
	due time.Time
}

// ioState is the I/O goroutine's own state.
type ioState struct {
	lastSync    time.Time
	lastPersist time.Time // when the ack files were last written
	retry       *time.Timer
	retryArmed  time.Time // when the retry timer is set to fire
	flush       *time.Timer
	flushArmed  bool
	known       map[uint64]bool // generations owned or adopted
	// unsynced are retired files with bytes not yet fsynced, kept open
	// until their fsync is due (syncRetired).
	unsynced []retiredFile
	// dirDue, when set, is when the own generation's directory is
	// fsynced, for the segments created since it last was.
	dirDue time.Time
}

// run is the I/O goroutine: it adopts what earlier queues left, writes
// what Append left in memory for FlushDelay (and retries after a failed
// write), fsyncs, closes retired files, deletes acknowledged segments and
// records the acknowledged position, until Close.
func (q *Queue) run() {
	defer close(q.done)
	io := &q.io
	io.known = map[uint64]bool{q.own.id: true}
	io.lastSync, io.lastPersist = time.Now(), time.Now()
	io.retry = time.NewTimer(time.Hour)
	io.retry.Stop()
	io.flush = time.NewTimer(time.Hour)
	io.flush.Stop()
	tick := time.NewTicker(q.cfg.SyncInterval)
	defer tick.Stop()
	rescan := time.NewTicker(q.cfg.RescanInterval)
	defer rescan.Stop()

	// Scanning what earlier queues left reads their files, which may take
	// a while: a helper does it, so that writing goes on meanwhile.
	var helper sync.WaitGroup
	found := make(chan []loaded, 1)
	scan := func() {
		known := make(map[uint64]bool, len(io.known))
		for id := range io.known {
			known[id] = true
		}
		helper.Go(func() { found <- q.loadAll(known) })
	}
	scan()
	scanning, ready := true, false
	for {
		select {
		case gens := <-found:
			scanning = false
			q.publish(gens, !ready)
			if !ready {
				ready = true
				close(q.ready)
			}
			q.wakeReader()
		case <-rescan.C:
			q.mu.Lock()
			closed := q.closedW
			q.mu.Unlock()
			if !scanning && !closed {
				scanning = true
				scan()
			}
		case <-q.kick:
			if q.writeNow.Swap(false) {
				q.Flush()
				<-writeSlots()
			}
		case <-tick.C:
		case <-io.retry.C:
			io.retryArmed = time.Time{}
			q.Flush()
		case <-io.flush.C:
			io.flushArmed = false
			q.mu.Lock()
			q.flushDue = false
			q.mu.Unlock()
			q.Flush()
		case <-q.stop:
			if q.writeNow.Swap(false) {
				<-writeSlots() // finish or die deals with what waits
			}
			helper.Wait()
			select {
			case gens := <-found:
				for _, l := range gens { // leave them to the next queue
					l.g.lock.Close()
				}
			default:
			}
			if !ready {
				close(q.ready)
			}
			if q.crash {
				q.die()
				return
			}
			q.finish()
			return
		}
		q.armTimers()
		q.closeRetired()
		q.housekeep(false)
	}
}

// armTimers sets the delayed flush when entries wait in memory, and the
// retry after a failed write.
func (q *Queue) armTimers() {
	io := &q.io
	q.mu.Lock()
	due, failing, failedAt := q.flushDue, q.failing, q.failedAt
	q.mu.Unlock()
	retryAt := failedAt.Add(q.cfg.RetryInterval)
	if due && !io.flushArmed {
		io.flush.Reset(q.cfg.FlushDelay)
		io.flushArmed = true
	}
	if failing && !retryAt.Equal(io.retryArmed) {
		io.retry.Reset(max(time.Until(retryAt), 0))
		io.retryArmed = retryAt
	}
}

// flushLocked writes the frames waiting in memory; q.wmu is held. After a
// failure it does nothing until retryThrottle has passed, unless force.
func (q *Queue) flushLocked(force bool) {
	if q.w.closed {
		return
	}
	q.mu.Lock()
	failing, failedAt := q.failing, q.failedAt
	q.mu.Unlock()
	if failing && !force && time.Now().Before(failedAt.Add(retryThrottle)) {
		return
	}
	for q.w.wpos < len(q.w.wbuf) || q.takePending() {
		if err := q.writeSome(); err != nil {
			q.mu.Lock()
			q.writeErrors++
			was := q.failing
			q.failing, q.failedAt = true, time.Now()
			q.mu.Unlock()
			if !was {
				q.log.Error("disk buffer: cannot write; entries wait in memory, and are dropped once that is full, until writing works again",
					"dir", q.own.dir, "error", err)
			}
			q.wakeWriter() // to retry
			return
		}
	}
	putWriteBuf(q.w.wbuf)
	q.w.wbuf, q.w.wpos = nil, 0
	if failing {
		q.mu.Lock()
		q.failing, q.failedAt = false, time.Time{}
		q.mu.Unlock()
		q.log.Info("disk buffer: writing works again", "dir", q.own.dir)
	}
	if q.w.dirty >= q.cfg.SyncBytes {
		q.wakeWriter() // to fsync
	}
}

// takePending moves a buffer handed off, or else the frames waiting in
// memory, to the writer, whose buffer is all written, and gives that
// buffer back to the pool; false when none wait.
func (q *Queue) takePending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	putWriteBuf(q.w.wbuf)
	q.w.wbuf, q.w.wpos = nil, 0
	if q.handoff != nil { // its frames count in writing already
		q.w.wbuf, q.w.wpos = q.handoff, q.hstart
		q.handoff, q.hstart = nil, 0
		return true
	}
	q.writing, q.writingRecs = 0, 0
	if len(q.pending) == q.pstart {
		q.noteMemLocked()
		return false
	}
	q.w.wbuf, q.w.wpos = q.pending, q.pstart
	q.pending, q.pstart = nil, 0
	q.writing, q.writingRecs = int64(len(q.w.wbuf)-q.w.wpos), q.pendingRecs
	q.pendingRecs = 0
	q.noteMemLocked()
	q.roomMadeLocked() // room in memory
	return true
}

// writeSome writes frames from wbuf to the active segment with one write:
// as many as fit in the segment (at least one). A failed write is undone,
// so that the segment stays a sequence of intact frames. q.wmu is held.
func (q *Queue) writeSome() error {
	seg, err := q.activeSegment()
	if err != nil {
		return err
	}
	buf := q.w.wbuf
	start, end, k := q.w.wpos, q.w.wpos, 0
	for end < len(buf) {
		l := frameHeaderSize + int(binaryLE32(buf[end:]))
		if k > 0 && seg.size+int64(end-start+l) > q.cfg.SegmentSize {
			break
		}
		end += sealFrame(buf[end:])
		k++
	}
	n, err := q.w.f.Write(buf[start:end])
	if err != nil {
		if n > 0 {
			if terr := q.w.f.Truncate(seg.size); terr != nil {
				// A torn frame stays at the end: write no more to this
				// file. A queue adopting it skips the tail as corrupt.
				q.sealActive()
			}
		}
		return fmt.Errorf("write %s: %w", seg.path, err)
	}
	q.mu.Lock()
	seg.size += int64(n)
	seg.records += k
	q.writing -= int64(n)
	q.writingRecs -= k
	q.noteMemLocked()
	if seg.dropped { // dropped while being written
		q.dropped += uint64(k)
		q.used -= int64(n)
		q.budget.Release(int64(n))
		q.roomMadeLocked()
	}
	q.wakeReaderIfDueLocked()
	q.mu.Unlock()
	q.w.wpos = end
	q.w.dirty += int64(n)
	if seg.size >= q.cfg.SegmentSize {
		q.sealActive()
	}
	return nil
}

// activeSegment returns the segment to write to, creating one when there
// is none (or it was sealed or dropped). q.wmu is held.
func (q *Queue) activeSegment() (*segment, error) {
	q.mu.Lock()
	cur := q.active
	q.mu.Unlock()
	if cur != nil && cur == q.w.seg && q.w.f != nil {
		return cur, nil
	}
	q.retireFile()
	own := q.own
	q.mu.Lock()
	own.maxSeq++
	seq := own.maxSeq
	q.mu.Unlock()
	path := filepath.Join(own.dir, segName(seq))
	f, err := q.fs.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, filePerm)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	var h [headerSize]byte
	putFileHeader(h[:], segMagic, own.id, seq)
	if _, err := f.Write(h[:]); err != nil {
		f.Close()
		_ = q.fs.Remove(path)
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	q.w.dirSync = true
	q.wakeWriter()
	seg := &segment{gen: own, seq: seq, path: path, size: headerSize, start: headerSize, rpos: headerSize, commit: headerSize}
	q.mu.Lock()
	q.segs = append(q.segs, seg)
	q.active = seg
	own.live++
	q.used += headerSize
	q.budget.Reserve(headerSize)
	q.mu.Unlock()
	q.w.f, q.w.seg, q.w.dirty = f, seg, 0
	return seg, nil
}

// sealActive ends writing to the current segment: the next write starts
// a new one; the I/O goroutine fsyncs and closes its file. q.wmu is held.
func (q *Queue) sealActive() {
	seg := q.w.seg
	q.retireFile()
	if seg == nil {
		return
	}
	q.mu.Lock()
	seg.sealed = true
	if q.active == seg {
		q.active = nil
	}
	q.mu.Unlock()
	q.wakeReader()
}

// retireFile hands the file being written to the I/O goroutine. q.wmu is
// held.
func (q *Queue) retireFile() {
	if q.w.f == nil {
		return
	}
	q.w.retired = append(q.w.retired, retiredFile{f: q.w.f, seg: q.w.seg, dirty: q.w.dirty > 0})
	q.w.f, q.w.seg, q.w.dirty = nil, nil, 0
	q.wakeWriter()
}

// die releases what the kernel would release if the process died.
func (q *Queue) die() {
	q.wmu.Lock()
	if q.w.f != nil {
		q.w.f.Close()
	}
	for _, r := range q.w.retired {
		r.f.Close()
	}
	q.w.f, q.w.retired, q.w.closed = nil, nil, true
	q.wmu.Unlock()
	for _, r := range q.io.unsynced {
		r.f.Close()
	}
	q.io.unsynced = nil
	q.mu.Lock()
	gens := slices.Clone(q.gens)
	q.mu.Unlock()
	for _, g := range gens {
		if g.ackFile != nil {
			g.ackFile.Close()
		}
		g.lock.Close()
	}
}

// finish is the I/O goroutine's last act, for Close.
func (q *Queue) finish() {
	q.wmu.Lock()
	q.flushLocked(true)
	q.mu.Lock()
	lost := q.pendingRecs + q.writingRecs
	if lost > 0 {
		q.dropped += uint64(lost)
		b := int64(len(q.pending)-q.pstart) + q.writing
		q.used -= b
		q.budget.Release(b)
	}
	putWriteBuf(q.pending)
	q.pending, q.pstart, q.pendingRecs = nil, 0, 0
	q.writing, q.writingRecs = 0, 0
	q.noteMemLocked()
	q.mu.Unlock()
	putWriteBuf(q.w.wbuf)
	q.w.wbuf, q.w.wpos = nil, 0
	q.sealActive()
	q.w.closed = true
	q.wmu.Unlock()
	q.closeRetired()
	q.housekeep(true)

	q.mu.Lock()
	gens := slices.Clone(q.gens)
	ownEmpty := q.own.live == 0
	q.mu.Unlock()
	for _, g := range gens {
		if g.own && ownEmpty {
			q.removeGeneration(g)
			continue
		}
		if g.ackFile != nil {
			g.ackFile.Close()
			g.ackFile = nil
		}
		g.lock.Close()
	}
	q.syncDir(q.cfg.Dir)
	_ = q.fs.Remove(q.cfg.Dir) // only when empty: nothing left for anyone

	q.mu.Lock()
	// Entries handed out from a segment dropped since, and never
	// acknowledged, are lost now: count them.
	for i := range q.ring.len() {
		if h := q.ring.at(i); !h.acked && !h.lost && h.seg.dropped {
			q.dropped++
		}
	}
	q.budget.Release(q.used) // what stays on disk is counted by the next queue
	q.mu.Unlock()
	if lost > 0 {
		q.closeErr = fmt.Errorf("diskq: %d entries could not be written to %s before close", lost, q.own.dir)
	}
}

func (q *Queue) wakeWriter() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}
