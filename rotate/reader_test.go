package rotate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// testTimeout is a generous ceiling for anything a test waits on.
const testTimeout = 30 * time.Second

// readSeqs reads the log at path and returns the record numbers delivered.
func readSeqs(t *testing.T, path string, cfg ReadConfig, w *Writer) []int {
	t.Helper()
	var seqs []int
	err := Read(t.Context(), path, cfg, w, func(e *Entry) error {
		seqs = append(seqs, seqOf(t, e.Line))
		return nil
	})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return seqs
}

// tenRecordLog writes records 0 to 9 into four files of three records at
// most: path.3 holds 0-2, path.2 3-5, path.1 6-8 and path 9. The writer is
// left open, with the compression of path.1 over, if live; else closed.
func tenRecordLog(t *testing.T, compress, live bool) (string, *Writer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.log")
	w := NewWriter(path, Config{MaxSize: 3 * seqLen, MaxFiles: 4, Compress: compress})
	writeSeqs(t, w, 0, 10)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !live {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return path, w
	}
	t.Cleanup(func() { w.Close() })
	w.reap(true)
	return path, w
}

func TestReadSelection(t *testing.T) {
	tests := []struct {
		name string
		cfg  ReadConfig
		want []int
	}{
		{"all", ReadConfig{Tail: -1}, seqRange(0, 10)},
		{"tail 0", ReadConfig{Tail: 0}, nil},
		{"tail 1", ReadConfig{Tail: 1}, []int{9}},
		{"tail 2 crosses a rotation", ReadConfig{Tail: 2}, []int{8, 9}},
		{"tail 4 starts a file", ReadConfig{Tail: 4}, seqRange(6, 10)},
		{"tail 5", ReadConfig{Tail: 5}, seqRange(5, 10)},
		{"tail 9", ReadConfig{Tail: 9}, seqRange(1, 10)},
		{"tail equal to the total", ReadConfig{Tail: 10}, seqRange(0, 10)},
		{"tail larger than the total", ReadConfig{Tail: 1000}, seqRange(0, 10)},
		{"since a record", ReadConfig{Tail: -1, Since: seqTime(4)}, seqRange(4, 10)},
		{"since just after a record", ReadConfig{Tail: -1, Since: seqTime(4).Add(time.Nanosecond)}, seqRange(5, 10)},
		{"since in the current file", ReadConfig{Tail: -1, Since: seqTime(9)}, []int{9}},
		{"since after all", ReadConfig{Tail: -1, Since: seqTime(10)}, nil},
		{"until a record", ReadConfig{Tail: -1, Until: seqTime(6)}, seqRange(0, 7)},
		{"until just before a record", ReadConfig{Tail: -1, Until: seqTime(6).Add(-time.Nanosecond)}, seqRange(0, 6)},
		{"until before all", ReadConfig{Tail: -1, Until: seqTime(-1)}, nil},
		{"since and until", ReadConfig{Tail: -1, Since: seqTime(2), Until: seqTime(7)}, seqRange(2, 8)},
		{"tail then since", ReadConfig{Tail: 5, Since: seqTime(7)}, seqRange(7, 10)},
		{"tail then until", ReadConfig{Tail: 5, Until: seqTime(7)}, seqRange(5, 8)},
		{"follow stops at until", ReadConfig{Tail: -1, Until: seqTime(1), Follow: true}, []int{0, 1}},
	}
	for _, compress := range []bool{false, true} {
		for _, live := range []bool{false, true} {
			path, w := tenRecordLog(t, compress, live)
			if !live {
				// A closed writer keeps following from blocking.
				w = nil
			}
			for _, tt := range tests {
				t.Run(fmt.Sprintf("compress=%t/writer=%t/%s", compress, live, tt.name), func(t *testing.T) {
					if got := readSeqs(t, path, tt.cfg, w); !slices.Equal(got, tt.want) {
						t.Fatalf("got %v, want %v", got, tt.want)
					}
				})
			}
		}
	}
}

