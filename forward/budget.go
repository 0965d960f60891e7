package forward

import "sync/atomic"

// Budget is a byte limit shared by several buffers, such as the disk
// buffers of every container and destination of the plugin. Buffers
// reserve what they take and release what they free. A nil *Budget is no
// limit. It is safe for concurrent use.
type Budget struct {
	max  int64
	used atomic.Int64
}

// NewBudget returns a budget of max bytes.
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// TryReserve takes n bytes if they are left and reports whether it did.
func (b *Budget) TryReserve(n int64) bool {
	if b == nil {
		return true
	}
	for {
		used := b.used.Load()
		if used+n > b.max && n > 0 {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// Reserve takes n bytes even past the limit: for what is already on disk,
// such as a buffer found when a destination starts again.
func (b *Budget) Reserve(n int64) {
	if b != nil {
		b.used.Add(n)
	}
}

// Release gives back n bytes taken with TryReserve or Reserve.
func (b *Budget) Release(n int64) {
	if b != nil {
		b.used.Add(-n)
	}
}

// Used returns the bytes taken now.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Max returns the limit.
func (b *Budget) Max() int64 {
	if b == nil {
		return 0
	}
	return b.max
}
