package outbox

import (
	"math/rand/v2"
	"time"
)

// Backoff is how long a sender waits after failures in a row: Min after
// the first, Factor times longer after each next one, at most Max.
type Backoff struct {
	Min, Max time.Duration
	// Factor is the growth per failure; below 1, 2.
	Factor float64
	// Jitter picks the wait at random between half and all of it, so
	// that the sinks of many containers that failed together do not all
	// come back at once.
	Jitter bool
}

// Wait returns the wait after the n-th failure in a row (n >= 1).
func (b Backoff) Wait(n int) time.Duration {
	f := b.Factor
	if f < 1 {
		f = 2
	}
	d := float64(b.Min)
	for i := 1; i < n && d < float64(b.Max); i++ {
		d *= f
	}
	w := time.Duration(min(d, float64(b.Max)))
	if b.Jitter && w > 1 {
		half := w / 2
		w = half + rand.N(half+1)
	}
	return w
}
