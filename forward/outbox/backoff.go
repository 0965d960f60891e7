package outbox

import (
	"context"
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

// FinalAttemptMargin is how long before a Close deadline a sink makes its
// last attempt to deliver.
const FinalAttemptMargin = 2 * time.Second

// ClosingRetryWait is the longest wait between delivery attempts once Close
// has started: a stopped container's destinations have little time left,
// and one that comes back should not find them asleep.
const ClosingRetryWait = 3 * time.Second

// capWait shortens a wait between delivery attempts once Close has set a
// deadline (Unix nanoseconds, 0 for none): to at most ClosingRetryWait, and
// so that it ends FinalAttemptMargin before the deadline, leaving time for a
// last attempt. A deadline too close keeps the wait as it is.
func capWait(wait time.Duration, deadline int64) time.Duration {
	if deadline == 0 {
		return wait
	}
	wait = min(wait, ClosingRetryWait)
	if left := time.Until(time.Unix(0, deadline)) - FinalAttemptMargin; left > 0 && wait > left {
		return left
	}
	return wait
}

// Wake is a signal that ends a wait early: a server came back, Close set
// its deadline. Signals sent while nobody waits collapse into one, which
// the next wait takes.
type Wake chan struct{}

// NewWake returns a Wake.
func NewWake() Wake { return make(Wake, 1) }

// Signal ends the current or next wait on w; it never blocks.
func (w Wake) Signal() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// Sleep waits d, or less when wake is signalled; it reports false when ctx
// ended first. A nil wake never comes.
func Sleep(ctx context.Context, d time.Duration, wake Wake) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-wake:
	case <-ctx.Done():
		return false
	}
	return true
}
