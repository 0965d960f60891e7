package elasticsearch

import (
	"fmt"
	"math"
	"testing"

	"github.com/logferry/logferry/forward"
)

// TestRetryList: batches put back come out oldest first, whole (pop) or
// copied into the next batch as they fit (take), which leaves the rest as
// a body of its own; each batch emptied goes back to the batch memory.
func TestRetryList(t *testing.T) {
	t.Parallel()
	size := len(testBatch(t, 1, 0).body()) // of one action
	tests := []struct {
		name       string
		pushed     []int // actions per batch put back
		start      int   // actions already in the batch taken into
		maxActions int
		limit      int // in actions' sizes
		took       []string
		left       [][]string
		full       bool
	}{
		{"all fit", []int{2, 3}, 0, 10, math.MaxInt, []string{"line-0", "line-1", "line-0", "line-1", "line-2"}, nil, false},
		{"by actions", []int{2, 3}, 0, 3, math.MaxInt, []string{"line-0", "line-1", "line-0"}, [][]string{{"line-1", "line-2"}}, true},
		{"by bytes", []int{3, 1}, 0, 10, 2, []string{"line-0", "line-1"}, [][]string{{"line-2"}, {"line-0"}}, true},
		{"after others", []int{2}, 1, 10, 1, []string{"line-0"}, [][]string{{"line-1"}}, true},
		{"one even past the limit", []int{2}, 0, 10, 0, []string{"line-0"}, [][]string{{"line-1"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := forward.NewBatches(1 << 30)
			var r retryList
			total := 0
			for _, n := range tt.pushed {
				b := testBatch(t, n, 0)
				b.buf = m.Get(t.Context(), 1024)
				b.buf.B = append(b.buf.B, testBatch(t, n, 0).body()...)
				b.repoint()
				r.push(b)
				total += n
			}
			if r.len() != total {
				t.Fatalf("len %d, want %d", r.len(), total)
			}
			dst := testBatch(t, tt.start, 0)
			limit := tt.limit
			if limit != math.MaxInt {
				limit = (tt.start + tt.limit) * size
			}
			r.take(dst, tt.maxActions+tt.start, limit, m)
			got := batchLogs(t, dst)[tt.start:]
			if fmt.Sprint(got) != fmt.Sprint(tt.took) || dst.full != tt.full {
				t.Errorf("took %v (full %v), want %v (full %v)", got, dst.full, tt.took, tt.full)
			}
			if r.len() != total-len(tt.took) {
				t.Errorf("len %d after taking %d of %d", r.len(), len(tt.took), total)
			}
			var left [][]string
			for b := r.pop(); b != nil; b = r.pop() {
				left = append(left, batchLogs(t, b))
				b.release(m)
			}
			if fmt.Sprint(left) != fmt.Sprint(tt.left) {
				t.Errorf("left %v, want %v", left, tt.left)
			}
			if used, _ := m.Used(); used != 0 {
				t.Errorf("%d bytes of batch memory not given back", used)
			}
		})
	}
}

// TestRetryListWakes: push ends the context of a wait, and a wait
// begun with documents to send again ends at once.
func TestRetryListWakes(t *testing.T) {
	t.Parallel()
	var r retryList
	ctx, cancel := r.waitContext(t.Context())
	if ctx.Err() != nil {
		t.Fatal("wait ended with nothing to send again")
	}
	r.push(testBatch(t, 1, 0))
	<-ctx.Done()
	cancel()
	ctx, cancel = r.waitContext(t.Context())
	defer cancel()
	if ctx.Err() == nil {
		t.Error("wait begun with a document to send again did not end")
	}
}
