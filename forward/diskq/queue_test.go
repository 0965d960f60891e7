package diskq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

func event(i int) forward.Event {
	return forward.Event{Time: testTime.Add(time.Duration(i)), Source: "stdout", Line: []byte("line-" + strconv.Itoa(i))}
}

func lineNo(t *testing.T, it *forward.Item) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimPrefix(string(it.Line), "line-"))
	if err != nil {
		t.Fatalf("unexpected line %q", it.Line)
	}
	if it.Seq != uint32(n%7) || !it.Time.Equal(testTime.Add(time.Duration(n))) {
		t.Fatalf("line %d came back with seq %d, time %v", n, it.Seq, it.Time)
	}
	return n
}

// fastConfig is a config for tests: small segments, short intervals.
func fastConfig(dir string) Config {
	return Config{
		Dir:            dir,
		SegmentSize:    1024,
		FlushDelay:     time.Millisecond,
		SyncInterval:   10 * time.Millisecond,
		RetryInterval:  10 * time.Millisecond,
		RescanInterval: 20 * time.Millisecond,
	}
}

func open(t *testing.T, cfg Config) *Queue {
	t.Helper()
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func appendRange(q *Queue, from, to int) (dropped int) {
	for i := from; i < to; i++ {
		ev := event(i)
		dropped += q.Append(&ev, uint32(i%7))
		ev.Line[0] = 'X' // Append copied it
	}
	return dropped
}

// take reads n entries, acknowledging them if ack, and returns their
// numbers.
func take(t *testing.T, q *Queue, n int, ack bool) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []int
	var items []forward.Item
	for len(got) < n {
		var err error
		items, err = next(ctx, q, items[:0], n-len(got), 1<<20)
		if err != nil {
			t.Fatalf("read after %d of %d: %v", len(got), n, err)
		}
		for i := range items {
			got = append(got, lineNo(t, &items[i]))
		}
		if ack {
			q.Ack(items[0].Token, items[len(items)-1].Token+1)
		}
	}
	return got
}

// drain closes q for writing and reads (and acknowledges) everything left.
func drain(t *testing.T, q *Queue) []int {
	t.Helper()
	q.CloseWrite()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []int
	var items []forward.Item
	for {
		var err error
		items, err = next(ctx, q, items[:0], 100, 1<<20)
		for i := range items {
			got = append(got, lineNo(t, &items[i]))
		}
		if len(items) > 0 {
			q.Ack(items[0].Token, items[len(items)-1].Token+1)
		}
		if errors.Is(err, forward.ErrQueueClosed) {
			return got
		}
		if err != nil {
			t.Fatalf("Next after %d: %v", len(got), err)
		}
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// waitWritten waits until the entries appended are in segment files.
func waitWritten(t *testing.T, q *Queue) {
	t.Helper()
	waitFor(t, "entries written", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.pending) == q.pstart && q.writing == 0
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// crash stops q as if the process had died: nothing is flushed, synced or
// recorded, and the kernel releases the files and locks.
func crash(q *Queue) {
	q.closeOnce.Do(func() {
		q.crash = true
		close(q.stop)
		<-q.done
		q.readMu.Lock()
		q.r.release()
		q.readMu.Unlock()
	})
}

// files lists the files under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestAppendAckReplayAcrossReopen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		read, ack  int
		outOfOrder bool // acknowledge all but the first entry read
		want       []int
	}{
		{"nothing read", 0, 0, false, seq(0, 100)},
		{"read, not acknowledged", 40, 0, false, seq(0, 100)},
		{"partly acknowledged", 40, 40, false, seq(40, 100)},
		{"acknowledged across segments", 77, 77, false, seq(77, 100)},
		{"gap in acknowledgements", 40, 40, true, seq(0, 100)},
		{"all acknowledged", 100, 100, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "buf")
			q := open(t, fastConfig(dir))
			appendRange(q, 0, 100)
			if tc.read > 0 {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				var items []forward.Item
				for len(items) < tc.read {
					var err error
					if items, err = next(ctx, q, items, tc.read-len(items), 1<<20); err != nil {
						t.Fatal(err)
					}
				}
				switch {
				case tc.outOfOrder:
					q.Ack(items[1].Token, items[len(items)-1].Token+1)
				case tc.ack > 0:
					q.Ack(items[0].Token, items[tc.ack-1].Token+1)
				}
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			if err := q.Close(); !errors.Is(err, ErrClosed) {
				t.Errorf("second Close: %v", err)
			}
			q2 := open(t, fastConfig(dir))
			if got := drain(t, q2); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("after reopening got %v, want %v", got, tc.want)
			}
			if err := q2.Close(); err != nil {
				t.Fatal(err)
			}
			if left := files(t, filepath.Dir(dir)); len(left) > 0 {
				t.Errorf("files left once everything was acknowledged: %v", left)
			}
		})
	}
}

