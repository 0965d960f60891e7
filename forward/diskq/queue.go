package diskq

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	// generations that say so. It is never held during I/O. The fields
	// come in groups, each with who changes it.
	mu sync.Mutex

	// The files (recover.go adopts, writer.go creates and seals,
	// sync.go deletes, overflow.go drops): the generations owned or
	// adopted, and their live segments in read order.
	gens   []*generation
	known  map[uint64]bool // generations owned or adopted
	segs   []*segment
	active *segment // the segment being written, nil for none yet

	// Entries appended and not yet written (append.go adds, writer.go
	// takes, overflow.go drops): pending, from pstart, are frames
	// waiting; handoff, from hstart, is a full write buffer Append handed
	// to the I/O goroutine; writing is what the writer took and has not
	// written yet. All of them count as in memory.
	pending     []byte
	pstart      int
	pendingRecs int
	handoff     []byte
	hstart      int
	writing     int64
	writingRecs int
	// flushDue is set by the Append that finds nothing waiting in
	// memory, and cleared when the I/O goroutine's delayed flush runs:
	// the goroutine is woken once per FlushDelay, not per entry.
	flushDue bool
	// failing is set while writing fails (a full disk), since failedAt:
	// the I/O goroutine tries again RetryInterval later, Flush and
	// Append retryThrottle later.
	failing  bool
	failedAt time.Time

	// Room (overflow.go): used counts live segments, pending and writing
	// against Buffer.MaxSize; space is closed when room is made, for
	// Block; shedding is set when a Block wait timed out, so that Appends
	// drop at once until there is room again; closedW by CloseWrite.
	used     int64
	space    chan struct{}
	shedding bool
	closedW  bool

	// Reading and acknowledging (reader.go, handouts.go): the entries
	// handed out and not yet acknowledged, from token ringBase, and the
	// next token; wantEvents and wantBytes are what the waiting reader
	// waits for (a write wakes it only once that much is unread).
	ring       handouts
	ringBase   uint64
	nextToken  uint64
	wantEvents int
	wantBytes  int64

	// Counters (Stats).
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

// readPass bounds the entries read between two updates of the queue's
// state, and so the offsets the reader notes meanwhile.
const readPass = 256

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
