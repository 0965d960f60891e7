package fluentd

import (
	"bytes"
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
)

// ErrClosed is returned by Close when the Sink is already closed.
var ErrClosed = errors.New("fluentd: sink closed")

// maxBatchEvents caps the events of one batch, whatever their size.
const maxBatchEvents = 1 << 16

// Stats are a Sink's counters since New.
type Stats struct {
	// Emitted counts events delivered: acknowledged by Fluentd with
	// fluentd-request-ack, written to the connection without.
	Emitted uint64
	// Dropped counts events lost: dropped by the full buffer
	// (buffer-full), in a batch that ran out of retries, sent after Close,
	// or, without a disk buffer, still undelivered when Close's deadline
	// passed (with one, they stay on disk for the next Sink).
	Dropped uint64
	// Retries counts requests sent again after a failed attempt. With
	// acknowledgements, Fluentd may have received some of them twice
	// (at-least-once delivery).
	Retries uint64
	// QueuedEvents and QueuedBytes are what the buffer holds now. In
	// memory: the events waiting (bytes as forward.EventSize counts
	// them), not counting the batch in flight. On disk: every event not
	// yet delivered, the batch in flight included, and the bytes of the
	// buffer's files and write buffer.
	QueuedEvents int
	QueuedBytes  int64
	// BufferQueueLength, BufferTotalQueuedSize and RetryCount are
	// QueuedEvents, QueuedBytes and Retries under the names of Fluentd's
	// monitor_agent (buffer_queue_length counts events here, not chunks).
	BufferQueueLength     int
	BufferTotalQueuedSize int64
	RetryCount            uint64
	// Corrupt counts regions of the disk buffer skipped because they were
	// torn or failed their checksum (their events are lost, uncounted).
	Corrupt uint64
}

// Sink forwards one container's events to Fluentd. Send hands events to a
// bounded queue and never blocks; a goroutine started by New batches them,
// connects (failing over between servers), writes and waits for
// acknowledgements. Close stops it.
//
// All methods are safe for concurrent use.
type Sink struct {
	cfg  Config
	log  *forward.RateLog
	q    buffer         // mem or disk
	mem  *forward.Queue // nil with a disk buffer
	disk *diskq.Queue   // nil without
	// items, tokFrom and tokTo are the sender's: the items of the last
	// Next, and the tokens of the events of the batch being built.
	items          []forward.Item
	tokFrom, tokTo uint64
	merger         *forward.Merger // nil without partial-merge
	enc            *encoder        // used by the sender goroutine only
	servers        []*server

	closed atomic.Bool
	// active is the index in servers of the connected server, -1 for none.
	active atomic.Int32
	// wake tells a sender waiting to retry that a server came back, or
	// that Close set closeBy.
	wake chan struct{}
	// closeBy is Close's deadline in Unix nanoseconds, 0 before Close or
	// without one: retry waits end in time for a last attempt.
	closeBy atomic.Int64

	stopRun    context.CancelFunc // stops the sender and the health checks
	stopMerge  context.CancelFunc // stops the merge expiry
	senderDone chan struct{}
	mergeDone  chan struct{}
	wg         sync.WaitGroup // every goroutine the Sink started

	emitted, dropped, retries atomic.Uint64
	// undelivered counts the events dropped because Close's deadline
	// passed (they are in dropped too).
	undelivered atomic.Uint64
}

// buffer is what the sender needs from the queue of events: a
// forward.Queue in memory, or a diskq.Queue, whose events stay until
// acknowledged.
type buffer interface {
	Next(ctx context.Context, dst []forward.Item, maxEvents, maxBytes int) ([]forward.Item, error)
	Ack(from, to uint64)
	Len() (events int, bytes int64)
	Dropped() uint64
}

