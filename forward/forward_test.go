package forward

import (
	"testing"
	"time"
)

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
			if got := CapWait(tt.wait, tt.deadline); got > tt.max || got < tt.min {
				t.Errorf("CapWait(%v) = %v, want within [%v, %v]", tt.wait, got, tt.min, tt.max)
			}
		})
	}
}
