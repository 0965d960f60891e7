package forward

import (
	"context"
	"math/bits"
	"sync"
	"time"
)

// Bounds of the memory of batches, shared by every sink of the process.
const (
	// DefaultBatchMemory is the byte limit of DefaultBatches: what the
	// batches being built or sent by all sinks together may hold.
	DefaultBatchMemory = 2 << 20
	// MinBatchBuffer is the smallest buffer Batches.Get hands out (unless
	// less is asked for).
	MinBatchBuffer = 32 << 10
	// BatchWait is how long Batches.Get waits for room under the limit,
	// with no buffer given back meanwhile, before it hands out a
	// MinBatchBuffer past it.
	BatchWait = 500 * time.Millisecond
)

// DefaultBatches is the batch memory every sink uses unless its
// configuration names another.
var DefaultBatches = NewBatches(DefaultBatchMemory)

// Batches hands out the buffers in which sinks build their requests, and
// bounds their memory across every sink of the process: a sink takes a
// buffer only to build a batch and send it, and gives it back before it
// waits for an answer it does not need the batch for (Fluentd's
// acknowledgement, or a retry, which reads the batch from the disk
// buffer again). A batch gets at most an eighth of the limit. When the
// limit is used up, Get waits for room. While buffers come back, the
// memory is shared in turn and Get goes on waiting; only when none has
// come back for BatchWait (the limit is held by sinks stuck on a slow
// destination) does it hand out a MinBatchBuffer past the limit, so that
// such sinks never hold up the others for long. The buffers in use thus
// hold at most the limit, plus MinBatchBuffer for each sink that got one
// past it, whatever the number of lines waiting; buffers given back are
// kept for reuse within the limit.
//
// Buffers come in sizes that are powers of two from MinBatchBuffer up,
// so that one given back by a sink fits the next sink's batch. It is safe
// for concurrent use.
type Batches struct {
	max int64

	mu   sync.Mutex
	used int64              // bytes of the buffers handed out
	kept int64              // bytes of the buffers in free
	back uint64             // buffers given back so far (Put, Forget)
	free map[int64][][]byte // empty buffers kept for reuse, by capacity
	// room, when not nil, is closed by the next Put, to wake Gets waiting
	// for room.
	room chan struct{}
}

// NewBatches returns batch memory limited to max bytes.
func NewBatches(max int64) *Batches {
	return &Batches{max: max, free: map[int64][][]byte{}}
}

// Buffer is a buffer handed out by Batches.Get. B may be appended to and
// grow past its first capacity; Put accounts for it as it was charged.
type Buffer struct {
	B       []byte
	charged int64
}

// Grant returns the bytes the buffer was granted: the most a batch built
// in it should hold.
func (b *Buffer) Grant() int { return int(b.charged) }

// sizeClass returns the largest power of two not above n, for n >=
// MinBatchBuffer.
func sizeClass(n int64) int64 { return 1 << (63 - bits.LeadingZeros64(uint64(n))) }

// Get returns an empty buffer for a batch of about want bytes: want,
// capped at an eighth of the limit and rounded down to a power of two,
// when that much of the limit is free, MinBatchBuffer otherwise (or want,
// when less is wanted). When not even MinBatchBuffer is free, it waits
// for room, and goes past the limit once BatchWait has passed without a
// buffer given back. It returns nil if ctx ends first.
func (m *Batches) Get(ctx context.Context, want int) *Buffer {
	grant := int64(max(want, 1))
	m.mu.Lock()
	if grant >= MinBatchBuffer {
		grant = min(grant, max(m.max/8, MinBatchBuffer))
		var deadline time.Time
		var back uint64
		for m.max-m.used < MinBatchBuffer {
			if deadline.IsZero() || m.back != back {
				// First wait, or a buffer came back and another Get
				// took it (the memory turns over): BatchWait from now.
				deadline, back = time.Now().Add(BatchWait), m.back
			}
			d := time.Until(deadline)
			if d <= 0 {
				break // waited long enough: past the limit
			}
			if m.room == nil {
				m.room = make(chan struct{})
			}
			room := m.room
			m.mu.Unlock()
			t := time.NewTimer(d)
			select {
			case <-room:
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			t.Stop()
			m.mu.Lock()
		}
		// Two sizes only, so that buffers given back fit the next batch:
		// the batch size (capped), or, when that much is not free,
		// MinBatchBuffer.
		grant = sizeClass(grant)
		if grant > m.max-m.used {
			grant = MinBatchBuffer
		}
	}
	m.used += grant
	var buf []byte
	if list := m.free[grant]; len(list) > 0 {
		buf = list[len(list)-1]
		list[len(list)-1] = nil
		m.free[grant] = list[:len(list)-1]
		m.kept -= grant
	} else if m.used+m.kept > m.max {
		m.evictLocked(m.used + m.kept - m.max)
	}
	m.mu.Unlock()
	if buf == nil {
		buf = make([]byte, 0, grant)
	}
	return &Buffer{B: buf, charged: grant}
}

// evictLocked lets go of kept buffers of at least n bytes, the biggest
// first.
func (m *Batches) evictLocked(n int64) {
	for n > 0 && m.kept > 0 {
		var c int64
		for size, list := range m.free {
			if len(list) > 0 && size > c {
				c = size
			}
		}
		list := m.free[c]
		list[len(list)-1] = nil
		m.free[c] = list[:len(list)-1]
		m.kept -= c
		n -= c
	}
}

// Put gives back a buffer from Get; b must not be used afterwards. Put of
// nil does nothing.
func (m *Batches) Put(b *Buffer) {
	if b == nil {
		return
	}
	c := int64(cap(b.B))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseLocked(b)
	if c != b.charged || c < MinBatchBuffer || m.used+m.kept+c > m.max {
		return // grown, small, or over the limit: the garbage collector takes it
	}
	m.free[c] = append(m.free[c], b.B[:0])
	m.kept += c
}

// Forget gives back a buffer from Get that is not to be reused (something
// may still read it): its bytes no longer count, and it is left to the
// garbage collector.
func (m *Batches) Forget(b *Buffer) {
	if b == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseLocked(b)
}

// releaseLocked stops counting b's bytes and wakes the Gets waiting for
// room.
func (m *Batches) releaseLocked(b *Buffer) {
	m.used -= b.charged
	m.back++
	if m.room != nil {
		close(m.room)
		m.room = nil
	}
}

// Used returns the bytes of the buffers handed out now, and of those kept
// for reuse.
func (m *Batches) Used() (used, kept int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used, m.kept
}

// Max returns the limit.
func (m *Batches) Max() int64 { return m.max }
