package outbox

import (
	"context"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	const lo, hi = 10 * time.Millisecond, 100 * time.Millisecond
	tests := []struct {
		name string
		b    Backoff
		want map[int]time.Duration
	}{
		{"double", Backoff{Min: lo, Max: hi}, map[int]time.Duration{1: lo, 2: 2 * lo, 3: 4 * lo, 4: 8 * lo, 5: hi, 50: hi}},
		{"one and a half", Backoff{Min: lo, Max: hi, Factor: 1.5}, map[int]time.Duration{1: lo, 2: 15 * time.Millisecond, 3: 22500 * time.Microsecond, 7: hi, 1000: hi}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for n, want := range tc.want {
				if d := tc.b.Wait(n); d != want {
					t.Errorf("Wait(%d) = %v, want %v", n, d, want)
				}
				j := tc.b
				j.Jitter = true
				for range 100 {
					if d := j.Wait(n); d < want/2 || d > want {
						t.Fatalf("with jitter Wait(%d) = %v, want %v to %v", n, d, want/2, want)
					}
				}
			}
		})
	}
}

func TestCapWait(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		wait     time.Duration
		deadline int64
		max      time.Duration // the result is at most this
		min      time.Duration // and at least this
	}{
		{"no deadline", time.Minute, 0, time.Minute, time.Minute},
		{"short wait kept", time.Second, now.Add(time.Minute).UnixNano(), time.Second, time.Second},
		{"long wait shortened while closing", time.Minute, now.Add(time.Minute).UnixNano(), ClosingRetryWait, ClosingRetryWait},
		{"cut for a last attempt", 2500 * time.Millisecond, now.Add(4 * time.Second).UnixNano(), 2 * time.Second, time.Second},
		{"deadline too close", time.Minute, now.Add(time.Second).UnixNano(), ClosingRetryWait, ClosingRetryWait},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capWait(tt.wait, tt.deadline); got > tt.max || got < tt.min {
				t.Errorf("capWait(%v) = %v, want within [%v, %v]", tt.wait, got, tt.min, tt.max)
			}
		})
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	woken := NewWake()
	woken.Signal()
	woken.Signal() // collapses with the first: never blocks
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		d      time.Duration
		wake   Wake
		want   bool
		atMost time.Duration
	}{
		{"waits d", context.Background(), 20 * time.Millisecond, nil, true, time.Second},
		{"woken early", context.Background(), time.Hour, woken, true, time.Second},
		{"ctx ended", cancelled, time.Hour, NewWake(), false, time.Second},
		{"nothing to wait", context.Background(), 0, nil, true, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if got := Sleep(tc.ctx, tc.d, tc.wake); got != tc.want {
				t.Errorf("Sleep = %v, want %v", got, tc.want)
			}
			if took := time.Since(start); took > tc.atMost || took < min(tc.d, 20*time.Millisecond) && tc.wake == nil && tc.want {
				t.Errorf("Sleep took %v", took)
			}
		})
	}
}
