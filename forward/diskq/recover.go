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
	"time"

	"github.com/logferry/logferry/forward"
)

// createGeneration makes the queue's own generation directory: it is
// built and locked under a temporary name and renamed into place, so that
// no other queue ever sees it unlocked.
func (q *Queue) createGeneration() (*generation, error) {
	var lastErr error
	for attempt := range 20 {
		if err := q.fs.MkdirAll(q.cfg.Dir, dirPerm); err != nil {
			return nil, fmt.Errorf("diskq: create %s: %w", q.cfg.Dir, err)
		}
		ids, _, err := q.listGenerations()
		if err != nil {
			return nil, err
		}
		id := uint64(1)
		if len(ids) > 0 {
			id = ids[len(ids)-1] + 1
		}
		tmp := filepath.Join(q.cfg.Dir, fmt.Sprintf("%s%d-%d-%d", tmpPrefix, os.Getpid(), time.Now().UnixNano(), attempt))
		if err := q.fs.Mkdir(tmp, dirPerm); err != nil {
			lastErr = err
			continue
		}
		lock, err := q.fs.Lock(filepath.Join(tmp, lockName))
		if err != nil {
			lastErr = err
			_ = q.fs.Remove(tmp)
			continue
		}
		dir := filepath.Join(q.cfg.Dir, genName(id))
		if err := q.fs.Rename(tmp, dir); err != nil {
			lastErr = err
			_ = q.fs.Remove(filepath.Join(tmp, lockName))
			_ = q.fs.Remove(tmp)
			lock.Close()
			continue
		}
		return &generation{id: id, dir: dir, lock: lock, own: true}, nil
	}
	return nil, fmt.Errorf("diskq: create a generation in %s: %w", q.cfg.Dir, lastErr)
}

// listGenerations returns the generation ids in Dir, sorted, and the
// names of temporary directories older than an hour (left by a crash
// while a queue was being opened).
func (q *Queue) listGenerations() (ids []uint64, stale []string, err error) {
	entries, err := q.fs.ReadDir(q.cfg.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("diskq: list %s: %w", q.cfg.Dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, genPrefix):
			id, err := strconv.ParseUint(name[len(genPrefix):], 16, 64)
			if err == nil && e.IsDir() {
				ids = append(ids, id)
			}
		case strings.HasPrefix(name, tmpPrefix):
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
				stale = append(stale, name)
			}
		}
	}
	slices.Sort(ids)
	return ids, stale, nil
}

// loaded is a generation adopted by the scanning goroutine, to be
// published by the I/O goroutine.
type loaded struct {
	g       *generation
	segs    []*segment
	corrupt int
	entries int
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
