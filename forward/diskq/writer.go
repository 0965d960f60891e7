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

// writer is the state of the I/O goroutine, which alone touches it.
type writer struct {
	wbuf        []byte // frames taken from pending, written from wpos
	wpos        int
	f           File     // file of seg, open for appending
	seg         *segment // segment being written
	dirty       int64    // bytes written to f since its last fsync
	lastSync    time.Time
	lastPersist time.Time // when the ack files were last written
	retryAt     time.Time // zero unless the last write failed
	retry       *time.Timer
	known       map[uint64]bool // generations owned or adopted
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
// what Append buffers, fsyncs, deletes acknowledged segments and records
// the acknowledged position, until Close.
func (q *Queue) run() {
	defer close(q.done)
	q.w.known = map[uint64]bool{q.own.id: true}
	q.w.lastSync, q.w.lastPersist = time.Now(), time.Now()
	q.w.retry = time.NewTimer(time.Hour)
	q.w.retry.Stop()
	tick := time.NewTicker(q.cfg.SyncInterval)
	defer tick.Stop()
	rescan := time.NewTicker(q.cfg.RescanInterval)
	defer rescan.Stop()

	// Scanning what earlier queues left reads their files, which may take
	// a while: a helper does it, so that writing goes on meanwhile.
	var helper sync.WaitGroup
	found := make(chan []loaded, 1)
	scan := func() {
		known := make(map[uint64]bool, len(q.w.known))
		for id := range q.w.known {
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
		case <-tick.C:
		case <-q.w.retry.C:
		case <-q.stop:
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
		q.flush(false)
		q.housekeep(false)
	}
}

// flush writes the frames waiting in memory. After a failure it waits
// RetryInterval before trying again, unless final.
func (q *Queue) flush(final bool) {
	if !final && !q.w.retryAt.IsZero() && time.Now().Before(q.w.retryAt) {
		return
	}
	for q.w.wpos < len(q.w.wbuf) || q.takePending() {
		if err := q.writeSome(); err != nil {
			q.mu.Lock()
			q.writeErrors++
			was := q.failing
			q.failing = true
			q.mu.Unlock()
			if !was {
				q.log.Error("disk buffer: cannot write; entries wait in memory, and are dropped once that is full, until writing works again",
					"dir", q.own.dir, "error", err)
			}
			q.w.retryAt = time.Now().Add(q.cfg.RetryInterval)
			q.w.retry.Reset(q.cfg.RetryInterval)
			return
		}
	}
	q.w.retryAt = time.Time{}
	q.mu.Lock()
	was := q.failing
	q.failing = false
	q.mu.Unlock()
	if was {
		q.log.Info("disk buffer: writing works again", "dir", q.own.dir)
	}
	if q.w.dirty >= q.cfg.SyncBytes {
		q.syncActive()
	}
}

// takePending swaps the frames waiting in memory with the writer's empty
// buffer; false when none wait.
func (q *Queue) takePending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	spare := q.w.wbuf[:0]
	if cap(spare) > 4*q.cfg.WriteBuffer {
		spare = nil // a big entry passed: do not keep its memory
	}
	q.w.wbuf, q.w.wpos = spare, 0
	q.writing, q.writingRecs = 0, 0
	if len(q.pending) == q.pstart {
		return false
	}
	q.w.wbuf, q.w.wpos = q.pending, q.pstart
	q.pending, q.pstart = spare, 0
	q.writing, q.writingRecs = int64(len(q.w.wbuf)-q.w.wpos), q.pendingRecs
	q.pendingRecs = 0
	q.roomMadeLocked() // room in memory
	return true
}

// writeSome writes frames from wbuf to the active segment with one write:
// as many as fit in the segment (at least one). A failed write is undone,
// so that the segment stays a sequence of intact frames.
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
		end += l
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
	if seg.dropped { // dropped while being written
		q.dropped += uint64(k)
		q.used -= int64(n)
		q.budget.Release(int64(n))
		q.roomMadeLocked()
	}
	q.mu.Unlock()
	q.w.wpos = end
	q.w.dirty += int64(n)
	q.wakeReader()
	if seg.size >= q.cfg.SegmentSize {
		q.sealActive()
	}
	return nil
}

// activeSegment returns the segment to write to, creating one when there
// is none (or it was sealed or dropped).
func (q *Queue) activeSegment() (*segment, error) {
	q.mu.Lock()
	cur := q.active
	q.mu.Unlock()
	if cur != nil && cur == q.w.seg && q.w.f != nil {
		return cur, nil
	}
	q.closeWriteFile()
	own := q.own
	own.maxSeq++
	seq := own.maxSeq
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
	q.syncDir(own.dir) // so that the file survives a power loss
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

// sealActive fsyncs and closes the segment being written: the next write
// starts a new one.
func (q *Queue) sealActive() {
	seg := q.w.seg
	q.closeWriteFile()
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

func (q *Queue) closeWriteFile() {
	if q.w.f == nil {
		return
	}
	q.syncActive()
	q.w.f.Close()
	q.w.f, q.w.seg = nil, nil
}

// syncActive fsyncs the segment being written if it has unsynced bytes.
func (q *Queue) syncActive() {
	if q.w.f != nil && q.w.dirty > 0 {
		q.mu.Lock()
		dropped := q.w.seg.dropped
		q.mu.Unlock()
		if !dropped {
			if err := q.w.f.Sync(); err != nil {
				q.mu.Lock()
				q.writeErrors++
				q.mu.Unlock()
				q.log.Error("disk buffer: fsync failed", "segment", q.w.seg.path, "error", err)
			}
		}
	}
	q.w.dirty = 0
	q.w.lastSync = time.Now()
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
	if q.w.dirty > 0 && now.Sub(q.w.lastSync) >= q.cfg.SyncInterval {
		q.syncActive()
	}
	persist := final || now.Sub(q.w.lastPersist) >= q.cfg.SyncInterval

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

	for _, s := range del {
		if s == q.w.seg {
			q.w.f.Close()
			q.w.f, q.w.seg, q.w.dirty = nil, nil, 0
		}
		if err := q.fs.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			q.log.Error("disk buffer: cannot delete a segment", "segment", s.path, "error", err)
		}
	}
	for _, a := range acks {
		q.writeAck(a.g, a.seq, a.off, final)
	}
	if persist {
		q.w.lastPersist = now
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
		q.w.known[l.g.id] = true
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
	if q.w.f != nil {
		q.w.f.Close()
	}
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
	q.flush(true)
	q.mu.Lock()
	lost := q.pendingRecs + q.writingRecs
	if lost > 0 {
		q.dropped += uint64(lost)
		b := int64(len(q.pending)-q.pstart) + q.writing
		q.used -= b
		q.budget.Release(b)
	}
	q.pending, q.pstart, q.pendingRecs = nil, 0, 0
	q.writing, q.writingRecs = 0, 0
	q.mu.Unlock()
	q.w.wbuf, q.w.wpos = nil, 0
	q.sealActive()
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
	for _, h := range q.ring[q.ringHead:] {
		if !h.acked && h.seg.dropped {
			q.dropped++
		}
	}
	q.budget.Release(q.used) // what stays on disk is counted by the next queue
	q.mu.Unlock()
	if lost > 0 {
		q.closeErr = fmt.Errorf("diskq: %d entries could not be written to %s before close", lost, q.own.dir)
	}
}