// New returns a Sink forwarding events of container c with the tag c.Tag
// (the first 12 characters of c.ID when empty). It never touches the
// network: connecting happens in the background, and events wait in the
// queue meanwhile. With cfg.BufferDir it opens the disk buffer there (see
// package diskq), whose earlier contents are sent first; if it cannot, it
// logs why and keeps events in memory. log receives the Sink's own
// (rate-limited) messages; nil discards them.
func New(cfg Config, c forward.Container, log *slog.Logger) (*Sink, error) {
	cfg = cfg.withDefaults()
	if cfg.Gzip && cfg.Mode != ModePackedForward {
		return nil, fmt.Errorf("fluentd: gzip needs the packedforward mode, not %s", cfg.Mode)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("container", c.ID[:min(12, len(c.ID))], "destination", "fluentd")
	servers := make([]*server, len(cfg.Servers))
	for i, srv := range cfg.Servers {
		servers[i] = &server{Server: srv}
		switch srv.Network {
		case "tls":
			tc, err := clientTLS(cfg.TLS, hostOf(srv.Address))
			if err != nil {
				return nil, err
			}
			servers[i].tls = tc
		case "tcp", "unix":
		default:
			return nil, fmt.Errorf("fluentd: server %q: unknown network %q", srv.Address, srv.Network)
		}
	}
	s := &Sink{
		cfg:        cfg,
		log:        forward.NewRateLog(log, 30*time.Second),
		enc:        newEncoder(cfg, c),
		servers:    servers,
		wake:       make(chan struct{}, 1),
		senderDone: make(chan struct{}),
		mergeDone:  make(chan struct{}),
	}
	if cfg.BufferDir != "" {
		// A buffer that cannot be opened must not fail the container's
		// start: events then wait in memory, as without one.
		d, err := diskq.Open(diskq.Config{Dir: cfg.BufferDir, Buffer: cfg.Buffer, Log: log})
		if err != nil {
			log.Error("cannot open the disk buffer, keeping events in memory only", "dir", cfg.BufferDir, "error", err)
		} else {
			s.disk, s.q = d, d
		}
	}
	if s.disk == nil {
		s.mem = forward.NewQueue(forward.QueueConfig{
			MaxEvents: cfg.QueueEvents, MaxBytes: cfg.QueueBytes,
			Full: cfg.Buffer.Full, BlockTimeout: cfg.Buffer.BlockTimeout,
		})
		s.q = s.mem
	}
	s.active.Store(-1)
	runCtx, stopRun := context.WithCancel(context.Background())
	mergeCtx, stopMerge := context.WithCancel(context.Background())
	s.stopRun, s.stopMerge = stopRun, stopMerge
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.senderDone)
		s.run(runCtx)
	}()
	// Health checks also find a lone server back long before the retry
	// wait, which grows to a minute during an outage, would.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.healthCheck(runCtx)
	}()
	if cfg.PartialMerge {
		s.merger = forward.NewMerger(forward.MergeConfig{Timeout: cfg.PartialMergeTimeout, MaxSize: cfg.PartialMergeMaxSize})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(s.mergeDone)
			s.expireMerges(mergeCtx)
		}()
	} else {
		close(s.mergeDone)
	}
	return s, nil
}

// Send queues a copy of ev for Fluentd and returns at once: it never waits
// for the network or the disk (a disk buffer's writes are made by its own
// goroutine). When the buffer is full, buffer-full applies: the oldest
// events are dropped (the default), or ev, or Send waits for room for at
// most the block timeout; drops are counted. After Close, ev is dropped.
func (s *Sink) Send(ev *forward.Event) {
	if s.closed.Load() {
		s.dropped.Add(1)
		return
	}
	if s.merger != nil {
		s.merger.Add(ev, s.push)
		return
	}
	if s.disk != nil {
		s.warnDropped(s.disk.Append(ev, 0))
		return
	}
	out := *ev
	out.Line = bytes.Clone(ev.Line)
	if ev.Partial != nil {
		p := *ev.Partial
		out.Partial = &p
	}
	s.push(out)
}

// push queues an event the Sink owns.
func (s *Sink) push(ev forward.Event) {
	if s.disk != nil {
		s.warnDropped(s.disk.Append(&ev, 0))
		return
	}
	s.warnDropped(s.mem.Push(ev))
}

func (s *Sink) warnDropped(n int) {
	if n > 0 {
		s.log.Warn("queue", "buffer full, dropped events", "policy", s.cfg.Buffer.Full.String(), "dropped_total", s.q.Dropped())
	}
}

