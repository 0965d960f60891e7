// Package forward carries log events from the plugin to remote
// destinations: it owns the bounded queues, batching and the sinks (one
// sub-package per destination). It knows nothing about Docker's plugin
// protocol; the driver turns FIFO entries into Events.
package forward

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// ErrInvalidOption is wrapped by every error about a --log-opt value.
var ErrInvalidOption = errors.New("invalid log-opt")

// OptionError returns an error about option key that names its value and
// what is accepted, wrapping ErrInvalidOption.
func OptionError(key, value, accepted string) error {
	return fmt.Errorf("%w %s=%q: %s", ErrInvalidOption, key, value, accepted)
}

// Event is one log entry on its way to a destination. Sinks copy what they
// keep: the caller reuses Line after Send returns.
type Event struct {
	// Time is when dockerd read the line.
	Time time.Time
	// Source is "stdout" or "stderr".
	Source string
	// Line is the text without a trailing newline.
	Line []byte
	// Partial is set on a piece of a line dockerd split (at 16 KiB), nil
	// for a whole line.
	Partial *Partial
}

// Clone returns a copy of ev that shares no memory with it: what a sink
// keeps of an event its caller reuses.
func (ev *Event) Clone() Event {
	out := *ev
	out.Line = bytes.Clone(ev.Line)
	if ev.Partial != nil {
		p := *ev.Partial
		out.Partial = &p
	}
	return out
}

// Partial identifies one piece of a split line.
type Partial struct {
	// ID is shared by all pieces of one line.
	ID string
	// Ordinal counts pieces from 1.
	Ordinal int
	// Last is set on the final piece.
	Last bool
}

// Container describes the source of a stream of events; it does not change
// while the stream lives.
type Container struct {
	// ID is the full container ID.
	ID string
	// Name is the container name without its leading "/".
	Name string
	// Tag is the expanded log tag.
	Tag string
	// Extra holds the labels and environment variables selected by the
	// labels, labels-regex, env and env-regex options.
	Extra map[string]string
}

// FinalAttemptMargin is how long before a Close deadline a sink makes its
// last attempt to deliver.
const FinalAttemptMargin = 2 * time.Second

// ClosingRetryWait is the longest wait between delivery attempts once Close
// has started: a stopped container's destinations have little time left,
// and one that comes back should not find them asleep.
const ClosingRetryWait = 3 * time.Second

// CapWait shortens a wait between delivery attempts once Close has set a
// deadline (Unix nanoseconds, 0 for none): to at most ClosingRetryWait, and
// so that it ends FinalAttemptMargin before the deadline, leaving time for a
// last attempt. A deadline too close keeps the wait as it is.
func CapWait(wait time.Duration, deadline int64) time.Duration {
	if deadline == 0 {
		return wait
	}
	wait = min(wait, ClosingRetryWait)
	if left := time.Until(time.Unix(0, deadline)) - FinalAttemptMargin; left > 0 && wait > left {
		return left
	}
	return wait
}