func TestNextLimitsAndOrder(t *testing.T) {
	t.Parallel()
	q := open(t, fastConfig(t.TempDir()))
	appendRange(q, 0, 50)
	ctx := t.Context()
	items, err := next(ctx, q, nil, 10, 1<<20)
	if err != nil || len(items) != 10 {
		t.Fatalf("Next(10) = %d items, %v", len(items), err)
	}
	size := forward.EventSize(new(event(10)))
	items, err = next(ctx, q, items[:0], 100, 2*size+1)
	if err != nil || len(items) != 2 {
		t.Fatalf("Next by bytes = %d items, %v", len(items), err)
	}
	items, err = next(ctx, q, items[:0], 100, 1)
	if err != nil || len(items) != 1 || lineNo(t, &items[0]) != 12 {
		t.Fatalf("Next always hands out one: %d items, %v", len(items), err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	got := take(t, q, 37, true)
	if fmt.Sprint(got) != fmt.Sprint(seq(13, 50)) {
		t.Errorf("got %v", got)
	}
	if _, err := next(short, q, nil, 1, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next on an empty queue: %v", err)
	}
	// A waiting Next wakes up for a new entry.
	done := make(chan []int)
	go func() { done <- take(t, q, 1, true) }()
	time.Sleep(10 * time.Millisecond)
	appendRange(q, 50, 51)
	select {
	case got := <-done:
		if got[0] != 50 {
			t.Errorf("got %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not wake up")
	}
}

func TestCrashKeepsWhatWasWritten(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		persist bool // wait for the ack file to be written before the crash
	}{
		{"acknowledgements not recorded yet", false},
		{"acknowledgements recorded", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := fastConfig(dir)
			cfg.SegmentSize = 1 << 20 // one segment
			if !tc.persist {
				cfg.SyncInterval = time.Hour
			}
			q := open(t, cfg)
			appendRange(q, 0, 100)
			take(t, q, 30, true)
			waitWritten(t, q)
			if tc.persist {
				waitFor(t, "the ack file", func() bool {
					q.mu.Lock()
					defer q.mu.Unlock()
					return !q.own.ackDirty
				})
			}
			crash(q)
			got := drain(t, open(t, fastConfig(dir)))
			want := seq(30, 100)
			if !tc.persist {
				want = seq(0, 100) // delivered again, never lost
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("after the crash got %v, want %v", got, want)
			}
		})
	}
}

// copyDir copies the regular files of src (recursively) to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o750)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// leftSegment fills a queue in a new directory with n entries, closes it
// without acknowledging anything and returns the directory and the path
// of its one segment file.
func leftSegment(t *testing.T, n int) (dir, seg string) {
	t.Helper()
	dir = t.TempDir()
	cfg := fastConfig(dir)
	cfg.SegmentSize = 1 << 20
	q := open(t, cfg)
	appendRange(q, 0, n)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "gen-*", "*.seg"))
	if len(matches) != 1 {
		t.Fatalf("segments %v, want one", matches)
	}
	return dir, matches[0]
}

// frameStarts returns the offsets of the frames of a segment file.
func frameStarts(t *testing.T, data []byte) []int {
	var starts []int
	for pos := headerSize; pos < len(data); {
		starts = append(starts, pos)
		pos += frameHeaderSize + int(binaryLE32(data[pos:]))
	}
	return starts
}

