package forward

import (
	"strconv"
	"sync"
	"time"
)

// Option keys of partial-merge, shared by the destinations: each sink's
// ParseConfig reads them with ParseMergeOptions.
const (
	// KeyPartialMerge reassembles lines dockerd split at 16 KiB before
	// they are forwarded: true or false (default).
	KeyPartialMerge = "partial-merge"
	// KeyPartialMergeTimeout is how long pieces wait for the rest of
	// their line; default DefaultMergeTimeout.
	KeyPartialMergeTimeout = "partial-merge-timeout"
)

// MergeKeys lists the keys of ParseMergeOptions, sorted.
var MergeKeys = []string{KeyPartialMerge, KeyPartialMergeTimeout}

// ParseMergeOptions validates partial-merge and partial-merge-timeout
// among a container's --log-opt values: on reports whether lines are to be
// reassembled, and cfg has the timeout (zero when not set: the default).
// Other keys are ignored. Errors come from OptionError.
func ParseMergeOptions(opts map[string]string) (on bool, cfg MergeConfig, err error) {
	if v, ok := opts[KeyPartialMerge]; ok {
		if on, err = strconv.ParseBool(v); err != nil {
			return false, MergeConfig{}, OptionError(KeyPartialMerge, v, "must be true or false")
		}
	}
	if v, ok := opts[KeyPartialMergeTimeout]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return false, MergeConfig{}, OptionError(KeyPartialMergeTimeout, v, "must be a positive duration such as 5s")
		}
		cfg.Timeout = d
	}
	return on, cfg, nil
}

// MergeStage reassembles the pieces of lines dockerd split before a sink
// queues them: a Merger, and the goroutine that forwards the lines whose
// pieces stopped coming (Merger.Expire), started by NewMergeStage and
// stopped by Close.
//
// Events come out through the emit function given to NewMergeStage, which
// must copy what it keeps, as a sink's Send does: whole lines are passed
// on as they are, reassembled lines and pieces point into buffers the
// stage forgets once emit returns. emit may be called from Add's caller
// and from the stage's goroutine at the same time, so it must be safe for
// concurrent use; it must not call back into the stage.
//
// Add and Close are safe for concurrent use.
type MergeStage struct {
	merger *Merger
	emit   func(*Event)

	// mu guards closed: Add holds it for reading, so that Close's flush
	// sees every piece added before it.
	mu     sync.RWMutex
	closed bool

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewMergeStage returns a stage reassembling lines as cfg says, passing
// them to emit, with its expiry goroutine started.
func NewMergeStage(cfg MergeConfig, emit func(*Event)) *MergeStage {
	st := &MergeStage{
		merger: NewMerger(cfg),
		emit:   emit,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go st.expire(max(st.merger.timeout/4, 10*time.Millisecond))
	return st
}

// Add takes one event of the stream, which the caller may reuse once Add
// returns. A whole line goes to emit at once; a piece waits for the rest
// of its line, at most the timeout (or, for a line longer than
// MergeConfig.MaxSize, until that much has arrived). After Close, ev goes
// to emit as it is, unmerged.
func (st *MergeStage) Add(ev *Event) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed || ev.Partial == nil {
		// Merger.Add would copy a whole line before emitting it; emit
		// copies it anyway.
		st.emit(ev)
		return
	}
	st.merger.Add(ev, st.emitOwned)
}

// emitOwned passes on an event the Merger hands over.
func (st *MergeStage) emitOwned(ev Event) { st.emit(&ev) }

// Pending returns how many unfinished lines the stage holds.
func (st *MergeStage) Pending() int { return st.merger.Pending() }

// Close stops the expiry goroutine, waits for it, and forwards every
// unfinished line as a piece (Partial set, Last false). Later calls wait
// for the first to finish and do nothing more.
func (st *MergeStage) Close() {
	st.closeOnce.Do(func() {
		st.mu.Lock()
		st.closed = true
		st.mu.Unlock()
		close(st.stop)
		<-st.done
		st.merger.Flush(st.emitOwned)
	})
}

// expire forwards, every interval, the lines whose pieces stopped coming.
func (st *MergeStage) expire(interval time.Duration) {
	defer close(st.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-st.stop:
			return
		case <-t.C:
			st.merger.Expire(st.emitOwned)
		}
	}
}
