package diskq

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

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
