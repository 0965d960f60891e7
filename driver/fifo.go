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
	// the stream coalesces or writes. Without it the default 64 KiB does.
	pipeSize = 1 << 20
	// coalesceWait is how long a stream lets frames gather in the pipe
	// after a read that emptied it: at full speed dockerd writes about
	// 30 KB to a FIFO in that time. One read then takes hundreds of frames
	// instead of waking the stream for each line.
	coalesceWait = time.Millisecond
	// fSetPipeSize is F_SETPIPE_SZ, which package syscall does not name.
	fSetPipeSize = 1031
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
	f := &fifo{path: path, fd: fd, poller: p, ready: make(chan struct{}, 1)}
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
	f.pause()
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

// pause lets frames gather after a short read, unless stop was called.
func (f *fifo) pause() {
	if f.short && !f.stopping.Load() {
		time.Sleep(coalesceWait)
	}
	f.short = false
}

// wait returns once the FIFO has data, or stop was called, after the pause
// that Read would make: the caller then reads with a buffer it did not have
// to hold while waiting.
func (f *fifo) wait() error {
	f.pause()
	for !f.stopping.Load() {
		var n int32
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(f.fd), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
		switch {
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			return fmt.Errorf("wait for fifo %q: %w", f.path, errno)
		case n > 0:
			return nil
		}
		if err := f.poller.arm(f.fd); err != nil {
			return fmt.Errorf("wait for fifo %q: %w", f.path, err)
		}
		<-f.ready
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
