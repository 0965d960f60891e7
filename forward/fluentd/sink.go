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
	// Dropped counts events lost: pushed out of the full queue, in a batch
	// that ran out of retries, sent after Close, or still undelivered when
	// Close's deadline passed.
	Dropped uint64
	// Retries counts requests sent again after a failed attempt. With
	// acknowledgements, Fluentd may have received some of them twice
	// (at-least-once delivery).
	Retries uint64
	// QueuedEvents and QueuedBytes are what waits in the queue now (bytes
	// as forward.EventSize counts them), not counting the batch in flight.
	QueuedEvents int
	QueuedBytes  int64
}

// Sink forwards one container's events to Fluentd. Send hands events to a
// bounded queue and never blocks; a goroutine started by New batches them,
// connects (failing over between servers), writes and waits for
// acknowledgements. Close stops it.
//
// All methods are safe for concurrent use.
type Sink struct {
	cfg     Config
	log     *rateLog
	q       *forward.Queue
	merger  *forward.Merger // nil without partial-merge
	enc     *encoder        // used by the sender goroutine only
	servers []*server

	closed atomic.Bool
	// active is the index in servers of the connected server, -1 for none.
	active atomic.Int32
	// wake tells a sender waiting to retry that a server came back.
	wake chan struct{}

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

// New returns a Sink forwarding events of container c with the tag c.Tag
// (the first 12 characters of c.ID when empty). It never touches the
// network: connecting happens in the background, and events wait in the
// queue meanwhile. log receives the Sink's own (rate-limited) messages; nil
// discards them.
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
		log:        newRateLog(log, 30*time.Second),
		q:          forward.NewQueue(forward.QueueConfig{MaxEvents: cfg.QueueEvents, MaxBytes: cfg.QueueBytes}),
		enc:        newEncoder(cfg, c),
		servers:    servers,
		wake:       make(chan struct{}, 1),
		senderDone: make(chan struct{}),
		mergeDone:  make(chan struct{}),
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
	if len(servers) > 1 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.healthCheck(runCtx)
		}()
	}
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

// Send queues a copy of ev for Fluentd and returns at once. When the queue
// is full, the oldest queued events are dropped (and counted); after Close,
// ev is dropped.
func (s *Sink) Send(ev *forward.Event) {
	if s.closed.Load() {
		s.dropped.Add(1)
		return
	}
	if s.merger != nil {
		s.merger.Add(ev, s.push)
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
	if n := s.q.Push(ev); n > 0 {
		s.log.warn("queue", "queue full, dropped the oldest events", "dropped_total", s.q.Dropped())
	}
}

// Close stops the Sink. It forwards what it can (pieces held for merging,
// queued events, the batch in flight) until ctx is done, then drops the
// rest, stops its goroutines and waits for them. The error reports events
// left undelivered. Later calls return ErrClosed.
func (s *Sink) Close(ctx context.Context) error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	s.stopMerge()
	<-s.mergeDone
	if s.merger != nil {
		s.merger.Flush(s.push)
	}
	s.q.Close()
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
	left := 0
	for {
		evs, err := s.q.Pop(context.Background(), nil, math.MaxInt, math.MaxInt)
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
	events, bytes := s.q.Len()
	return Stats{
		Emitted:      s.emitted.Load(),
		Dropped:      s.dropped.Load() + s.q.Dropped(),
		Retries:      s.retries.Load(),
		QueuedEvents: events,
		QueuedBytes:  bytes,
	}
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
			s.log.error("retries", "dropping a batch after too many failed attempts", "events", b.pendingEvents(), "attempts", b.attempts, "error", err)
			s.dropped.Add(uint64(b.pendingEvents()))
			have = false
		} else {
			s.log.warn("send", "cannot deliver to Fluentd, will retry", "attempt", b.attempts, "error", err)
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

// lose counts the undelivered events of b as dropped.
func (s *Sink) lose(b *batch) {
	n := uint64(b.pendingEvents())
	s.dropped.Add(n)
	s.undelivered.Add(n)
}

// backoff returns the wait after the n-th consecutive failure (n >= 1).
func (s *Sink) backoff(n int) time.Duration {
	d := float64(s.cfg.RetryWait) * math.Pow(1.5, float64(n-1))
	return time.Duration(min(d, float64(s.cfg.MaxRetryWait)))
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
	var evs []forward.Event
	for s.enc.count() == 0 {
		var err error
		evs, err = s.q.Pop(ctx, evs[:0], maxBatchEvents, s.cfg.BatchSize)
		if err != nil {
			return err
		}
		s.encode(evs)
		linger, cancel := context.WithTimeout(ctx, s.cfg.FlushInterval)
		for s.enc.size() < s.cfg.BatchSize && s.enc.count() < maxBatchEvents {
			evs, err = s.q.Pop(linger, evs[:0], maxBatchEvents-s.enc.count(), s.cfg.BatchSize-s.enc.size())
			if err != nil {
				break
			}
			s.encode(evs)
		}
		cancel()
	}
	if err := ctx.Err(); err != nil {
		n := uint64(s.enc.count())
		s.dropped.Add(n)
		s.undelivered.Add(n)
		s.enc.reset()
		return err
	}
	if err := s.enc.finish(b); err != nil {
		// Not expected with the types encoded here.
		s.log.error("encode", "cannot encode a batch", "error", err)
		s.dropped.Add(uint64(s.enc.count()))
		s.enc.reset()
		return s.fill(ctx, b)
	}
	return nil
}

// encode adds evs to the batch being built and releases their lines.
func (s *Sink) encode(evs []forward.Event) {
	for i := range evs {
		if err := s.enc.add(&evs[i]); err != nil {
			s.log.error("encode", "cannot encode an event", "error", err)
			s.dropped.Add(1)
		}
	}
	clear(evs)
}

// rateLog logs each kind of message at most once per interval, with a count
// of the ones it held back.
type rateLog struct {
	log   *slog.Logger
	every time.Duration

	// mu guards last and held.
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

func newRateLog(log *slog.Logger, every time.Duration) *rateLog {
	return &rateLog{log: log, every: every, last: map[string]time.Time{}, held: map[string]int{}}
}

func (r *rateLog) warn(key, msg string, args ...any) { r.emit(slog.LevelWarn, key, msg, args) }

func (r *rateLog) error(key, msg string, args ...any) { r.emit(slog.LevelError, key, msg, args) }

func (r *rateLog) info(key, msg string, args ...any) { r.emit(slog.LevelInfo, key, msg, args) }

func (r *rateLog) emit(level slog.Level, key, msg string, args []any) {
	now := time.Now()
	r.mu.Lock()
	if last, ok := r.last[key]; ok && now.Sub(last) < r.every {
		r.held[key]++
		r.mu.Unlock()
		return
	}
	held := r.held[key]
	r.last[key], r.held[key] = now, 0
	r.mu.Unlock()
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	r.log.Log(context.Background(), level, msg, args...)
}
