package forward

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Default bounds of a Queue.
const (
	// DefaultQueueEvents is the default QueueConfig.MaxEvents, the buffer
	// limit of Docker's fluentd driver (fluentd-buffer-limit).
	DefaultQueueEvents = 1 << 20
	// DefaultQueueBytes is the default QueueConfig.MaxBytes.
	DefaultQueueBytes = 8 << 20
)

// eventOverhead approximates what an Event costs beyond its variable-length
// fields (the struct, its Partial and the queue slot), so that a flood of
// empty lines is bounded too.
const eventOverhead = 96

// ErrQueueClosed is returned by Queue.Pop once the queue is closed and empty.
var ErrQueueClosed = errors.New("queue closed")

// EventSize is what an event counts against QueueConfig.MaxBytes: its line,
// source and partial ID plus a fixed overhead.
func EventSize(ev *Event) int {
	n := eventOverhead + len(ev.Line) + len(ev.Source)
	if ev.Partial != nil {
		n += len(ev.Partial.ID)
	}
	return n
}

// QueueConfig bounds a Queue. The zero value means the defaults.
type QueueConfig struct {
	// MaxEvents is the most events the queue holds; default
	// DefaultQueueEvents.
	MaxEvents int
	// MaxBytes is the most bytes (by EventSize) the queue holds; default
	// DefaultQueueBytes.
	MaxBytes int64
	// Full is what Push does with an event that does not fit; default
	// DropOldest. With Block, Push waits for room up to BlockTimeout
	// (default DefaultBlockTimeout) each time the queue fills up, then
	// drops new events without waiting until a Pop makes room.
	Full         FullPolicy
	BlockTimeout time.Duration
}

// Item is an event taken from a buffer (a Queue or a disk buffer), with
// what its sink stored beside it and what it needs to acknowledge it.
type Item struct {
	Event
	// Seq is the sink's own number for the event, stored with it so that
	// a replay reproduces it (Elasticsearch: the event's place among the
	// container's events of the same nanosecond, part of its _id).
	Seq uint32
	// Token identifies the item to its buffer's Ack; always 0 from a
	// Queue, which forgets items as they are taken.
	Token uint64
}

// Queue is a bounded in-memory FIFO of events between a producer that must
// never wait (the path from a container's FIFO) and a sender that may
// (the network). When full, Push drops the oldest events and counts them
// (see QueueConfig.Full for the other policies).
//
// A Queue is safe for concurrent use by any number of producers and
// consumers.
type Queue struct {
	maxEvents    int
	maxBytes     int64
	full         FullPolicy
	blockTimeout time.Duration

	// notify holds a token while events may be waiting, to wake one Pop.
	notify chan struct{}

	// mu guards every field below.
	mu      sync.Mutex
	ring    []Item // circular; see resizeLocked
	head    int    // index of the oldest event in ring
	n       int    // number of events in ring
	bytes   int64  // sum of EventSize over the queued events
	dropped uint64 // events dropped by Push since NewQueue
	closed  bool
	// space, when not nil, is closed by the next Pop that makes room, to
	// wake a Push waiting under the Block policy.
	space chan struct{}
	// shedding is set when a Push waited BlockTimeout in vain: Pushes then
	// drop without waiting until a Pop makes room.
	shedding bool
}

// NewQueue returns an empty queue bounded by cfg.
func NewQueue(cfg QueueConfig) *Queue {
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = DefaultQueueEvents
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultQueueBytes
	}
	if cfg.BlockTimeout <= 0 {
		cfg.BlockTimeout = DefaultBlockTimeout
	}
	return &Queue{
		maxEvents:    cfg.MaxEvents,
		maxBytes:     cfg.MaxBytes,
		full:         cfg.Full,
		blockTimeout: cfg.BlockTimeout,
		notify:       make(chan struct{}, 1),
	}
}

// Push appends ev; the queue takes ownership of ev's Line and Partial, so
// the caller must not reuse them. When the queue is full it drops the
// oldest events to make room (DropOldest), drops ev (DropNewest), or waits
// for room at most BlockTimeout and then drops ev (Block); Push never
// blocks otherwise. An event bigger than MaxBytes on its own is dropped,
// as is every event pushed after Close. It returns the number of events
// dropped by this call.
func (q *Queue) Push(ev Event) (dropped int) { return q.PushItem(Item{Event: ev}) }

