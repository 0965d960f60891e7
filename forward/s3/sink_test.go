package s3

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

var testContainer = forward.Container{ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Name: "web", Tag: "web"}

// fakeStore keeps objects in memory; fail, when set, decides whether a
// put fails.
type fakeStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	puts    int
	fail    func(key string) error
	closed  bool
}

func newFakeStore() *fakeStore { return &fakeStore{objects: map[string][]byte{}} }

func (f *fakeStore) put(ctx context.Context, key string, body []byte) error {
	f.mu.Lock()
	fail := f.fail
	f.puts++
	f.mu.Unlock()
	if fail != nil {
		if err := fail(key); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[key] = bytes.Clone(body)
	return nil
}

func (f *fakeStore) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
}

func (f *fakeStore) setFail(fn func(string) error) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

// lines returns the "log" field of every document of every object, by
// object key in order, and checks that each object is gzip NDJSON.
func (f *fakeStore) lines(t *testing.T) (keys []string, logs [][]string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	keys = slices.Sorted(maps.Keys(f.objects))
	for _, k := range keys {
		zr, err := gzip.NewReader(bytes.NewReader(f.objects[k]))
		if err != nil {
			t.Fatalf("object %s: %v", k, err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("object %s: %v", k, err)
		}
		var got []string
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var doc map[string]any
			if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
				t.Fatalf("object %s: line %q: %v", k, sc.Text(), err)
			}
			got = append(got, doc["log"].(string))
		}
		logs = append(logs, got)
	}
	return keys, logs
}

func (f *fakeStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.objects)
}

var t0 = time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)

// send sends lines from to to, one millisecond apart from at.
func send(s *Sink, from, to int, at time.Time) {
	for i := from; i < to; i++ {
		s.Send(&forward.Event{Time: at.Add(time.Duration(i) * time.Millisecond), Source: "stdout", Line: fmt.Appendf(nil, "line %d", i)})
	}
}

func newTestSink(t *testing.T, cfg Config, st store) *Sink {
	t.Helper()
	cfg.Bucket = "logs"
	s, err := newSink(cfg, testContainer, nil, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// checkOnce checks that the objects hold lines 0 to n-1, each once, in
// order, and that each key names its first line.
func checkOnce(t *testing.T, st *fakeStore, n int) (objects int) {
	t.Helper()
	keys, logs := st.lines(t)
	next := 0
	for i, got := range logs {
		for _, l := range got {
			if want := fmt.Sprintf("line %d", next); l != want {
				t.Fatalf("object %s has %q where %q was due", keys[i], l, want)
			}
			next++
		}
		first := next - len(got)
		wantKey := (&keyTemplate{}).mustParse(DefaultKey).expand(&testContainer, t0.Add(time.Duration(first)*time.Millisecond), 0)
		if keys[i] != wantKey {
			t.Errorf("key %s, want %s", keys[i], wantKey)
		}
	}
	if next != n {
		t.Fatalf("%d lines in %d objects, want %d", next, len(keys), n)
	}
	return len(keys)
}

func (*keyTemplate) mustParse(s string) *keyTemplate {
	k, err := parseKeyTemplate(s)
	if err != nil {
		panic(err)
	}
	return k
}

func TestObjectsAreCut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         Config
		n           int
		wantObjects int
	}{
		// Each document takes about 230 bytes.
		{"by size", Config{ObjectSize: 10_000, FlushInterval: time.Hour}, 500, 12},
		// Lines 1ms apart: a new object every 100 lines.
		{"by the lines' time", Config{FlushInterval: 100 * time.Millisecond}, 500, 5},
		{"at close", Config{FlushInterval: time.Hour}, 50, 1},
	}
	for _, tc := range tests {
		for _, disk := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/disk=%v", tc.name, disk), func(t *testing.T) {
				t.Parallel()
				st := newFakeStore()
				cfg := tc.cfg
				if disk {
					cfg.BufferDir = t.TempDir()
				}
				s := newTestSink(t, cfg, st)
				send(s, 0, tc.n, t0)
				if err := s.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
				got := checkOnce(t, st, tc.n)
				if tc.wantObjects > 1 && (got < tc.wantObjects-2 || got > tc.wantObjects+2) || tc.wantObjects == 1 && got != 1 {
					t.Errorf("%d objects, want about %d", got, tc.wantObjects)
				}
				if stats := s.Stats(); stats.Emitted != uint64(tc.n) || stats.Objects != uint64(got) || stats.Dropped != 0 || stats.Queued != 0 {
					t.Errorf("stats %+v", stats)
				}
			})
		}
	}
}

// TestIdleObjectWrittenAfterInterval: a container that stops logging gets
// its object written FlushInterval and LateLines after its first line,
// without Close.
func TestIdleObjectWrittenAfterInterval(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	s := newTestSink(t, Config{FlushInterval: 200 * time.Millisecond, LateLines: 50 * time.Millisecond}, st)
	start := time.Now()
	send(s, 0, 10, t0)
	deadline := time.Now().Add(10 * time.Second)
	for st.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); st.count() != 1 || d < 200*time.Millisecond {
		t.Fatalf("%d objects after %v", st.count(), d)
	}
	checkOnce(t, st, 10)
}

