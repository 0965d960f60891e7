// Package outbox is what every destination's sink does around its own
// delivery, written once: where a container's events wait (the disk
// buffer, or memory without one, or when it cannot be opened), the
// reassembly of split lines before they wait, the accounting of events
// dropped or left undelivered, the sender goroutine and how it stops at
// Close's deadline, and retry backoff.
//
// A sink opens an Outbox, starts its sender with Start, and reads batches
// with Wait, Read and Ack; what it adds is its protocol: how a batch is
// encoded and delivered, and what an answer means.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/diskq"
	"github.com/logferry/logferry/internal/ratelog"
)

// ErrClosed is returned by Close after the first call.
var ErrClosed = errors.New("sink closed")

// Config configures an Outbox.
type Config struct {
	// Name names the destination in messages and errors ("fluentd").
	Name string
	// Dir is the directory of the disk buffer; empty: events wait in
	// memory.
	Dir string
	// Buffer bounds the disk buffer and says what a full buffer (on disk
	// or in memory) does.
	Buffer forward.BufferConfig
	// MemEvents and MemBytes bound the events (and their
	// forward.EventSize bytes) waiting in memory, without a disk buffer.
	MemEvents int
	MemBytes  int64
	// PartialMerge reassembles the lines dockerd split before they wait,
	// as Merge says.
	PartialMerge bool
	Merge        forward.MergeConfig
	// Numbered gives each event its number among the events of the same
	// nanosecond, in the order of Send (forward.Item.Seq), stored with it
	// so that a replay numbers it the same: for destinations whose
	// document IDs must not change.
	Numbered bool
	// LogInterval is the least time between two messages of one kind;
	// default 30s.
	LogInterval time.Duration
}

// Outbox holds one container's events for one destination until its
// sender has delivered them. Send and Flush never wait for the network.
// All methods are safe for concurrent use.
type Outbox struct {
	cfg   Config
	log   *slog.Logger
	limit *ratelog.Log
	// fullMsg and fullPolicy are the drop warning's message and policy,
	// made once: boxing the policy's name for every dropped event would
	// allocate on Send's path.
	fullMsg    string
	fullPolicy any
	// buf is mem or disk, whichever holds the events.
	buf  buffer
	mem  *forward.Queue // nil with a disk buffer
	disk *diskq.Queue   // nil without
	// merge reassembles split lines before they wait; nil without
	// partial-merge.
	merge *forward.MergeStage

	// seqMu guards seqs, and keeps events in the buffer in the order of
	// their numbers.
	seqMu sync.Mutex
	seqs  sequencer

	closed atomic.Bool
	// closeBy is Close's deadline in Unix nanoseconds, 0 before Close or
	// without one: retry waits end in time for a last attempt.
	closeBy atomic.Int64

	// wake, cancel and done are Start's: wake tells the sender that
	// Close set its deadline, cancel is the hard stop, done is closed
	// when the sender returned.
	wake   func()
	cancel context.CancelFunc
	done   chan struct{}

	closeOnce sync.Once
	closeErr  error
	finished  chan struct{} // closed when the first Close returns

	dropped, unsent atomic.Uint64
}

// buffer is what the sender reads: a forward.Queue in memory, or a
// diskq.Queue, whose events stay until acknowledged.
type buffer interface {
	Wait(ctx context.Context, minEvents int, minBytes int64) error
	Read(ctx context.Context, maxEvents, maxBytes int, fn func(*forward.Item) bool) (int, error)
	Ack(from, to uint64)
	Dropped() uint64
}

// Open returns an Outbox as cfg says. With cfg.Dir it opens the disk
// buffer there (see package diskq), whose earlier contents are read
// first; if it cannot, it logs why and keeps events in memory: a buffer
// that cannot be opened must not fail the container's start. log receives
// its messages; nil discards them.
func Open(cfg Config, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = 30 * time.Second
	}
	o := &Outbox{cfg: cfg, log: log, limit: ratelog.New(log, cfg.LogInterval), finished: make(chan struct{})}
	o.fullMsg, o.fullPolicy = "buffer full: dropped new events", cfg.Buffer.Full.String()
	if cfg.Buffer.Full == forward.DropOldest {
		o.fullMsg = "buffer full: dropped the oldest events"
	}
	if cfg.Dir != "" {
		d, err := diskq.Open(diskq.Config{Dir: cfg.Dir, Buffer: cfg.Buffer, Log: log})
		if err != nil {
			log.Error("cannot open the disk buffer, keeping events in memory only", "dir", cfg.Dir, "error", err)
		} else {
			o.disk, o.buf = d, d
		}
	}
	if o.disk == nil {
		o.mem = forward.NewQueue(forward.QueueConfig{
			MaxEvents: cfg.MemEvents, MaxBytes: cfg.MemBytes,
			Full: cfg.Buffer.Full, BlockTimeout: cfg.Buffer.BlockTimeout,
		})
		o.buf = o.mem
	}
	if cfg.PartialMerge {
		o.merge = forward.NewMergeStage(cfg.Merge, o.enqueue)
	}
	return o
}

