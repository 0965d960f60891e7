//go:build bench

// Command drainplugin is the floor of the logging-plugin protocol for
// logferry's benchmarks: a managed Docker logging plugin that reads every
// FIFO dockerd hands it and throws the bytes away. It parses no frame,
// writes nothing and keeps nothing, so a container logging through it costs
// what dockerd spends feeding a plugin, and little more.
//
// How it reads is chosen per container with the log-opt drain-reader:
//
//   - "coalesce" (the default) reads the FIFO through its own poll(2),
//     outside Go's network poller, and after a read that found less than
//     half its buffer's worth it waits a millisecond before the next one,
//     in a pipe enlarged to 1 MiB: the pipe collects hundreds of frames
//     between two reads instead of waking the reader for each one. This is
//     the floor: the least a plugin can cost dockerd and itself.
//   - "netpoll" reads it as an *os.File does, through Go's network poller,
//     as soon as anything arrives: the plain way to write a plugin in Go,
//     which pays a wake-up for every frame dockerd writes.
//
// It answers /LogDriver.Capabilities without ReadLogs (dockerd then keeps
// its dual-logging cache unless the container sets cache-disabled=true, as
// the benchmark does). Like logferry, it reads a FIFO until StopLogging and
// then drains what is left in the pipe before answering, so "the container
// has exited" means the same thing for both: every byte was read.
//
// "make bench" builds it and installs it as logferry-drain:latest with the
// manifest in this directory.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/docker/go-plugins-helpers/sdk"
)

const (
	socketPath = "/run/docker/plugins/drain.sock"
	manifest   = `{"Implements": ["LogDriver"]}`
	// stopTimeout bounds the plugin's own shutdown.
	stopTimeout = 10 * time.Second

	// optReader is the log-opt that chooses the reader.
	optReader      = "drain-reader"
	readerCoalesce = "coalesce"
	readerNetpoll  = "netpoll"

	// readBuffer is the most one read takes from a FIFO.
	readBuffer = 256 << 10
	// pipeSize is what the coalescing reader asks the FIFO to hold
	// (F_SETPIPE_SZ; 1 MiB is Linux's default limit for it).
	pipeSize = 1 << 20
	// coalesceWait is how long the coalescing reader lets frames gather
	// after a short read: at dockerd's ~40 MB/s per container, a third of
	// the pipe.
	coalesceWait = time.Millisecond
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "drainplugin:", err)
		os.Exit(1)
	}
}

