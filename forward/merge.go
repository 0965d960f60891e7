package forward

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Defaults of MergeConfig.
const (
	// DefaultMergeTimeout is how long the pieces of a line wait for the
	// next piece before they are forwarded as they are.
	DefaultMergeTimeout = 5 * time.Second
	// DefaultMergeMaxSize is the longest line a Merger reassembles.
	DefaultMergeMaxSize = 1 << 20
)

// maxPendingLines bounds how many unfinished lines a Merger keeps; a
// stream that never finishes its lines cannot make it grow without bound.
const maxPendingLines = 256

// MergeConfig configures a Merger. The zero value means the defaults.
type MergeConfig struct {
	// Timeout is how long an unfinished line waits for its next piece
	// before what has arrived is forwarded as a piece (Partial set, Last
	// false); default DefaultMergeTimeout.
	Timeout time.Duration
	// MaxSize is the longest line, in bytes, that is reassembled; a longer
	// one is forwarded in pieces of about MaxSize bytes. Default
	// DefaultMergeMaxSize.
	MaxSize int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Merger reassembles the pieces of lines that dockerd split (at 16 KiB)
// into whole lines. Pieces are matched by source and Partial.ID, so the
// pieces of different lines and streams may interleave.
//
// What comes out is either a whole line (Partial nil, the time of its first
// piece) or, when a line is longer than MaxSize or its next piece does not
// arrive within Timeout, bigger pieces renumbered from 1, the final one with
// Last set if it arrived: the same shape as dockerd's pieces, only fewer.
//
// A Merger is safe for concurrent use. Expire must be called regularly
// (say every Timeout/4) for the timeout to apply.
type Merger struct {
	timeout time.Duration
	maxSize int
	now     func() time.Time

	// mu guards lines and serialises emit calls, so events come out in
	// the order they were completed.
	mu    sync.Mutex
	lines map[mergeKey]*pendingLine
}

type mergeKey struct{ source, id string }

// pendingLine is a line whose last piece has not arrived yet. Once part of
// it was forwarded, it stays (with an empty buf) until its last piece or
// one more Timeout, so that later pieces continue its numbering.
type pendingLine struct {
	first   time.Time // event time of the first piece
	seen    time.Time // clock reading when the latest piece arrived
	buf     []byte
	emitted int // pieces forwarded so far
}

// NewMerger returns a Merger configured by cfg.
func NewMerger(cfg MergeConfig) *Merger {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultMergeTimeout
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMergeMaxSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Merger{
		timeout: cfg.Timeout,
		maxSize: cfg.MaxSize,
		now:     cfg.Now,
		lines:   make(map[mergeKey]*pendingLine),
	}
}

// Add takes one event. A whole line is passed to emit at once (copied); a
// piece is kept until its line completes. Events given to emit are owned by
// emit (their Line is never touched again by the Merger). emit is called
// with the Merger locked and must not call back into it.
func (m *Merger) Add(ev *Event, emit func(Event)) {
	if ev.Partial == nil {
		out := *ev
		out.Line = slices.Clone(ev.Line)
		emit(out)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	key := mergeKey{ev.Source, ev.Partial.ID}
	p := m.lines[key]
	if p == nil {
		if len(m.lines) >= maxPendingLines {
			m.flushOldestLocked(emit)
		}
		p = &pendingLine{first: ev.Time}
		m.lines[key] = p
	}
	p.seen = now
	p.buf = append(p.buf, ev.Line...)
	switch {
	case ev.Partial.Last:
		delete(m.lines, key)
		if p.emitted == 0 {
			emit(Event{Time: p.first, Source: key.source, Line: p.buf})
			return
		}
		m.emitPieceLocked(key, p, true, emit)
	case len(p.buf) >= m.maxSize:
		m.emitPieceLocked(key, p, false, emit)
	}
}

// Expire forwards, as pieces, the unfinished lines whose latest piece
// arrived Timeout or more ago, and forgets lines that have been quiet for
// twice that.
func (m *Merger) Expire(emit func(Event)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, key := range m.keysLocked() {
		p := m.lines[key]
		if now.Sub(p.seen) < m.timeout {
			continue
		}
		if len(p.buf) == 0 {
			delete(m.lines, key)
			continue
		}
		m.emitPieceLocked(key, p, false, emit)
		p.seen = now
	}
}

// Flush forwards every unfinished line as a piece and forgets them all, for
// when the stream ends.
func (m *Merger) Flush(emit func(Event)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, key := range m.keysLocked() {
		if p := m.lines[key]; len(p.buf) > 0 {
			m.emitPieceLocked(key, p, false, emit)
		}
		delete(m.lines, key)
	}
}

// Pending returns how many unfinished lines the Merger holds.
func (m *Merger) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.lines)
}

// emitPieceLocked forwards what p holds as its next piece.
func (m *Merger) emitPieceLocked(key mergeKey, p *pendingLine, last bool, emit func(Event)) {
	p.emitted++
	emit(Event{
		Time:    p.first,
		Source:  key.source,
		Line:    p.buf,
		Partial: &Partial{ID: key.id, Ordinal: p.emitted, Last: last},
	})
	p.buf = nil
}

// flushOldestLocked makes room by forwarding the line quiet the longest.
func (m *Merger) flushOldestLocked(emit func(Event)) {
	keys := m.keysLocked()
	slices.SortStableFunc(keys, func(a, b mergeKey) int {
		return m.lines[a].seen.Compare(m.lines[b].seen)
	})
	key := keys[0]
	if p := m.lines[key]; len(p.buf) > 0 {
		m.emitPieceLocked(key, p, false, emit)
	}
	delete(m.lines, key)
}

// keysLocked returns the keys of the pending lines in the order their
// first pieces were stamped, so that expiry forwards them in order.
func (m *Merger) keysLocked() []mergeKey {
	keys := make([]mergeKey, 0, len(m.lines))
	for k := range m.lines {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b mergeKey) int {
		if c := m.lines[a].first.Compare(m.lines[b].first); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.source, b.source), cmp.Compare(a.id, b.id))
	})
	return keys
}