// Start starts the sender, run, on a goroutine the Outbox owns: Close
// waits for it, and cancels its context at the deadline. wake, when not
// nil, is called once Close knows its deadline, so that a sender waiting
// to retry wakes in time for a last attempt.
func (o *Outbox) Start(run func(ctx context.Context), wake func()) {
	ctx, cancel := context.WithCancel(context.Background())
	o.wake, o.cancel, o.done = wake, cancel, make(chan struct{})
	go func() {
		defer close(o.done)
		run(ctx)
	}()
}

// Send queues a copy of ev and returns: it never waits for the network.
// With a disk buffer the event waits in a small memory buffer that Flush
// (or the buffer itself, after a few milliseconds, or once it fills)
// writes to the buffer's file; see diskq.Queue.Append. When the buffer is
// full, buffer-full applies: the oldest events are dropped (the default),
// or ev, or Send waits for room for at most the block timeout; drops are
// counted. After Close, ev is dropped. With partial-merge, the pieces of a
// split line wait to be queued as one line (see forward.MergeStage).
func (o *Outbox) Send(ev *forward.Event) {
	if o.closed.Load() {
		o.dropped.Add(1)
		return
	}
	if o.merge != nil {
		o.merge.Add(ev)
		return
	}
	o.enqueue(ev)
}

// enqueue queues a copy of ev, as Send says.
func (o *Outbox) enqueue(ev *forward.Event) {
	var n int
	switch {
	case o.disk != nil && o.cfg.Numbered:
		o.seqMu.Lock()
		n = o.disk.Append(ev, o.seqs.next(ev.Time))
		o.seqMu.Unlock()
	case o.disk != nil:
		n = o.disk.Append(ev, 0)
	case o.cfg.Numbered:
		cp := ev.Clone()
		o.seqMu.Lock()
		n = o.mem.PushItem(forward.Item{Event: cp, Seq: o.seqs.next(ev.Time)})
		o.seqMu.Unlock()
	default:
		n = o.mem.Push(ev.Clone())
	}
	if n > 0 && !o.closed.Load() {
		// The destination, or the disk buffer's writes, not keeping up.
		o.limit.Warn("buffer-full", o.fullMsg, "policy", o.fullPolicy, "dropped_total", o.buf.Dropped())
	}
}

// Flush makes the events Sent so far survive a crash of the process
// (kill -9): with a disk buffer it writes those still in memory to the
// buffer's file (write(2), no fsync; see diskq.Queue.Flush). It never
// waits for the network, and costs an atomic load when nothing waits.
// Without a disk buffer it does nothing. Pieces of a line held for
// partial-merge are not written until their line is complete or times
// out.
func (o *Outbox) Flush() {
	if o.disk != nil {
		o.disk.Flush()
	}
}

// OnDisk reports whether the events wait in the disk buffer, where they
// stay until acknowledged, rather than in memory.
func (o *Outbox) OnDisk() bool { return o.disk != nil }

// Wait waits until at least minEvents events or minBytes bytes wait to be
// read, or fewer when the buffer is closed; see forward.Queue.Wait.
func (o *Outbox) Wait(ctx context.Context, minEvents int, minBytes int64) error {
	return o.buf.Wait(ctx, minEvents, minBytes)
}

// Read hands waiting events to fn, in order, until fn returns false or
// maxEvents or maxBytes are reached; see forward.Queue.Read.
func (o *Outbox) Read(ctx context.Context, maxEvents, maxBytes int, fn func(*forward.Item) bool) (int, error) {
	return o.buf.Read(ctx, maxEvents, maxBytes, fn)
}

// Ack settles the events of tokens [from, to): delivered, or given up on.
// In memory it does nothing: what is read is gone.
func (o *Outbox) Ack(from, to uint64) { o.buf.Ack(from, to) }

// Rewind takes back the events read from token from on, to be read again;
// only with a disk buffer (see diskq.Queue.Rewind).
func (o *Outbox) Rewind(from uint64) { o.disk.Rewind(from) }

// Reread hands fn the events of tokens [from, to) again; only with a disk
// buffer (see diskq.Queue.Reread).
func (o *Outbox) Reread(from, to uint64, fn func(*forward.Item)) (int, error) {
	return o.disk.Reread(from, to, fn)
}

// Drop counts n events given up on: out of retries, or impossible to
// encode. The sender acknowledges them.
func (o *Outbox) Drop(n int) { o.dropped.Add(uint64(n)) }

// Abandon accounts for n events read but not delivered when the sender
// stops hard: in memory they are lost (Stats.Unsent); on disk they stay,
// unacknowledged, for the next sink.
func (o *Outbox) Abandon(n int) {
	if o.disk == nil {
		o.unsent.Add(uint64(n))
	}
}

// CapWait returns wait, shortened once Close has a deadline: to at most
// ClosingRetryWait, and so that a last attempt fits before the deadline.
func (o *Outbox) CapWait(wait time.Duration) time.Duration {
	return capWait(wait, o.closeBy.Load())
}

