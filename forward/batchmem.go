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
	// MinSlab is the smallest slab Batches.Get hands out (unless
	// less is asked for).
	MinSlab = 32 << 10
	// BatchWait is how long Batches.Get waits for room under the limit,
	// with no slab given back meanwhile, before it hands out a
	// MinSlab past it.
	BatchWait = 500 * time.Millisecond
)

// DefaultBatches is the batch memory every sink uses unless its
// configuration names another.
var DefaultBatches = NewBatches(DefaultBatchMemory)

// Batches hands out the slabs in which sinks build their requests, and
// bounds their memory across every sink of the process: a sink takes a
// slab only to build a batch and send it, and gives it back before it
// waits for an answer it does not need the batch for (Fluentd's
// acknowledgement, or a retry, which reads the batch from the disk
// buffer again). A batch gets at most an eighth of the limit. When the
// limit is used up, Get waits for room. While slabs come back, the
// memory is shared in turn and Get goes on waiting; only when none has
// come back for BatchWait (the limit is held by sinks stuck on a slow
// destination) does it hand out a MinSlab past the limit, so that
// such sinks never hold up the others for long. The slabs in use thus
// hold at most the limit, plus MinSlab for each sink that got one
// past it, whatever the number of lines waiting; slabs given back are
// kept for reuse within the limit.
//
// Buffers come in sizes that are powers of two from MinSlab up,
// so that one given back by a sink fits the next sink's batch. It is safe
// for concurrent use.
type Batches struct {
	max int64

	mu   sync.Mutex
	used int64              // bytes of the slabs handed out
	kept int64              // bytes of the slabs in free
	back uint64             // slabs given back so far (Put, Forget)
	free map[int64][][]byte // empty slabs kept for reuse, by capacity
	// room, when not nil, is closed by the next Put, to wake Gets waiting
	// for room.
	room chan struct{}
}

// NewBatches returns batch memory limited to max bytes.
func NewBatches(max int64) *Batches {
	return &Batches{max: max, free: map[int64][][]byte{}}
}

// Slab is the memory of one batch, handed out by Batches.Get ("buffer"
// is kept for where events wait to be sent: the disk buffer, or memory
// without one). B may be appended to and grow past its first capacity;
// Put accounts for it as it was charged.
type Slab struct {
	B       []byte
	charged int64
}

// Grant returns the bytes the slab was granted: the most a batch built
// in it should hold.
func (b *Slab) Grant() int { return int(b.charged) }

// sizeClass returns the largest power of two not above n, for n >=
// MinSlab.
func sizeClass(n int64) int64 { return 1 << (63 - bits.LeadingZeros64(uint64(n))) }

// Get returns an empty slab for a batch of about want bytes: want,
// capped at an eighth of the limit and rounded down to a power of two,
// when that much of the limit is free, MinSlab otherwise (or want,
// when less is wanted). When not even MinSlab is free, it waits
// for room, and goes past the limit once BatchWait has passed without a
// slab given back. It returns nil if ctx ends first.
func (m *Batches) Get(ctx context.Context, want int) *Slab {
	grant := int64(max(want, 1))
	m.mu.Lock()
	if grant >= MinSlab {
		grant = min(grant, max(m.max/8, MinSlab))
		var deadline time.Time
		var back uint64
		for m.max-m.used < MinSlab {
			if deadline.IsZero() || m.back != back {
				// First wait, or a slab came back and another Get
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
		// Two sizes only, so that slabs given back fit the next batch:
		// the batch size (capped), or, when that much is not free,
		// MinSlab.
		grant = sizeClass(grant)
		if grant > m.max-m.used {
			grant = MinSlab
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
	return &Slab{B: buf, charged: grant}
}

// evictLocked lets go of kept slabs of at least n bytes, the biggest
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

// Put gives back a slab from Get; b must not be used afterwards. Put of
// nil does nothing.
func (m *Batches) Put(b *Slab) {
	if b == nil {
		return
	}
	c := int64(cap(b.B))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseLocked(b)
	if c != b.charged || c < MinSlab || m.used+m.kept+c > m.max {
		return // grown, small, or over the limit: the garbage collector takes it
	}
	m.free[c] = append(m.free[c], b.B[:0])
	m.kept += c
}

// Forget gives back a slab from Get that is not to be reused (something
// may still read it): its bytes no longer count, and it is left to the
// garbage collector.
func (m *Batches) Forget(b *Slab) {
	if b == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseLocked(b)
}

// releaseLocked stops counting b's bytes and wakes the Gets waiting for
// room.
func (m *Batches) releaseLocked(b *Slab) {
	m.used -= b.charged
	m.back++
	if m.room != nil {
		close(m.room)
		m.room = nil
	}
}

// Used returns the bytes of the slabs handed out now, and of those kept
// for reuse.
func (m *Batches) Used() (used, kept int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used, m.kept
}

// Max returns the limit.
func (m *Batches) Max() int64 { return m.max }
