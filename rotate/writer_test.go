package rotate

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// seqBase is the time of record 0. Its fraction keeps every record the same
// length: record i is one second later than record i-1.
var seqBase = time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.UTC)

func seqTime(i int) time.Time { return seqBase.Add(time.Duration(i) * time.Second) }

// seqEntry is record number i.
func seqEntry(i int) *Entry {
	return &Entry{Line: fmt.Appendf(nil, "record %06d\n", i), Stream: "stdout", Time: seqTime(i)}
}

// seqRec is record number i, as json-file writes it.
func seqRec(i int) []byte {
	return AppendJSON(nil, seqEntry(i), nil)
}

// seqLen is the length of every seqRec.
var seqLen = int64(len(seqRec(0)))

// parseSeq returns the number of the record whose line is line.
func parseSeq(line []byte) (int, error) {
	var n int
	if _, err := fmt.Sscanf(string(line), "record %d\n", &n); err != nil {
		return 0, fmt.Errorf("unexpected record line %q: %w", line, err)
	}
	return n, nil
}

// seqOf is parseSeq for the test's goroutine.
func seqOf(t testing.TB, line []byte) int {
	t.Helper()
	n, err := parseSeq(line)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// seqRange returns from, from+1, … to-1.
func seqRange(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// writeSeqs writes records from to to-1 to w.
func writeSeqs(t testing.TB, w *Writer, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := w.Write(seqRec(i)); err != nil {
			t.Fatalf("write record %d: %v", i, err)
		}
	}
}

// fileSeqs returns the record numbers in the file name, gunzipping a ".gz".
func fileSeqs(t *testing.T, name string) []int {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, gzExt) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("gunzip %s: %v", name, err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			t.Fatalf("gunzip %s: %v", name, err)
		}
	}
	var seqs []int
	for line := range bytes.Lines(data) {
		var e Entry
		if err := ParseJSON(line, &e); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		seqs = append(seqs, seqOf(t, e.Line))
	}
	return seqs
}

// dirSeqs returns the record numbers of each file in dir.
func dirSeqs(t *testing.T, dir string) map[string][]int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int{}
	for _, e := range ents {
		got[e.Name()] = fileSeqs(t, filepath.Join(dir, e.Name()))
	}
	return got
}

func equalFiles(got, want map[string][]int) bool {
	if len(got) != len(want) {
		return false
	}
	for name, seqs := range want {
		g, ok := got[name]
		if !ok || !slices.Equal(g, seqs) {
			return false
		}
	}
	return true
}

// umask returns the process's umask, which the created files' modes lose.
func umask(t *testing.T) os.FileMode {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("cannot read the umask: %v", err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Fatalf("parse umask %q: %v", v, err)
			}
			return os.FileMode(m)
		}
	}
	t.Skip("no umask in /proc/self/status")
	return 0
}

func TestNewWriterIsLazy(t *testing.T) {
	tests := []struct {
		name  string
		write func(*Writer) error
	}{
		{"no write", func(*Writer) error { return nil }},
		{"nil record", func(w *Writer) error { return w.Write(nil) }},
		{"empty record", func(w *Writer) error { return w.Write([]byte{}) }},
		{"flush", func(w *Writer) error { return w.Flush() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "sub")
			w := NewWriter(filepath.Join(dir, "c.log"), Config{MaxSize: 1, MaxFiles: 3, Compress: true})
			if err := tt.write(w); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("stat %s: %v, want it not to exist", dir, err)
			}
		})
	}
}

