package fluentd

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/outbox"
	"github.com/logferry/logferry/internal/ratelog"
)

// ErrClosed is returned by Close when the Sink is already closed.
var ErrClosed = outbox.ErrClosed

// maxBatchEvents caps the events of one batch, whatever their size.
const maxBatchEvents = 1 << 16

// readEvents is how many events the sender reads from its buffer at a
// time while it builds a batch.
const readEvents = 256

// encodedPerStored is about how much bigger an event is encoded for
// Fluentd (with the container's fields) than in the buffer: a batch is
// taken to be full once the buffer holds the batch size over this.
const encodedPerStored = 2

// Stats are a Sink's counters since New.
type Stats struct {
	// Emitted counts events delivered: acknowledged by Fluentd with
	// fluentd-request-ack, written to the connection without.
	Emitted uint64
	// Retries counts requests sent again after a failed attempt. With
	// acknowledgements, Fluentd may have received some of them twice
	// (at-least-once delivery).
	Retries uint64
	// Stats are what waits in the buffer and what was lost: dropped by
	// the full buffer (buffer-full), in a batch that ran out of retries,
	// sent after Close, or, without a disk buffer, still undelivered when
	// Close's deadline passed (Unsent; with one, they stay on disk for
	// the next Sink).
	outbox.Stats
}

// Sink forwards one container's events to Fluentd. Send hands events to a
// bounded queue and never blocks; a goroutine started by New batches them,
// connects (failing over between servers), writes and waits for
// acknowledgements. Close stops it.
//
// All methods are safe for concurrent use.
type Sink struct {
	cfg     Config
	log     *ratelog.Log
	out     *outbox.Outbox
	batches *forward.Batches
	backoff outbox.Backoff
	// tokFrom and tokTo are the sender's: the tokens of the events of the
	// batch being built.
	tokFrom, tokTo uint64
	// behind is set when the last batch stopped at its size while more
	// events waited: the next one is built at once.
	behind bool
	// retryTo, when not 0, ends the batch being built again after a
	// failed attempt: its events are the same (and so its requests, chunk
	// IDs included) as the batch taken back. rereadFrom and rereadTo,
	// when not 0, are the tokens of a batch to read again by token.
	retryTo              uint64
	rereadFrom, rereadTo uint64
	enc                  *encoder // used by the sender goroutine only

	// servers are the servers as last resolved, replaced (never changed)
	// by the watcher.
	servers atomic.Pointer[[]*server]
	// The sender's: the servers with an open link, the one in use with
	// BalanceFailover, the candidates of the attempt being made, and
	// whether a failed server of the last attempt had delivered (then the
	// next attempt is at once).
	linked  []*server
	current *server
	order   []*server
	wasUp   bool
	// wake tells a sender waiting to retry that a server came back, or
	// that Close set its deadline.
	wake outbox.Wake

	emitted, retries atomic.Uint64
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
	log = log.With("container", c.ShortID(), "destination", Name)
	var err error
	if cfg.Auth.enabled() && cfg.Auth.Hostname == "" {
		if cfg.Auth.Hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("fluentd: host name for the handshake: %w", err)
		}
	}
	if cfg.health == nil {
		cfg.health = newHealthMap()
	}
	servers, err := newServers(cfg, cfg.health)
	if err != nil {
		return nil, err
	}
	s := &Sink{
		cfg:     cfg,
		log:     ratelog.New(log, 30*time.Second),
		enc:     newEncoder(cfg, c),
		batches: cfg.Batches,
		backoff: outbox.Backoff{Min: cfg.RetryWait, Max: cfg.MaxRetryWait, Factor: 1.5},
		wake:    outbox.NewWake(),
	}
	s.servers.Store(&servers)
	if cfg.Balance == BalanceWeighted {
		// Sinks that start together do not all send their first batch
		// to the same server.
		total := 0
		for _, srv := range servers {
			total += srv.Weight
		}
		for range rand.IntN(total) {
			pickWeighted(servers)
		}
	}
	if s.batches == nil {
		s.batches = forward.DefaultBatches
	}
	s.out = outbox.Open(outbox.Config{
		Name: Name, Dir: cfg.BufferDir, Buffer: cfg.Buffer,
		MemEvents: cfg.QueueEvents, MemBytes: cfg.QueueBytes,
		PartialMerge: cfg.PartialMerge, Merge: cfg.Merge,
	}, log)
	s.out.Start(s.run, s.wake.Signal)
	return s, nil
}

// Send queues a copy of ev for Fluentd and returns: it never waits for
// the network; see outbox.Outbox.Send.
func (s *Sink) Send(ev *forward.Event) { s.out.Send(ev) }

