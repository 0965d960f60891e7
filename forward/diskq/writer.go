package diskq

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/logferry/logferry/forward"
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

// loaded is a generation adopted by the scanning goroutine, to be
// published by the I/O goroutine.
type loaded struct {
	g       *generation
	segs    []*segment
	corrupt int
	entries int
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

// closeRetired takes the files no longer written: it closes those with
// nothing to fsync and leaves the others to syncRetired, due SyncInterval
// from now, as is the directory after a segment was created. I/O
// goroutine only.
func (q *Queue) closeRetired() {
	q.wmu.Lock()
	retired, dirSync := q.w.retired, q.w.dirSync
	q.w.retired, q.w.dirSync = nil, false
	q.wmu.Unlock()
	due := time.Now().Add(q.cfg.SyncInterval)
	for _, r := range retired {
		if r.dirty {
			r.due = due
			q.io.unsynced = append(q.io.unsynced, r)
			continue
		}
		r.f.Close()
	}
	if dirSync && q.io.dirDue.IsZero() {
		q.io.dirDue = due
	}
}

// syncRetired fsyncs and closes the retired files whose fsync is due (all
// of them when final), and closes without an fsync those whose segment
// was deleted or dropped meanwhile: once the destination acknowledged its
// entries, nothing in it is needed after a crash. A segment the sender
// keeps up with is thus never fsynced, and its pages, deleted before the
// kernel writes them back, never reach the disk. Then it fsyncs the
// directory if that is due: once per SyncInterval at most, however many
// segments were created. I/O goroutine only.
func (q *Queue) syncRetired(now time.Time, final bool) {
	kept := q.io.unsynced[:0]
	for _, r := range q.io.unsynced {
		q.mu.Lock()
		gone := r.seg.deleted || r.seg.dropped
		q.mu.Unlock()
		switch {
		case gone:
		case final || !now.Before(r.due):
			q.fsync(r.f, r.seg)
		default:
			kept = append(kept, r)
			continue
		}
		r.f.Close()
	}
	clear(q.io.unsynced[len(kept):])
	q.io.unsynced = kept
	if !q.io.dirDue.IsZero() && (final || !now.Before(q.io.dirDue)) {
		q.io.dirDue = time.Time{}
		q.syncDir(q.own.dir)
	}
}

// fsync fsyncs f, the file of seg, and counts and logs a failure.
func (q *Queue) fsync(f File, seg *segment) {
	if err := f.Sync(); err != nil {
		q.mu.Lock()
		q.writeErrors++
		q.mu.Unlock()
		q.log.Error("disk buffer: fsync failed", "segment", seg.path, "error", err)
	}
}

// syncActive fsyncs the segment being written if it has unsynced bytes
// that are still needed, without holding q.wmu during the fsync. I/O
// goroutine only: it alone closes files, so the file stays open meanwhile.
func (q *Queue) syncActive() {
	q.wmu.Lock()
	f, seg, dirty := q.w.f, q.w.seg, q.w.dirty
	q.w.dirty = 0
	q.wmu.Unlock()
	q.io.lastSync = time.Now()
	if f == nil || dirty == 0 {
		return
	}
	q.mu.Lock()
	// Nothing to keep: dropped, or every entry written is acknowledged.
	skip := seg.dropped || seg.rpos >= seg.size && seg.acked >= seg.handed
	q.mu.Unlock()
	if !skip {
		q.fsync(f, seg)
	}
}

func (q *Queue) syncDir(dir string) {
	d, err := q.fs.OpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		return
	}
	if err := d.Sync(); err != nil {
		q.log.Debug("disk buffer: fsync directory", "dir", dir, "error", err)
	}
	d.Close()
}

