package diskq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/internal/tally"
)

// segmentLines returns the line numbers of the intact entries in the
// segment files under dir, as the next process would find them after a
// crash: what was written to the files, nothing else.
func segmentLines(t *testing.T, dir string) []int {
	t.Helper()
	var got []int
	for _, rel := range files(t, dir) {
		if !strings.HasSuffix(rel, segSuffix) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		DecodeSegment(data, func(it *forward.Item) { got = append(got, lineNo(t, it)) })
	}
	slices.Sort(got)
	return got
}

// missingOrTwice reports the numbers of [0, n) that got lacks or has more
// than once.
func missingOrTwice(got []int, n int) (missing, twice []int) {
	return tally.Gaps(tally.Count(got), 0, n-1)
}

// TestFlushWritesToTheFile: after Flush every entry appended is in the
// segment files (a kill -9 keeps it), without waiting for the queue's
// goroutine's delayed flush, an hour away here; without it they are
// still in memory.
func TestFlushWritesToTheFile(t *testing.T) {
	t.Parallel()
	const n = 300
	tests := []struct {
		name    string
		flush   func(q *Queue)
		written bool // the entries reach the files
	}{
		{"Flush", (*Queue).Flush, true},
		{"no flush", func(*Queue) {}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := fastConfig(t.TempDir())
			cfg.FlushDelay = time.Hour
			q := open(t, cfg)
			appendRange(q, 0, n)
			tc.flush(q)
			got := segmentLines(t, cfg.Dir)
			missing, twice := missingOrTwice(got, n)
			switch {
			case tc.written && (len(missing) > 0 || len(twice) > 0):
				t.Errorf("the files lack %v and hold twice %v", missing, twice)
			case !tc.written && len(got) == n:
				t.Errorf("all %d entries written without Flush: the test shows nothing", n)
			}
			// What was written survives a crash and is delivered once.
			crash(q)
			after := drain(t, open(t, fastConfig(cfg.Dir)))
			if tc.written {
				if missing, twice := missingOrTwice(after, n); len(missing) > 0 || len(twice) > 0 {
					t.Errorf("after the crash: missing %v, twice %v", missing, twice)
				}
			}
		})
	}
}

// TestFlushCostsNothingWhenEmpty: Flush with nothing waiting neither
// allocates nor takes a lock, and a queue holds no write buffer once its
// entries are written.
func TestFlushCostsNothingWhenEmpty(t *testing.T) {
	q := open(t, fastConfig(t.TempDir()))
	appendRange(q, 0, 10)
	q.Flush()
	q.mu.Lock()
	held := q.pending != nil
	q.mu.Unlock()
	q.wmu.Lock()
	held = held || q.w.wbuf != nil
	q.wmu.Unlock()
	if held {
		t.Error("the queue keeps a write buffer after Flush")
	}
	if n := testing.AllocsPerRun(1000, q.Flush); n > 0 {
		t.Errorf("Flush allocates %v times with nothing to write", n)
	}
}

