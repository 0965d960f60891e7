package forward

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"
)

func ev(line string) Event { return Event{Source: "stdout", Line: []byte(line)} }

func lines(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Line))
	}
	return out
}

func TestQueueDropsOldest(t *testing.T) {
	size := EventSize(new(ev("0")))
	tests := []struct {
		name        string
		cfg         QueueConfig
		push        int
		wantLines   []string
		wantDropped uint64
	}{
		{"under both bounds", QueueConfig{MaxEvents: 5, MaxBytes: 1 << 20}, 3, []string{"0", "1", "2"}, 0},
		{"bounded by events", QueueConfig{MaxEvents: 3, MaxBytes: 1 << 20}, 5, []string{"2", "3", "4"}, 2},
		{"bounded by bytes", QueueConfig{MaxEvents: 100, MaxBytes: int64(2 * size)}, 5, []string{"3", "4"}, 3},
		{"one event", QueueConfig{MaxEvents: 1}, 4, []string{"3"}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := NewQueue(tc.cfg)
			var dropped int
			for i := range tc.push {
				dropped += q.Push(ev(strconv.Itoa(i)))
			}
			if q.Dropped() != tc.wantDropped || uint64(dropped) != tc.wantDropped {
				t.Errorf("dropped %d (Push said %d), want %d", q.Dropped(), dropped, tc.wantDropped)
			}
			n, b := q.Len()
			if n != len(tc.wantLines) || b != int64(n*size) {
				t.Errorf("Len %d events %d bytes, want %d events %d bytes", n, b, len(tc.wantLines), len(tc.wantLines)*size)
			}
			got, err := q.Pop(t.Context(), nil, 100, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(lines(got)) != fmt.Sprint(tc.wantLines) {
				t.Errorf("popped %q, want %q", lines(got), tc.wantLines)
			}
		})
	}
}

func TestQueueDropsEventTooBig(t *testing.T) {
	q := NewQueue(QueueConfig{MaxBytes: 200})
	q.Push(ev("small"))
	if d := q.Push(Event{Line: make([]byte, 300)}); d != 1 {
		t.Errorf("Push of an oversized event dropped %d, want 1", d)
	}
	if n, _ := q.Len(); n != 1 {
		t.Errorf("%d events queued, want the small one kept", n)
	}
}