// closeWrite makes the buffer refuse new events and lets the sender take
// what it holds to the end.
func (s *Sink) closeWrite() {
	if s.disk != nil {
		s.disk.CloseWrite()
		return
	}
	s.mem.Close()
}

// Close stops the Sink. It forwards what it can (pieces held for merging,
// queued events, the batch in flight) until ctx is done, then stops its
// goroutines and waits for them. Without a disk buffer what is left is
// dropped, and the error reports it; with one it stays on disk, for the
// next Sink created on the same BufferDir, and the error reports only what
// could not be written there (the buffer's last write and fsync are not
// bounded by ctx). Later calls return ErrClosed.
func (s *Sink) Close(ctx context.Context) error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	if dl, ok := ctx.Deadline(); ok {
		s.closeBy.CompareAndSwap(0, dl.UnixNano())
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	s.stopMerge()
	<-s.mergeDone
	if s.merger != nil {
		s.merger.Flush(s.push)
	}
	s.closeWrite()
	if s.merger != nil {
		// Pieces a concurrent Send added after the first Flush: dropped by
		// the closed queue, and so counted.
		s.merger.Flush(s.push)
	}
	select {
	case <-s.senderDone:
	case <-ctx.Done():
		s.stopRun()
		<-s.senderDone
	}
	s.stopRun()
	s.wg.Wait()
	if s.disk != nil {
		err := s.disk.Close()
		if n, _ := s.disk.Len(); n > 0 {
			s.log.Info("close", "events kept in the disk buffer for the next sink", "events", n)
		}
		if err != nil {
			return fmt.Errorf("fluentd: %w", err)
		}
		return nil
	}
	left := 0
	for {
		evs, err := s.mem.Pop(context.Background(), nil, math.MaxInt, math.MaxInt)
		if err != nil {
			break
		}
		left += len(evs)
	}
	s.dropped.Add(uint64(left))
	s.undelivered.Add(uint64(left))
	if n := s.undelivered.Load(); n > 0 {
		err := context.Cause(ctx)
		if err == nil {
			err = context.Canceled
		}
		return fmt.Errorf("fluentd: %d events undelivered at close: %w", n, err)
	}
	return nil
}

// Stats returns the Sink's counters.
func (s *Sink) Stats() Stats {
	st := Stats{Emitted: s.emitted.Load(), Retries: s.retries.Load()}
	if s.disk != nil {
		ds := s.disk.Stats()
		st.QueuedEvents, st.QueuedBytes, st.Dropped, st.Corrupt = ds.Events, ds.Bytes, ds.Dropped, ds.Corrupt
	} else {
		st.QueuedEvents, st.QueuedBytes = s.mem.Len()
		st.Dropped = s.mem.Dropped()
	}
	st.Dropped += s.dropped.Load()
	st.BufferQueueLength, st.BufferTotalQueuedSize, st.RetryCount = st.QueuedEvents, st.QueuedBytes, st.Retries
	return st
}

// expireMerges forwards lines whose pieces stopped coming.
func (s *Sink) expireMerges(ctx context.Context) {
	timeout := s.cfg.PartialMergeTimeout
	if timeout <= 0 {
		timeout = forward.DefaultMergeTimeout
	}
	t := time.NewTicker(max(timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.merger.Expire(s.push)
		}
	}
}

// run is the sender: it builds a batch, delivers it, and retries with
// backoff until it is delivered or out of retries. It returns when the
// queue is closed and empty, or when ctx is cancelled.
func (s *Sink) run(ctx context.Context) {
	var l link
	defer s.disconnect(&l)
	b := &batch{}
	have := false
	fails := 0
	for {
		if !have {
			if err := s.fill(ctx, b); err != nil {
				return
			}
			have = true
		}
		err := s.deliver(ctx, &l, b)
		if err == nil {
			s.q.Ack(b.ackFrom, b.ackTo)
			have, fails = false, 0
			continue
		}
		if ctx.Err() != nil {
			s.lose(b)
			return
		}
		b.attempts++
		fails++
		if b.attempts > s.cfg.MaxRetries {
			s.log.Error("retries", "dropping a batch after too many failed attempts", "events", b.pendingEvents(), "attempts", b.attempts, "error", err)
			s.dropped.Add(uint64(b.pendingEvents()))
			s.q.Ack(b.ackFrom, b.ackTo) // given up on: off the disk too
			have = false
		} else {
			s.log.Warn("send", "cannot deliver to Fluentd, will retry", "attempt", b.attempts, "error", err)
		}
		wait := s.backoff(fails)
		if fails == 1 && l.wasUp {
			// The connection had worked: reconnect at once, as after a
			// server restart, and back off only if that fails too.
			wait = 0
		}
		l.wasUp = false
		if !s.sleep(ctx, wait) {
			if have {
				s.lose(b)
			}
			return
		}
	}
}

