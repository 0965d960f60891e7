package driver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/elasticsearch"
	"github.com/logferry/logferry/forward/fluentd"
	"github.com/logferry/logferry/rotate"
)

// testTimeout is a generous ceiling for anything a test waits on.
const testTimeout = 30 * time.Second

// dockerSide plays dockerd: it creates a FIFO and writes frames into it.
type dockerSide struct {
	path string
	f    *os.File
}

func newFIFO(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	return path
}

// openWriter opens the FIFO for writing once the driver has opened it.
func openWriter(t *testing.T, path string) *dockerSide {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open fifo for writing: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return &dockerSide{path: path, f: f}
}

func (ds *dockerSide) send(t *testing.T, entries ...LogEntry) {
	t.Helper()
	var buf []byte
	for i := range entries {
		buf = AppendFrame(buf, &entries[i])
	}
	if _, err := ds.f.Write(buf); err != nil {
		t.Fatalf("write frames: %v", err)
	}
}

func newTestDriver(t *testing.T) (*Driver, string) {
	t.Helper()
	root := t.TempDir()
	d := New(Config{Root: root, Destinations: testDestinations})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("close driver: %v", err)
		}
	})
	return d, root
}

func containerID(n int) string {
	return fmt.Sprintf("%064x", n)
}

func start(t *testing.T, d *Driver, id string, cfg map[string]string) *dockerSide {
	t.Helper()
	path := newFIFO(t)
	info := testInfo(cfg)
	info.ContainerID = id
	if err := d.StartLogging(path, info); err != nil {
		t.Fatalf("StartLogging: %v", err)
	}
	return openWriter(t, path)
}

func stop(t *testing.T, d *Driver, ds *dockerSide) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := d.StopLogging(ctx, ds.path); err != nil {
		t.Fatalf("StopLogging: %v", err)
	}
}

func logFile(root, id string) string {
	return filepath.Join(root, "containers", id, id+"-json.log")
}

func jsonRecord(line, stream string, ts int64, attrs string) string {
	var a []byte
	if attrs != "" {
		a = []byte(attrs)
	}
	return string(rotate.AppendJSON(nil, &rotate.Entry{Line: []byte(line), Stream: stream, Time: time.Unix(0, ts)}, a))
}

