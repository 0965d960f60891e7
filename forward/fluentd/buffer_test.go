package fluentd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

// checkNoBufferGoroutines fails if goroutines of a disk buffer are left.
func checkNoBufferGoroutines(t *testing.T) {
	t.Helper()
	var stacks string
	for range 200 {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "diskq.(*Queue)") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("disk buffer goroutines left behind:\n%s", stacks)
}

// TestDiskBufferSurvivesRestart sends events while Fluentd is down, closes
// the Sink (its deadline passes: the events stay on disk), and creates a
// new Sink on the same directory once Fluentd is up: every event arrives,
// none lost (at least once: with acknowledgements a request may arrive
// twice).
func TestDiskBufferSurvivesRestart(t *testing.T) {
	const n = 500
	for _, ack := range []bool{false, true} {
		t.Run(fmt.Sprintf("ack=%v", ack), func(t *testing.T) {
			srv := fluentdtest.NewServer(t, fluentdtest.Config{})
			srv.Stop() // Fluentd is down
			dir := filepath.Join(t.TempDir(), "buffer", testContainer.ID, "fluentd")
			cfg := fast(Config{Servers: tcp(srv.Addr()), RequestAck: ack, BufferDir: dir, BatchSize: 4096})
			s, err := New(cfg, testContainer, nil)
			if err != nil {
				t.Fatal(err)
			}
			sendLines(s, 0, n)
			waitFor(t, "the events on disk", func() bool { return s.Stats().QueuedBytes > n*10 })
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if err := s.Close(ctx); err != nil {
				t.Errorf("Close with everything kept on disk: %v", err)
			}
			st := s.Stats()
			if st.Dropped != 0 || st.Emitted != 0 || st.Queued != n {
				t.Errorf("stats after Close %+v, want %d events kept", st, n)
			}
			checkNoGoroutines(t)
			checkNoBufferGoroutines(t)

			srv.Start()
			s2 := newSink(t, cfg, testContainer)
			sendLines(s2, n, n+10) // after the replay
			srv.WaitEvents(n+10, waitLong)
			closeSink(t, s2)
			got := logs(srv.Events())
			if u := lineRanges(t, unique(got)); len(u.ranges) != 1 || u.ranges[0] != [2]int{0, n + 9} {
				t.Errorf("received lines %v, want 0..%d in order", u.ranges, n+9)
			}
			if !ack && len(got) != n+10 {
				t.Errorf("received %d events, want each once", len(got))
			}
			if st := s2.Stats(); st.Dropped != 0 || st.Queued != 0 || st.Emitted < n+10 {
				t.Errorf("stats of the second sink %+v", st)
			}
			if left := filesUnder(t, filepath.Dir(dir)); len(left) > 0 {
				t.Errorf("buffer files left once everything was delivered: %v", left)
			}
		})
	}
}

func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// TestDiskBufferDelivers is the ordinary path with a disk buffer: events
// go through the files and are deleted once delivered.
func TestDiskBufferDelivers(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	dir := t.TempDir()
	for _, mode := range []Mode{ModePackedForward, ModeMessage} {
		s := newSink(t, fast(Config{Servers: tcp(srv.Addr()), RequestAck: true, Mode: mode, BufferDir: dir}), testContainer)
		sendLines(s, 0, 300)
		closeSink(t, s)
		if st := s.Stats(); st.Emitted != 300 || st.Dropped != 0 || st.Queued != 0 {
			t.Errorf("%s: stats %+v", mode, st)
		}
	}
	got := logs(srv.Events())
	if want := append(wantLines(0, 300), wantLines(0, 300)...); !slices.Equal(got, want) {
		t.Errorf("received %d events, want lines 0..299 twice, in order", len(got))
	}
	if left := filesUnder(t, dir); len(left) > 0 {
		t.Errorf("files left: %v", left)
	}
}