func run() error {
	if err := os.Remove(socketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", socketPath)
	if err != nil {
		return fmt.Errorf("listen %q: %w", socketPath, err)
	}
	d := &drainer{fifos: map[string]*fifo{}}
	h := sdk.NewHandler(manifest)
	d.register(h)

	served := make(chan error, 1)
	go func() { served <- h.Serve(l) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	select {
	case <-sigs:
		l.Close()
		err = <-served
	case err = <-served:
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return errors.Join(err, d.close(ctx))
}

// drainer owns one reading goroutine per open FIFO.
type drainer struct {
	wg sync.WaitGroup // the reading goroutines and the closers of late ones

	// mu guards fifos.
	mu    sync.Mutex
	fifos map[string]*fifo // by path
}

// reader reads one FIFO and discards what it reads.
type reader interface {
	// drain reads until stop has been called and the pipe is empty.
	drain()
	// stop makes drain empty the pipe and return.
	stop() error
	// close releases the FIFO once drain has returned.
	close() error
}

// fifo is one FIFO being drained.
type fifo struct {
	r    reader
	done chan struct{} // closed when drain has returned
}

type startRequest struct {
	File string
	Info struct{ Config map[string]string }
}
type stopRequest struct{ File string }
type response struct {
	Err string `json:",omitempty"`
}
type capabilities struct {
	Cap struct{ ReadLogs bool }
	Err string `json:",omitempty"`
}

func (d *drainer) register(h sdk.Handler) {
	h.HandleFunc("/LogDriver.StartLogging", func(w http.ResponseWriter, r *http.Request) {
		var req startRequest
		if sdk.DecodeRequest(w, r, &req) != nil {
			return
		}
		sdk.EncodeResponse(w, errResponse(d.start(req.File, req.Info.Config[optReader])), false)
	})
	h.HandleFunc("/LogDriver.StopLogging", func(w http.ResponseWriter, r *http.Request) {
		var req stopRequest
		if sdk.DecodeRequest(w, r, &req) != nil {
			return
		}
		sdk.EncodeResponse(w, errResponse(d.stop(r.Context(), req.File)), false)
	})
	h.HandleFunc("/LogDriver.Capabilities", func(w http.ResponseWriter, r *http.Request) {
		sdk.EncodeResponse(w, capabilities{}, false)
	})
}

func errResponse(err error) response {
	if err != nil {
		return response{Err: err.Error()}
	}
	return response{}
}

// start opens the FIFO and starts discarding what arrives. Both readers
// open it read-write, so that it never reports end-of-file while dockerd's
// end is open and opening never waits for dockerd.
func (d *drainer) start(path, kind string) error {
	var r reader
	var err error
	switch kind {
	case "", readerCoalesce:
		r, err = openCoalescing(path)
	case readerNetpoll:
		r, err = openNetpoll(path)
	default:
		return fmt.Errorf("invalid log-opt %s=%q: want %s or %s", optReader, kind, readerCoalesce, readerNetpoll)
	}
	if err != nil {
		return err
	}
	p := &fifo{r: r, done: make(chan struct{})}
	d.mu.Lock()
	if d.fifos[path] != nil {
		d.mu.Unlock()
		r.close()
		return fmt.Errorf("fifo %q already open", path)
	}
	d.fifos[path] = p
	d.mu.Unlock()
	d.wg.Go(func() {
		defer close(p.done)
		r.drain()
	})
	return nil
}

// stop drains the FIFO at path and closes it, waiting until ctx is done at
// most; a FIFO still draining then is closed in the background.
func (d *drainer) stop(ctx context.Context, path string) error {
	d.mu.Lock()
	p := d.fifos[path]
	delete(d.fifos, path)
	d.mu.Unlock()
	if p == nil {
		return fmt.Errorf("stop logging %q: unknown fifo", path)
	}
	return d.stopFIFO(ctx, p)
}

func (d *drainer) stopFIFO(ctx context.Context, p *fifo) error {
	if err := p.r.stop(); err != nil {
		return fmt.Errorf("stop logging: %w", err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		d.wg.Go(func() {
			<-p.done
			p.r.close()
		})
		return fmt.Errorf("stop logging: %w", ctx.Err())
	}
	if err := p.r.close(); err != nil {
		return fmt.Errorf("stop logging: %w", err)
	}
	return nil
}

// close stops every FIFO and waits for the readers.
func (d *drainer) close(ctx context.Context) error {
	d.mu.Lock()
	fifos := d.fifos
	d.fifos = map[string]*fifo{}
	d.mu.Unlock()
	var errs []error
	for _, p := range fifos {
		errs = append(errs, d.stopFIFO(ctx, p))
	}
	d.wg.Wait()
	return errors.Join(errs...)
}

// coalescing reads a FIFO through its own poll(2), outside Go's network
// poller: the poller registers a FIFO edge-triggered, and Linux signals
// every write to a pipe, so it would wake for each frame even while the
// reader waits on purpose.
type coalescing struct {
	fd int
	// wake is a pipe that stop writes to, to end a poll: wake[0] is polled.
	wake     [2]int
	stopping atomic.Bool
}

func openCoalescing(path string) (*coalescing, error) {
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open fifo: %w", err)
	}
	// A larger pipe only makes the waits safer; the default will do.
	_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), fSetPipeSize, pipeSize)
	c := &coalescing{fd: fd}
	if err := syscall.Pipe2(c.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("open fifo: wake-up pipe: %w", err)
	}
	return c, nil
}

// fSetPipeSize is F_SETPIPE_SZ, which package syscall does not name.
const fSetPipeSize = 1031

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const pollIn = 0x1

func (c *coalescing) drain() {
	buf := make([]byte, readBuffer)
	for {
		n, err := syscall.Read(c.fd, buf)
		switch {
		case n > 0:
			if n < len(buf)/2 {
				time.Sleep(coalesceWait)
			}
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			if c.stopping.Load() {
				return // stopped and empty
			}
			c.poll()
		default:
			return // a read error: nothing more will come
		}
	}
}

// poll waits until the FIFO has data or stop was called.
func (c *coalescing) poll() {
	fds := [2]pollFd{{fd: int32(c.fd), events: pollIn}, {fd: int32(c.wake[0]), events: pollIn}}
	// No timeout: stop writes to the wake-up pipe. EINTR just loops.
	_, _, _ = syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), 0, 0, 0, 0)
}

func (c *coalescing) stop() error {
	c.stopping.Store(true)
	if _, err := syscall.Write(c.wake[1], []byte{0}); err != nil && err != syscall.EAGAIN {
		return fmt.Errorf("wake the reader: %w", err)
	}
	return nil
}

func (c *coalescing) close() error {
	return errors.Join(syscall.Close(c.fd), syscall.Close(c.wake[0]), syscall.Close(c.wake[1]))
}

// netpolling reads a FIFO as an *os.File, through Go's network poller.
type netpolling struct {
	f *os.File
}

func openNetpoll(path string) (*netpolling, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open fifo: %w", err)
	}
	return &netpolling{f: f}, nil
}

func (p *netpolling) drain() {
	buf := make([]byte, readBuffer)
	for {
		if _, err := p.f.Read(buf); err != nil {
			break // the deadline set by stop, or the FIFO is gone
		}
	}
	rc, err := p.f.SyscallConn()
	if err != nil {
		return
	}
	// The deadline makes every Read fail at once: read the fd directly
	// until the pipe is empty.
	_ = rc.Control(func(fd uintptr) {
		for {
			n, err := syscall.Read(int(fd), buf)
			if n <= 0 && err != syscall.EINTR {
				return
			}
		}
	})
}

func (p *netpolling) stop() error { return p.f.SetReadDeadline(time.Unix(1, 0)) }

func (p *netpolling) close() error { return p.f.Close() }