// TestTornWriteAtEveryOffset truncates the segment at every byte of its
// last entry, as a crash in the middle of a write would: the entries
// before it are delivered, the torn one is skipped and counted.
func TestTornWriteAtEveryOffset(t *testing.T) {
	t.Parallel()
	src, seg := leftSegment(t, 5)
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	starts := frameStarts(t, data)
	last := starts[len(starts)-1]
	rel, _ := filepath.Rel(src, seg)
	for cut := last; cut <= len(data); cut++ {
		t.Run(strconv.Itoa(cut-last), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			copyDir(t, src, dir)
			if err := os.Truncate(filepath.Join(dir, rel), int64(cut)); err != nil {
				t.Fatal(err)
			}
			q := open(t, fastConfig(dir))
			got := drain(t, q)
			want, corrupt := seq(0, 4), uint64(1)
			switch cut {
			case last:
				corrupt = 0
			case len(data):
				want, corrupt = seq(0, 5), 0
			}
			if fmt.Sprint(got) != fmt.Sprint(want) || q.Stats().Corrupt != corrupt {
				t.Errorf("got %v with %d corrupt, want %v with %d", got, q.Stats().Corrupt, want, corrupt)
			}
		})
	}
}

func TestCorruptDataIsSkipped(t *testing.T) {
	t.Parallel()
	src, seg := leftSegment(t, 10)
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	starts := frameStarts(t, data)
	rel, _ := filepath.Rel(src, seg)
	tests := []struct {
		name    string
		off     int
		want    []int
		corrupt uint64
	}{
		{"bad payload checksum", starts[4] + frameHeaderSize + 3, append(seq(0, 4), seq(5, 10)...), 1},
		{"bad length", starts[6] + 1, append(seq(0, 6), seq(7, 10)...), 1},
		{"bad frame header checksum", starts[2] + 10, append(seq(0, 2), seq(3, 10)...), 1},
		{"bad segment header", 5, seq(0, 10), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			copyDir(t, src, dir)
			b := slices.Clone(data)
			b[tc.off] ^= 0x5a
			if err := os.WriteFile(filepath.Join(dir, rel), b, 0o640); err != nil {
				t.Fatal(err)
			}
			q := open(t, fastConfig(dir))
			got := drain(t, q)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || q.Stats().Corrupt != tc.corrupt {
				t.Errorf("got %v with %d corrupt, want %v with %d", got, q.Stats().Corrupt, tc.want, tc.corrupt)
			}
		})
	}
}

// TestAdoptedBeforeOwn: what an earlier queue left is handed out before
// what is appended now, and the directory is cleaned up afterwards.
func TestAdoptedBeforeOwn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q1 := open(t, fastConfig(dir))
	appendRange(q1, 0, 30)
	q1.Close()
	q2 := open(t, fastConfig(dir))
	appendRange(q2, 30, 60)
	if got := drain(t, q2); fmt.Sprint(got) != fmt.Sprint(seq(0, 60)) {
		t.Errorf("got %v", got)
	}
	q2.Close()
	if left := files(t, dir); len(left) > 0 {
		t.Errorf("files left: %v", left)
	}
}

// TestConcurrentQueuesOnOneDirectory: a second queue opened while the
// first still runs (a container restarted while its old sink delivers)
// does not touch its files, and picks up what it leaves when it closes.
func TestConcurrentQueuesOnOneDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q1 := open(t, fastConfig(dir))
	appendRange(q1, 0, 20)
	waitWritten(t, q1)
	q2 := open(t, fastConfig(dir))
	appendRange(q2, 20, 40)
	if got := take(t, q2, 20, true); fmt.Sprint(got) != fmt.Sprint(seq(20, 40)) {
		t.Errorf("second queue got %v first, want its own entries", got)
	}
	if got := take(t, q1, 5, true); fmt.Sprint(got) != fmt.Sprint(seq(0, 5)) {
		t.Errorf("first queue got %v", got)
	}
	q1.Close()
	if got := take(t, q2, 15, true); fmt.Sprint(got) != fmt.Sprint(seq(5, 20)) {
		t.Errorf("after the first queue closed the second got %v, want what it left", got)
	}
	if got := drain(t, q2); len(got) != 0 {
		t.Errorf("left over: %v", got)
	}
}

