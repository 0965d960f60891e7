package driver

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// newTestFIFO makes a FIFO, opens it for reading through a new poller and
// returns the reader and a writer.
func newTestFIFO(t *testing.T) (*fifo, *os.File) {
	t.Helper()
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.close(); err != nil {
			t.Error(err)
		}
	})
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := openFIFO(path, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return f, w
}

type readResult struct {
	data string
	err  error
}

// readAsync reads once from f in a goroutine that the test waits for.
func readAsync(t *testing.T, f *fifo) <-chan readResult {
	t.Helper()
	ch := make(chan readResult, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := f.Read(buf)
		ch <- readResult{string(buf[:n]), err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(time.Minute):
		t.Fatal("read did not return within a minute")
		return readResult{}
	}
}

func TestFIFOReadWaitsForData(t *testing.T) {
	f, w := newTestFIFO(t)
	for _, msg := range []string{"first", "second", "third"} {
		ch := readAsync(t, f)
		select {
		case r := <-ch:
			t.Fatalf("read returned %+v before anything was written", r)
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := w.WriteString(msg); err != nil {
			t.Fatal(err)
		}
		if r := receive(t, ch); r.err != nil || r.data != msg {
			t.Fatalf("read (%q, %v), want (%q, nil)", r.data, r.err, msg)
		}
	}
}

func TestFIFOStopDrains(t *testing.T) {
	tests := []struct {
		name    string
		pending string // written before stop
		waiting bool   // a read waits when stop is called
	}{
		{name: "empty, reader waiting", waiting: true},
		{name: "empty, no reader"},
		{name: "data left", pending: "left in the pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, w := newTestFIFO(t)
			var ch <-chan readResult
			if tt.waiting {
				ch = readAsync(t, f)
				time.Sleep(20 * time.Millisecond)
			}
			if tt.pending != "" {
				if _, err := w.WriteString(tt.pending); err != nil {
					t.Fatal(err)
				}
			}
			f.stop()
			if ch == nil {
				ch = readAsync(t, f)
			}
			var got string
			r := receive(t, ch)
			for r.err == nil {
				got += r.data
				r = receive(t, readAsync(t, f))
			}
			if !errors.Is(r.err, io.EOF) || got != tt.pending {
				t.Fatalf("read %q then %v, want %q then EOF", got, r.err, tt.pending)
			}
		})
	}
}

// TestFIFOPausesAfterShortRead: a read that follows one that found little
// first lets frames gather, then takes everything there is in one go; the
// pause shrinks when the pipe filled beyond a quarter meanwhile.
func TestFIFOPausesAfterShortRead(t *testing.T) {
	f, w := newTestFIFO(t)
	if f.delay != maxPause {
		t.Fatalf("first pause %v, want %v", f.delay, maxPause)
	}
	if _, err := w.WriteString("a"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	if n, err := f.Read(buf); err != nil || n != 1 {
		t.Fatalf("first read: %d, %v", n, err)
	}
	for range 10 {
		if _, err := w.WriteString("b"); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	n, err := f.Read(buf)
	if err != nil || string(buf[:n]) != "bbbbbbbbbb" {
		t.Fatalf("second read: %q, %v", buf[:n], err)
	}
	if waited := time.Since(start); waited < maxPause {
		t.Errorf("second read returned after %v, want a pause of at least %v", waited, maxPause)
	}
	if f.delay != maxPause {
		t.Errorf("pause after 10 bytes gathered: %v, want %v", f.delay, maxPause)
	}

	// Half the pipe waits: the next pause is shorter.
	if _, err := w.Write(make([]byte, f.size/2)); err != nil {
		t.Fatal(err)
	}
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.delay != maxPause/2 {
		t.Errorf("pause after half the pipe gathered: %v, want %v", f.delay, maxPause/2)
	}
}

func TestNextPause(t *testing.T) {
	const big, small = 1 << 20, 64 << 10
	tests := []struct {
		name    string
		d       time.Duration
		n, size int
		want    time.Duration
	}{
		{"empty pipe, longest pause", maxPause, 0, big, maxPause},
		{"little gathered: longer", time.Millisecond, big/16 - 1, big, 2 * time.Millisecond},
		{"little gathered: at most maxPause", 3 * time.Millisecond, 0, big, maxPause},
		{"between a sixteenth and a quarter: kept", time.Millisecond, big / 8, big, time.Millisecond},
		{"a quarter: kept", time.Millisecond, big / 4, big, time.Millisecond},
		{"over a quarter: shorter", maxPause, big/4 + 1, big, maxPause / 2},
		{"full pipe: at least minPause", minPause, big, big, minPause},
		{"what a big pipe keeps fills a small one", maxPause, big / 8, small, maxPause / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextPause(tt.d, tt.n, tt.size); got != tt.want {
				t.Errorf("nextPause(%v, %d, %d) = %v, want %v", tt.d, tt.n, tt.size, got, tt.want)
			}
		})
	}
}

func TestFIFOAndPollerClose(t *testing.T) {
	f, _ := newTestFIFO(t)
	for range 2 {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := f.poller.close(); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openFIFO(path, f.poller); !errors.Is(err, ErrClosed) {
		t.Fatalf("open with a closed poller: %v, want ErrClosed", err)
	}
}

// TestFIFOWait: wait returns, without reading, once the FIFO has data or
// stop is called.
func TestFIFOWait(t *testing.T) {
	tests := []struct {
		name   string
		before string // written before wait
		after  string // written while wait waits
		stop   bool   // stop is called while wait waits
	}{
		{name: "data there", before: "there"},
		{name: "data arrives", after: "later"},
		{name: "stop", stop: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, w := newTestFIFO(t)
			if _, err := w.WriteString(tt.before); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- f.wait() }()
			if tt.before == "" {
				select {
				case err := <-done:
					t.Fatalf("wait returned %v with nothing to read", err)
				case <-time.After(20 * time.Millisecond):
				}
			}
			if _, err := w.WriteString(tt.after); err != nil {
				t.Fatal(err)
			}
			if tt.stop {
				f.stop()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("wait: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("wait did not return within a minute")
			}
			want := readResult{data: tt.before + tt.after}
			if tt.stop {
				want.err = io.EOF
			}
			if r := receive(t, readAsync(t, f)); r != want {
				t.Fatalf("read after wait: %+v, want %+v", r, want)
			}
		})
	}
}