func TestReadDamagedLog(t *testing.T) {
	rec := func(i int) string { return string(seqRec(i)) }
	tests := []struct {
		name  string
		files map[string][]byte
		want  []int
	}{
		{"missing", nil, nil},
		{"empty", map[string][]byte{"c.log": nil}, nil},
		{
			name:  "bad lines",
			files: map[string][]byte{"c.log": []byte("garbage\n\n" + rec(0) + "{}{\n" + rec(1) + `{"log":"cut short`)},
			want:  []int{0, 1},
		},
		{
			name: "files that are not gzip",
			files: map[string][]byte{
				"c.log.3.gz": gzipData(t, []byte(rec(0)), time.Time{}),
				"c.log.2.gz": []byte("not gzip"),
				"c.log.1.gz": nil,
				"c.log":      []byte(rec(1)),
			},
			want: []int{0, 1},
		},
		{
			name: "truncated gzip",
			files: map[string][]byte{
				"c.log.1.gz": func() []byte { b := gzipData(t, []byte(rec(0)+rec(1)), time.Time{}); return b[:len(b)-4] }(),
				"c.log":      []byte(rec(2)),
			},
			want: []int{0, 1, 2},
		},
		{
			// json-file trusts the header: a file whose last record
			// is before since is not even opened.
			name: "gzip header before since",
			files: map[string][]byte{
				"c.log.1.gz": gzipData(t, []byte(rec(0)), seqTime(-1)),
				"c.log":      []byte(rec(1)),
			},
			want: []int{1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o640); err != nil {
					t.Fatal(err)
				}
			}
			got := readSeqs(t, filepath.Join(dir, "c.log"), ReadConfig{Tail: -1, Since: seqTime(0)}, nil)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// follower runs Read in a goroutine and passes each record number on.
type follower struct {
	seqs chan int
	err  chan error
}

func startFollower(ctx context.Context, path string, cfg ReadConfig, w *Writer, fn func(seq int) error) *follower {
	f := &follower{seqs: make(chan int, 10000), err: make(chan error, 1)}
	go func() {
		f.err <- Read(ctx, path, cfg, w, func(e *Entry) error {
			n, err := parseSeq(e.Line)
			if err != nil {
				return err
			}
			f.seqs <- n
			if fn != nil {
				return fn(n)
			}
			return nil
		})
	}()
	return f
}

// waitForFollower waits until a reader follows w, waiting for a change.
func waitForFollower(t *testing.T, w *Writer) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		w.mu.Lock()
		waiting := w.waiting
		w.mu.Unlock()
		if waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for a follower")
		}
		time.Sleep(time.Millisecond)
	}
}

// expect checks that the next records delivered are want.
func (f *follower) expect(t *testing.T, want ...int) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-f.seqs:
			if got != w {
				t.Fatalf("got record %d, want %d", got, w)
			}
		case err := <-f.err:
			// Read has returned: whatever it delivered is queued.
			f.err <- err
			select {
			case got := <-f.seqs:
				if got != w {
					t.Fatalf("got record %d, want %d", got, w)
				}
			default:
				t.Fatalf("read ended waiting for record %d: %v", w, err)
			}
		case <-time.After(testTimeout):
			t.Fatalf("timed out waiting for record %d", w)
		}
	}
}

// end waits for Read to return, checks that it delivered nothing more and
// returns its error.
func (f *follower) end(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.err:
		if len(f.seqs) > 0 {
			t.Fatalf("unexpected record %d", <-f.seqs)
		}
		return err
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for read to end")
		return nil
	}
}

func TestFollow(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no rotation", Config{}},
		{"max-file 1 truncates", Config{MaxSize: 5 * seqLen, MaxFiles: 1}},
		{"max-file 2", Config{MaxSize: 5 * seqLen, MaxFiles: 2}},
		{"max-file 2 compressed", Config{MaxSize: 5 * seqLen, MaxFiles: 2, Compress: true}},
		{"max-file 3 compressed", Config{MaxSize: 5 * seqLen, MaxFiles: 3, Compress: true}},
		{"a file per record", Config{MaxSize: 1, MaxFiles: 3, Compress: true}},
	}
	const existing, total, batch = 3, 61, 3
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			w := NewWriter(path, tt.cfg)
			defer w.Close()
			writeSeqs(t, w, 0, existing)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			f := startFollower(t.Context(), path, ReadConfig{Tail: -1, Follow: true}, w, nil)
			f.expect(t, seqRange(0, existing)...)
			// A batch never spans two rotations: with max-file 1, the
			// records of a file removed before the follower opened it
			// would be lost, as with json-file.
			for i := existing; i < total; i += batch {
				writeSeqs(t, w, i, min(i+batch, total))
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				f.expect(t, seqRange(i, min(i+batch, total))...)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.end(t); err != nil {
				t.Fatalf("read: %v", err)
			}
		})
	}
}