func TestOverflowPolicies(t *testing.T) {
	t.Parallel()
	const n = 2000
	tests := []struct {
		policy forward.FullPolicy
		// keep reports whether the entries kept are the newest (true) or
		// the oldest.
		newest bool
	}{
		{forward.DropOldest, true},
		{forward.DropNewest, false},
		{forward.Block, false},
	}
	for _, tc := range tests {
		t.Run(tc.policy.String(), func(t *testing.T) {
			t.Parallel()
			cfg := fastConfig(t.TempDir())
			cfg.Buffer = forward.BufferConfig{MaxSize: 16 << 10, Full: tc.policy, BlockTimeout: 50 * time.Millisecond}
			q := open(t, cfg)
			start := time.Now()
			dropped := 0
			for i := range n {
				dropped += appendRange(q, i, i+1)
				if i%50 == 0 {
					waitWritten(t, q) // so that there are segments to drop
				}
			}
			elapsed := time.Since(start)
			st := q.Stats()
			if st.Dropped == 0 || uint64(dropped) != st.Dropped {
				t.Errorf("Append reported %d drops, Stats %d", dropped, st.Dropped)
			}
			if st.Bytes > cfg.Buffer.MaxSize+headerSize {
				t.Errorf("%d bytes held, more than %d", st.Bytes, cfg.Buffer.MaxSize)
			}
			if tc.policy == forward.Block && (elapsed < 50*time.Millisecond || elapsed > 2*time.Second) {
				t.Errorf("appending took %v: block must wait once, then shed", elapsed)
			}
			got := drain(t, q)
			if uint64(len(got))+st.Dropped != n {
				t.Errorf("%d kept + %d dropped != %d", len(got), st.Dropped, n)
			}
			want := seq(0, len(got))
			if tc.newest {
				want = seq(n-len(got), n)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("kept %v, want %v", got, want)
			}
		})
	}
}

// TestBlockWaitsForRoom: a blocked Append goes through as soon as the
// destination acknowledges enough, and the wait is bounded.
func TestBlockWaitsForRoom(t *testing.T) {
	t.Parallel()
	cfg := fastConfig(t.TempDir())
	cfg.Buffer = forward.BufferConfig{MaxSize: 8 << 10, Full: forward.Block, BlockTimeout: 5 * time.Second}
	q := open(t, cfg)
	// Fill it to just short of full, letting the writer keep up.
	frame := int64(frameSize(new(event(1000)), 0))
	i := 0
	for ; q.Stats().Bytes+frame+3*headerSize < cfg.Buffer.MaxSize; i++ {
		if appendRange(q, i, i+1) != 0 {
			t.Fatalf("entry %d dropped while filling", i)
		}
		waitWritten(t, q)
	}
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		for j := i; j < i+30; j++ {
			if appendRange(q, j, j+1) != 0 {
				t.Errorf("entry %d dropped", j)
			}
		}
		done <- time.Since(start)
	}()
	select {
	case <-done:
		t.Fatal("Append did not wait for room")
	case <-time.After(50 * time.Millisecond):
	}
	got := take(t, q, i+30, true)
	if d := <-done; d > 4*time.Second {
		t.Errorf("blocked Appends took %v", d)
	}
	if fmt.Sprint(got) != fmt.Sprint(seq(0, i+30)) {
		t.Errorf("got %v", got)
	}
	if st := q.Stats(); st.Dropped != 0 {
		t.Errorf("dropped %d", st.Dropped)
	}

	// CloseWrite ends a wait at once.
	for q.Stats().Bytes+frame+3*headerSize < cfg.Buffer.MaxSize {
		appendRange(q, 0, 1)
		waitWritten(t, q)
	}
	go func() {
		start := time.Now()
		appendRange(q, 0, 10)
		done <- time.Since(start)
	}()
	time.Sleep(20 * time.Millisecond)
	q.CloseWrite()
	if d := <-done; d > time.Second {
		t.Errorf("CloseWrite left Append waiting %v", d)
	}
}