// PushItem is Push for an event with its sink's Seq (it.Token is ignored).
func (q *Queue) PushItem(it Item) (dropped int) {
	size := int64(EventSize(&it.Event))
	q.mu.Lock()
	if q.closed || size > q.maxBytes {
		q.dropped++
		q.mu.Unlock()
		return 1
	}
	if q.full != DropOldest && q.fullLocked(size) {
		if q.full == Block && !q.shedding {
			q.waitLocked(size)
		}
		if q.closed || q.fullLocked(size) {
			q.dropped++
			q.mu.Unlock()
			return 1
		}
	}
	for q.fullLocked(size) {
		q.popFrontLocked()
		dropped++
	}
	q.dropped += uint64(dropped)
	if q.n == len(q.ring) {
		q.resizeLocked(min(max(2*len(q.ring), 64), q.maxEvents))
	}
	it.Token = 0
	q.ring[(q.head+q.n)%len(q.ring)] = it
	q.n++
	q.bytes += size
	q.mu.Unlock()
	q.wake()
	return dropped
}

// fullLocked reports whether an event of size bytes needs room made.
func (q *Queue) fullLocked(size int64) bool {
	return q.n > 0 && (q.n >= q.maxEvents || q.bytes+size > q.maxBytes)
}

// waitLocked waits, with q.mu held on entry and on return, until an event
// of size bytes fits, the queue is closed, or BlockTimeout passes; in the
// last case it starts shedding.
func (q *Queue) waitLocked(size int64) {
	timer := time.NewTimer(q.blockTimeout)
	defer timer.Stop()
	for !q.closed && q.fullLocked(size) {
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
			q.mu.Lock()
		case <-timer.C:
			q.mu.Lock()
			if q.fullLocked(size) {
				q.shedding = true
			}
			return
		}
	}
}

// Pop waits until the queue holds at least one event and then moves up to
// maxEvents of them (at most maxBytes by EventSize, but always at least one)
// to the end of dst, oldest first, and returns the extended slice. It
// returns ctx.Err() if ctx ends first, and ErrQueueClosed once the queue is
// closed and empty; events pushed before Close are still handed out.
func (q *Queue) Pop(ctx context.Context, dst []Event, maxEvents, maxBytes int) ([]Event, error) {
	err := q.pop(ctx, maxEvents, maxBytes, func(it Item) { dst = append(dst, it.Event) })
	return dst, err
}

// readChunk is how many events Read takes from the ring at a time.
const readChunk = 64

// Read waits like Pop until the queue holds an event, then passes queued
// events to fn, oldest first: up to maxEvents of them, and maxBytes by
// EventSize (but always at least one). fn returns false to leave that
// event, and those after it, in the queue. It returns how many events fn
// took; the queue forgets them, and fn may keep their lines. fn is called
// without the queue's lock held, so that Push never waits for it. Read
// returns ctx.Err() if ctx ends before an event is there, and
// ErrQueueClosed once the queue is closed and empty.
func (q *Queue) Read(ctx context.Context, maxEvents, maxBytes int, fn func(*Item) bool) (int, error) {
	if maxEvents <= 0 {
		maxEvents = 1
	}
	var chunk [readChunk]Item
	taken, bytes := 0, 0
	for taken < maxEvents {
		n := 0
		err := q.pop(ctx, min(maxEvents-taken, readChunk), maxBytes-bytes, func(it Item) {
			chunk[n] = it
			n++
		})
		if err != nil {
			if taken > 0 {
				return taken, nil
			}
			return 0, err
		}
		for i := range n {
			if !fn(&chunk[i]) {
				q.unpop(chunk[i:n])
				return taken, nil
			}
			taken++
			bytes += EventSize(&chunk[i].Event)
			chunk[i] = Item{}
		}
		if bytes >= maxBytes {
			break
		}
		// Later chunks only take what is there.
		ctx = DoneContext
	}
	return taken, nil
}