func TestFollowBehind(t *testing.T) {
	// The follower is held on record 0 while the writer fills five files
	// of three records; it then reads what the writer kept.
	tests := []struct {
		name string
		cfg  Config
		want []int
	}{
		{"all kept", Config{MaxFiles: 6}, seqRange(0, 15)},
		{"all kept compressed", Config{MaxFiles: 6, Compress: true}, seqRange(0, 15)},
		{"max-file 2", Config{MaxFiles: 2, Compress: true}, []int{0, 1, 2, 9, 10, 11, 12, 13, 14}},
		{"max-file 1", Config{MaxFiles: 1}, []int{0, 1, 2, 12, 13, 14}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			cfg := tt.cfg
			cfg.MaxSize = 3 * seqLen
			w := NewWriter(path, cfg)
			defer w.Close()
			release := make(chan struct{})
			f := startFollower(t.Context(), path, ReadConfig{Tail: -1, Follow: true}, w, func(seq int) error {
				if seq == 0 {
					<-release
				}
				return nil
			})
			writeSeqs(t, w, 0, 1)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			f.expect(t, 0)
			writeSeqs(t, w, 1, 15)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			close(release)
			f.expect(t, tt.want[1:]...)
			if err := f.end(t); err != nil {
				t.Fatalf("read: %v", err)
			}
		})
	}
}

