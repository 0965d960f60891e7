package tally

import (
	"slices"
	"testing"
)

func TestGaps(t *testing.T) {
	tests := []struct {
		name              string
		nums              []int
		from, to          int
		missing, repeated []int
	}{
		{name: "complete", nums: []int{3, 1, 2}, from: 1, to: 3},
		{name: "empty range", nums: []int{1}, from: 1, to: 0},
		{name: "nothing", from: 0, to: 2, missing: []int{0, 1, 2}},
		{name: "gaps and repeats", nums: []int{0, 2, 2, 4, 4, 4, 9}, from: 0, to: 4, missing: []int{1, 3}, repeated: []int{2, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			missing, repeated := Gaps(Count(tt.nums), tt.from, tt.to)
			if !slices.Equal(missing, tt.missing) || !slices.Equal(repeated, tt.repeated) {
				t.Errorf("Gaps = %v, %v; want %v, %v", missing, repeated, tt.missing, tt.repeated)
			}
		})
	}
}