func TestSharedBudget(t *testing.T) {
	t.Parallel()
	budget := forward.NewBudget(16 << 10)
	dir := t.TempDir()
	open2 := func(name string, policy forward.FullPolicy) *Queue {
		cfg := fastConfig(filepath.Join(dir, name))
		cfg.Buffer = forward.BufferConfig{MaxSize: 1 << 20, Budget: budget, Full: policy}
		return open(t, cfg)
	}
	a, b := open2("a", forward.DropOldest), open2("b", forward.DropOldest)
	for i := range 2000 {
		appendRange(a, i, i+1)
		if i%50 == 0 {
			waitWritten(t, a)
		}
	}
	if budget.Used() > budget.Max()+headerSize {
		t.Errorf("budget used %d of %d", budget.Used(), budget.Max())
	}
	if a.Stats().Dropped == 0 {
		t.Error("the first queue dropped nothing over the shared budget")
	}
	// b has nothing of its own to drop: once the little room the first
	// one left is taken, its new entries are dropped.
	if d := appendRange(b, 0, 200); d < 150 || budget.Used() > budget.Max()+2*headerSize {
		t.Errorf("second queue: %d of 200 dropped, budget used %d of %d", d, budget.Used(), budget.Max())
	}
	drain(t, a)
	a.Close()
	if budget.Used() != b.Stats().Bytes {
		t.Errorf("budget used %d, the open queue holds %d", budget.Used(), b.Stats().Bytes)
	}
	if d := appendRange(b, 0, 10); d != 0 {
		t.Errorf("second queue dropped %d once the budget was free", d)
	}
	b.Close()
	if budget.Used() != 0 {
		t.Errorf("closed queues still hold %d bytes of the budget", budget.Used())
	}
}

// next takes entries with Read and appends them to dst, their lines
// copied, as a sink that keeps them would.
func next(ctx context.Context, q *Queue, dst []forward.Item, maxEvents, maxBytes int) ([]forward.Item, error) {
	_, err := q.Read(ctx, maxEvents, maxBytes, func(it *forward.Item) bool {
		cp := *it
		cp.Line = bytes.Clone(it.Line)
		dst = append(dst, cp)
		return true
	})
	return dst, err
}

// faultFS is the OS file system with a limit on the bytes written to
// segment files, past which writes fail as on a full disk, and, when gate
// is set, writes that wait until it is closed (a slow disk). It counts
// the fsyncs of segment files, and of the other files (directories, ack
// files).
type faultFS struct {
	OSFS
	room              atomic.Int64 // bytes left; negative for no limit
	gate              chan struct{}
	held              atomic.Int32 // writes that waited for gate
	syncs, otherSyncs atomic.Int32
}

func (f *faultFS) OpenFile(path string, flag int, perm fs.FileMode) (File, error) {
	file, err := f.OSFS.OpenFile(path, flag, perm)
	if err != nil {
		return file, err
	}
	return &faultFile{File: file, fs: f, seg: strings.HasSuffix(path, segSuffix)}, nil
}

type faultFile struct {
	File
	fs  *faultFS
	seg bool // a segment file: the faults apply
}

func (f *faultFile) Write(p []byte) (int, error) {
	if !f.seg {
		return f.File.Write(p)
	}
	if f.fs.gate != nil {
		f.fs.held.Add(1)
		<-f.fs.gate
	}
	for {
		room := f.fs.room.Load()
		switch {
		case room < 0:
			return f.File.Write(p)
		case int64(len(p)) <= room:
			if f.fs.room.CompareAndSwap(room, room-int64(len(p))) {
				return f.File.Write(p)
			}
		default:
			if f.fs.room.CompareAndSwap(room, 0) {
				n, _ := f.File.Write(p[:room]) // a short write, as the kernel does
				return n, &fs.PathError{Op: "write", Path: "segment", Err: syscall.ENOSPC}
			}
		}
	}
}

func (f *faultFile) Sync() error {
	if f.seg {
		f.fs.syncs.Add(1)
	} else {
		f.fs.otherSyncs.Add(1)
	}
	return f.File.Sync()
}

