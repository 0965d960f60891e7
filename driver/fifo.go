package driver

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	// pipeSize is the capacity asked of each FIFO (F_SETPIPE_SZ; 1 MiB is
	// Linux's default ceiling for it): room for what dockerd writes while
	// the stream pauses or writes. Without it the default 64 KiB does.
	pipeSize = 1 << 20
	// maxPause and minPause bound how long a stream lets frames gather in
	// the pipe after a read that emptied it. One read then takes hundreds
	// of frames instead of waking the stream for each line, and each wake
	// costs the Go scheduler's: at full speed (about 45 MB/s of 100-byte
	// lines) 4 ms cost a quarter less CPU than 1 ms. The pause shrinks
	// when the pipe fills beyond a quarter during one (long lines, or a
	// pipe left at 64 KiB), and grows back when it holds little.
	maxPause = 4 * time.Millisecond
	minPause = 250 * time.Microsecond
	// fSetPipeSize and fGetPipeSize are F_SETPIPE_SZ and F_GETPIPE_SZ,
	// which package syscall does not name.
	fSetPipeSize = 1031
	fGetPipeSize = 1032
)

// fifo reads a container's FIFO. It is opened read-write so that it never
// reports end-of-file on its own: dockerd calls StopLogging before it closes
// its end, and the stream must read everything dockerd wrote up to then.
// After stop, reads return what is left in the pipe and then io.EOF instead
// of waiting for more.
//
// Reads wait through the Driver's poller, and a read that emptied the pipe
// (it returned less than it asked for) is followed by a short pause, so
// that a busy container's frames are read in batches rather than a few at
// a time right after a large read.
type fifo struct {
	path   string
	fd     int
	poller *poller
	ready  chan struct{}
	// stopping is set by stop: reads no longer wait or pause.
	stopping atomic.Bool
	// short: the last read returned less than it asked for.
	short bool
	// size is the pipe's capacity in bytes; delay is the next pause.
	size  int
	delay time.Duration
}

// openFIFO opens the FIFO at path without blocking, refuses anything that
// is not a FIFO, and registers it with p.
func openFIFO(path string, p *poller) (*fifo, error) {
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open fifo %q: %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("stat fifo %q: %w", path, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		syscall.Close(fd)
		return nil, fmt.Errorf("open fifo %q: %w", path, errNotFIFO)
	}
	// Best effort: past the user's pipe memory limit the kernel refuses,
	// and the pipe keeps its size.
	_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), fSetPipeSize, pipeSize)
	size, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), fGetPipeSize, 0)
	if errno != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("open fifo %q: pipe size: %w", path, errno)
	}
	f := &fifo{path: path, fd: fd, poller: p, ready: make(chan struct{}, 1), size: int(size), delay: maxPause}
	if err := p.add(fd, f.ready); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("open fifo %q: %w", path, err)
	}
	return f, nil
}

var errNotFIFO = errors.New("not a fifo")

// Read waits for data until stop is called; after that it returns what
// remains in the pipe, then io.EOF.
func (f *fifo) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if _, err := f.pause(); err != nil {
		return 0, err
	}
	for {
		n, err := syscall.Read(f.fd, b)
		switch {
		case n > 0:
			f.short = n < len(b)
			return n, nil
		case err == nil:
			return 0, io.EOF // cannot happen while the FIFO is open read-write
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			if f.stopping.Load() {
				return 0, io.EOF
			}
			if err := f.poller.arm(f.fd); err != nil {
				return 0, fmt.Errorf("read fifo %q: %w", f.path, err)
			}
			<-f.ready
		default:
			return 0, fmt.Errorf("read fifo %q: %w", f.path, err)
		}
	}
}

// pause lets frames gather after a short read, unless stop was called, and
// sets the next pause from what gathered during this one. It returns how
// many bytes the pipe holds after the pause, or -1 if it did not pause.
func (f *fifo) pause() (int, error) {
	short := f.short
	f.short = false
	if !short || f.stopping.Load() {
		return -1, nil
	}
	time.Sleep(f.delay)
	n, err := f.queued()
	if err != nil {
		return 0, err
	}
	f.delay = nextPause(f.delay, n, f.size)
	return n, nil
}

// nextPause returns the pause that follows one of length d after which a
// pipe of size bytes held n: half as long when more than a quarter of the
// pipe filled, twice as long when less than a sixteenth did, within
// minPause and maxPause.
func nextPause(d time.Duration, n, size int) time.Duration {
	switch {
	case n > size/4:
		return max(d/2, minPause)
	case n < size/16:
		return min(d*2, maxPause)
	}
	return d
}

// queued returns how many bytes the pipe holds.
func (f *fifo) queued() (int, error) {
	for {
		var n int32
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(f.fd), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
		switch errno {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		}
		return 0, fmt.Errorf("fifo %q: bytes queued: %w", f.path, errno)
	}
}

// wait returns once the FIFO has data, or stop was called, after the pause
// that Read would make: the caller then reads with a buffer it did not have
// to hold while waiting.
func (f *fifo) wait() error {
	// n is what the pipe holds, -1 while unknown: the pause counted it.
	n, err := f.pause()
	if err != nil {
		return err
	}
	for !f.stopping.Load() {
		if n < 0 {
			if n, err = f.queued(); err != nil {
				return err
			}
		}
		if n > 0 {
			return nil
		}
		if err := f.poller.arm(f.fd); err != nil {
			return fmt.Errorf("wait for fifo %q: %w", f.path, err)
		}
		<-f.ready
		n = -1
	}
	return nil
}

// stop makes Read drain the pipe and then report io.EOF.
func (f *fifo) stop() {
	f.stopping.Store(true)
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// Close unregisters and closes the FIFO. Calls after the first do nothing.
func (f *fifo) Close() error {
	if f.fd < 0 {
		return nil
	}
	err := f.poller.remove(f.fd)
	if cerr := syscall.Close(f.fd); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close fifo %q: %w", f.path, cerr))
	}
	f.fd = -1
	return err
}