// TestReadLeavesWhatFnRefuses: an entry fn refuses, and those after it,
// are handed out by the next Read, with the tokens that follow; the read
// window goes back to the pool after each Read.
func TestReadLeavesWhatFnRefuses(t *testing.T) {
	t.Parallel()
	q := open(t, fastConfig(t.TempDir()))
	appendRange(q, 0, 50)
	q.Flush()
	var got []int
	var toks []uint64
	take := func(max int) int {
		t.Helper()
		k := 0
		n, err := q.Read(t.Context(), 1000, 1<<20, func(it *forward.Item) bool {
			if k == max {
				return false
			}
			k++
			got = append(got, lineNo(t, it))
			toks = append(toks, it.Token)
			return true
		})
		if err != nil || n != k {
			t.Fatalf("Read = %d, %v; fn took %d", n, err, k)
		}
		if q.r.src.buf != nil {
			t.Fatal("the queue keeps its read window after Read")
		}
		return n
	}
	for len(got) < 50 {
		take(7)
	}
	if fmt.Sprint(got) != fmt.Sprint(seq(0, 50)) {
		t.Errorf("got %v", got)
	}
	for i := 1; i < len(toks); i++ {
		if toks[i] != toks[i-1]+1 {
			t.Fatalf("tokens %v are not consecutive", toks)
		}
	}
	q.Ack(toks[0], toks[len(toks)-1]+1)
	if left := drain(t, q); len(left) > 0 {
		t.Errorf("left %v", left)
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	frame := int64(frameSize(new(event(0)), 0))
	tests := []struct {
		name      string
		appended  int
		read      int // handed out before the wait
		minEvents int
		minBytes  int64
		closeW    bool
		want      error
	}{
		{"enough events", 10, 0, 10, 1 << 30, false, nil},
		{"enough bytes", 10, 0, 1000, 5 * frame, false, nil},
		{"too few", 10, 0, 11, 1 << 30, false, context.DeadlineExceeded},
		{"nothing", 0, 0, 1, 1, false, context.DeadlineExceeded},
		{"all handed out", 5, 5, 1, 1, false, context.DeadlineExceeded},
		{"too few but closing", 3, 0, 11, 1 << 30, true, nil},
		{"closed and empty", 0, 0, 1, 1, true, forward.ErrQueueClosed},
		// The segment read to its end before CloseWrite sealed it: no
		// Read is needed to learn that nothing is left.
		{"closed and all handed out", 5, 5, 1, 1, true, forward.ErrQueueClosed},
		{"closed with some left", 5, 3, 1, 1, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := open(t, fastConfig(t.TempDir()))
			appendRange(q, 0, tc.appended)
			q.Flush()
			if tc.read > 0 {
				take(t, q, tc.read, false)
			}
			if tc.closeW {
				q.CloseWrite()
			}
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			if err := q.Wait(ctx, tc.minEvents, tc.minBytes); !errors.Is(err, tc.want) {
				t.Errorf("Wait = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("woken by a write", func(t *testing.T) {
		t.Parallel()
		q := open(t, fastConfig(t.TempDir()))
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			done <- q.Wait(ctx, 20, 1<<30)
		}()
		appendRange(q, 0, 10)
		q.Flush()
		select {
		case err := <-done:
			t.Fatalf("Wait returned with half its events: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		appendRange(q, 10, 20)
		q.Flush()
		if err := <-done; err != nil {
			t.Errorf("Wait = %v", err)
		}
	})
}

// TestRewind: entries taken back are handed out again, in order, with the
// same tokens, across segments; those acknowledged before stay gone, and
// after the last acknowledgement nothing is left, on disk either.
func TestRewind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		read, ack  int // entries read, and acknowledged of them
		rewindFrom int // index among those read of the first taken back
	}{
		{"all of one read", 30, 0, 0},
		{"the unacknowledged tail", 30, 12, 12},
		{"across segments", 90, 25, 40},
		{"nothing", 30, 30, 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 100
			dir := t.TempDir()
			q := open(t, fastConfig(dir)) // 1 KiB segments: a few dozen entries each
			appendRange(q, 0, n)
			q.Flush()
			items := readN(t, q, tc.read)
			if tc.ack > 0 {
				q.Ack(items[0].Token, items[tc.ack-1].Token+1)
			}
			if tc.rewindFrom < tc.read {
				q.Rewind(items[tc.rewindFrom].Token)
			}
			again := readN(t, q, tc.read-tc.rewindFrom)
			for i, it := range again {
				want := items[tc.rewindFrom+i]
				if it.Token != want.Token || string(it.Line) != string(want.Line) {
					t.Fatalf("read again %q token %d, want %q token %d", it.Line, it.Token, want.Line, want.Token)
				}
			}
			if tc.rewindFrom < tc.read && tc.ack < tc.rewindFrom {
				q.Ack(items[tc.ack].Token, items[tc.rewindFrom].Token)
			}
			if len(again) > 0 {
				q.Ack(again[0].Token, again[len(again)-1].Token+1)
			}
			rest := drain(t, q)
			var got []int
			for _, it := range items[:tc.rewindFrom] {
				got = append(got, lineNo(t, &it))
			}
			for _, it := range again {
				got = append(got, lineNo(t, &it))
			}
			got = append(got, rest...)
			if missing, twice := missingOrTwice(got, n); len(missing) > 0 || len(twice) > 0 {
				t.Errorf("missing %v, twice %v", missing, twice)
			}
			if st := q.Stats(); st.Dropped != 0 || st.Events != 0 {
				t.Errorf("stats %+v", st)
			}
			q.Close()
			if left := files(t, dir); len(left) > 0 {
				t.Errorf("files left: %v", left)
			}
		})
	}
}

// readN reads n entries, copying them.
func readN(t *testing.T, q *Queue, n int) []forward.Item {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var items []forward.Item
	for len(items) < n {
		_, err := q.Read(ctx, n-len(items), 1<<20, func(it *forward.Item) bool {
			cp := *it
			cp.Line = slices.Clone(it.Line)
			items = append(items, cp)
			return true
		})
		if err != nil {
			t.Fatalf("Read after %d of %d: %v", len(items), n, err)
		}
	}
	return items
}

// TestReread: entries handed out are read again by token, those
// acknowledged since left out; an entry whose segment drop-oldest
// dropped meanwhile is lost, and counted once.
func TestReread(t *testing.T) {
	t.Parallel()
	q := open(t, fastConfig(t.TempDir()))
	appendRange(q, 0, 60)
	q.Flush()
	items := readN(t, q, 60)
	q.Ack(items[10].Token, items[20].Token) // settled out of order
	var got []int
	var toks []uint64
	n, err := q.Reread(items[0].Token, items[59].Token+1, func(it *forward.Item) {
		got = append(got, lineNo(t, it))
		toks = append(toks, it.Token)
	})
	want := append(seq(0, 10), seq(20, 60)...)
	if err != nil || n != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Reread = %d, %v: %v, want %v", n, err, got, want)
	}
	for i, tok := range toks {
		if wantTok := items[want[i]].Token; tok != wantTok {
			t.Fatalf("entry %d read again with token %d, want %d", want[i], tok, wantTok)
		}
	}

	// Drop the oldest segment, as drop-oldest does when the buffer fills.
	q.mu.Lock()
	var dropped int
	first := q.segs[0]
	q.dropSegmentLocked(&dropped)
	q.mu.Unlock()
	lost := 0
	for _, it := range items {
		if q.ring.at(int(it.Token-q.ringBase)).seg == first && (it.Token < items[10].Token || it.Token >= items[20].Token) {
			lost++
		}
	}
	if lost == 0 {
		t.Fatal("the first segment holds none of the entries read: the test shows nothing")
	}
	before := q.Dropped()
	got = got[:0]
	q.Reread(items[0].Token, items[59].Token+1, func(it *forward.Item) { got = append(got, lineNo(t, it)) })
	q.Reread(items[0].Token, items[59].Token+1, func(*forward.Item) {})
	if len(got) != len(want)-lost || q.Dropped()-before != uint64(lost) {
		t.Errorf("after the drop: %d read again, %d more dropped; want %d and %d", len(got), q.Dropped()-before, len(want)-lost, lost)
	}
}

// TestWaitSealedAfterRead: a segment read to its end before the writer
// sealed it (it filled up, or the queue closes) is passed by Wait, which
// then knows that nothing is left once CloseWrite was called. A Read
// would pass it, but a sink waits before it reads.
func TestWaitSealedAfterRead(t *testing.T) {
	t.Parallel()
	q := open(t, fastConfig(t.TempDir()))
	appendRange(q, 0, 3)
	q.Flush()
	take(t, q, 3, true)
	q.wmu.Lock()
	q.sealActive()
	q.wmu.Unlock()
	q.CloseWrite()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := q.Wait(ctx, 1, 1); !errors.Is(err, forward.ErrQueueClosed) {
		t.Errorf("Wait = %v, want %v", err, forward.ErrQueueClosed)
	}
}