// DoneContext is a context that is already done: reading a queue with it
// takes what is there without waiting.
var DoneContext = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// unpop puts items taken by pop back at the front of the queue, in order,
// whatever the bounds: they were in it a moment ago.
func (q *Queue) unpop(items []Item) {
	if len(items) == 0 {
		return
	}
	q.mu.Lock()
	if q.n+len(items) > len(q.ring) {
		q.resizeLocked(max(2*len(q.ring), q.n+len(items), 64))
	}
	for i := len(items) - 1; i >= 0; i-- {
		q.head = (q.head - 1 + len(q.ring)) % len(q.ring)
		q.ring[q.head] = items[i]
		q.n++
		q.bytes += int64(EventSize(&items[i].Event))
	}
	q.mu.Unlock()
	q.wake()
}

// Wait waits until the queue holds at least minEvents events or minBytes
// bytes by EventSize (and at least one event), or, once it is closed, any
// event; it returns ErrQueueClosed once the queue is closed and empty, and
// ctx.Err() if ctx ends first. It takes nothing: a sink waits with it for
// a batch to fill before it reads the batch.
func (q *Queue) Wait(ctx context.Context, minEvents int, minBytes int64) error {
	for {
		q.mu.Lock()
		n, bytes, closed := q.n, q.bytes, q.closed
		q.mu.Unlock()
		switch {
		case n > 0 && (n >= minEvents || bytes >= minBytes || closed):
			q.wake() // pass the token on to a Read
			return nil
		case closed:
			q.wake()
			return ErrQueueClosed
		}
		select {
		case <-q.notify:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Ack does nothing: a Queue forgets events as Pop or Read hands them out.
// It is there for sinks that acknowledge what a disk buffer handed out.
func (q *Queue) Ack(from, to uint64) {}

func (q *Queue) pop(ctx context.Context, maxEvents, maxBytes int, take func(Item)) error {
	if maxEvents <= 0 {
		maxEvents = 1
	}
	for {
		q.mu.Lock()
		if q.n > 0 {
			var taken int64
			for i := 0; i < maxEvents && q.n > 0; i++ {
				size := int64(EventSize(&q.ring[q.head].Event))
				if i > 0 && taken+size > int64(maxBytes) {
					break
				}
				taken += size
				take(q.popFrontLocked())
			}
			more := q.n > 0
			if len(q.ring) > 64 && q.n < len(q.ring)/4 {
				q.resizeLocked(len(q.ring) / 2)
			}
			if q.space != nil {
				close(q.space)
				q.space = nil
			}
			q.shedding = false
			q.mu.Unlock()
			if more {
				q.wake() // another consumer may be waiting
			}
			return nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			q.wake() // pass Close's wake-up on to the next waiter
			return ErrQueueClosed
		}
		select {
		case <-q.notify:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close makes later Pushes drop their event and wakes waiting Pops; events
// already queued can still be popped. Close is idempotent.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	if q.space != nil {
		close(q.space) // a blocked Push drops its event
		q.space = nil
	}
	q.mu.Unlock()
	// Wake every waiter: each one that wakes re-signals while the queue is
	// closed, so the token is passed along.
	q.wake()
}

// Len returns how many events and bytes (by EventSize) are queued.
func (q *Queue) Len() (events int, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.bytes
}

// Dropped returns how many events Push has dropped since NewQueue.
func (q *Queue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// wake leaves a token for one waiting Pop, if none is there yet.
func (q *Queue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// popFrontLocked removes and returns the oldest event; q.n must be > 0.
func (q *Queue) popFrontLocked() Item {
	it := q.ring[q.head]
	q.ring[q.head] = Item{} // let the line be collected
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	q.bytes -= int64(EventSize(&it.Event))
	if q.n == 0 {
		q.head = 0
	}
	return it
}

// resizeLocked moves the queued events to a ring of size slots (>= q.n):
// the ring doubles as it fills, up to maxEvents slots, and halves when
// mostly empty, so a burst does not pin its memory.
func (q *Queue) resizeLocked(size int) {
	ring := make([]Item, size)
	for i := range q.n {
		ring[i] = q.ring[(q.head+i)%len(q.ring)]
	}
	q.ring = ring
	q.head = 0
}
