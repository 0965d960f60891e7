package elasticsearch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestPressureLimit drives the limit through sequences of answers: +1
// after a round of clean answers with every slot used, halved on
// pushback, once per round, between 1 and Workers.
func TestPressureLimit(t *testing.T) {
	t.Parallel()
	clean := answer{accepted: 10, latency: time.Millisecond}
	partial := answer{accepted: 9, refused: 1, latency: time.Millisecond}
	failed := answer{failed: true, refused: 10}
	// Twice and eight times the latency of clean: the requests waited in
	// the cluster's queue.
	queued := answer{accepted: 10, latency: 2 * time.Millisecond}
	slow := answer{accepted: 10, latency: 8 * time.Millisecond}
	// 1% refused: a hot spot, not an overload; and 50%.
	few := answer{accepted: 99, refused: 1, latency: 10 * time.Millisecond}
	fewSlow := answer{accepted: 99, refused: 1, latency: 40 * time.Millisecond}
	half := answer{accepted: 5, refused: 5, latency: time.Millisecond}
	// step sends n requests at once and answers them all with a, in the
	// round they were sent in.
	type step struct {
		n int
		a answer
	}
	tests := []struct {
		name    string
		workers int
		steps   []step
		want    []int // the limit after each step
	}{
		{"grows to the workers", 4, []step{{1, clean}, {2, clean}, {3, clean}, {4, clean}, {4, clean}}, []int{2, 3, 4, 4, 4}},
		{"grows only when saturated", 4, []step{{1, clean}, {1, clean}, {1, clean}, {2, clean}}, []int{2, 2, 2, 3}},
		{"halves on a partial refusal", 8, []step{{1, clean}, {2, clean}, {3, clean}, {4, clean}, {5, clean}, {6, partial}}, []int{2, 3, 4, 5, 6, 3}},
		{"halves once per round", 4, []step{{1, clean}, {2, clean}, {3, clean}, {4, failed}, {2, failed}}, []int{2, 3, 4, 2, 1}},
		{"never below one", 4, []step{{1, failed}, {1, failed}, {1, partial}}, []int{1, 1, 1}},
		{"holds while latency grows", 8, []step{{1, clean}, {2, queued}, {2, queued}, {2, slow}}, []int{2, 2, 2, 1}},
		{"grows again once latency is back", 8, []step{{1, clean}, {2, slow}, {1, clean}, {2, clean}}, []int{2, 1, 2, 3}},
		{"a small share shrinks it in proportion", 4, []step{{1, clean}, {2, clean}, {3, clean}, {4, few}, {4, few}, {4, half}}, []int{2, 3, 4, 4, 4, 2}},
		{"a small share and latency rising", 4, []step{{1, clean}, {2, clean}, {3, clean}, {4, fewSlow}}, []int{2, 3, 4, 2}},
		{"one worker", 1, []step{{1, clean}, {1, clean}, {1, partial}}, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPressure(Config{Workers: tt.workers, RetryMin: time.Microsecond, RetryMax: time.Microsecond})
			for i, st := range tt.steps {
				rounds := make([]uint64, st.n)
				for k := range rounds {
					p.notBefore = time.Time{} // the pause is TestPressurePause's
					r, ok := p.acquire(t.Context(), noCap)
					if !ok {
						t.Fatalf("step %d: acquire %d failed", i, k)
					}
					rounds[k] = r
				}
				for _, r := range rounds {
					a := st.a
					a.round = r
					p.done(a)
				}
				if inFlight, limit := p.state(); inFlight != 0 || limit != tt.want[i] {
					t.Errorf("step %d: in flight %d, limit %d; want 0, %d", i, inFlight, limit, tt.want[i])
				}
			}
		})
	}
}

