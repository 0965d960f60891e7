package forward

import (
	"context"
	"errors"
	"sync"
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
}

// Queue is a bounded in-memory FIFO of events between a producer that must
// never wait (the path from a container's FIFO) and a sender that may
// (the network). When full, Push drops the oldest events and counts them.
//
// A Queue is safe for concurrent use by any number of producers and
// consumers.
type Queue struct {
	maxEvents int
	maxBytes  int64

	// notify holds a token while events may be waiting, to wake one Pop.
	notify chan struct{}

	// mu guards ring, head, n, bytes, dropped and closed.
	mu      sync.Mutex
	ring    []Event // circular; see resizeLocked
	head    int     // index of the oldest event in ring
	n       int     // number of events in ring
	bytes   int64   // sum of EventSize over the queued events
	dropped uint64  // events dropped by Push since NewQueue
	closed  bool
}

// NewQueue returns an empty queue bounded by cfg.
func NewQueue(cfg QueueConfig) *Queue {
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = DefaultQueueEvents
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultQueueBytes
	}
	return &Queue{
		maxEvents: cfg.MaxEvents,
		maxBytes:  cfg.MaxBytes,
		notify:    make(chan struct{}, 1),
	}
}

// Push appends ev without ever blocking; the queue takes ownership of ev's
// Line and Partial, so the caller must not reuse them. To make room it drops
// the oldest events; an event bigger than MaxBytes on its own is dropped
// instead. Push on a closed queue drops ev. It returns the number of events
// dropped by this call.
func (q *Queue) Push(ev Event) (dropped int) {
	size := int64(EventSize(&ev))
	q.mu.Lock()
	if q.closed || size > q.maxBytes {
		q.dropped++
		q.mu.Unlock()
		return 1
	}
	for q.n > 0 && (q.n >= q.maxEvents || q.bytes+size > q.maxBytes) {
		q.popFrontLocked()
		dropped++
	}
	q.dropped += uint64(dropped)
	if q.n == len(q.ring) {
		q.resizeLocked(min(max(2*len(q.ring), 64), q.maxEvents))
	}
	q.ring[(q.head+q.n)%len(q.ring)] = ev
	q.n++
	q.bytes += size
	q.mu.Unlock()
	q.wake()
	return dropped
}

// Pop waits until the queue holds at least one event and then moves up to
// maxEvents of them (at most maxBytes by EventSize, but always at least one)
// to the end of dst, oldest first, and returns the extended slice. It
// returns ctx.Err() if ctx ends first, and ErrQueueClosed once the queue is
// closed and empty; events pushed before Close are still handed out.
func (q *Queue) Pop(ctx context.Context, dst []Event, maxEvents, maxBytes int) ([]Event, error) {
	if maxEvents <= 0 {
		maxEvents = 1
	}
	for {
		q.mu.Lock()
		if q.n > 0 {
			var taken int64
			for i := 0; i < maxEvents && q.n > 0; i++ {
				size := int64(EventSize(&q.ring[q.head]))
				if i > 0 && taken+size > int64(maxBytes) {
					break
				}
				taken += size
				dst = append(dst, q.popFrontLocked())
			}
			more := q.n > 0
			if len(q.ring) > 64 && q.n < len(q.ring)/4 {
				q.resizeLocked(len(q.ring) / 2)
			}
			q.mu.Unlock()
			if more {
				q.wake() // another consumer may be waiting
			}
			return dst, nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			q.wake() // pass Close's wake-up on to the next waiter
			return dst, ErrQueueClosed
		}
		select {
		case <-q.notify:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}

// Close makes later Pushes drop their event and wakes waiting Pops; events
// already queued can still be popped. Close is idempotent.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
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
func (q *Queue) popFrontLocked() Event {
	ev := q.ring[q.head]
	q.ring[q.head] = Event{} // let the line be collected
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	q.bytes -= int64(EventSize(&ev))
	if q.n == 0 {
		q.head = 0
	}
	return ev
}

// resizeLocked moves the queued events to a ring of size slots (>= q.n):
// the ring doubles as it fills, up to maxEvents slots, and halves when
// mostly empty, so a burst does not pin its memory.
func (q *Queue) resizeLocked(size int) {
	ring := make([]Event, size)
	for i := range q.n {
		ring[i] = q.ring[(q.head+i)%len(q.ring)]
	}
	q.ring = ring
	q.head = 0
}