// TestFsyncOnlyWhatIsNeeded: a segment whose entries are all acknowledged
// before its fsync is due is never fsynced; one still needed is, once
// SyncInterval has passed since it was closed, or at Close. The directory
// is fsynced once per SyncInterval at most, however many segments were
// created.
func TestFsyncOnlyWhatIsNeeded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		interval time.Duration // SyncInterval
		ack      bool          // read and acknowledge everything first
	}{
		{"acknowledged before due", time.Hour, true},
		{"due while needed", 10 * time.Millisecond, false},
		{"needed at close", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fsys := &faultFS{}
			fsys.room.Store(-1)
			cfg := fastConfig(t.TempDir())
			cfg.FS = fsys
			cfg.SyncInterval = tc.interval
			q := open(t, cfg)
			const n = 200 // a few dozen 1 KiB segments
			appendRange(q, 0, n)
			q.Flush()
			segments := func() int {
				q.mu.Lock()
				defer q.mu.Unlock()
				return len(q.segs)
			}
			written := segments()
			if written < 3 {
				t.Fatalf("%d segments: the test needs a few", written)
			}
			switch {
			case tc.ack:
				take(t, q, n, true)
				waitFor(t, "acknowledged segments deleted", func() bool { return segments() <= 1 })
			case tc.interval < time.Hour:
				// Every segment closed for size is due; the one being
				// written is not necessarily.
				waitFor(t, "fsyncs of the closed segments", func() bool { return int(fsys.syncs.Load()) >= written-1 })
			default:
				time.Sleep(50 * time.Millisecond) // time for an fsync that is not due
			}
			before, dirs := int(fsys.syncs.Load()), int(fsys.otherSyncs.Load())
			q.Close()
			after := int(fsys.syncs.Load())
			switch {
			case tc.ack && after > 0:
				t.Errorf("%d fsyncs of segments whose entries were all acknowledged", after)
			case !tc.ack && tc.interval == time.Hour && before > 0:
				t.Errorf("%d fsyncs before SyncInterval passed", before)
			case !tc.ack && after < written:
				t.Errorf("%d fsyncs of %d segments still needed at Close", after, written)
			}
			if tc.interval == time.Hour && dirs > 0 {
				t.Errorf("%d fsyncs of the directory before SyncInterval passed", dirs)
			}
		})
	}
}

func TestDiskFull(t *testing.T) {
	t.Parallel()
	fsys := &faultFS{}
	fsys.room.Store(500) // the header and a dozen entries
	cfg := fastConfig(t.TempDir())
	cfg.FS = fsys
	cfg.WriteBuffer = 1024
	q := open(t, cfg)
	for i := range 200 {
		appendRange(q, i, i+1)
		if i%10 == 0 {
			time.Sleep(time.Millisecond) // let the writer run into the full disk
		}
	}
	waitFor(t, "a write error", func() bool { return q.Stats().WriteErrors > 0 })
	st := q.Stats()
	if st.Dropped == 0 {
		t.Errorf("nothing dropped on a full disk: %+v", st)
	}
	fsys.room.Store(-1) // space is back
	waitFor(t, "writing to resume", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return !q.failing && q.writing == 0
	})
	for i := 200; i < 300; i += 10 {
		appendRange(q, i, i+10)
		waitWritten(t, q) // the write buffer is tiny
	}
	got := drain(t, q)
	st = q.Stats()
	if uint64(len(got))+st.Dropped != 300 {
		t.Errorf("%d delivered + %d dropped != 300", len(got), st.Dropped)
	}
	if !slices.IsSorted(got) || len(got) < 100 || fmt.Sprint(got[len(got)-100:]) != fmt.Sprint(seq(200, 300)) {
		t.Errorf("got %v: want everything appended after space returned, in order", got)
	}
	if st.Corrupt != 0 {
		t.Errorf("%d corrupt regions: failed writes must be undone", st.Corrupt)
	}
	// What was written must read back intact after a restart too.
	q.Close()
	if left := files(t, cfg.Dir); len(left) > 0 {
		t.Errorf("files left: %v", left)
	}
}

// TestSpaceBackBeforeRetry: once space is back, an Append that finds the
// write buffer full, or Flush, writes rather than drops, long before the
// I/O goroutine's next try (an hour away here).
func TestSpaceBackBeforeRetry(t *testing.T) {
	t.Parallel()
	fsys := &faultFS{}
	fsys.room.Store(500)
	cfg := fastConfig(t.TempDir())
	cfg.FS = fsys
	cfg.WriteBuffer = 1024
	cfg.RetryInterval = time.Hour
	q := open(t, cfg)
	for i := 0; q.Stats().Dropped == 0; i++ {
		if i == 10000 {
			t.Fatalf("nothing dropped on a full disk: %+v", q.Stats())
		}
		appendRange(q, i, i+1)
		q.Flush()
	}
	full := q.Stats()
	fsys.room.Store(-1) // space is back
	time.Sleep(2 * retryThrottle)
	for i := 100000; i < 100300; i++ {
		appendRange(q, i, i+1) // 300 entries: many times the write buffer
	}
	if st := q.Stats(); st.Dropped != full.Dropped {
		t.Errorf("%d entries dropped after space came back", st.Dropped-full.Dropped)
	}
	got := drain(t, q)
	if len(got) < 300 || fmt.Sprint(got[len(got)-300:]) != fmt.Sprint(seq(100000, 100300)) {
		t.Errorf("the entries appended after space came back are not all there, in order: last of %d: %v", len(got), got[max(len(got)-5, 0):])
	}
}

