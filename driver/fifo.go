package driver

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// fifo reads a container's FIFO. It is opened read-write so that it never
// reports end-of-file on its own: dockerd calls StopLogging before it closes
// its end, and the stream must read everything dockerd wrote up to then.
// After stop, reads return what is left in the pipe and then io.EOF instead
// of waiting for more.
type fifo struct {
	f  *os.File
	rc syscall.RawConn
}

// openFIFO opens the FIFO at path without blocking and refuses anything that
// is not a FIFO.
func openFIFO(path string) (*fifo, error) {
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
	f := os.NewFile(uintptr(fd), path)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open fifo %q: %w", path, err)
	}
	return &fifo{f: f, rc: rc}, nil
}

var errNotFIFO = errors.New("not a fifo")

// Read waits for data until stop is called; after that it returns what
// remains in the pipe, then io.EOF.
func (p *fifo) Read(b []byte) (int, error) {
	var n int
	var rerr error
	err := p.rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), b)
		return rerr != syscall.EAGAIN
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Stopping: read without waiting for readiness.
		err = p.rc.Control(func(fd uintptr) {
			n, rerr = syscall.Read(int(fd), b)
		})
		if rerr == syscall.EAGAIN {
			return 0, io.EOF
		}
	}
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// stop makes Read drain the pipe and then report io.EOF.
func (p *fifo) stop() error {
	return p.f.SetReadDeadline(time.Unix(1, 0))
}

// Close closes the FIFO.
func (p *fifo) Close() error {
	return p.f.Close()
}
