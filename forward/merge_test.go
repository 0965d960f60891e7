package forward

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex // guards now
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)

func piece(source, id string, ordinal int, last bool, line string) *Event {
	return &Event{Time: t0, Source: source, Line: []byte(line), Partial: &Partial{ID: id, Ordinal: ordinal, Last: last}}
}

// show renders an event compactly: source:line or source:line[id#ordinal(last)].
func show(e Event) string {
	s := e.Source + ":" + string(e.Line)
	if p := e.Partial; p != nil {
		s += fmt.Sprintf("[%s#%d", p.ID, p.Ordinal)
		if p.Last {
			s += " last"
		}
		s += "]"
	}
	return s
}

type step struct {
	add     *Event        // event to add, or nil
	advance time.Duration // then move the clock and call Expire
	flush   bool          // or call Flush
}

func TestMerger(t *testing.T) {
	tests := []struct {
		name    string
		maxSize int
		steps   []step
		want    []string
		pending int
	}{
		{
			name: "whole lines pass through",
			steps: []step{
				{add: &Event{Time: t0, Source: "stdout", Line: []byte("a")}},
				{add: &Event{Time: t0, Source: "stderr", Line: []byte("b")}},
			},
			want: []string{"stdout:a", "stderr:b"},
		},
		{
			name: "pieces become one line",
			steps: []step{
				{add: piece("stdout", "x", 1, false, "aa")},
				{add: piece("stdout", "x", 2, false, "bb")},
				{add: piece("stdout", "x", 3, true, "c")},
			},
			want: []string{"stdout:aabbc"},
		},
		{
			name: "interleaved lines and streams",
			steps: []step{
				{add: piece("stdout", "x", 1, false, "o1")},
				{add: piece("stderr", "y", 1, false, "e1")},
				{add: &Event{Time: t0, Source: "stdout", Line: []byte("whole")}},
				{add: piece("stdout", "z", 1, false, "z1")},
				{add: piece("stderr", "y", 2, true, "e2")},
				{add: piece("stdout", "x", 2, true, "o2")},
				{add: piece("stdout", "z", 2, true, "z2")},
			},
			want: []string{"stdout:whole", "stderr:e1e2", "stdout:o1o2", "stdout:z1z2"},
		},
		{
			name: "same id on two streams kept apart",
			steps: []step{
				{add: piece("stdout", "x", 1, false, "o")},
				{add: piece("stderr", "x", 1, false, "e")},
				{add: piece("stderr", "x", 2, true, "E")},
				{add: piece("stdout", "x", 2, true, "O")},
			},
			want: []string{"stderr:eE", "stdout:oO"},
		},
		{
			name: "last piece never arrives",
			steps: []step{
				{add: piece("stdout", "x", 1, false, "aa")},
				{advance: 4 * time.Second},
				{add: piece("stdout", "x", 2, false, "bb")},
				{advance: 4 * time.Second}, // 4s since the latest piece: wait on
				{advance: time.Second},
			},
			want:    []string{"stdout:aabb[x#1]"},
			pending: 1, // remembered, to number later pieces
		},
		{
			name: "pieces after a timeout continue the numbering",
			steps: []step{
				{add: piece("stdout", "x", 1, false, "aa")},
				{advance: 5 * time.Second},
				{add: piece("stdout", "x", 2, false, "bb")},
				{add: piece("stdout", "x", 3, true, "cc")},
			},
			want: []string{"stdout:aa[x#1]", "stdout:bbcc[x#2 last]"},
		},
		{
			name: "forgotten after a quiet timeout",
			steps: []step{
				{add: piece("stdout", "x", 1, false, "aa")},
				{advance: 5 * time.Second},
				{advance: 5 * time.Second},
			},
			want: []string{"stdout:aa[x#1]"},
		},
		{
			name:    "longer than MaxSize",
			maxSize: 4,
			steps: []step{
				{add: piece("stdout", "x", 1, false, "aaa")},
				{add: piece("stdout", "x", 2, false, "bbb")},
				{add: piece("stdout", "x", 3, false, "cc")},
				{add: piece("stdout", "x", 4, true, "d")},
			},
			want: []string{"stdout:aaabbb[x#1]", "stdout:ccd[x#2 last]"},
		},
		{
			name: "flush at the end of the stream",
			steps: []step{
				{add: piece("stdout", "x", 1, false, "aa")},
				{add: piece("stderr", "y", 1, false, "bb")},
				{flush: true},
			},
			// In the order of their first pieces' times, then by source.
			want: []string{"stderr:bb[y#1]", "stdout:aa[x#1]"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: t0}
			m := NewMerger(MergeConfig{Timeout: 5 * time.Second, MaxSize: tc.maxSize, Now: clock.Now})
			var got []string
			emit := func(e Event) {
				if !e.Time.Equal(t0) {
					t.Errorf("event %s has time %v, want its first piece's %v", show(e), e.Time, t0)
				}
				got = append(got, show(e))
			}
			for _, s := range tc.steps {
				switch {
				case s.add != nil:
					m.Add(s.add, emit)
				case s.flush:
					m.Flush(emit)
				default:
					clock.Advance(s.advance)
					m.Expire(emit)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("emitted %q\nwant      %q", got, tc.want)
			}
			if m.Pending() != tc.pending {
				t.Errorf("%d lines pending, want %d", m.Pending(), tc.pending)
			}
		})
	}
}

func TestMergerCopiesLines(t *testing.T) {
	m := NewMerger(MergeConfig{})
	var got []Event
	emit := func(e Event) { got = append(got, e) }
	buf := []byte("first")
	m.Add(&Event{Line: buf}, emit)
	p := piece("stdout", "x", 1, false, "")
	p.Line = buf
	m.Add(p, emit)
	copy(buf, "XXXXX") // the caller reuses its buffer
	m.Add(piece("stdout", "x", 2, true, "!"), emit)
	if string(got[0].Line) != "first" || string(got[1].Line) != "first!" {
		t.Errorf("lines %q %q: the Merger kept the caller's buffer", got[0].Line, got[1].Line)
	}
}

func TestMergerBoundsPendingLines(t *testing.T) {
	m := NewMerger(MergeConfig{})
	var got []string
	for i := range maxPendingLines + 10 {
		m.Add(piece("stdout", fmt.Sprint(i), 1, false, "p"), func(e Event) { got = append(got, show(e)) })
	}
	if m.Pending() != maxPendingLines || len(got) != 10 {
		t.Errorf("%d pending and %d emitted, want %d and 10", m.Pending(), len(got), maxPendingLines)
	}
}

func TestMergerConcurrent(t *testing.T) {
	m := NewMerger(MergeConfig{})
	var mu sync.Mutex
	got := map[string]string{}
	emit := func(e Event) {
		mu.Lock()
		got[e.Source] += string(e.Line) + "\n"
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			src := fmt.Sprint("s", g)
			for i := range 100 {
				id := fmt.Sprint(i)
				m.Add(&Event{Source: src, Line: []byte("a"), Partial: &Partial{ID: id, Ordinal: 1}}, emit)
				m.Add(&Event{Source: src, Line: []byte("b"), Partial: &Partial{ID: id, Ordinal: 2, Last: true}}, emit)
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 100 {
			m.Expire(emit)
		}
	}()
	wg.Wait()
	for g := range 4 {
		if want := strings.Repeat("ab\n", 100); got[fmt.Sprint("s", g)] != want {
			t.Errorf("stream %d: %q", g, got[fmt.Sprint("s", g)])
		}
	}
}
