package forward

import (
	"errors"
	"strings"
	"testing"
)

func TestParseBufferOptions(t *testing.T) {
	tests := []struct {
		name string
		opts map[string]string
		want BufferConfig
		bad  string // the key an error must name
	}{
		{"none", map[string]string{"max-size": "1m"}, BufferConfig{}, ""},
		{"size in json-file's syntax", map[string]string{KeyBufferMaxSize: "64m"}, BufferConfig{MaxSize: 64_000_000}, ""},
		{"size in bytes", map[string]string{KeyBufferMaxSize: "2000000"}, BufferConfig{MaxSize: 2_000_000}, ""},
		{"gigabytes", map[string]string{KeyBufferMaxSize: "2g"}, BufferConfig{MaxSize: 2_000_000_000}, ""},
		{"drop-oldest", map[string]string{KeyBufferFull: "drop-oldest"}, BufferConfig{Full: DropOldest}, ""},
		{"drop-newest", map[string]string{KeyBufferFull: "drop-newest"}, BufferConfig{Full: DropNewest}, ""},
		{"block", map[string]string{KeyBufferFull: "block", KeyBufferMaxSize: "1m"}, BufferConfig{Full: Block, MaxSize: 1_000_000}, ""},
		{"too small", map[string]string{KeyBufferMaxSize: "999k"}, BufferConfig{}, KeyBufferMaxSize},
		{"not a size", map[string]string{KeyBufferMaxSize: "big"}, BufferConfig{}, KeyBufferMaxSize},
		{"negative", map[string]string{KeyBufferMaxSize: "-1m"}, BufferConfig{}, KeyBufferMaxSize},
		{"unknown policy", map[string]string{KeyBufferFull: "drop"}, BufferConfig{}, KeyBufferFull},
		{"empty policy", map[string]string{KeyBufferFull: ""}, BufferConfig{}, KeyBufferFull},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBufferOptions(tc.opts)
			if tc.bad != "" {
				if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), tc.bad) {
					t.Errorf("error %v, want one naming %s", err, tc.bad)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestFullPolicyString(t *testing.T) {
	for p, want := range map[FullPolicy]string{DropOldest: "drop-oldest", DropNewest: "drop-newest", Block: "block", 7: "FullPolicy(7)"} {
		if p.String() != want {
			t.Errorf("%d: %q, want %q", int(p), p.String(), want)
		}
	}
}

func TestBudget(t *testing.T) {
	b := NewBudget(100)
	if !b.TryReserve(60) || b.TryReserve(50) || !b.TryReserve(40) || b.Used() != 100 {
		t.Fatalf("reservations up to the limit: used %d", b.Used())
	}
	b.Reserve(10) // past the limit, for what is on disk already
	if b.TryReserve(1) || b.Used() != 110 {
		t.Errorf("over the limit: used %d", b.Used())
	}
	b.Release(110)
	if b.Used() != 0 || b.Max() != 100 {
		t.Errorf("after release: used %d, max %d", b.Used(), b.Max())
	}
	var none *Budget
	if !none.TryReserve(1 << 40) {
		t.Error("a nil budget must not limit")
	}
	none.Reserve(1)
	none.Release(1)
}