// housekeep deletes the segments that are dropped or entirely
// acknowledged, fsyncs every SyncInterval, writes the ack files of the
// generations whose position moved (every SyncInterval, and when final),
// and removes adopted generations left empty.
func (q *Queue) housekeep(final bool) {
	now := time.Now()
	q.wmu.Lock()
	dirty := q.w.dirty
	q.wmu.Unlock()
	if dirty >= q.cfg.SyncBytes || dirty > 0 && now.Sub(q.io.lastSync) >= q.cfg.SyncInterval {
		q.syncActive()
	}
	persist := final || now.Sub(q.io.lastPersist) >= q.cfg.SyncInterval

	type ackPos struct {
		g   *generation
		seq uint64
		off int64
	}
	var (
		del   []*segment
		acks  []ackPos
		empty []*generation
	)
	q.mu.Lock()
	kept := q.segs[:0]
	freed := false
	for _, s := range q.segs {
		if s.dropped || s.sealed && s.rpos >= s.size && s.acked >= s.handed {
			if !s.dropped {
				q.used -= s.size
				q.budget.Release(s.size)
				freed = true
			}
			s.deleted = true
			s.gen.live--
			s.gen.ackDirty = true
			del = append(del, s)
			continue
		}
		kept = append(kept, s)
	}
	clear(q.segs[len(kept):])
	q.segs = kept
	if freed {
		q.roomMadeLocked()
	}
	for _, g := range q.gens {
		if g.live == 0 && !g.own && !g.removed {
			g.removed = true
			empty = append(empty, g)
			continue
		}
		if !persist || !g.ackDirty || g.removed {
			continue
		}
		g.ackDirty = false
		p := ackPos{g: g, seq: g.maxSeq + 1}
		for _, s := range q.segs {
			if s.gen == g && s.seq < p.seq {
				p.seq, p.off = s.seq, s.commit
			}
		}
		acks = append(acks, p)
	}
	q.mu.Unlock()

	if len(del) > 0 {
		q.wmu.Lock()
		for _, s := range del {
			if s == q.w.seg {
				q.w.f.Close()
				q.w.f, q.w.seg, q.w.dirty = nil, nil, 0
			}
		}
		q.wmu.Unlock()
	}
	for _, s := range del {
		if err := q.fs.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			q.log.Error("disk buffer: cannot delete a segment", "segment", s.path, "error", err)
		}
	}
	q.syncRetired(now, final)
	for _, a := range acks {
		q.writeAck(a.g, a.seq, a.off, final)
	}
	if persist {
		q.io.lastPersist = now
	}
	for _, g := range empty {
		q.removeGeneration(g)
	}
}

// writeAck records that everything before offset off of segment seq of g
// is acknowledged. The file is rewritten in place (32 bytes, one sector);
// it is fsynced only when sync is set (at Close): after a power loss a
// stale position means entries delivered again, never lost.
func (q *Queue) writeAck(g *generation, seq uint64, off int64, sync bool) {
	if g.ackFile == nil {
		f, err := q.fs.OpenFile(filepath.Join(g.dir, ackName), os.O_RDWR|os.O_CREATE, filePerm)
		if err != nil {
			q.log.Error("disk buffer: cannot write the acknowledged position", "dir", g.dir, "error", err)
			q.mu.Lock()
			g.ackDirty = true
			q.mu.Unlock()
			return
		}
		g.ackFile = f
	}
	var b [ackSize]byte
	putFileHeader(b[:], ackMagic, seq, uint64(off))
	_, err := g.ackFile.WriteAt(b[:], 0)
	if err == nil && sync {
		err = g.ackFile.Sync()
	}
	if err != nil {
		q.log.Error("disk buffer: cannot write the acknowledged position", "dir", g.dir, "error", err)
		q.mu.Lock()
		g.ackDirty = true
		q.mu.Unlock()
	}
}

// removeGeneration deletes the directory of a generation that holds no
// more segments and releases its lock.
func (q *Queue) removeGeneration(g *generation) {
	if g.ackFile != nil {
		g.ackFile.Close()
		g.ackFile = nil
	}
	_ = q.fs.Remove(filepath.Join(g.dir, ackName))
	_ = q.fs.Remove(filepath.Join(g.dir, lockName))
	_ = q.fs.Remove(g.dir)
	g.lock.Close()
	q.mu.Lock()
	g.removed = true
	q.gens = slices.DeleteFunc(q.gens, func(x *generation) bool { return x == g })
	q.mu.Unlock()
}

// loadAll locks and reads the generations in Dir that are not known and
// not locked by another queue. It runs on a helper goroutine and touches
// no shared state.
func (q *Queue) loadAll(known map[uint64]bool) []loaded {
	ids, stale, err := q.listGenerations()
	if err != nil {
		q.log.Error("disk buffer: cannot look for entries left by an earlier run", "error", err)
		return nil
	}
	for _, name := range stale {
		dir := filepath.Join(q.cfg.Dir, name)
		if lock, err := q.fs.Lock(filepath.Join(dir, lockName)); err == nil {
			_ = q.fs.Remove(filepath.Join(dir, lockName))
			_ = q.fs.Remove(dir)
			lock.Close()
		}
	}
	var out []loaded
	for _, id := range ids {
		if known[id] {
			continue
		}
		select {
		case <-q.stop:
			for _, l := range out {
				l.g.lock.Close()
			}
			return nil
		default:
		}
		l, err := q.load(id)
		if errors.Is(err, ErrLocked) || errors.Is(err, fs.ErrNotExist) {
			continue // in use by another queue, or just removed by one
		}
		if err != nil {
			q.log.Error("disk buffer: cannot read entries left by an earlier run", "dir", filepath.Join(q.cfg.Dir, genName(id)), "error", err)
			continue
		}
		out = append(out, l)
	}
	return out
}