// Flush makes the events Sent so far survive a crash of the process; see
// outbox.Outbox.Flush.
func (s *Sink) Flush() { s.out.Flush() }

// Close stops the Sink. It forwards what it can (pieces held for merging,
// queued events, the batch in flight) until ctx is done, then stops its
// goroutines and waits for them; see outbox.Outbox.Close for what is left.
// Later calls return ErrClosed.
func (s *Sink) Close(ctx context.Context) error { return s.out.Close(ctx) }

// Stats returns the Sink's counters.
func (s *Sink) Stats() Stats {
	return Stats{Emitted: s.emitted.Load(), Retries: s.retries.Load(), Stats: s.out.Stats()}
}

// run is the sender, and the watcher (name resolution and health checks)
// beside it while it runs.
func (s *Sink) run(ctx context.Context) {
	// Health checks also find a lone server back long before the retry
	// wait, which grows to a minute during an outage, would.
	hctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.watch(hctx) })
	s.send(ctx)
	stop()
	wg.Wait()
	for _, srv := range s.list() {
		s.cfg.health.release(srv.health)
	}
}

// send is the sender: it builds a batch, delivers it, and retries with
// backoff until it is delivered or out of retries. With a disk buffer, a
// batch that failed is taken back (diskq.Queue.Rewind) and built again
// from disk for the next attempt, so that a destination that is down
// costs no memory. It returns when the queue is closed and empty, or when
// ctx is cancelled.
func (s *Sink) send(ctx context.Context) {
	defer s.disconnectAll()
	b := &batch{}
	defer func() { b.release(s.batches) }()
	have := false
	fails := 0
	// The first token and attempts of the batch last taken back: the
	// attempts go on when the next batch starts with the same event.
	var retryFrom uint64
	retryAttempts := 0
	for {
		if !have {
			if err := s.fill(ctx, b); err != nil {
				return
			}
			have = true
			if retryAttempts > 0 && b.ackFrom == retryFrom {
				b.attempts = retryAttempts
			}
			retryAttempts = 0
		}
		err := s.deliver(ctx, b)
		if err == nil {
			s.out.Ack(b.ackFrom, b.ackTo)
			b.release(s.batches)
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
			s.out.Drop(b.pendingEvents())
			s.out.Ack(b.ackFrom, b.ackTo) // given up on: off the disk too
			b.release(s.batches)
			have = false
		} else {
			s.log.Warn("send", "cannot deliver to Fluentd, will retry", "attempt", b.attempts, "error", err)
			if s.out.OnDisk() {
				retryFrom, retryAttempts = s.takeBack(b), b.attempts
				have = false
			}
		}
		wait := s.wait(fails)
		if fails == 1 && (s.wasUp || s.anyUp()) {
			// The connection had worked, or another server is up: try
			// again at once, as after a server restart, and back off
			// only if that fails too.
			wait = 0
		}
		if !outbox.Sleep(ctx, wait, s.wake) {
			if have {
				s.lose(b)
			}
			return
		}
	}
}

// anyUp reports whether a server is not known to be down.
func (s *Sink) anyUp() bool {
	return slices.ContainsFunc(s.list(), func(srv *server) bool { return !srv.down.Load() })
}

// takeBack gives up the memory of a batch that failed, with a disk
// buffer: the batch is read from disk again for the next attempt, with
// the same events (so the same requests and chunk IDs). Usually the
// buffer takes the events back (Rewind). In the message mode, events
// whose requests were acknowledged already are acknowledged to the
// buffer, and the others are read again by token (Reread) rather than
// taken back, so that they are neither sent nor counted twice. It
// returns the first token of the batch to build again.
func (s *Sink) takeBack(b *batch) uint64 {
	from := b.ackFrom
	partial := false
	if len(b.toks) == len(b.reqs) { // the message mode: one event a request
		first := -1
		for i := range b.reqs {
			switch {
			case !b.acked[i] && first < 0:
				first = i
			case b.acked[i] && first >= 0:
				partial = true
				s.out.Ack(b.toks[i], b.toks[i]+1)
			}
		}
		if first >= 0 {
			from = b.toks[first]
		}
	}
	s.out.Ack(b.ackFrom, from)
	b.release(s.batches)
	s.behind = true // at once, after the backoff
	if partial {
		s.rereadFrom, s.rereadTo = from, b.ackTo
	} else {
		s.out.Rewind(from)
		s.retryTo = b.ackTo
	}
	return from
}

