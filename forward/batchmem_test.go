package forward

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestBatchesGrants(t *testing.T) {
	t.Parallel()
	const max = 1 << 20 // grants of at most 128 KiB
	tests := []struct {
		name   string
		held   []int // wanted before, and kept
		want   int
		grant  int
		waited bool // Get waited BatchWait
	}{
		{"within the limit", nil, 100 << 10, 64 << 10, false},
		{"capped at an eighth", nil, 1 << 20, 128 << 10, false},
		{"small batch size as asked", nil, 4000, 4000, false},
		{"what is left", []int{128 << 10, 128 << 10, 128 << 10, 128 << 10, 128 << 10, 128 << 10, 128 << 10}, 1 << 20, 128 << 10, false},
		{"less than the batch left", []int{128 << 10, 128 << 10, 128 << 10, 128 << 10, 128 << 10, 128 << 10, 128 << 10, 64 << 10}, 1 << 20, MinSlab, false},
		{"past the limit after a wait", []int{128 << 10, 128 << 10, 128 << 10, 128 << 10, 128 << 10, 128 << 10, 128 << 10, 128 << 10}, 1 << 20, MinSlab, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := NewBatches(max)
			for _, n := range tc.held {
				m.Get(context.Background(), n)
			}
			start := time.Now()
			b := m.Get(context.Background(), tc.want)
			waited := time.Since(start) >= BatchWait
			if b.Grant() != tc.grant || cap(b.B) < tc.grant || len(b.B) != 0 || waited != tc.waited {
				t.Errorf("Get(%d) = grant %d, cap %d, waited %v; want grant %d, waited %v", tc.want, b.Grant(), cap(b.B), waited, tc.grant, tc.waited)
			}
		})
	}
}

// TestBatchesReuseAndBound: buffers given back are reused without
// allocating, what is kept stays within the limit, and Forget lets a
// buffer go without keeping it.
func TestBatchesReuseAndBound(t *testing.T) {
	m := NewBatches(1 << 20)
	ctx := context.Background()
	m.Put(m.Get(ctx, 128<<10))
	if n := testing.AllocsPerRun(100, func() { m.Put(m.Get(ctx, 128<<10)) }); n > 1 {
		t.Errorf("%v allocations per Get and Put of a kept size; want the Slab's only", n)
	}
	var held []*Slab
	for range 20 {
		held = append(held, m.Get(ctx, 128<<10))
	}
	for _, b := range held {
		m.Put(b)
	}
	if used, kept := m.Used(); used != 0 || kept > m.Max() {
		t.Errorf("used %d, kept %d of %d", used, kept, m.Max())
	}
	b := m.Get(ctx, 128<<10)
	_, keptBefore := m.Used()
	m.Forget(b)
	if used, kept := m.Used(); used != 0 || kept != keptBefore {
		t.Errorf("after Forget: used %d, kept %d (was %d)", used, kept, keptBefore)
	}
}

// fullBatches returns batch memory of eight MinSlabs, all handed
// out, and the buffers holding it.
func fullBatches() (*Batches, []*Slab) {
	m := NewBatches(8 * MinSlab)
	var held []*Slab
	for range 8 {
		held = append(held, m.Get(context.Background(), MinSlab))
	}
	return m, held
}

// TestBatchesPastTheLimitOnlyWhenStuck: a Get waiting for room does not
// go past the limit while buffers come back, even if other Gets take
// them: only once BatchWait passed without one.
func TestBatchesPastTheLimitOnlyWhenStuck(t *testing.T) {
	t.Parallel()
	m, held := fullBatches()
	ctx := context.Background()
	start := time.Now()
	done := make(chan time.Duration, 1)
	go func() {
		m.Get(ctx, MinSlab)
		done <- time.Since(start)
	}()
	// Before BatchWait passes, a buffer comes back and another sink takes
	// it at once, before the waiting Get could.
	const turnover = BatchWait * 3 / 5
	time.Sleep(turnover)
	m.mu.Lock()
	m.releaseLocked(held[0])
	m.used += held[0].charged
	m.mu.Unlock()
	if waited := <-done; waited < turnover+BatchWait {
		t.Errorf("Get went past the limit after %v; want no sooner than %v, BatchWait after the last buffer came back", waited, turnover+BatchWait)
	}
	if used, _ := m.Used(); used != m.Max()+MinSlab {
		t.Errorf("used %d, want the limit %d and one buffer past it", used, m.Max())
	}
}

// TestBatchesGetWaitsForPut: a Get over the limit is served as soon as a
// buffer comes back, and returns nil when its context ends.
func TestBatchesGetWaitsForPut(t *testing.T) {
	t.Parallel()
	m, held := fullBatches()
	ctx := context.Background()
	var wg sync.WaitGroup
	got := make(chan int, 1)
	wg.Go(func() { got <- m.Get(ctx, MinSlab).Grant() })
	m.Put(held[0])
	wg.Wait()
	if g := <-got; g != MinSlab {
		t.Errorf("grant %d", g)
	}
	if used, _ := m.Used(); used > m.Max() {
		t.Errorf("used %d past the limit %d although room came back", used, m.Max())
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if b := m.Get(cctx, MinSlab); b != nil {
		t.Errorf("Get with a done context = %d bytes", b.Grant())
	}
}
