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
		{"ends before the last attempt", time.Second, now.Add(time.Minute).UnixNano(), time.Second, time.Second},
		{"cut for a last attempt", time.Minute, now.Add(10 * time.Second).UnixNano(), 8 * time.Second, 7 * time.Second},
		{"deadline too close: kept", time.Minute, now.Add(time.Second).UnixNano(), time.Minute, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CapWait(tt.wait, tt.deadline); got > tt.max || got < tt.min {
				t.Errorf("CapWait(%v) = %v, want within [%v, %v]", tt.wait, got, tt.min, tt.max)
			}
		})
	}
}