// TestDiskFullAtCreation: a segment that cannot even get its header is
// removed, and writing resumes.
// TestAppendHandsOffAFullBuffer: an Append that fills the write buffer
// leaves its write to the queue's goroutine and goes on with a new
// buffer, so that the appender does not wait for a slow disk until that
// one is full too; every entry is then written, in order.
func TestAppendHandsOffAFullBuffer(t *testing.T) {
	t.Parallel()
	fsys := &faultFS{gate: make(chan struct{})}
	fsys.room.Store(-1)
	cfg := fastConfig(t.TempDir())
	cfg.FS = fsys
	cfg.WriteBuffer = 1024
	cfg.SegmentSize = 1 << 20
	cfg.FlushDelay = time.Hour
	q := open(t, cfg)
	handedOff := func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.writing > 0
	}
	// Entries up to the first hand-off, then most of a second buffer.
	appended := make(chan int)
	go func() {
		n := 0
		for ; !handedOff() && n < 1000; n++ {
			appendRange(q, n, n+1)
		}
		appendRange(q, n, 2*n-10)
		appended <- 2*n - 10
	}()
	var n int
	select {
	case n = <-appended:
	case <-time.After(10 * time.Second):
		close(fsys.gate)
		t.Fatal("Append waits for the write of a full buffer")
	}
	waitFor(t, "the goroutine to write the buffer", func() bool { return fsys.held.Load() > 0 })
	close(fsys.gate)
	got := drain(t, q)
	if fmt.Sprint(got) != fmt.Sprint(seq(0, n)) {
		t.Errorf("got %v, want 0 to %d in order", got, n-1)
	}
}

func TestDiskFullAtCreation(t *testing.T) {
	t.Parallel()
	fsys := &faultFS{}
	fsys.room.Store(10)
	cfg := fastConfig(t.TempDir())
	cfg.FS = fsys
	q := open(t, cfg)
	appendRange(q, 0, 10)
	waitFor(t, "a write error", func() bool { return q.Stats().WriteErrors > 0 })
	fsys.room.Store(-1)
	if got := drain(t, q); fmt.Sprint(got) != fmt.Sprint(seq(0, 10)) {
		t.Errorf("got %v", got)
	}
}

func TestCloseDropsWhatCannotBeWritten(t *testing.T) {
	t.Parallel()
	fsys := &faultFS{}
	fsys.room.Store(0)
	cfg := fastConfig(t.TempDir())
	cfg.FS = fsys
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(q, 0, 10)
	if err := q.Close(); err == nil || q.Stats().Dropped != 10 {
		t.Errorf("Close = %v, stats %+v", err, q.Stats())
	}
	if d := appendRange(q, 10, 11); d != 1 {
		t.Errorf("Append after Close dropped %d", d)
	}
}

func TestTooBigIsDropped(t *testing.T) {
	t.Parallel()
	cfg := fastConfig(t.TempDir())
	cfg.Buffer.MaxSize = 4096
	q := open(t, cfg)
	ev := forward.Event{Time: testTime, Source: "stdout", Line: make([]byte, 5000)}
	if d := q.Append(&ev, 0); d != 1 || q.Stats().Dropped != 1 {
		t.Errorf("an entry bigger than the buffer: dropped %d", d)
	}
}

