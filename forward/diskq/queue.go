package diskq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/forward"
)

// ErrClosed is returned by Close when the queue is already closed.
var ErrClosed = errors.New("diskq: queue closed")

// Defaults of Config.
const (
	DefaultWriteBuffer    = 64 << 10
	DefaultFlushDelay     = 20 * time.Millisecond
	DefaultSyncInterval   = time.Second
	DefaultSyncBytes      = 4 << 20
	DefaultRetryInterval  = time.Second
	DefaultRescanInterval = 10 * time.Second
	// retryThrottle is the least time between two tries to write while
	// writing fails, when Flush, or an Append that finds the write buffer
	// full, asks: entries are written, not dropped, soon after space
	// returns, and a full disk costs a failed write(2) per retryThrottle.
	retryThrottle  = 10 * time.Millisecond
	minSegmentSize = 4 << 10
	maxSegmentSize = 8 << 20
	// maxFileSize bounds the size of a segment file: SegmentSize is
	// capped at 1 GiB, a segment closes once it passes it, and an entry
	// is at most MaxRecordSize; so offsets fit in 32 bits.
	maxFileSize = 1<<32 - 1
)

// Config configures a Queue. The zero value, with Dir set, means the
// defaults.
type Config struct {
	// Dir is the queue's directory, created if needed (mode 0750): one
	// per container and destination. Queues opened on the same Dir, at
	// once or one after the other, share what is in it; see the package
	// documentation.
	Dir string
	// Buffer holds the size bound, the overflow policy and the shared
	// budget (see forward.BufferConfig).
	Buffer forward.BufferConfig
	// SegmentSize is the size past which a segment file is closed and a
	// new one started, and so the unit that drop-oldest drops; default
	// Buffer.MaxSize/16, from 4 KiB to 8 MiB; at most 1 GiB.
	SegmentSize int64
	// WriteBuffer bounds the bytes of entries waiting in memory to be
	// written: an Append that would pass it hands them to the queue's
	// goroutine to write, or writes them itself if the goroutine is still
	// writing the last ones; while writing fails (a full disk), the
	// overflow policy applies instead. Default DefaultWriteBuffer (64 KiB).
	// A single bigger entry is taken when nothing waits.
	WriteBuffer int
	// FlushDelay is how long entries appended and not flushed wait before
	// the queue's goroutine writes them; default DefaultFlushDelay (20ms).
	// Flush writes them at once.
	FlushDelay time.Duration
	// SyncInterval and SyncBytes: the segment being written is fsynced
	// when SyncInterval has passed or SyncBytes were written since the
	// last fsync, and a segment closed for size SyncInterval after it was
	// closed, unless the destination acknowledged their entries first.
	// Defaults 1s and 4 MiB.
	SyncInterval time.Duration
	SyncBytes    int64
	// RetryInterval is the wait before the queue's goroutine writes
	// again after a write failed (a full disk), when no Flush or Append
	// tried earlier; default 1s.
	RetryInterval time.Duration
	// RescanInterval is how often Dir is checked for entries left by
	// another queue that has since closed; default 10s.
	RescanInterval time.Duration
	// FS is the file system; default OSFS.
	FS FS
	// Log receives the queue's own messages; nil discards them.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Buffer.MaxSize <= 0 {
		c.Buffer.MaxSize = forward.DefaultBufferMaxSize
	}
	if c.Buffer.BlockTimeout <= 0 {
		c.Buffer.BlockTimeout = forward.DefaultBlockTimeout
	}
	if c.SegmentSize <= 0 {
		c.SegmentSize = min(max(c.Buffer.MaxSize/16, minSegmentSize), maxSegmentSize)
	}
	c.SegmentSize = min(c.SegmentSize, 1<<30)
	if c.WriteBuffer <= 0 {
		c.WriteBuffer = DefaultWriteBuffer
	}
	if c.FlushDelay <= 0 {
		c.FlushDelay = DefaultFlushDelay
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.SyncBytes <= 0 {
		c.SyncBytes = DefaultSyncBytes
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.RescanInterval <= 0 {
		c.RescanInterval = DefaultRescanInterval
	}
	if c.FS == nil {
		c.FS = OSFS{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats are a Queue's counters.
type Stats struct {
	// Events is the number of entries held and not yet acknowledged:
	// waiting in memory to be written, on disk, or handed out by Read.
	Events int
	// Bytes is what counts against Buffer.MaxSize: the segment files not
	// yet deleted and the entries waiting in memory.
	Bytes int64
	// Segments is the number of segment files.
	Segments int
	// Dropped counts entries dropped: by the overflow policy, appended
	// after CloseWrite, too big, in memory when Close gave up writing
	// them, or in a file that could not be read.
	Dropped uint64
	// Corrupt counts regions of segment files skipped because they were
	// not intact entries (torn writes, bad checksums, bad headers).
	Corrupt uint64
	// WriteErrors counts failed writes and fsyncs (a full disk).
	WriteErrors uint64
}

// generation is the set of segment files one Queue appended to, in a
// directory of its own under Config.Dir; a queue owns its generation and
// the ones it adopted, and holds their locks.
type generation struct {
	id      uint64
	dir     string
	lock    io.Closer
	own     bool
	ackFile File // opened on the first write of the ack file; I/O goroutine only

	// Guarded by Queue.mu.
	maxSeq   uint64 // highest segment number seen or created
	live     int    // segments not deleted
	ackDirty bool   // acknowledgements since the ack file was written
	removed  bool
}

// segment is one segment file. Its fields are guarded by Queue.mu; only
// the writer (holding Queue.wmu) changes size and records.
type segment struct {
	gen     *generation
	seq     uint64
	path    string
	size    int64 // readable end: the header and the frames written
	start   int64 // where reading began
	records int   // intact entries in [start, size)
	handed  int   // entries handed out by Read
	acked   int   // entries acknowledged
	rpos    int64 // where the reader is
	commit  int64 // end of the acknowledged prefix
	sealed  bool  // no more writes: its size is final
	done    bool  // the reader passed its end
	dropped bool  // dropped by drop-oldest; deleted soon
	deleted bool
}

// handout is an entry handed out by Read or Reread, until it is
// acknowledged.
type handout struct {
	seg *segment
	// start and end are the entry's frame in seg's file: a segment is
	// far smaller than 4 GiB (SegmentSize is at most 8 MiB, an entry at
	// most MaxRecordSize).
	start, end uint32
	acked      bool
	// lost is set when the entry's segment was dropped and Reread could
	// not read it again: counted in dropped once.
	lost bool
}

// Queue is a disk-backed FIFO of events for one destination of one
// container: Append encodes an event into a small memory buffer, written
// to segment files by Flush, by an Append that fills it, or by the
// queue's goroutine after FlushDelay; Read reads them back in
// order, and Ack lets the queue delete them once the destination has them.
// What is on disk outlives the process: a Queue opened later on the same
// directory hands it out again. See the package documentation.
//
// Every method is safe for concurrent use; the reading ones (Read, Wait,
// Rewind, Reread) are serialised.
type Queue struct {
	cfg    Config
	fs     FS
	log    *slog.Logger
	budget *forward.Budget
	own    *generation

	kick     chan struct{} // wakes the I/O goroutine
	readWake chan struct{} // wakes a waiting Read or Wait
	ready    chan struct{} // closed once the first adoption is done
	stop     chan struct{} // closed by Close
	done     chan struct{} // closed when the I/O goroutine returned

	closeOnce sync.Once
	closeErr  error
	// crash is a test seam: set before stop is closed, it makes the I/O
	// goroutine return as if the process had died (files closed, nothing
	// flushed, synced or recorded).
	crash bool

	// readMu serialises the reading methods and guards r.
	readMu sync.Mutex
	r      reader

	// wmu serialises writing to segment files and guards w. It is held
	// during write(2), never during fsync; taken before mu.
	wmu sync.Mutex
	w   writer

	// io is the I/O goroutine's own state.
	io ioState

	// inMem mirrors the bytes of entries in memory (pending + writing),
	// so that Flush costs next to nothing when there are none.
	inMem atomic.Int64
	// writeNow asks the I/O goroutine to write what waits in memory at
	// its next wake-up (a write buffer handed off full); while it is set
	// the queue holds one of writeSlots.
	writeNow atomic.Bool

	// mu guards every field below, and the fields of segments and
	// generations that say so. It is never held during I/O.
	mu          sync.Mutex
	gens        []*generation
	known       map[uint64]bool // generations owned or adopted
	segs        []*segment      // live segments, in read order
	active      *segment        // the segment being written, nil for none yet
	pending     []byte          // frames waiting to be written, from pstart
	pstart      int
	pendingRecs int
	// handoff, from hstart, is a full write buffer Append handed to the
	// I/O goroutine; its frames count as writing.
	handoff     []byte
	hstart      int
	writing     int64 // bytes of the frames the writer took, not yet written
	writingRecs int
	failing     bool // the last write failed
	// failedAt is when it failed; the I/O goroutine tries again
	// RetryInterval later, Flush and Append retryThrottle later.
	failedAt time.Time
	used     int64 // live segments + pending + writing
	// flushDue is set by the Append that finds nothing waiting in
	// memory, and cleared when the I/O goroutine's delayed flush runs:
	// the goroutine is woken once per FlushDelay, not per entry.
	flushDue bool
	// wantEvents and wantBytes are what the waiting reader waits for:
	// a write wakes it only once that much is unread.
	wantEvents  int
	wantBytes   int64
	ring        handouts
	ringBase    uint64 // token of ring.at(0)
	nextToken   uint64
	closedW     bool
	space       chan struct{} // closed when room is made, for Block
	shedding    bool
	dropped     uint64
	corrupt     uint64
	writeErrors uint64
}

// Open opens a queue in cfg.Dir: it creates the directory if needed and a
// generation of its own in it, and starts the queue's goroutine, which
// adopts what earlier queues left (reading it back before anything
// appended now) and writes what Append takes. Open does not read the
// existing files itself. Close stops the goroutine.
func Open(cfg Config) (*Queue, error) {
	if cfg.Dir == "" {
		return nil, errors.New("diskq: no directory")
	}
	cfg = cfg.withDefaults()
	q := &Queue{
		cfg:        cfg,
		fs:         cfg.FS,
		log:        cfg.Log,
		budget:     cfg.Buffer.Budget,
		kick:       make(chan struct{}, 1),
		readWake:   make(chan struct{}, 1),
		ready:      make(chan struct{}),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		known:      map[uint64]bool{},
		ringBase:   1,
		nextToken:  1,
		wantEvents: 1,
	}
	own, err := q.createGeneration()
	if err != nil {
		return nil, err
	}
	q.own = own
	q.gens = []*generation{own}
	q.known[own.id] = true
	go q.run()
	return q, nil
}

const (
	genPrefix = "gen-"
	tmpPrefix = "tmp-"
	segSuffix = ".seg"
	lockName  = "lock"
	ackName   = "ack"
)

func genName(id uint64) string  { return fmt.Sprintf("%s%016x", genPrefix, id) }
func segName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, segSuffix) }

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

// Append encodes a copy of ev, with the sink's number seq, into the
// buffer of entries waiting in memory, and returns. It writes them itself
// (one write(2), no fsync) when the buffer would pass WriteBuffer; else
// Flush, or the queue's goroutine after FlushDelay, does. When the entry
// does not fit (Buffer.MaxSize, the shared Budget, or WriteBuffer while
// writing fails), the overflow policy applies: drop-oldest drops the
// oldest segment on disk, or, when it is memory that is full (writing
// fails) or nothing on disk can go, the oldest entry waiting in memory;
// drop-newest drops ev; block waits for room up to Buffer.BlockTimeout
// once per stall. It returns how many entries this call dropped, each
// counted in Dropped. In steady state it does not allocate.
func (q *Queue) Append(ev *forward.Event, seq uint32) (dropped int) {
	need := frameSize(ev, seq)
	q.mu.Lock()
	if q.closedW || need-frameHeaderSize > MaxRecordSize || int64(need) > q.cfg.Buffer.MaxSize {
		q.dropped++
		q.mu.Unlock()
		return 1
	}
	ok, n := q.roomLocked(need)
	dropped += n
	if !ok {
		q.dropped++
		q.mu.Unlock()
		return dropped + 1
	}
	if q.pending == nil {
		q.pending = getWriteBuf()
	}
	q.pending = appendFrame(q.pending, ev, seq)
	q.pendingRecs++
	q.used += int64(need)
	q.noteMemLocked()
	kick := !q.flushDue
	q.flushDue = true
	q.mu.Unlock()
	if kick {
		q.wakeWriter() // to write it after FlushDelay, unless Flush does
	}
	return dropped
}

// Flush writes the entries waiting in memory to the segment file, with
// write(2) and no fsync, so that they survive a crash of the process
// (kill -9). It does nothing, at the cost of an atomic load, when none
// wait. While writing fails it tries again at most every 10ms (the
// entries wait in memory meanwhile, bounded by WriteBuffer). It may wait
// for another goroutine's write, never for an fsync.
func (q *Queue) Flush() {
	if q.inMem.Load() == 0 {
		return
	}
	q.wmu.Lock()
	q.flushLocked(false)
	q.wmu.Unlock()
}

// askWrite asks the I/O goroutine to write what waits in memory at once,
// unless it was asked already. It reports false when it cannot: the
// queues asked and not yet served hold one of writeSlots each, and none
// is free.
func (q *Queue) askWrite() bool {
	if q.writeNow.Load() {
		return true
	}
	select {
	case writeSlots() <- struct{}{}:
	default:
		return false
	}
	if q.writeNow.Swap(true) {
		<-writeSlots() // asked meanwhile, with a slot of its own
	} else {
		q.wakeWriter()
	}
	return true
}

// handOffLocked gives the frames waiting in memory, a full write buffer,
// to the I/O goroutine (asked to write with askWrite) and lets Append go
// on with a new buffer. Only one is handed off at a time, and only while
// the writer has nothing else to write, so that what waits in memory
// stays within twice WriteBuffer.
func (q *Queue) handOffLocked() {
	q.handoff, q.hstart = q.pending, q.pstart
	q.writing, q.writingRecs = int64(len(q.pending)-q.pstart), q.pendingRecs
	q.pending, q.pstart, q.pendingRecs = nil, 0, 0
}

// noteMemLocked updates inMem.
func (q *Queue) noteMemLocked() {
	q.inMem.Store(int64(len(q.pending)-q.pstart) + q.writing)
}

// roomLocked makes room for an entry of need bytes, as the policy says,
// and reserves it in the budget. ok is false if the entry must be
// dropped; n is how many other entries were dropped for it. It may
// release q.mu to write what waits in memory, or to wait for room.
func (q *Queue) roomLocked(need int) (ok bool, n int) {
	var deadline time.Time
	for {
		waiting := len(q.pending) - q.pstart
		memFull := waiting > 0 && waiting+need > q.cfg.WriteBuffer
		if memFull && !q.closedW && (!q.failing || !time.Now().Before(q.failedAt.Add(retryThrottle))) {
			if q.writing == 0 && !q.failing && q.askWrite() {
				q.handOffLocked()
				continue
			}
			// Write what waits, then look again; while writing fails,
			// try again before dropping (see retryThrottle).
			q.mu.Unlock()
			q.Flush()
			q.mu.Lock()
			continue
		}
		// Room for the headers of the segments that what waits may
		// start: every segment closed for size holds SegmentSize bytes.
		headers := headerSize * (1 + (q.writing+int64(waiting+need))/q.cfg.SegmentSize)
		diskFull := q.used+int64(need)+headers > q.cfg.Buffer.MaxSize
		if !memFull && !diskFull && q.budget.TryReserve(int64(need)) {
			q.shedding = false // room again: the next time it fills, wait again
			return true, n
		}
		switch q.cfg.Buffer.Full {
		case forward.DropNewest:
			return false, n
		case forward.Block:
			if q.shedding || q.closedW {
				return false, n
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(q.cfg.Buffer.BlockTimeout)
			}
			if !q.waitRoomLocked(deadline) {
				q.shedding = true
				return false, n
			}
		default: // DropOldest
			switch {
			case memFull:
				n += q.dropPendingLocked()
			case q.dropSegmentLocked(&n):
			case waiting > 0:
				n += q.dropPendingLocked()
			default:
				return false, n // nothing of ours to drop: over the shared budget
			}
		}
	}
}

// waitRoomLocked waits, with q.mu held on entry and on return, until room
// may have been made; false when deadline passed or the queue closed.
func (q *Queue) waitRoomLocked(deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	if q.space == nil {
		q.space = make(chan struct{})
	}
	space := q.space
	q.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	ok := false
	select {
	case <-space:
		ok = true
	case <-t.C:
	case <-q.stop:
	}
	q.mu.Lock()
	return ok && !q.closedW
}

// roomMadeLocked wakes Appends waiting for room, to look again.
func (q *Queue) roomMadeLocked() {
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
}

// dropPendingLocked drops the oldest entry waiting in memory.
func (q *Queue) dropPendingLocked() int {
	l := frameHeaderSize + int(binaryLE32(q.pending[q.pstart:]))
	q.pstart += l
	q.pendingRecs--
	q.used -= int64(l)
	q.budget.Release(int64(l))
	q.dropped++
	if q.pstart == len(q.pending) {
		q.pending, q.pstart = q.pending[:0], 0
	} else if q.pstart >= q.cfg.WriteBuffer/4 {
		// Keep len(pending) near WriteBuffer, so that its capacity is
		// kept, not regrown.
		q.pending = q.pending[:copy(q.pending, q.pending[q.pstart:])]
		q.pstart = 0
	}
	q.noteMemLocked()
	return 1
}

// dropSegmentLocked drops the oldest segment that holds entries, counting
// in *n those not handed out yet; entries already handed out are in
// flight and are neither dropped nor counted. It reports whether it
// dropped one.
func (q *Queue) dropSegmentLocked(n *int) bool {
	for _, s := range q.segs {
		if s.dropped || s.deleted || s.size <= headerSize && s.records == 0 {
			continue
		}
		s.dropped, s.sealed = true, true
		if k := s.records - s.handed; k > 0 {
			*n += k
			q.dropped += uint64(k)
		}
		q.used -= s.size
		q.budget.Release(s.size)
		if s == q.active {
			q.active = nil // the writer starts a new segment
		}
		q.roomMadeLocked()
		q.wakeWriter() // to delete the file
		q.wakeReader() // in case it reads that segment
		return true
	}
	return false
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

// readPass bounds the entries read between two updates of the queue's
// state, and so the offsets the reader notes meanwhile.
const readPass = 256

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

func (q *Queue) wakeWriter() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Ack acknowledges the entries whose tokens are in [from, to): the
// destination has them (or they were given up on and counted by the
// sink). A segment is deleted once every entry in it is acknowledged;
// the acknowledged position is written to disk every SyncInterval and at
// Close, so that a queue opened later resumes after it. Tokens out of
// range, or acknowledged already, are ignored. Entries may be
// acknowledged in any order.
func (q *Queue) Ack(from, to uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	from = max(from, q.ringBase)
	to = min(to, q.nextToken)
	for t := from; t < to; t++ {
		q.ring.at(int(t - q.ringBase)).acked = true
	}
	wake := false
	for q.ring.len() > 0 && q.ring.at(0).acked {
		h := q.ring.at(0)
		if s := h.seg; !s.dropped && !s.deleted {
			s.acked++
			s.commit = max(s.commit, int64(h.end))
			s.gen.ackDirty = true
			wake = wake || (s.done && s.acked >= s.handed)
		}
		q.ring.popFront()
		q.ringBase++
	}
	if wake {
		q.wakeWriter()
	}
}

// Len returns how many entries are held and not yet acknowledged, and the
// bytes counted against Buffer.MaxSize (see Stats).
func (q *Queue) Len() (events int, bytes int64) {
	st := q.Stats()
	return st.Events, st.Bytes
}

// Dropped returns how many entries were dropped since Open.
func (q *Queue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// Stats returns the queue's counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := Stats{
		Events:      q.pendingRecs + q.writingRecs,
		Bytes:       q.used,
		Dropped:     q.dropped,
		Corrupt:     q.corrupt,
		WriteErrors: q.writeErrors,
	}
	for _, s := range q.segs {
		if s.dropped || s.deleted {
			continue
		}
		st.Segments++
		st.Events += max(s.records-s.acked, 0)
	}
	return st
}

// CloseWrite makes later Appends drop their entry (and count it), wakes
// Appends waiting for room, and makes Read return forward.ErrQueueClosed
// once it has handed out everything. It is idempotent.
func (q *Queue) CloseWrite() {
	q.mu.Lock()
	q.closedW = true
	q.roomMadeLocked()
	q.mu.Unlock()
	q.wakeWriter()
	q.wakeReader()
}

// Close stops the queue: it writes the entries waiting in memory (those
// it cannot write are dropped and counted), fsyncs, records the
// acknowledged position, deletes what was acknowledged, and releases the
// directory for the next queue. Entries not acknowledged stay on disk. It
// waits for the queue's goroutine; pending Read, Wait and Append calls return.
// Later calls return ErrClosed.
func (q *Queue) Close() error {
	err := ErrClosed
	q.closeOnce.Do(func() {
		q.CloseWrite()
		close(q.stop)
		<-q.done
		q.readMu.Lock()
		q.r.release()
		q.readMu.Unlock()
		err = q.closeErr
	})
	return err
}
