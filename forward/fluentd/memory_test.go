package fluentd

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/diskq"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
	"github.com/logferry/logferry/internal/tally"
)

// bufferedLines returns the lines of the entries in the segment files
// under dir: what a kill -9 of the process would leave for the next one.
func bufferedLines(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	for _, path := range filesUnder(t, dir) {
		if !strings.HasSuffix(path, ".seg") {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		diskq.DecodeSegment(data, func(it *forward.Item) { got = append(got, string(it.Line)) })
	}
	return got
}

// missingOrTwice reports the lines "line 0" to "line n-1" that got lacks
// or has more than once.
func missingOrTwice(t *testing.T, got []string, n int) (missing, twice []int) {
	t.Helper()
	nums := make([]int, len(got))
	for i, l := range got {
		nums[i] = lineNumber(t, l)
	}
	return tally.Gaps(tally.Count(nums), 0, n-1)
}

// TestFlush: soon after Flush every event sent is in the disk buffer's
// file, as a kill -9 would leave it (Fluentd is down, so nothing leaves
// the buffer); without a disk buffer Flush does nothing.
func TestFlush(t *testing.T) {
	t.Parallel()
	const n = 500
	for _, disk := range []bool{true, false} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			t.Parallel()
			srv := fluentdtest.NewServer(t, fluentdtest.Config{})
			srv.Stop()
			cfg := fast(Config{Servers: tcp(srv.Addr())})
			if disk {
				cfg.BufferDir = t.TempDir()
			}
			s := newSink(t, cfg, testContainer)
			sendLines(s, 0, n)
			s.Flush()
			s.Flush() // nothing left: a no-op
			if disk {
				waitFor(t, "the events in the buffer", func() bool { return len(bufferedLines(t, cfg.BufferDir)) >= n })
				got := bufferedLines(t, cfg.BufferDir)
				if missing, twice := missingOrTwice(t, got, n); len(missing) > 0 || len(twice) > 0 {
					t.Errorf("after Flush the buffer lacks %v and holds twice %v", missing, twice)
				}
			}
			srv.Start()
			srv.WaitEvents(n, waitLong)
			closeSink(t, s)
			if missing, twice := missingOrTwice(t, logs(srv.Events()), n); len(missing) > 0 || len(twice) > 0 {
				t.Errorf("delivered: missing %v, twice %v", missing, twice)
			}
		})
	}
}

// TestOutageHoldsNoBatch: while Fluentd is down, a sink with a disk
// buffer holds no batch memory between attempts (each attempt reads its
// batch from disk again); once Fluentd is back every event arrives once.
func TestOutageHoldsNoBatch(t *testing.T) {
	t.Parallel()
	const n = 2000
	for _, ack := range []bool{false, true} {
		t.Run(fmt.Sprintf("ack=%v", ack), func(t *testing.T) {
			t.Parallel()
			srv := fluentdtest.NewServer(t, fluentdtest.Config{})
			srv.Stop()
			batches := forward.NewBatches(1 << 20)
			cfg := fast(Config{Servers: tcp(srv.Addr()), RequestAck: ack, BufferDir: t.TempDir(),
				Batches: batches, BatchSize: 16 << 10, RetryWait: 100 * time.Millisecond, MaxRetryWait: 100 * time.Millisecond})
			s := newSink(t, cfg, testContainer)
			sendLines(s, 0, n)
			s.Flush()
			time.Sleep(300 * time.Millisecond) // a few failed attempts
			held := 0
			for range 20 {
				if used, _ := batches.Used(); used > 0 {
					held++
				}
				time.Sleep(5 * time.Millisecond)
			}
			if held > 5 {
				t.Errorf("batch memory held in %d of 20 samples while Fluentd is down", held)
			}
			srv.Start()
			srv.WaitEvents(n, waitLong)
			closeSink(t, s)
			got := logs(srv.Events())
			missing, twice := missingOrTwice(t, got, n)
			if len(missing) > 0 || !ack && len(twice) > 0 {
				t.Errorf("missing %v, twice %v", missing, twice)
			}
			if !slices.IsSortedFunc(unique(got), func(a, b string) int { return lineNumber(t, a) - lineNumber(t, b) }) {
				t.Error("lines out of order")
			}
			if used, _ := batches.Used(); used != 0 {
				t.Errorf("%d bytes of batch memory held after Close", used)
			}
			if st := s.Stats(); st.Dropped != 0 || st.Queued != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func lineNumber(t *testing.T, l string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(l, "line %d", &i); err != nil {
		t.Fatalf("unexpected line %q", l)
	}
	return i
}
