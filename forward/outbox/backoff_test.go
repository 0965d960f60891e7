package outbox

import (
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