// load locks generation id and reads its segments: it deletes those the
// ack file says were acknowledged, and counts the intact entries of the
// others from the acknowledged position on.
func (q *Queue) load(id uint64) (loaded, error) {
	dir := filepath.Join(q.cfg.Dir, genName(id))
	lock, err := q.fs.Lock(filepath.Join(dir, lockName))
	if err != nil {
		return loaded{}, err
	}
	l := loaded{g: &generation{id: id, dir: dir, lock: lock}}
	entries, err := q.fs.ReadDir(dir)
	if err != nil {
		lock.Close()
		return loaded{}, err
	}
	ackSeq, ackOff := q.readAck(dir)
	src := fileSource{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 16, 64)
		if err != nil {
			continue
		}
		l.g.maxSeq = max(l.g.maxSeq, seq)
		path := filepath.Join(dir, name)
		if seq < ackSeq {
			_ = q.fs.Remove(path) // acknowledged; deletion was interrupted
			continue
		}
		f, err := q.fs.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			q.log.Error("disk buffer: cannot open a segment", "segment", path, "error", err)
			continue
		}
		seg, corrupt, err := q.scanSegment(f, &src, l.g, seq, path, ackSeq, ackOff)
		f.Close()
		if err != nil {
			q.log.Error("disk buffer: cannot read a segment", "segment", path, "error", err)
			l.corrupt++
		}
		l.corrupt += corrupt
		if seg != nil {
			l.segs = append(l.segs, seg)
			l.entries += seg.records
		}
	}
	putReadBuf(src.buf)
	slices.SortFunc(l.segs, func(a, b *segment) int { return cmpUint(a.seq, b.seq) })
	return l, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readAck returns the acknowledged position of the generation in dir; 0, 0
// when there is none or it is damaged (everything is then handed out
// again).
func (q *Queue) readAck(dir string) (seq uint64, off int64) {
	f, err := q.fs.OpenFile(filepath.Join(dir, ackName), os.O_RDONLY, 0)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	var b [ackSize]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return 0, 0
	}
	s, o, err := parseFileHeader(b[:], ackMagic)
	if err != nil || o > 1<<62 {
		q.log.Warn("disk buffer: damaged acknowledgement file, entries may be delivered again", "dir", dir)
		return 0, 0
	}
	return s, int64(o)
}

// scanSegment checks the header of a segment file and counts its intact
// entries from where reading must start. A bad header counts as corrupt,
// but the frames after it are still read.
func (q *Queue) scanSegment(f File, src *fileSource, g *generation, seq uint64, path string, ackSeq uint64, ackOff int64) (*segment, int, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := info.Size()
	corrupt := 0
	if size > maxFileSize {
		size = maxFileSize // not written by a queue: past that, corrupt
		corrupt++
	}
	var h [headerSize]byte
	if size < headerSize {
		if size > 0 {
			corrupt++ // torn while it was being created
		}
		size = headerSize
	} else if _, err := f.ReadAt(h[:], 0); err != nil {
		return nil, 0, err
	} else if gen, s, err := parseFileHeader(h[:], segMagic); err != nil || gen != g.id || s != seq {
		corrupt++
	}
	start := int64(headerSize)
	if seq == ackSeq {
		start = min(max(ackOff, headerSize), size)
	}
	*src = fileSource{f: f, buf: src.buf[:0], limit: size}
	records := 0
	var it forward.Item
	for pos := start; ; {
		p, end, _, err := nextFrame(src, pos, size)
		if err != nil {
			return nil, corrupt, err
		}
		if p == nil {
			break
		}
		if decodePayload(p, &it) == nil {
			records++
		}
		pos = end
	}
	seg := &segment{gen: g, seq: seq, path: path, size: size, start: start, records: records, rpos: start, commit: start, sealed: true}
	return seg, corrupt, nil
}

// publish adds adopted generations to the queue: their segments are read
// before the segments not started yet, oldest generation first. What a
// rescan finds once the queue is closing is left to the next queue; what
// the first scan finds is delivered even by a closing queue, within its
// deadline.
func (q *Queue) publish(gens []loaded, initial bool) {
	for _, l := range gens {
		q.io.known[l.g.id] = true
	}
	q.mu.Lock()
	if q.closedW && !initial {
		q.mu.Unlock()
		for _, l := range gens { // leave them to the next queue
			l.g.lock.Close()
		}
		return
	}
	at := len(q.segs)
	for i, s := range q.segs {
		if !s.done && !s.dropped && s.rpos == s.start && s.handed == 0 {
			at = i
			break
		}
	}
	var add []*segment
	var empty []*generation
	for _, l := range gens {
		l.g.live = len(l.segs)
		q.corrupt += uint64(l.corrupt)
		if len(l.segs) == 0 {
			empty = append(empty, l.g)
			continue
		}
		q.gens = append(q.gens, l.g)
		for _, s := range l.segs {
			q.used += s.size
			q.budget.Reserve(s.size)
		}
		add = append(add, l.segs...)
		q.log.Info("disk buffer: delivering entries left by an earlier run", "dir", l.g.dir, "entries", l.entries)
	}
	q.segs = slices.Insert(q.segs, at, add...)
	q.mu.Unlock()
	for _, g := range empty {
		q.removeGeneration(g)
	}
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
