package forward

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// collector is a MergeStage's emit: it keeps copies of what it gets.
type collector struct {
	mu  sync.Mutex // guards evs
	evs []Event
}

func (c *collector) emit(ev *Event) {
	out := *ev
	out.Line = bytes.Clone(ev.Line)
	if ev.Partial != nil {
		p := *ev.Partial
		out.Partial = &p
	}
	c.mu.Lock()
	c.evs = append(c.evs, out)
	c.mu.Unlock()
}

func (c *collector) events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.evs...)
}

// describe renders events compactly: "line" for a whole line,
// "line[id#ordinal]" or "line[id#ordinal last]" for a piece.
func describe(evs []Event) string {
	var parts []string
	for _, ev := range evs {
		s := string(ev.Line)
		if p := ev.Partial; p != nil {
			last := ""
			if p.Last {
				last = " last"
			}
			s += fmt.Sprintf("[%s#%d%s]", p.ID, p.Ordinal, last)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMergeStage(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	piece := func(line, id string, ordinal int, last bool) Event {
		return Event{Time: t0.Add(time.Duration(ordinal)), Source: "stdout", Line: []byte(line),
			Partial: &Partial{ID: id, Ordinal: ordinal, Last: last}}
	}
	whole := func(line string) Event { return Event{Time: t0, Source: "stdout", Line: []byte(line)} }
	tests := []struct {
		name string
		add  []Event
		// closeFirst closes the stage before adding.
		closeFirst bool
		// before is what emit must have got before Close (polled for up
		// to a ceiling: the timeout's expiry runs in the background);
		// after, what it has after Close.
		before, after string
	}{
		{"whole lines pass at once", []Event{whole("a"), whole("b")}, false, "a b", "a b"},
		{"pieces merged", []Event{piece("a", "x", 1, false), piece("b", "x", 2, false), piece("c", "x", 3, true)}, false,
			"abc", "abc"},
		{"interleaved lines", []Event{piece("a", "x", 1, false), piece("1", "y", 1, false), whole("w"),
			piece("2", "y", 2, true), piece("b", "x", 2, true)}, false, "w 12 ab", "w 12 ab"},
		{"unfinished line expires", []Event{piece("a", "x", 1, false), piece("b", "x", 2, false)}, false,
			"ab[x#1]", "ab[x#1]"},
		{"rest after expiry continues the numbering", []Event{piece("a", "x", 1, false)}, false, "a[x#1]", "a[x#1]"},
		{"after close, unmerged", []Event{piece("a", "x", 1, false), whole("w")}, true, "a[x#1] w", "a[x#1] w"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c collector
			st := NewMergeStage(MergeConfig{Timeout: 50 * time.Millisecond}, c.emit)
			if tt.closeFirst {
				st.Close()
			}
			for _, ev := range tt.add {
				st.Add(&ev)
				ev.Line[0] = 'X' // Add's caller may reuse the line
			}
			waitUntil(t, tt.before, func() bool { return describe(c.events()) == tt.before })
			if tt.name == "rest after expiry continues the numbering" {
				next := piece("b", "x", 2, true)
				st.Add(&next)
				tt.after = "a[x#1] b[x#2 last]"
			}
			st.Close()
			st.Close() // a second Close does nothing
			if got := describe(c.events()); got != tt.after {
				t.Errorf("after Close: %q, want %q", got, tt.after)
			}
			if n := st.Pending(); n != 0 {
				t.Errorf("%d lines pending after Close", n)
			}
		})
	}
}

// TestMergeStageCloseFlushes closes the stage while lines are unfinished
// and well within their timeout: Close forwards them as pieces at once.
func TestMergeStageCloseFlushes(t *testing.T) {
	t.Parallel()
	var c collector
	st := NewMergeStage(MergeConfig{Timeout: time.Hour}, c.emit)
	for i, id := range []string{"x", "y"} {
		ev := Event{Time: time.Unix(int64(i), 0), Source: "stderr", Line: []byte(id + "-part"), Partial: &Partial{ID: id, Ordinal: 1}}
		st.Add(&ev)
	}
	if got := describe(c.events()); got != "" {
		t.Fatalf("emitted %q before Close", got)
	}
	st.Close()
	if got, want := describe(c.events()), "x-part[x#1] y-part[y#1]"; got != want {
		t.Errorf("after Close: %q, want %q", got, want)
	}
}

// TestMergeStageConcurrentClose adds numbered lines, each in three pieces,
// while Close runs: every piece's text comes out exactly once, merged or
// not, and nothing is left pending.
func TestMergeStageConcurrentClose(t *testing.T) {
	t.Parallel()
	var c collector
	st := NewMergeStage(MergeConfig{Timeout: time.Millisecond}, c.emit)
	const lines = 2000
	added := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range lines {
			id := fmt.Sprint(i)
			for ord := 1; ord <= 3; ord++ {
				ev := Event{Time: time.Unix(int64(i), 0), Source: "stdout", Line: []byte(fmt.Sprintf("<%d.%d>", i, ord)),
					Partial: &Partial{ID: id, Ordinal: ord, Last: ord == 3}}
				st.Add(&ev)
			}
			if i == lines/2 {
				close(added)
			}
		}
	})
	<-added
	st.Close()
	wg.Wait()

	seen := map[string]int{}
	for _, ev := range c.events() {
		for _, p := range strings.SplitAfter(string(ev.Line), ">") {
			if p != "" {
				seen[p]++
			}
		}
	}
	var missing, dup []string
	for i := range lines {
		for ord := 1; ord <= 3; ord++ {
			p := fmt.Sprintf("<%d.%d>", i, ord)
			switch n := seen[p]; {
			case n == 0:
				missing = append(missing, p)
			case n > 1:
				dup = append(dup, p)
			}
		}
	}
	if len(missing) > 0 || len(dup) > 0 || len(seen) != 3*lines {
		t.Errorf("%d pieces seen of %d; missing %v, duplicated %v", len(seen), 3*lines, missing, dup)
	}
	if n := st.Pending(); n != 0 {
		t.Errorf("%d lines pending after Close", n)
	}
}

func TestParseMergeOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    map[string]string
		on      bool
		timeout time.Duration
		errKey  string
	}{
		{"unset", nil, false, 0, ""},
		{"on", map[string]string{KeyPartialMerge: "true"}, true, 0, ""},
		{"off with timeout", map[string]string{KeyPartialMerge: "0", KeyPartialMergeTimeout: "250ms"}, false, 250 * time.Millisecond, ""},
		{"on with timeout", map[string]string{KeyPartialMerge: "1", KeyPartialMergeTimeout: "2s"}, true, 2 * time.Second, ""},
		{"bad bool", map[string]string{KeyPartialMerge: "yes"}, false, 0, KeyPartialMerge},
		{"zero timeout", map[string]string{KeyPartialMerge: "true", KeyPartialMergeTimeout: "0s"}, false, 0, KeyPartialMergeTimeout},
		{"negative timeout", map[string]string{KeyPartialMergeTimeout: "-1s"}, false, 0, KeyPartialMergeTimeout},
		{"bad timeout", map[string]string{KeyPartialMergeTimeout: "soon"}, false, 0, KeyPartialMergeTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			on, cfg, err := ParseMergeOptions(tt.opts)
			if tt.errKey != "" {
				if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), tt.errKey+"=") {
					t.Fatalf("error %v, want one about %s", err, tt.errKey)
				}
				return
			}
			if err != nil || on != tt.on || cfg.Timeout != tt.timeout {
				t.Errorf("got %v, %+v, %v; want %v, timeout %v", on, cfg, err, tt.on, tt.timeout)
			}
		})
	}
}