func TestStreamWritesJSONFileRecords(t *testing.T) {
	const ts = int64(1700000000123456789)
	tests := []struct {
		name    string
		cfg     map[string]string
		entries []LogEntry
		want    []string
	}{
		{
			name: "whole lines on both streams",
			entries: []LogEntry{
				{Source: "stdout", TimeNano: ts, Line: []byte("hello")},
				{Source: "stderr", TimeNano: ts + 1, Line: []byte("oops <&>")},
				{Source: "stdout", TimeNano: ts + 2, Line: []byte("")},
			},
			want: []string{
				jsonRecord("hello\n", "stdout", ts, ""),
				jsonRecord("oops <&>\n", "stderr", ts+1, ""),
				jsonRecord("\n", "stdout", ts+2, ""),
			},
		},
		{
			name: "split line keeps pieces and ends the last with a newline",
			entries: []LogEntry{
				{Source: "stdout", TimeNano: ts, Line: []byte("aaa"), Partial: true, HasPartialMeta: true, PartialID: []byte("x"), PartialOrdinal: 1},
				{Source: "stdout", TimeNano: ts, Line: []byte("bbb"), Partial: true, HasPartialMeta: true, PartialID: []byte("x"), PartialOrdinal: 2, PartialLast: true},
			},
			want: []string{jsonRecord("aaa", "stdout", ts, ""), jsonRecord("bbb\n", "stdout", ts, "")},
		},
		{
			name: "final line without newline stays without",
			entries: []LogEntry{
				{Source: "stdout", TimeNano: ts, Line: []byte("tail"), Partial: true, HasPartialMeta: true, PartialID: []byte("y"), PartialOrdinal: 1},
			},
			want: []string{jsonRecord("tail", "stdout", ts, "")},
		},
		{
			name:    "partial flag without metadata (old engines)",
			entries: []LogEntry{{Source: "stdout", TimeNano: ts, Line: []byte("p"), Partial: true}},
			want:    []string{jsonRecord("p", "stdout", ts, "")},
		},
		{
			name:    "attrs from labels, env and tag",
			cfg:     map[string]string{"labels": "app", "env": "REGION", "tag": "{{.Name}}"},
			entries: []LogEntry{{Source: "stdout", TimeNano: ts, Line: []byte("x")}},
			want:    []string{jsonRecord("x\n", "stdout", ts, `{"REGION":"eu","app":"shop","tag":"web"}`)},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, root := newTestDriver(t)
			id := containerID(i + 1)
			ds := start(t, d, id, tt.cfg)
			ds.send(t, tt.entries...)
			stop(t, d, ds)
			got, err := os.ReadFile(logFile(root, id))
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.Join(tt.want, ""); string(got) != want {
				t.Errorf("file =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestStopLoggingDrains writes more than a pipe holds and stops at once:
// everything written before StopLogging must be in the file when it returns.
func TestStopLoggingDrains(t *testing.T) {
	d, root := newTestDriver(t)
	id := containerID(7)
	ds := start(t, d, id, nil)
	const n = 20000
	line := bytes.Repeat([]byte("x"), 100)
	for i := 0; i < n; i += 1000 {
		batch := make([]LogEntry, 1000)
		for j := range batch {
			batch[j] = LogEntry{Source: "stdout", TimeNano: int64(i + j + 1), Line: line}
		}
		ds.send(t, batch...)
	}
	stop(t, d, ds)
	got, err := os.ReadFile(logFile(root, id))
	if err != nil {
		t.Fatal(err)
	}
	if c := bytes.Count(got, []byte("\n")); c != n {
		t.Fatalf("file has %d records, want %d", c, n)
	}
}

func TestCorruptFramesAreSkipped(t *testing.T) {
	d, root := newTestDriver(t)
	id := containerID(8)
	ds := start(t, d, id, nil)
	ds.send(t, LogEntry{Source: "stdout", TimeNano: 1, Line: []byte("before")})
	// A frame whose body is not a LogEntry (field 3 with a wrong wire type).
	if _, err := ds.f.Write([]byte{0, 0, 0, 2, 0x18, 0x01}); err != nil {
		t.Fatal(err)
	}
	// A frame far above the cap: its length is announced but the bytes follow.
	big := make([]byte, 4+DefaultMaxFrame+1)
	binary.BigEndian.PutUint32(big, uint32(len(big)-4))
	if _, err := ds.f.Write(big); err != nil {
		t.Fatal(err)
	}
	ds.send(t, LogEntry{Source: "stdout", TimeNano: 2, Line: []byte("after")})
	stop(t, d, ds)
	got, err := os.ReadFile(logFile(root, id))
	if err != nil {
		t.Fatal(err)
	}
	want := jsonRecord("before\n", "stdout", 1, "") + jsonRecord("after\n", "stdout", 2, "")
	if string(got) != want {
		t.Errorf("file =\n%s\nwant\n%s", got, want)
	}
}

func TestStartLoggingRefuses(t *testing.T) {
	tests := []struct {
		name string
		id   string
		cfg  map[string]string
		want error
	}{
		{"short id", "abc", nil, ErrBadContainerID},
		{"path escape", "../../../../etc/" + strings.Repeat("a", 48), nil, ErrBadContainerID},
		{"upper case hex", strings.Repeat("A", 64), nil, ErrBadContainerID},
		{"bad option", containerID(1), map[string]string{"max-size": "huge"}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, root := newTestDriver(t)
			info := testInfo(tt.cfg)
			info.ContainerID = tt.id
			err := d.StartLogging(newFIFO(t), info)
			if !errors.Is(err, tt.want) {
				t.Fatalf("StartLogging error = %v, want %v", err, tt.want)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Errorf("root has %d entries after a refused start", len(entries))
			}
		})
	}
}

func TestStartLoggingNeedsFIFO(t *testing.T) {
	d, _ := newTestDriver(t)
	path := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	info := testInfo(nil)
	if err := d.StartLogging(path, info); !errors.Is(err, errNotFIFO) {
		t.Fatalf("StartLogging on a regular file: %v, want errNotFIFO", err)
	}
}

// TestReadOnlyStreamTouchesNothing is what dockerd does to read a stopped
// container's logs: StartLogging, ReadLogs, StopLogging.
func TestReadOnlyStreamTouchesNothing(t *testing.T) {
	d, root := newTestDriver(t)
	id := containerID(9)
	ds := start(t, d, id, nil)
	stop(t, d, ds)
	if _, err := os.Stat(filepath.Join(root, "containers")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a stream without entries created files: %v", err)
	}

	ds = start(t, d, id, nil)
	ds.send(t, LogEntry{Source: "stdout", TimeNano: 1, Line: []byte("one")})
	stop(t, d, ds)
	before, err := os.Stat(logFile(root, id))
	if err != nil {
		t.Fatal(err)
	}
	ds = start(t, d, id, nil)
	if got := readAll(t, d, id, ReadConfig{Tail: -1}); len(got) != 1 {
		t.Fatalf("read %d entries, want 1", len(got))
	}
	stop(t, d, ds)
	after, err := os.Stat(logFile(root, id))
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Errorf("file changed: %v/%d -> %v/%d", before.ModTime(), before.Size(), after.ModTime(), after.Size())
	}
}

func TestRestartAppends(t *testing.T) {
	d, root := newTestDriver(t)
	id := containerID(10)
	for i := range 3 {
		ds := start(t, d, id, nil)
		ds.send(t, LogEntry{Source: "stdout", TimeNano: int64(i + 1), Line: []byte("run")})
		stop(t, d, ds)
	}
	got, err := os.ReadFile(logFile(root, id))
	if err != nil {
		t.Fatal(err)
	}
	if c := bytes.Count(got, []byte(`"log":"run\n"`)); c != 3 {
		t.Fatalf("file has %d records after three runs, want 3:\n%s", c, got)
	}
	fi, err := os.Stat(logFile(root, id))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("file mode %v, want 0640", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(logFile(root, id)))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o750 {
		t.Errorf("dir mode %v, want 0750", di.Mode().Perm())
	}
}

func TestContainersDoNotShareState(t *testing.T) {
	d, _ := newTestDriver(t)
	const containers, lines = 8, 500
	var wg sync.WaitGroup
	for c := range containers {
		ds := start(t, d, containerID(100+c), map[string]string{"max-size": "10k", "max-file": "100"})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				var buf []byte
				buf = AppendFrame(buf, &LogEntry{Source: "stdout", TimeNano: int64(i + 1), Line: fmt.Appendf(nil, "c%d-%d", c, i)})
				if _, err := ds.f.Write(buf); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for c := range containers {
		got := readAll(t, d, containerID(100+c), ReadConfig{Tail: -1})
		if len(got) != lines {
			t.Fatalf("container %d: %d entries, want %d", c, len(got), lines)
		}
		for i, e := range got {
			if want := fmt.Sprintf("c%d-%d\n", c, i); string(e.Line) != want {
				t.Fatalf("container %d entry %d = %q, want %q", c, i, e.Line, want)
			}
		}
	}
}

// readAll runs ReadLogs and decodes its answer.
func readAll(t *testing.T, d *Driver, id string, cfg ReadConfig) []LogEntry {
	t.Helper()
	var buf bytes.Buffer
	info := testInfo(nil)
	info.ContainerID = id
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := d.ReadLogs(ctx, info, cfg, &buf, func() {}); err != nil {
		t.Fatalf("ReadLogs: %v", err)
	}
	return decodeAll(t, &buf)
}

func decodeAll(t *testing.T, r io.Reader) []LogEntry {
	t.Helper()
	dec := NewDecoder(r, 0)
	var out []LogEntry
	for {
		var e LogEntry
		err := dec.Decode(&e)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode ReadLogs answer: %v", err)
		}
		e.Line = bytes.Clone(e.Line)
		e.PartialID = nil
		out = append(out, e)
	}
}

func TestReadLogs(t *testing.T) {
	d, _ := newTestDriver(t)
	id := containerID(11)
	ds := start(t, d, id, nil)
	base := int64(1700000000000000000)
	for i := range 10 {
		src := "stdout"
		if i%2 == 1 {
			src = "stderr"
		}
		ds.send(t, LogEntry{Source: src, TimeNano: base + int64(i)*int64(time.Second), Line: fmt.Appendf(nil, "line %d", i)})
	}
	stop(t, d, ds)

	tests := []struct {
		name  string
		cfg   ReadConfig
		first int
		n     int
	}{
		{"all", ReadConfig{Tail: -1}, 0, 10},
		{"tail 3", ReadConfig{Tail: 3}, 7, 3},
		{"tail 0", ReadConfig{Tail: 0}, 0, 0},
		{"since", ReadConfig{Tail: -1, Since: time.Unix(0, base+4*int64(time.Second))}, 4, 6},
		{"until", ReadConfig{Tail: -1, Until: time.Unix(0, base+2*int64(time.Second))}, 0, 3},
		{"follow of a stopped container ends", ReadConfig{Tail: -1, Follow: true}, 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readAll(t, d, id, tt.cfg)
			if len(got) != tt.n {
				t.Fatalf("got %d entries, want %d", len(got), tt.n)
			}
			for k, e := range got {
				i := tt.first + k
				want := LogEntry{Source: "stdout", TimeNano: base + int64(i)*int64(time.Second), Line: fmt.Appendf(nil, "line %d\n", i)}
				if i%2 == 1 {
					want.Source = "stderr"
				}
				if e.Source != want.Source || e.TimeNano != want.TimeNano || !bytes.Equal(e.Line, want.Line) {
					t.Errorf("entry %d = %+v, want %+v", k, e, want)
				}
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func TestReadLogsFollowEndsWithStream(t *testing.T) {
	before := runtime.NumGoroutine()
	d, _ := newTestDriver(t)
	id := containerID(12)
	ds := start(t, d, id, map[string]string{"max-size": "2k", "max-file": "50", "compress": "true"})
	ds.send(t, LogEntry{Source: "stdout", TimeNano: 1, Line: []byte("first")})

	var out syncBuffer
	info := testInfo(nil)
	info.ContainerID = id
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	go func() { done <- d.ReadLogs(ctx, info, ReadConfig{Tail: -1, Follow: true}, &out, func() {}) }()

	const n = 2000
	for i := 2; i <= n; i++ {
		ds.send(t, LogEntry{Source: "stdout", TimeNano: int64(i), Line: fmt.Appendf(nil, "line %d", i)})
	}
	stop(t, d, ds)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ReadLogs: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("follow did not end when the stream stopped")
	}
	got := decodeAll(t, bytes.NewReader(out.Bytes()))
	if len(got) != n {
		t.Fatalf("followed %d entries, want %d", len(got), n)
	}
	for i, e := range got {
		if e.TimeNano != int64(i+1) {
			t.Fatalf("entry %d has time %d: lost or duplicated", i, e.TimeNano)
		}
	}
	cctx, ccancel := context.WithTimeout(context.Background(), testTimeout)
	defer ccancel()
	if err := d.Close(cctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines after close, %d before", g, before)
	}
}

func TestCloseDrainsAndRefuses(t *testing.T) {
	d, root := newTestDriver(t)
	id := containerID(13)
	ds := start(t, d, id, nil)
	ds.send(t, LogEntry{Source: "stdout", TimeNano: 1, Line: []byte("kept")})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	got, err := os.ReadFile(logFile(root, id))
	if err != nil || !bytes.Contains(got, []byte("kept")) {
		t.Fatalf("entry not written on Close: %q, %v", got, err)
	}
	if err := d.StartLogging(newFIFO(t), testInfo(nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("StartLogging after Close: %v, want ErrClosed", err)
	}
	if err := d.StopLogging(ctx, ds.path); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("StopLogging after Close: %v, want ErrUnknownStream", err)
	}
}

// syscallNonblock opens a FIFO without waiting for the other end.
const syscallNonblock = syscall.O_NONBLOCK

// TestNewStreamReplacesOld: after a live-restore dockerd starts a second
// stream for a running container and never stops the first; the first is
// drained and released when the second starts.
func TestNewStreamReplacesOld(t *testing.T) {
	d, root := newTestDriver(t)
	id := containerID(41)
	first := start(t, d, id, nil)
	first.send(t, LogEntry{Source: "stdout", TimeNano: 1, Line: []byte("before the restore")})
	d.mu.Lock()
	old := d.streams[first.path]
	d.mu.Unlock()
	second := start(t, d, id, nil)
	second.send(t, LogEntry{Source: "stdout", TimeNano: 2, Line: []byte("after the restore")})
	select {
	case <-old.done:
	case <-time.After(testTimeout):
		t.Fatal("the replaced stream did not finish")
	}
	if err := d.StopLogging(context.Background(), first.path); !errors.Is(err, ErrUnknownStream) {
		t.Errorf("StopLogging of the replaced stream: %v, want ErrUnknownStream", err)
	}
	stop(t, d, second)
	b, err := os.ReadFile(logFile(root, id))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); !strings.Contains(got, "before the restore") || !strings.Contains(got, "after the restore") {
		t.Errorf("file lacks a line of one of the streams:\n%s", got)
	}
}

// testDestinations are the destinations cmd/logferry gives the driver,
// Elasticsearch without credentials.
var testDestinations = []forward.Destination{fluentd.Destination(), elasticsearch.Destination(elasticsearch.Credentials{})}