func TestFollowEnds(t *testing.T) {
	errStop := errors.New("stop")
	tests := []struct {
		name    string
		cfg     ReadConfig
		fn      func(seq int) error
		end     func(w *Writer, cancel context.CancelFunc) // after the records are delivered
		want    []int
		wantErr error
	}{
		{
			name: "writer closed",
			cfg:  ReadConfig{Tail: -1, Follow: true},
			end:  func(w *Writer, _ context.CancelFunc) { w.Close() },
			want: seqRange(0, 5),
		},
		{
			name:    "context canceled",
			cfg:     ReadConfig{Tail: -1, Follow: true},
			end:     func(_ *Writer, cancel context.CancelFunc) { cancel() },
			want:    seqRange(0, 5),
			wantErr: context.Canceled,
		},
		{
			name: "fn fails",
			cfg:  ReadConfig{Tail: -1, Follow: true},
			fn: func(seq int) error {
				if seq == 2 {
					return errStop
				}
				return nil
			},
			want:    seqRange(0, 3),
			wantErr: errStop,
		},
		{
			name: "record after until",
			cfg:  ReadConfig{Tail: -1, Until: seqTime(2), Follow: true},
			want: seqRange(0, 3),
		},
		{
			name: "tail 0 on a missing file",
			cfg:  ReadConfig{Tail: 0, Follow: true},
			end:  func(w *Writer, _ context.CancelFunc) { w.Close() },
			want: seqRange(0, 5),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			// Three files keep every record, however late the follower is.
			w := NewWriter(path, Config{MaxSize: 2 * seqLen, MaxFiles: 3, Compress: true})
			defer w.Close()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			f := startFollower(ctx, path, tt.cfg, w, tt.fn)
			// The file does not exist yet: Read waits for it.
			waitForFollower(t, w)
			writeSeqs(t, w, 0, 5)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			f.expect(t, tt.want...)
			if tt.end != nil {
				tt.end(w, cancel)
			}
			if err := f.end(t); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("read returned %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestFollowTailZero(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w := NewWriter(path, Config{MaxSize: 2 * seqLen, MaxFiles: 2})
	defer w.Close()
	writeSeqs(t, w, 0, 3)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f := startFollower(t.Context(), path, ReadConfig{Tail: 0, Follow: true}, w, nil)
	waitForFollower(t, w)
	writeSeqs(t, w, 3, 8)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.expect(t, seqRange(3, 8)...)
	if err := f.end(t); err != nil {
		t.Fatalf("read: %v", err)
	}
}

// TestFollowIdle: a follower calls Idle once it has delivered every record
// flushed so far, before it waits: after each batch, never within one; a
// reader that does not follow never calls it.
func TestFollowIdle(t *testing.T) {
	const idle = -1
	for _, follow := range []bool{true, false} {
		t.Run(fmt.Sprintf("follow=%v", follow), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			w := NewWriter(path, Config{})
			defer w.Close()
			writeSeqs(t, w, 0, 3)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			events := make(chan int, 100)
			read := make(chan error, 1)
			cfg := ReadConfig{Tail: -1, Follow: follow, Idle: func() { events <- idle }}
			go func() {
				read <- Read(t.Context(), path, cfg, w, func(e *Entry) error {
					n, err := parseSeq(e.Line)
					events <- n
					return err
				})
			}()
			expect := func(want ...int) {
				t.Helper()
				for _, n := range want {
					select {
					case got := <-events:
						if got != n {
							t.Fatalf("got event %d, want %d (-1: idle)", got, n)
						}
					case <-time.After(testTimeout):
						t.Fatalf("timed out waiting for event %d (-1: idle)", n)
					}
				}
			}
			if !follow {
				expect(0, 1, 2)
				if err := <-read; err != nil {
					t.Fatalf("read: %v", err)
				}
				if len(events) != 0 {
					t.Fatalf("%d events after the records, want none", len(events))
				}
				return
			}
			expect(0, 1, 2, idle)
			for i := 3; i < 12; i += 3 {
				writeSeqs(t, w, i, i+3)
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				expect(i, i+1, i+2, idle)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-read; err != nil {
				t.Fatalf("read: %v", err)
			}
			if len(events) != 0 {
				t.Fatalf("%d events after the writer closed, want none", len(events))
			}
		})
	}
}

func TestFollowClosedWriter(t *testing.T) {
	path, w := tenRecordLog(t, true, false)
	if got := readSeqs(t, path, ReadConfig{Tail: 2, Follow: true}, w); !slices.Equal(got, []int{8, 9}) {
		t.Fatalf("got %v, want [8 9]", got)
	}
}

func TestConcurrentReaders(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	const total, perFile = 1500, 50
	path := filepath.Join(t.TempDir(), "c.log")
	// Enough files are kept for no record to be lost, however slow a
	// reader is.
	w := NewWriter(path, Config{MaxSize: perFile * seqLen, MaxFiles: total/perFile + 5, Compress: true})
	defer w.Close()

	type result struct {
		seqs []int
		all  bool // every record must have been delivered
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex // guards results
		results = map[string]result{}
	)
	read := func(ctx context.Context, name string, cfg ReadConfig, wantErr error) {
		wg.Go(func() {
			var seqs []int
			err := Read(ctx, path, cfg, w, func(e *Entry) error {
				n, err := parseSeq(e.Line)
				seqs = append(seqs, n)
				return err
			})
			if !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
				t.Errorf("%s: read returned %v, want %v", name, err, wantErr)
			}
			mu.Lock()
			results[name] = result{seqs, cfg.Follow && wantErr == nil}
			mu.Unlock()
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for i := range 4 {
		read(t.Context(), fmt.Sprintf("early follower %d", i), ReadConfig{Tail: -1, Follow: true}, nil)
	}
	for i := range total {
		writeSeqs(t, w, i, i+1)
		if i%37 == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if i%100 == 50 {
			read(t.Context(), fmt.Sprintf("reader at %d", i), ReadConfig{Tail: -1}, nil)
		}
		switch i {
		case total / 2:
			for j := range 4 {
				read(t.Context(), fmt.Sprintf("late follower %d", j), ReadConfig{Tail: -1, Follow: true}, nil)
			}
		case total / 3:
			read(ctx, "canceled follower", ReadConfig{Tail: -1, Follow: true}, context.Canceled)
		case 2 * total / 3:
			// Records are written after this, so the follower
			// cannot have delivered them all before it sees the
			// cancellation.
			cancel()
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for the readers")
	}
	for name, r := range results {
		// Each reader sees the records from 0, none lost or repeated:
		// followers all of them, other readers those flushed when
		// they opened the log.
		if !slices.Equal(r.seqs, seqRange(0, len(r.seqs))) {
			t.Errorf("%s: got %v", name, r.seqs)
		}
		if r.all && len(r.seqs) != total {
			t.Errorf("%s: got %d records, want %d", name, len(r.seqs), total)
		}
	}
	// Nothing is left running: no reader, no compression.
	deadline := time.Now().Add(testTimeout)
	for runtime.NumGoroutine() > goroutines {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkReadTail(b *testing.B) {
	const maxSize = 1 << 20
	perFile := int((maxSize + seqLen - 1) / seqLen)
	// Four compressed files and a current one half full.
	path := filepath.Join(b.TempDir(), "c.log")
	w := NewWriter(path, Config{MaxSize: maxSize, MaxFiles: 5, Compress: true})
	writeSeqs(b, w, 0, 4*perFile+perFile/2)
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	tests := []struct {
		name string
		tail int
	}{
		{"100 from the current file", 100},
		{"a file's worth into a compressed one", perFile},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				err := Read(b.Context(), path, ReadConfig{Tail: tt.tail}, nil, func(*Entry) error {
					n++
					return nil
				})
				if err != nil || n != tt.tail {
					b.Fatalf("read %d records, %v; want %d", n, err, tt.tail)
				}
			}
		})
	}
}