// Close stops taking events and lets the sender deliver what waits, the
// pieces held for partial-merge included, until ctx ends; then it cancels
// the sender's context and waits for it. What is left stays on disk for
// the next sink on the same Dir, or, in memory, is lost: counted in
// Stats.Unsent and reported by the error, which wraps ctx's. With a disk
// buffer the error reports only what could not be written there (the
// buffer's last write and fsync are not bounded by ctx). Later calls wait
// for the first and return ErrClosed.
func (o *Outbox) Close(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok && o.closeBy.CompareAndSwap(0, dl.UnixNano()) && o.wake != nil {
		o.wake()
	}
	first := false
	o.closeOnce.Do(func() {
		first = true
		o.closed.Store(true)
		if o.merge != nil {
			// Unfinished lines go to the buffer, as pieces, before it
			// closes; a concurrent Send's pieces after that are dropped
			// by the closed buffer, and so counted.
			o.merge.Close()
		}
		if o.disk != nil {
			o.disk.CloseWrite()
		} else {
			o.mem.Close()
		}
		if o.done != nil {
			select {
			case <-o.done:
			case <-ctx.Done():
				o.cancel() // everything that blocks takes the sender's context
				<-o.done
			}
			o.cancel()
		}
		o.closeErr = o.finish(ctx)
		close(o.finished)
	})
	if !first {
		select {
		case <-o.finished:
		case <-ctx.Done():
		}
		return ErrClosed
	}
	return o.closeErr
}

// finish closes the buffer once the sender stopped, and accounts for
// what it left.
func (o *Outbox) finish(ctx context.Context) error {
	if o.disk != nil {
		err := o.disk.Close()
		if n, _ := o.disk.Len(); n > 0 {
			o.log.Info("events kept in the disk buffer for the next sink", "events", n)
		}
		if err != nil {
			return fmt.Errorf("close %s sink: %w", o.cfg.Name, err)
		}
		return nil
	}
	// Only after a hard stop can events be left; a done context makes
	// Read hand out what is there without waiting.
	for {
		n, err := o.mem.Read(forward.DoneContext, math.MaxInt, math.MaxInt, func(*forward.Item) bool { return true })
		o.unsent.Add(uint64(n))
		if err != nil || n == 0 {
			break
		}
	}
	if n := o.unsent.Load(); n > 0 {
		o.log.Error("closed with events not delivered", "unsent", n)
		err := context.Cause(ctx)
		if err == nil {
			err = context.Canceled
		}
		return fmt.Errorf("close %s sink: %d events not delivered: %w", o.cfg.Name, n, err)
	}
	return nil
}

// Stats are what happened to the events given to an Outbox that its
// sender does not count itself.
type Stats struct {
	// Queued and QueuedBytes are what the buffer holds now. In memory:
	// the events waiting (bytes as forward.EventSize counts them), not
	// those read by the sender. On disk: every event not yet settled,
	// those in flight included (after Close: those kept for the next
	// sink), and the bytes of the buffer's files and write buffer.
	Queued      int
	QueuedBytes int64
	// Dropped counts events lost before delivery: by the full buffer
	// (buffer-full), sent after Close, out of retries or impossible to
	// encode.
	Dropped uint64
	// Unsent counts events still undelivered when Close gave up, without
	// a disk buffer (with one they stay on disk, in Queued).
	Unsent uint64
	// Corrupt counts regions of the disk buffer skipped because they were
	// torn or failed their checksum (their events are lost, uncounted).
	Corrupt uint64
}

// Stats returns the Outbox's counters.
func (o *Outbox) Stats() Stats {
	st := Stats{Dropped: o.dropped.Load(), Unsent: o.unsent.Load()}
	if o.disk != nil {
		ds := o.disk.Stats()
		st.Queued, st.QueuedBytes, st.Corrupt = ds.Events, ds.Bytes, ds.Corrupt
		st.Dropped += ds.Dropped
	} else {
		st.Queued, st.QueuedBytes = o.mem.Len()
		st.Dropped += o.mem.Dropped()
	}
	return st
}

// Counters returns st in the shape of the plugin's monitoring, with what
// the sender counts: emitted (delivered) and retries (requests sent
// again). Events lost at Close count as dropped.
func (st Stats) Counters(emitted, retries uint64) forward.Counters {
	return forward.Counters{
		Emitted: emitted, Dropped: st.Dropped + st.Unsent, RetryCount: retries, CorruptRegions: st.Corrupt,
		BufferQueueLength: st.Queued, BufferTotalQueuedSize: st.QueuedBytes,
	}
}

// sequencer numbers the events of a stream that share a time, in the
// order of Send.
type sequencer struct {
	// recent are the latest distinct times and how many events had each;
	// a few, because stdout and stderr may interleave.
	recent [8]struct {
		nano  int64
		count uint32
	}
	slot int
}

// next returns how many events before this one had time t.
func (q *sequencer) next(t time.Time) uint32 {
	nano := t.UnixNano()
	for i := range q.recent {
		if r := &q.recent[i]; r.count > 0 && r.nano == nano {
			r.count++
			return r.count - 1
		}
	}
	r := &q.recent[q.slot]
	q.slot = (q.slot + 1) % len(q.recent)
	r.nano, r.count = nano, 1
	return 0
}