// lose gives up on b at a hard stop: in memory its undelivered events are
// dropped and counted; with a disk buffer they stay there, unacknowledged.
func (s *Sink) lose(b *batch) {
	if s.disk != nil {
		return
	}
	n := uint64(b.pendingEvents())
	s.dropped.Add(n)
	s.undelivered.Add(n)
}

// backoff returns the wait after the n-th consecutive failure (n >= 1).
func (s *Sink) backoff(n int) time.Duration {
	d := float64(s.cfg.RetryWait) * math.Pow(1.5, float64(n-1))
	return forward.CapWait(time.Duration(min(d, float64(s.cfg.MaxRetryWait))), s.closeBy.Load())
}

// sleep waits d, or less if a server comes back; false if ctx ended.
func (s *Sink) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.wake:
	case <-ctx.Done():
		return false
	}
	return true
}

// fill waits for events and encodes them into b: as many as arrive within
// the flush interval of the first one, up to the batch size.
func (s *Sink) fill(ctx context.Context, b *batch) error {
	for s.enc.count() == 0 {
		var err error
		s.items, err = s.q.Next(ctx, s.items[:0], maxBatchEvents, s.cfg.BatchSize)
		if err != nil {
			s.ackUnencoded()
			return err
		}
		s.encode(s.items)
		linger, cancel := context.WithTimeout(ctx, s.cfg.FlushInterval)
		for s.enc.size() < s.cfg.BatchSize && s.enc.count() < maxBatchEvents {
			s.items, err = s.q.Next(linger, s.items[:0], maxBatchEvents-s.enc.count(), s.cfg.BatchSize-s.enc.size())
			if err != nil {
				break
			}
			s.encode(s.items)
		}
		cancel()
	}
	if err := ctx.Err(); err != nil {
		if s.disk == nil {
			n := uint64(s.enc.count())
			s.dropped.Add(n)
			s.undelivered.Add(n)
		} // else they stay on disk, unacknowledged
		s.enc.reset()
		s.tokFrom, s.tokTo = 0, 0
		return err
	}
	if err := s.enc.finish(b); err != nil {
		// Not expected with the types encoded here.
		s.log.Error("encode", "cannot encode a batch", "error", err)
		s.dropped.Add(uint64(s.enc.count()))
		s.enc.reset()
		s.ackUnencoded()
		return s.fill(ctx, b)
	}
	b.ackFrom, b.ackTo = s.tokFrom, s.tokTo
	s.tokFrom, s.tokTo = 0, 0
	return nil
}

// ackUnencoded acknowledges the events taken for a batch that is not
// built: all of them failed to encode and were counted as dropped.
func (s *Sink) ackUnencoded() {
	if s.enc.count() == 0 && s.tokTo != 0 {
		s.q.Ack(s.tokFrom, s.tokTo)
		s.tokFrom, s.tokTo = 0, 0
	}
}

// encode adds items to the batch being built, noting their tokens, and
// releases their lines (which a disk buffer reuses at the next Next).
func (s *Sink) encode(items []forward.Item) {
	for i := range items {
		if t := items[i].Token; t != 0 {
			if s.tokTo == 0 {
				s.tokFrom = t
			}
			s.tokTo = t + 1
		}
		if err := s.enc.add(&items[i].Event); err != nil {
			s.log.Error("encode", "cannot encode an event", "error", err)
			s.dropped.Add(1)
		}
	}
	clear(items)
}