func TestBigEntries(t *testing.T) {
	t.Parallel()
	cfg := fastConfig(t.TempDir())
	cfg.WriteBuffer = 1024
	q := open(t, cfg)
	for i := range 5 {
		ev := forward.Event{Time: testTime, Source: "stdout", Line: []byte(strings.Repeat(strconv.Itoa(i), 300<<10))}
		if d := q.Append(&ev, 0); d != 0 {
			t.Fatalf("entry %d dropped", i)
		}
		waitWritten(t, q)
	}
	q.Close()
	q = open(t, cfg)
	ctx := t.Context()
	for i := range 5 {
		items, err := next(ctx, q, nil, 1, 1)
		if err != nil || len(items) != 1 || len(items[0].Line) != 300<<10 || items[0].Line[0] != byte('0'+i) {
			t.Fatalf("entry %d: %d items, %v", i, len(items), err)
		}
		q.Ack(items[0].Token, items[0].Token+1)
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	cfg := fastConfig(t.TempDir())
	cfg.SegmentSize = 64 << 20
	q := open(t, cfg)
	ev := event(1)
	appendRange(q, 0, 1000) // grow the buffers
	waitWritten(t, q)
	if n := testing.AllocsPerRun(2000, func() { q.Append(&ev, 1) }); n > 0 {
		t.Errorf("Append allocates %v times per call", n)
	}
}

// TestConcurrentUse appends from several goroutines while a reader
// acknowledges out of order (run with -race).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	cfg := fastConfig(t.TempDir())
	q := open(t, cfg)
	const writers, per = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				n := w*per + i
				ev := event(n)
				q.Append(&ev, uint32(n%7))
			}
		})
	}
	seen := make(map[int]bool)
	var items, held []forward.Item
	for len(seen) < writers*per {
		var err error
		items, err = next(t.Context(), q, items[:0], 17, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for i := range items {
			n := lineNo(t, &items[i])
			if seen[n] {
				t.Fatalf("%d handed out twice", n)
			}
			seen[n] = true
		}
		held = append(held, items[0], items[len(items)-1])
		if len(held) == 8 { // acknowledge batches newest first
			for i := len(held) - 2; i >= 0; i -= 2 {
				q.Ack(held[i].Token, held[i+1].Token+1)
			}
			held = held[:0]
		}
		_ = q.Stats()
	}
	wg.Wait()
	for i := 0; i < len(held); i += 2 {
		q.Ack(held[i].Token, held[i+1].Token+1)
	}
	waitFor(t, "everything deleted", func() bool { st := q.Stats(); return st.Events == 0 && st.Segments <= 1 })
}

func TestNoGoroutineLeak(t *testing.T) {
	for i := range 5 {
		dir := t.TempDir()
		q, err := Open(fastConfig(dir))
		if err != nil {
			t.Fatal(err)
		}
		appendRange(q, 0, 100)
		go func() { // a Next waiting when Close comes
			_, _ = next(context.Background(), q, nil, 1000, 1<<20)
			_, _ = next(context.Background(), q, nil, 1000, 1<<20)
		}()
		if i%2 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "diskq.(*Queue)") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after Close:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEveryEntryAccountedFor: entries handed out from a segment that
// drop-oldest then drops, and never acknowledged, are counted as dropped
// at Close; appended = dropped + acknowledged + held.
func TestEveryEntryAccountedFor(t *testing.T) {
	t.Parallel()
	for _, ackSome := range []bool{false, true} {
		t.Run(fmt.Sprintf("ack=%v", ackSome), func(t *testing.T) {
			t.Parallel()
			cfg := fastConfig(t.TempDir())
			cfg.Buffer.MaxSize = 8 << 10
			q := open(t, cfg)
			appendRange(q, 0, 20)
			var items []forward.Item // in flight
			for len(items) < 10 {
				var err error
				if items, err = next(t.Context(), q, items, 10-len(items), 1<<20); err != nil {
					t.Fatal(err)
				}
			}
			const n = 2000
			for i := 20; i < n; i += 10 {
				appendRange(q, i, i+10)
				waitWritten(t, q)
			}
			acked := 0
			if ackSome {
				q.Ack(items[0].Token, items[5].Token) // delivered after all
				acked = 5
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			st := q.Stats()
			if int(st.Dropped)+acked+st.Events != n {
				t.Errorf("%d dropped + %d acknowledged + %d held != %d", st.Dropped, acked, st.Events, n)
			}
		})
	}
}
