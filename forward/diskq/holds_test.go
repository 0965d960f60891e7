package diskq

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

func TestHolds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	check := func(when string, want bool) {
		t.Helper()
		got, err := Holds(dir)
		if err != nil || got != want {
			t.Fatalf("%s: Holds = %v, %v; want %v", when, got, err, want)
		}
	}
	check("before Open", false)
	q, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	q.Append(&forward.Event{Time: time.Unix(1, 0), Source: "stdout", Line: []byte("x")}, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	items, err := next(ctx, q, nil, 10, 1<<20)
	if err != nil || len(items) != 1 {
		t.Fatalf("Next: %d items, %v", len(items), err)
	}
	check("with an entry not acknowledged", true)
	q.Ack(items[0].Token, items[0].Token+1)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	check("after all was acknowledged and the queue closed", false)
}