func TestQueuePopLimits(t *testing.T) {
	q := NewQueue(QueueConfig{})
	for i := range 10 {
		q.Push(ev(strconv.Itoa(i)))
	}
	size := EventSize(new(ev("0")))
	tests := []struct {
		maxEvents, maxBytes int
		want                []string
	}{
		{3, 1 << 20, []string{"0", "1", "2"}},
		{100, 2*size + 1, []string{"3", "4"}},
		{100, 1, []string{"5"}}, // always at least one
		{0, 0, []string{"6"}},
		{100, 1 << 20, []string{"7", "8", "9"}},
	}
	for _, tc := range tests {
		got, err := q.Pop(t.Context(), nil, tc.maxEvents, tc.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(lines(got)) != fmt.Sprint(tc.want) {
			t.Errorf("Pop(%d, %d) = %q, want %q", tc.maxEvents, tc.maxBytes, lines(got), tc.want)
		}
	}
}

func TestQueuePopWaits(t *testing.T) {
	q := NewQueue(QueueConfig{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := q.Pop(ctx, nil, 1, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pop on an empty queue: %v, want deadline exceeded", err)
	}
	got := make(chan []Event)
	go func() {
		evs, _ := q.Pop(context.Background(), nil, 10, 1<<20)
		got <- evs
	}()
	q.Push(ev("late"))
	select {
	case evs := <-got:
		if len(evs) != 1 || string(evs[0].Line) != "late" {
			t.Errorf("popped %q", lines(evs))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pop did not wake up")
	}
}

func TestQueueClose(t *testing.T) {
	q := NewQueue(QueueConfig{})
	q.Push(ev("a"))
	// Every waiting consumer must wake up on Close.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			for {
				if _, err := q.Pop(context.Background(), nil, 1, 1); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	time.Sleep(10 * time.Millisecond)
	q.Close()
	q.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrQueueClosed) {
			t.Errorf("Pop after Close: %v", err)
		}
	}
	if d := q.Push(ev("b")); d != 1 || q.Dropped() != 1 {
		t.Errorf("Push after Close dropped %d (total %d), want 1", d, q.Dropped())
	}
}

func TestQueueEventsPushedBeforeCloseArePopped(t *testing.T) {
	q := NewQueue(QueueConfig{})
	q.Push(ev("a"))
	q.Push(ev("b"))
	q.Close()
	got, err := q.Pop(context.Background(), nil, 10, 1<<20)
	if err != nil || len(got) != 2 {
		t.Fatalf("Pop = %q, %v", lines(got), err)
	}
	if _, err := q.Pop(context.Background(), nil, 10, 1<<20); !errors.Is(err, ErrQueueClosed) {
		t.Errorf("Pop on a closed empty queue: %v", err)
	}
}

// TestQueueConcurrent keeps order and loses nothing with one producer and
// several consumers (run with -race).
func TestQueueConcurrent(t *testing.T) {
	const n = 20000
	q := NewQueue(QueueConfig{MaxEvents: n, MaxBytes: 1 << 30})
	var mu sync.Mutex
	seen := make([]bool, n)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			last := -1
			for {
				evs, err := q.Pop(context.Background(), nil, 7, 1<<20)
				if err != nil {
					return
				}
				for _, e := range evs {
					i, _ := strconv.Atoi(string(e.Line))
					if i <= last {
						t.Errorf("event %d after %d", i, last)
					}
					last = i
					mu.Lock()
					seen[i] = true
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		q.Push(ev(strconv.Itoa(i)))
	}
	q.Close()
	wg.Wait()
	for i, ok := range seen {
		if !ok {
			t.Fatalf("event %d lost", i)
		}
	}
}

func TestQueueShrinks(t *testing.T) {
	q := NewQueue(QueueConfig{MaxBytes: 1 << 30})
	for i := range 10000 {
		q.Push(ev(strconv.Itoa(i)))
	}
	for {
		if _, err := q.Pop(context.Background(), nil, 100, 1<<30); err != nil {
			t.Fatal(err)
		}
		if n, _ := q.Len(); n == 0 {
			break
		}
	}
	q.mu.Lock()
	slots := len(q.ring)
	q.mu.Unlock()
	if slots > 1024 {
		t.Errorf("ring still has %d slots when empty", slots)
	}
}

func BenchmarkQueuePushPop(b *testing.B) {
	q := NewQueue(QueueConfig{})
	e := ev("a log line of a typical length, say eighty bytes or so, from some service")
	var buf []Event
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q.Push(e)
		if i%64 == 63 {
			buf, _ = q.Pop(context.Background(), buf[:0], 64, 1<<20)
		}
	}
}

func TestQueueFullPolicies(t *testing.T) {
	tests := []struct {
		full      FullPolicy
		wantLines []string
	}{
		{DropOldest, []string{"2", "3", "4"}},
		{DropNewest, []string{"0", "1", "2"}},
		{Block, []string{"0", "1", "2"}},
	}
	for _, tc := range tests {
		t.Run(tc.full.String(), func(t *testing.T) {
			q := NewQueue(QueueConfig{MaxEvents: 3, Full: tc.full, BlockTimeout: 30 * time.Millisecond})
			start := time.Now()
			dropped := 0
			for i := range 5 {
				dropped += q.Push(ev(strconv.Itoa(i)))
			}
			elapsed := time.Since(start)
			if dropped != 2 || q.Dropped() != 2 {
				t.Errorf("dropped %d (Dropped %d), want 2", dropped, q.Dropped())
			}
			if tc.full == Block && (elapsed < 30*time.Millisecond || elapsed > time.Second) {
				t.Errorf("pushing took %v: block waits once, then drops without waiting", elapsed)
			}
			got, _ := q.Pop(t.Context(), nil, 10, 1<<20)
			if fmt.Sprint(lines(got)) != fmt.Sprint(tc.wantLines) {
				t.Errorf("kept %q, want %q", lines(got), tc.wantLines)
			}
		})
	}
}

func TestQueueBlockWaitsForPop(t *testing.T) {
	q := NewQueue(QueueConfig{MaxEvents: 1, Full: Block, BlockTimeout: 10 * time.Second})
	q.Push(ev("a"))
	done := make(chan int)
	go func() { done <- q.Push(ev("b")) }()
	select {
	case <-done:
		t.Fatal("Push did not wait for room")
	case <-time.After(20 * time.Millisecond):
	}
	if got, _ := q.Pop(t.Context(), nil, 1, 1<<20); fmt.Sprint(lines(got)) != "[a]" {
		t.Fatalf("popped %q", lines(got))
	}
	if d := <-done; d != 0 {
		t.Errorf("Push dropped %d after a Pop made room", d)
	}
	// Close ends a wait: the event is dropped.
	go func() { done <- q.Push(ev("c")) }()
	time.Sleep(10 * time.Millisecond)
	q.Close()
	if d := <-done; d != 1 {
		t.Errorf("Push during Close dropped %d, want 1", d)
	}
}

func TestQueueItems(t *testing.T) {
	q := NewQueue(QueueConfig{})
	q.PushItem(Item{Event: ev("a"), Seq: 7, Token: 99})
	var items []Item
	_, err := q.Read(t.Context(), 10, 1<<20, func(it *Item) bool {
		items = append(items, *it)
		return true
	})
	if err != nil || len(items) != 1 || items[0].Seq != 7 || items[0].Token != 0 || string(items[0].Line) != "a" {
		t.Errorf("Read = %+v, %v: want the seq kept and no token", items, err)
	}
	q.Ack(0, 1) // nothing to do, never fails
}

// TestQueueReadAndWait: Read passes events to fn and leaves those fn
// refuses at the front, in order; Wait waits for enough of them without
// taking any.
func TestQueueReadAndWait(t *testing.T) {
	t.Parallel()
	q := NewQueue(QueueConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	for i := range 150 {
		q.Push(ev(strconv.Itoa(i)))
	}
	if err := q.Wait(short, 151, 1<<30); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait for more events than queued = %v", err)
	}
	if err := q.Wait(ctx, 150, 1<<30); err != nil {
		t.Errorf("Wait for the events queued = %v", err)
	}
	var got []string
	for len(got) < 150 {
		k := 0
		n, err := q.Read(ctx, 1000, 1<<30, func(it *Item) bool {
			if k == 70 { // across Read's chunks
				return false
			}
			k++
			got = append(got, string(it.Line))
			return true
		})
		if err != nil || n != k {
			t.Fatalf("Read = %d, %v; fn took %d", n, err, k)
		}
	}
	var want []string
	for i := range 150 {
		want = append(want, strconv.Itoa(i))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("read %v", got)
	}
	if n, _ := q.Len(); n != 0 {
		t.Errorf("%d events left", n)
	}
	q.Close()
	if err := q.Wait(ctx, 1, 1); !errors.Is(err, ErrQueueClosed) {
		t.Errorf("Wait on a closed, empty queue = %v", err)
	}
}

// TestEventClone: a clone keeps every field and shares no memory with
// the event, which its caller reuses.
func TestEventClone(t *testing.T) {
	for _, p := range []*Partial{nil, {ID: "p", Ordinal: 2, Last: true}} {
		ev := Event{Time: time.Unix(1, 2), Source: "stderr", Line: []byte("line"), Partial: p}
		c := ev.Clone()
		if !reflect.DeepEqual(c, ev) {
			t.Errorf("Clone = %+v, want %+v", c, ev)
		}
		ev.Line[0] = 'X'
		if p != nil {
			p.Ordinal = 9
		}
		if string(c.Line) != "line" || p != nil && c.Partial.Ordinal != 2 {
			t.Errorf("the clone changed with the event: %+v", c)
		}
	}
}