// TestDiskBufferFull: with a small buffer and Fluentd down, the buffer-full
// policy decides which events are kept, and every drop is counted.
func TestDiskBufferFull(t *testing.T) {
	const n = 3000
	tests := []struct {
		full   forward.FullPolicy
		newest bool // the events kept are the newest
	}{
		{forward.DropOldest, true},
		{forward.DropNewest, false},
		{forward.Block, false},
	}
	for _, tc := range tests {
		t.Run(tc.full.String(), func(t *testing.T) {
			srv := fluentdtest.NewServer(t, fluentdtest.Config{})
			srv.Stop()
			cfg := fast(Config{Servers: tcp(srv.Addr()), BufferDir: t.TempDir(),
				SharedOptions: forward.SharedOptions{Buffer: forward.BufferConfig{MaxSize: 32 << 10, Full: tc.full, BlockTimeout: 20 * time.Millisecond}}})
			s := newSink(t, cfg, testContainer)
			start := time.Now()
			for i := range n {
				sendLines(s, i, i+1)
				if i%100 == 0 {
					time.Sleep(time.Millisecond) // let the buffer write
				}
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("sending took %v", d)
			}
			st := s.Stats()
			if st.Dropped == 0 || st.QueuedBytes > cfg.Buffer.MaxSize+32 {
				t.Fatalf("stats %+v: want drops and at most %d bytes", st, cfg.Buffer.MaxSize)
			}
			srv.Start()
			closeSink(t, s)
			got := lineRanges(t, logs(srv.WaitEvents(int(s.Stats().Emitted), waitLong)))
			st = s.Stats()
			if uint64(got.count)+st.Dropped != n {
				t.Errorf("%d received + %d dropped != %d", got.count, st.Dropped, n)
			}
			// The others keep the oldest. drop-oldest keeps the newest, and
			// the batch in flight when the buffer filled up; entries it had
			// to drop from memory while the disk lagged (on a busy
			// machine) are newer than some on disk, so it may keep several
			// runs: lineRanges checks they are in order, each line once.
			// Once full, the buffer reserves a segment header for entries
			// waiting in memory near a segment's end; when they are
			// written, that room may take one later entry, at most one per
			// segment (4 KiB segments: 8 here).
			ok := got.ranges[0][0] == 0 && got.count-(got.ranges[0][1]+1) <= 8
			if tc.newest {
				ok = got.ranges[len(got.ranges)-1][1] == n-1
			}
			if !ok {
				t.Errorf("received lines %v", got.ranges)
			}
		})
	}
}

// TestBufferOptions: buffer-max-size and buffer-full are read by
// ParseConfig, and a bad value fails.
func TestBufferOptions(t *testing.T) {
	cfg, _, err := ParseConfig(map[string]string{KeyAddress: "", forward.KeyBufferMaxSize: "10m", forward.KeyBufferFull: "block"})
	if err != nil || cfg.Buffer.MaxSize != 10_000_000 || cfg.Buffer.Full != forward.Block {
		t.Errorf("ParseConfig = %+v, %v", cfg.Buffer, err)
	}
	for _, opts := range []map[string]string{
		{KeyAddress: "", forward.KeyBufferFull: "wait"},
		{forward.KeyBufferMaxSize: "1k"}, // checked even without fluentd-address
	} {
		if _, _, err := ParseConfig(opts); err == nil || !slices.ContainsFunc(forward.BufferKeys, func(k string) bool { return strings.Contains(err.Error(), k) }) {
			t.Errorf("ParseConfig(%v) = %v, want an error naming the option", opts, err)
		}
	}
}

type ranges struct {
	ranges [][2]int
	count  int
}

// lineRanges summarises lines "line N" as runs of consecutive numbers,
// failing on a line out of order or twice.
func lineRanges(t *testing.T, lines []string) ranges {
	t.Helper()
	var r ranges
	for _, l := range lines {
		var i int
		if _, err := fmt.Sscanf(l, "line %d", &i); err != nil {
			t.Fatalf("unexpected line %q", l)
		}
		r.count++
		switch k := len(r.ranges); {
		case k > 0 && r.ranges[k-1][1]+1 == i:
			r.ranges[k-1][1] = i
		case k > 0 && r.ranges[k-1][1] >= i:
			t.Fatalf("line %d after line %d", i, r.ranges[k-1][1])
		default:
			r.ranges = append(r.ranges, [2]int{i, i})
		}
	}
	if r.count == 0 {
		t.Fatal("no lines")
	}
	return r
}

// TestUnusableBufferDirFallsBackToMemory: a buffer directory that cannot
// be created does not fail the container's start.
func TestUnusableBufferDirFallsBackToMemory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	s := newSink(t, fast(Config{Servers: tcp(srv.Addr()), BufferDir: filepath.Join(file, "buffer")}), testContainer)
	sendLines(s, 0, 10)
	closeSink(t, s)
	if got := logs(srv.WaitEvents(10, waitLong)); !slices.Equal(got, wantLines(0, 10)) {
		t.Errorf("received %q", got)
	}
}