// TestPressurePause checks the wait before the next request: in
// proportion to what was refused when some was accepted, exponential
// when nothing was, none after a clean answer.
func TestPressurePause(t *testing.T) {
	t.Parallel()
	const lo, hi = 100 * time.Millisecond, 800 * time.Millisecond
	tests := []struct {
		name     string
		answers  []answer
		min, max time.Duration // the pause after the last
	}{
		{"clean", []answer{{accepted: 10, latency: time.Second}}, 0, 0},
		{"5% refused", []answer{{accepted: 95, refused: 5, latency: 190 * time.Millisecond}}, 10 * time.Millisecond, 10 * time.Millisecond},
		{"half refused", []answer{{accepted: 50, refused: 50, latency: 200 * time.Millisecond}}, 200 * time.Millisecond, 200 * time.Millisecond},
		{"capped", []answer{{accepted: 1, refused: 99, latency: time.Second}}, hi, hi},
		{"all refused", []answer{{refused: 10}}, lo / 2, lo},
		{"failed twice", []answer{{failed: true}, {failed: true}}, lo, 2 * lo},
		{"failed often", []answer{{failed: true}, {failed: true}, {failed: true}, {failed: true}, {failed: true}, {failed: true}}, hi / 2, hi},
		{"progress ends the backoff", []answer{{failed: true}, {failed: true}, {failed: true}, {accepted: 1, latency: time.Millisecond}}, 0, 0},
		{"and starts it over", []answer{{failed: true}, {failed: true}, {failed: true}, {accepted: 1}, {failed: true}}, lo / 2, lo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPressure(Config{Workers: 1, RetryMin: lo, RetryMax: hi})
			var pause time.Duration
			for _, a := range tt.answers {
				p.mu.Lock()
				p.inFlight++
				a.round = p.round
				p.mu.Unlock()
				pause = p.done(a)
			}
			if pause < tt.min || pause > tt.max {
				t.Errorf("pause %v, want %v to %v", pause, tt.min, tt.max)
			}
		})
	}
}

// TestPressureAcquire: acquire waits for a free slot and for the pause,
// which Close's deadline shortens, and gives up when its context ends.
func TestPressureAcquire(t *testing.T) {
	t.Parallel()
	short := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	t.Run("no free slot", func(t *testing.T) {
		t.Parallel()
		p := newPressure(Config{Workers: 2, RetryMin: time.Hour, RetryMax: time.Hour})
		if _, ok := p.acquire(t.Context(), noCap); !ok {
			t.Fatal("first acquire failed")
		}
		if _, ok := p.acquire(short(t), noCap); ok {
			t.Fatal("acquired a second slot under a limit of 1")
		}
		done := make(chan bool)
		go func() {
			_, ok := p.acquire(t.Context(), noCap)
			done <- ok
		}()
		time.Sleep(10 * time.Millisecond)
		p.release()
		if !<-done {
			t.Error("acquire did not take the slot released")
		}
	})
	t.Run("paused", func(t *testing.T) {
		t.Parallel()
		p := newPressure(Config{Workers: 1, RetryMin: time.Hour, RetryMax: time.Hour})
		r, _ := p.acquire(t.Context(), noCap)
		p.done(answer{round: r, failed: true})
		if _, ok := p.acquire(short(t), noCap); ok {
			t.Fatal("acquired during an hour's pause")
		}
		// Close, due in 100ms, comes while acquire waits.
		var closing atomic.Bool
		go func() {
			time.Sleep(10 * time.Millisecond)
			closing.Store(true)
			p.changed.Signal()
		}()
		start := time.Now()
		capWait := func(d time.Duration) time.Duration {
			if closing.Load() {
				return min(d, 100*time.Millisecond)
			}
			return d
		}
		if _, ok := p.acquire(t.Context(), capWait); !ok {
			t.Fatal("acquire failed")
		}
		if waited := time.Since(start); waited > 10*time.Second {
			t.Errorf("waited %v with Close due in 100ms", waited)
		}
	})
}

// noCap is a pressure.acquire capWait for a sink without a Close deadline.
func noCap(d time.Duration) time.Duration { return d }