func TestWriterAppendsToExistingFile(t *testing.T) {
	tests := []struct {
		name     string
		existing []int // records already in the file, numbered from 100
		want     map[string][]int
	}{
		{"no file", nil, map[string][]int{"c.log": {0, 1}}},
		{"below max-size", []int{100}, map[string][]int{"c.log": {100, 0, 1}}},
		{"reaches max-size with the first write", []int{100, 101},
			map[string][]int{"c.log.1": {100, 101, 0}, "c.log": {1}}},
		{"at max-size", []int{100, 101, 102},
			map[string][]int{"c.log.1": {100, 101, 102}, "c.log": {0, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "c.log")
			if tt.existing != nil {
				var data []byte
				for _, i := range tt.existing {
					data = append(data, seqRec(i)...)
				}
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			w := NewWriter(path, Config{MaxSize: 3 * seqLen, MaxFiles: 2})
			writeSeqs(t, w, 0, 2)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := dirSeqs(t, dir); !equalFiles(got, tt.want) {
				t.Fatalf("files: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWriterEndsBrokenLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	broken := `{"log":"cut short by a cra`
	if err := os.WriteFile(path, []byte(broken), 0o640); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(path, Config{})
	writeSeqs(t, w, 0, 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := broken + "\n" + string(seqRec(0)) + string(seqRec(1))
	if string(data) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", data, want)
	}
}

// testExecEnv names the emulator the tests run under (make test-arm64 sets
// it to qemu-aarch64-static, as go test -exec), which a test that starts
// its own binary again must start it with.
const testExecEnv = "LOGFERRY_TEST_EXEC"

// fullDiskEnv names the log file that TestWriterFullDiskHelper writes, in
// a process of its own.
const fullDiskEnv = "ROTATE_TEST_FULL_DISK_LOG"

// TestWriterEndsLineCutByFullDisk checks that a record cut short by a full
// disk is ended with a newline before the next record, even when writes
// in between fail without writing anything. A file size limit
// (RLIMIT_FSIZE) stands in for the full disk: writes past it are cut short,
// then fail, as on a full file system. It applies to the whole process, so
// the writes run in a child process.
func TestWriterEndsLineCutByFullDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	args := []string{os.Args[0], "-test.run=^TestWriterFullDiskHelper$", "-test.v"}
	if emulator := os.Getenv(testExecEnv); emulator != "" {
		args = append([]string{emulator}, args...) // go test -exec's, for the child too
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), fullDiskEnv+"="+path)
	if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("--- PASS: TestWriterFullDiskHelper")) {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Records 0 and 1, half of record 2, a newline, record 4.
	want := string(seqRec(0)) + string(seqRec(1)) + string(seqRec(2)[:seqLen/2]) + "\n" + string(seqRec(4))
	if string(data) != want {
		t.Fatalf("file:\n%q\nwant:\n%q", data, want)
	}
}

// TestWriterFullDiskHelper is the child process of
// TestWriterEndsLineCutByFullDisk.
func TestWriterFullDiskHelper(t *testing.T) {
	path := os.Getenv(fullDiskEnv)
	if path == "" {
		t.Skip("run by TestWriterEndsLineCutByFullDisk")
	}
	signal.Ignore(syscall.SIGXFSZ) // the write fails with EFBIG instead
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	full := limit
	full.Cur = uint64(2*seqLen + seqLen/2)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &full); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(path, Config{})
	writeSeqs(t, w, 0, 3)
	if err := w.Flush(); !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("Flush past the limit: %v, want EFBIG", err)
	}
	writeSeqs(t, w, 3, 4)
	if err := w.Flush(); !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("Flush at the limit: %v, want EFBIG", err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	writeSeqs(t, w, 4, 5)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := w.Lost(); n != 2 {
		t.Errorf("Lost() = %d, want 2 (records 2 and 3)", n)
	}
}

func TestRotation(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		n         int  // records written
		flushEach bool // flush after every record instead of once at Close
		want      map[string][]int
	}{
		{"never", Config{MaxFiles: 3}, 10, false,
			map[string][]int{"c.log": seqRange(0, 10)}},
		{"max-file 0 keeps none", Config{MaxSize: 3 * seqLen}, 10, false,
			map[string][]int{"c.log": {9}}},
		{"max-file 1 keeps none", Config{MaxSize: 3 * seqLen, MaxFiles: 1}, 10, false,
			map[string][]int{"c.log": {9}}},
		{"max-file 1 ignores compress", Config{MaxSize: 3 * seqLen, MaxFiles: 1, Compress: true}, 10, false,
			map[string][]int{"c.log": {9}}},
		{"max-file 2", Config{MaxSize: 3 * seqLen, MaxFiles: 2}, 10, false,
			map[string][]int{"c.log": {9}, "c.log.1": {6, 7, 8}}},
		{"max-file 2 compressed", Config{MaxSize: 3 * seqLen, MaxFiles: 2, Compress: true}, 10, false,
			map[string][]int{"c.log": {9}, "c.log.1.gz": {6, 7, 8}}},
		{"max-file 3", Config{MaxSize: 3 * seqLen, MaxFiles: 3}, 10, false,
			map[string][]int{"c.log": {9}, "c.log.1": {6, 7, 8}, "c.log.2": {3, 4, 5}}},
		{"max-file 3 flushed each record", Config{MaxSize: 3 * seqLen, MaxFiles: 3}, 10, true,
			map[string][]int{"c.log": {9}, "c.log.1": {6, 7, 8}, "c.log.2": {3, 4, 5}}},
		{"max-file 3 compressed", Config{MaxSize: 3 * seqLen, MaxFiles: 3, Compress: true}, 10, false,
			map[string][]int{"c.log": {9}, "c.log.1.gz": {6, 7, 8}, "c.log.2.gz": {3, 4, 5}}},
		{"max-file 3 compressed flushed each record", Config{MaxSize: 3 * seqLen, MaxFiles: 3, Compress: true}, 10, true,
			map[string][]int{"c.log": {9}, "c.log.1.gz": {6, 7, 8}, "c.log.2.gz": {3, 4, 5}}},
		{"max-size one byte short of 3 records", Config{MaxSize: 3*seqLen - 1, MaxFiles: 3}, 10, false,
			map[string][]int{"c.log": {9}, "c.log.1": {6, 7, 8}, "c.log.2": {3, 4, 5}}},
		{"max-size one byte over 3 records", Config{MaxSize: 3*seqLen + 1, MaxFiles: 3}, 10, false,
			map[string][]int{"c.log": {8, 9}, "c.log.1": {4, 5, 6, 7}, "c.log.2": {0, 1, 2, 3}}},
		{"full file is rotated only at the next write", Config{MaxSize: 3 * seqLen, MaxFiles: 3}, 6, false,
			map[string][]int{"c.log": {3, 4, 5}, "c.log.1": {0, 1, 2}}},
		{"records larger than max-size", Config{MaxSize: 1, MaxFiles: 4, Compress: true}, 5, false,
			map[string][]int{"c.log": {4}, "c.log.1.gz": {3}, "c.log.2.gz": {2}, "c.log.3.gz": {1}}},
	}
	for _, tt := range tests {
		for _, api := range []string{"Write", "WriteEntry"} {
			t.Run(tt.name+"/"+api, func(t *testing.T) {
				testRotation(t, tt.cfg, tt.n, tt.flushEach, api == "WriteEntry", tt.want)
			})
		}
	}
}

// testRotation writes records 0 to n-1 with Write, or WriteEntry if
// entries is set, and checks that the files hold want when w is closed.
func testRotation(t *testing.T, cfg Config, n int, flushEach, entries bool, want map[string][]int) {
	dir := t.TempDir()
	w := NewWriter(filepath.Join(dir, "c.log"), cfg)
	var enc Encoder
	for i := range n {
		var err error
		if entries {
			err = w.WriteEntry(&enc, seqEntry(i), nil)
		} else {
			err = w.Write(seqRec(i))
		}
		if err != nil {
			t.Fatalf("write record %d: %v", i, err)
		}
		if flushEach {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if w.buf != nil {
				t.Fatalf("Flush kept a buffer of %d bytes", cap(w.buf))
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := dirSeqs(t, dir)
	if !equalFiles(got, want) {
		t.Fatalf("files: got %v, want %v", got, want)
	}
	for name, seqs := range want {
		if strings.HasSuffix(name, gzExt) {
			checkGzipHeader(t, filepath.Join(dir, name), seqTime(seqs[len(seqs)-1]))
		}
	}
}

// checkGzipHeader checks that the gzip header of name is json-file's: only
// Extra set, to the time of the last record.
func checkGzipHeader(t *testing.T, name string, last time.Time) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"lastTime":%q}`, last.Format(time.RFC3339Nano))
	if string(zr.Extra) != want {
		t.Errorf("%s: gzip Extra %q, want %q", name, zr.Extra, want)
	}
	if zr.Name != "" || zr.Comment != "" || !zr.ModTime.IsZero() {
		t.Errorf("%s: gzip header %+v, want only Extra", name, zr.Header)
	}
}

func TestCompressionLeftovers(t *testing.T) {
	// Each case leaves files as a crash during compression would, then
	// rotates once more: no record may be lost or read twice.
	tests := []struct {
		name      string
		leftovers map[string][]int // file name → records; nil records: garbage
		want      map[string][]int
	}{
		{
			name:      "crash while writing the gzip file",
			leftovers: map[string][]int{"c.log.1": {0, 1, 2}, "c.log.1.gz.tmp": nil, "c.log": {3, 4, 5}},
			want:      map[string][]int{"c.log.2": {0, 1, 2}, "c.log.1.gz": {3, 4, 5}, "c.log": {6}},
		},
		{
			name:      "crash before removing the uncompressed file",
			leftovers: map[string][]int{"c.log.1": {0, 1, 2}, "c.log.1.gz": {0, 1, 2}, "c.log": {3, 4, 5}},
			want:      map[string][]int{"c.log.2": {0, 1, 2}, "c.log.2.gz": {0, 1, 2}, "c.log.1.gz": {3, 4, 5}, "c.log": {6}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, seqs := range tt.leftovers {
				writeSeqFile(t, filepath.Join(dir, name), seqs)
			}
			path := filepath.Join(dir, "c.log")
			w := NewWriter(path, Config{MaxSize: 3 * seqLen, MaxFiles: 3, Compress: true})
			writeSeqs(t, w, 6, 7)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := dirSeqs(t, dir); !equalFiles(got, tt.want) {
				t.Fatalf("files: got %v, want %v", got, tt.want)
			}
			if got, want := readSeqs(t, path, ReadConfig{Tail: -1}, nil), seqRange(0, 7); !slices.Equal(got, want) {
				t.Fatalf("read %v, want %v", got, want)
			}
		})
	}
}

func TestCompressionFailure(t *testing.T) {
	dir := t.TempDir()
	// A directory where the compressed data should go makes compression
	// fail: the rotated files must stay, uncompressed, and be read.
	if err := os.Mkdir(filepath.Join(dir, "c.log.1.gz.tmp"), 0o750); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.log")
	w := NewWriter(path, Config{MaxSize: 3 * seqLen, MaxFiles: 3, Compress: true})
	writeSeqs(t, w, 0, 4)
	deadline := time.Now().Add(testTimeout)
	var err error
	for err = w.Flush(); err == nil; err = w.Flush() {
		if time.Now().After(deadline) {
			t.Fatal("Flush never reported the failed compression")
		}
		time.Sleep(time.Millisecond)
	}
	if !strings.Contains(err.Error(), "compress") {
		t.Fatalf("Flush: %v, want a compression error", err)
	}
	// The failed attempt removed the directory: the next compression
	// works, and the uncompressed file moves on.
	writeSeqs(t, w, 4, 7)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{"c.log.2": {0, 1, 2}, "c.log.1.gz": {3, 4, 5}, "c.log": {6}}
	if got := dirSeqs(t, dir); !equalFiles(got, want) {
		t.Fatalf("files: got %v, want %v", got, want)
	}
	if got, want := readSeqs(t, path, ReadConfig{Tail: -1}, nil), seqRange(0, 7); !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
}

// writeSeqFile writes the records seqs to name, gzipped for a ".gz"; nil
// seqs writes bytes that are not a log.
func writeSeqFile(t *testing.T, name string, seqs []int) {
	t.Helper()
	data := []byte("\x00 not a log")
	if seqs != nil {
		data = nil
		for _, i := range seqs {
			data = append(data, seqRec(i)...)
		}
	}
	if strings.HasSuffix(name, gzExt) {
		data = gzipData(t, data, time.Time{})
	}
	if err := os.WriteFile(name, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

// gzipData compresses data; unless last is zero, the header carries it as
// json-file's metadata.
func gzipData(t *testing.T, data []byte, last time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if !last.IsZero() {
		zw.Extra = fmt.Appendf(nil, `{"lastTime":%q}`, last.Format(time.RFC3339Nano))
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPermissions(t *testing.T) {
	mask := umask(t)
	tests := []struct {
		name              string
		cfg               Config
		fileMode, dirMode os.FileMode
	}{
		{"defaults", Config{}, 0o640, 0o750},
		{"custom", Config{FileMode: 0o600, DirMode: 0o700}, 0o600, 0o700},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "a", "b")
			cfg := tt.cfg
			cfg.MaxSize, cfg.MaxFiles, cfg.Compress = 1, 2, true
			w := NewWriter(filepath.Join(dir, "c.log"), cfg)
			writeSeqs(t, w, 0, 2)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			want := map[string]os.FileMode{
				filepath.Join(root, "a"):         os.ModeDir | tt.dirMode&^mask,
				dir:                              os.ModeDir | tt.dirMode&^mask,
				filepath.Join(dir, "c.log"):      tt.fileMode &^ mask,
				filepath.Join(dir, "c.log.1.gz"): tt.fileMode &^ mask,
			}
			for name, mode := range want {
				fi, err := os.Stat(name)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != mode {
					t.Errorf("%s: mode %v, want %v", name, fi.Mode(), mode)
				}
			}
		})
	}
}

func TestClose(t *testing.T) {
	tests := []struct {
		name string
		op   func(*Writer) error
		want error
	}{
		{"close again", (*Writer).Close, nil},
		{"write", func(w *Writer) error { return w.Write(seqRec(9)) }, ErrClosed},
		{"write empty", func(w *Writer) error { return w.Write(nil) }, ErrClosed},
		{"flush", (*Writer).Flush, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			w := NewWriter(path, Config{})
			writeSeqs(t, w, 0, 3)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := tt.op(w); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if got := fileSeqs(t, path); !slices.Equal(got, seqRange(0, 3)) {
				t.Fatalf("file holds %v, want the records written before Close", got)
			}
		})
	}
}

func TestWriteDoesNotAllocate(t *testing.T) {
	rec, e := seqRec(0), seqEntry(0)
	var enc Encoder
	tests := []struct {
		name  string
		write func(w *Writer) error
	}{
		{"Write", func(w *Writer) error { return w.Write(rec) }},
		{"WriteEntry", func(w *Writer) error { return w.WriteEntry(&enc, e, nil) }},
		// The buffer goes back to the pool and is taken again.
		{"Write and Flush", func(w *Writer) error { return errors.Join(w.Write(rec), w.Flush()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWriter(filepath.Join(t.TempDir(), "c.log"), Config{MaxSize: 1 << 20, MaxFiles: 2})
			defer w.Close()
			writeSeqs(t, w, 0, 1)
			allocs := testing.AllocsPerRun(10000, func() {
				if err := tt.write(w); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > 0.01 {
				t.Fatalf("%v allocations per record, want 0", allocs)
			}
		})
	}
}

// benchRec is a record of about 100 bytes.
var benchRec = AppendJSON(nil, &Entry{Line: []byte("GET /healthz 200 0.3ms ok\n"), Stream: "stdout", Time: seqBase}, nil)

func BenchmarkWrite(b *testing.B) {
	for _, compress := range []bool{false, true} {
		b.Run(fmt.Sprintf("compress=%t", compress), func(b *testing.B) {
			w := NewWriter(filepath.Join(b.TempDir(), "c.log"), Config{MaxSize: 10 << 20, MaxFiles: 3, Compress: compress})
			b.ReportAllocs()
			b.SetBytes(int64(len(benchRec)))
			for b.Loop() {
				if err := w.Write(benchRec); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