// TestRetriesWriteTheSameKey: a store that fails gets the same object
// again, under the same key, and no line twice.
func TestRetriesWriteTheSameKey(t *testing.T) {
	t.Parallel()
	for _, disk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			t.Parallel()
			st := newFakeStore()
			var mu sync.Mutex
			failed := map[string]int{}
			st.setFail(func(key string) error {
				mu.Lock()
				defer mu.Unlock()
				if failed[key] < 2 {
					failed[key]++
					return errors.New("503 SlowDown")
				}
				return nil
			})
			cfg := Config{ObjectSize: 5_000, FlushInterval: time.Hour, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}
			if disk {
				cfg.BufferDir = t.TempDir()
			}
			s := newTestSink(t, cfg, st)
			send(s, 0, 200, t0)
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			objects := checkOnce(t, st, 200)
			if stats := s.Stats(); stats.Retries != uint64(2*objects) {
				t.Errorf("%d retries for %d objects failing twice each", stats.Retries, objects)
			}
			for k, n := range failed {
				if n != 2 {
					t.Errorf("%s failed %d times", k, n)
				}
			}
		})
	}
}

// TestReplayWritesTheSameObjects: lines left in the disk buffer by a sink
// stopped hard (its store down) are written by the next sink on the same
// directory as the same objects, under the same keys, as one sink would
// have written them: the cut depends on the lines, not on when they were
// read, so a replay of objects written before the buffer knew replaces
// them rather than adding copies.
func TestReplayWritesTheSameObjects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{BufferDir: dir, ObjectSize: 8_000, FlushInterval: 50 * time.Millisecond, LateLines: 10 * time.Millisecond, RetryMin: time.Millisecond, RetryMax: time.Millisecond}

	// What one sink writes, with nothing in its way.
	ref := newFakeStore()
	s := newTestSink(t, Config{ObjectSize: cfg.ObjectSize, FlushInterval: cfg.FlushInterval}, ref)
	send(s, 0, 300, t0)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A sink that wrote some objects and was stopped hard with the rest
	// waiting: its store accepts the first three puts, then fails.
	st := newFakeStore()
	var mu sync.Mutex
	ok := 3
	st.setFail(func(string) error {
		mu.Lock()
		defer mu.Unlock()
		if ok == 0 {
			return errors.New("down")
		}
		ok--
		return nil
	})
	first := newTestSink(t, cfg, st)
	send(first, 0, 300, t0)
	first.Flush()
	for deadline := time.Now().Add(10 * time.Second); st.count() < 3 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = first.Close(ctx)
	if n := st.count(); n != 3 {
		t.Fatalf("%d objects before the stop, want 3", n)
	}

	st.setFail(nil)
	next := newTestSink(t, cfg, st)
	if err := next.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantKeys, wantLogs := ref.lines(t)
	keys, logs := st.lines(t)
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("keys after the replay\n%s\nwant\n%s", strings.Join(keys, "\n"), strings.Join(wantKeys, "\n"))
	}
	for i := range logs {
		if !slices.Equal(logs[i], wantLogs[i]) {
			t.Errorf("object %s differs from the one written without a stop", keys[i])
		}
	}
	checkOnce(t, st, 300)
}

// TestCloseDeadlineInMemory: without a disk buffer, lines that Close's
// deadline leaves unwritten are counted and reported; the store's
// connections are let go.
func TestCloseDeadlineInMemory(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	st.setFail(func(string) error { return errors.New("down") })
	s := newTestSink(t, Config{FlushInterval: time.Hour, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond}, st)
	send(s, 0, 20, t0)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := s.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "20 events not delivered") {
		t.Errorf("Close = %v", err)
	}
	if stats := s.Stats(); stats.Unsent != 20 || stats.Emitted != 0 {
		t.Errorf("stats %+v", stats)
	}
	if !st.closed {
		t.Error("store not closed")
	}
	if err := s.Close(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}

// TestUploadsBounded: however many sinks write objects at once, at most
// maxUploads objects are being built or written in the process (each holds
// a compressor and a body), and every sink's lines still get through.
func TestUploadsBounded(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	inFlight, most := 0, 0
	st := newFakeStore()
	st.setFail(func(string) error {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil
	})
	const sinks = 40
	var wg sync.WaitGroup
	for i := range sinks {
		c := testContainer
		c.ID = fmt.Sprintf("%064d", i)
		s, err := newSink(Config{Bucket: "logs", ObjectSize: 2_000, FlushInterval: time.Hour}, c, nil, st)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			send(s, 0, 100, t0)
			if err := s.Close(context.Background()); err != nil {
				t.Error(err)
			}
			if got := s.Stats().Emitted; got != 100 {
				t.Errorf("sink %d: %d lines written", i, got)
			}
		})
	}
	wg.Wait()
	if most > maxUploads {
		t.Errorf("%d objects written at once, want at most %d", most, maxUploads)
	}
	if st.count() < sinks {
		t.Errorf("%d objects for %d sinks", st.count(), sinks)
	}
}