// lose gives up on b at a hard stop: in memory its undelivered events are
// lost; with a disk buffer they stay there, unacknowledged.
func (s *Sink) lose(b *batch) { s.out.Abandon(b.pendingEvents()) }

// wait returns the wait after the n-th consecutive failure (n >= 1).
func (s *Sink) wait(n int) time.Duration { return s.out.CapWait(s.backoff.Wait(n)) }

// fill waits for a batch and builds it into b. The batch fills where the
// events wait, on disk (or in the memory queue), for up to the flush
// interval after the first one or until there is a batch size of them;
// only then does it take a slab (from s.batches, shared by every sink,
// which may grant less than the batch size) and encode the events into
// it, up to the batch size or the slab's grant.
func (s *Sink) fill(ctx context.Context, b *batch) error {
	for {
		if s.rereadTo == 0 { // else it is on disk, handed out already
			if err := s.out.Wait(ctx, 1, 1); err != nil {
				return err
			}
		}
		if !s.behind {
			// The first event of a batch: let the batch fill for up to
			// the flush interval. Events left behind by a full batch
			// have waited already.
			linger, cancel := context.WithTimeout(ctx, s.cfg.FlushInterval)
			_ = s.out.Wait(linger, maxBatchEvents, int64(s.cfg.BatchSize)/encodedPerStored)
			cancel()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		buf := s.batches.Get(ctx, s.cfg.BatchSize+s.enc.overhead())
		if buf == nil {
			return ctx.Err()
		}
		limit := max(buf.Grant()-s.enc.overhead(), 1)
		s.enc.begin(buf)
		s.tokFrom, s.tokTo = 0, 0
		b.toks = b.toks[:0]
		readCtx := ctx
		s.behind = true
		if s.rereadTo != 0 {
			// The events of a batch partly acknowledged: all of them,
			// whatever the grant.
			from, to := s.rereadFrom, s.rereadTo
			s.rereadFrom, s.rereadTo = 0, 0
			_, err := s.out.Reread(from, to, func(it *forward.Item) { s.take(it, math.MaxInt, b) })
			if err != nil {
				s.log.Error("read", "cannot read a batch again from the disk buffer", "error", err)
			}
			s.tokFrom, s.tokTo = from, to
		}
		for s.tokTo == 0 && s.enc.count() < maxBatchEvents && s.enc.size() < limit {
			n, err := s.out.Read(readCtx, min(maxBatchEvents-s.enc.count(), readEvents), math.MaxInt, func(it *forward.Item) bool {
				return s.take(it, limit, b)
			})
			if err != nil || n == 0 {
				s.behind = err == nil // stopped at the limit, not for want of events
				break
			}
			readCtx = forward.DoneContext // later reads take only what is there
		}
		if err := ctx.Err(); err != nil {
			s.batches.Put(s.enc.reset())
			s.out.Abandon(s.enc.count())
			return err
		}
		if s.enc.count() == 0 {
			// Nothing to send: every event failed to encode (counted).
			s.batches.Put(s.enc.reset())
			s.out.Ack(s.tokFrom, s.tokTo)
			continue
		}
		toks := b.toks
		if err := s.enc.finish(b, s.tokFrom, s.tokTo); err != nil {
			// Not expected with the types encoded here.
			s.log.Error("encode", "cannot encode a batch", "error", err)
			s.out.Drop(s.enc.count())
			b.release(s.batches)
			s.out.Ack(s.tokFrom, s.tokTo)
			continue
		}
		b.toks = toks
		b.ackFrom, b.ackTo = s.tokFrom, s.tokTo
		s.retryTo = 0
		return nil
	}
}

// take encodes the event of it into the batch being built, unless it
// would take the batch past limit (the first event always goes in) or
// past the batch it is built again for (retryTo), and notes its token.
func (s *Sink) take(it *forward.Item, limit int, b *batch) bool {
	if s.retryTo != 0 && it.Token >= s.retryTo && s.enc.count() > 0 {
		return false
	}
	n, err := s.enc.prepare(&it.Event)
	if err == nil && s.enc.count() > 0 && s.enc.size()+n > limit {
		return false
	}
	if t := it.Token; t != 0 {
		if s.tokTo == 0 {
			s.tokFrom = t
		}
		s.tokTo = t + 1
	}
	if err == nil {
		err = s.enc.commit(it.Token)
	}
	if err != nil {
		s.log.Error("encode", "cannot encode an event", "error", err)
		s.out.Drop(1)
		return true
	}
	if s.enc.mode == ModeMessage {
		b.toks = append(b.toks, it.Token)
	}
	return true
}
