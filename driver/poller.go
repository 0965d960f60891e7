package driver

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// poller tells streams when their FIFOs have data, for all streams at once:
// one epoll instance in which FIFOs are registered one-shot, and one
// goroutine that waits on it. A FIFO therefore wakes its stream once per
// wait however many frames dockerd writes meanwhile, where Go's own network
// poller (edge-triggered) would wake for every write, that is for every
// log line.
//
// The goroutine waits for the epoll instance itself through Go's network
// poller, not in a blocking epoll_wait: a thread parked in a system call
// makes the runtime's monitor take its P back and then poll every 20 µs,
// which cost a busy plugin about a tenth of its CPU time.
type poller struct {
	epfd int
	// ep owns epfd; its RawConn waits until epfd has events.
	ep *os.File
	// quit is an eventfd that close writes to, to end the loop.
	quit int
	done chan struct{}

	// mu guards ready and closed.
	mu     sync.Mutex
	ready  map[int32]chan struct{} // by FIFO descriptor
	closed bool
}

// pollerEvents is how many events one epoll_wait returns at most.
const pollerEvents = 64

func newPoller() (_ *poller, err error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll: %w", err)
	}
	// A non-blocking descriptor is one os.NewFile hands to the network
	// poller.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("set epoll non-blocking: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "epoll") // owns epfd from here on
	quit := -1
	defer func() {
		if err != nil {
			if quit >= 0 {
				syscall.Close(quit)
			}
			ep.Close()
		}
	}()
	if quit, err = eventfd(); err != nil {
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(quit)}
	if err = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, quit, &ev); err != nil {
		return nil, fmt.Errorf("watch eventfd: %w", err)
	}
	raw, err := ep.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	p := &poller{epfd: epfd, ep: ep, quit: quit, done: make(chan struct{}), ready: make(map[int32]chan struct{})}
	go p.loop(raw)
	return p, nil
}

func eventfd() (int, error) {
	fd, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		return -1, fmt.Errorf("create eventfd: %w", errno)
	}
	return int(fd), nil
}

// loop hands readiness to the streams until close.
func (p *poller) loop(raw syscall.RawConn) {
	defer close(p.done)
	var events [pollerEvents]syscall.EpollEvent
	err := raw.Read(func(fd uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(fd), events[:], 0)
			switch {
			case err == syscall.EINTR:
				continue
			case err != nil:
				// Only a programming error (a closed or invalid epfd)
				// gets here; the streams then stop being woken, so make
				// it loud.
				panic(fmt.Sprintf("epoll_wait: %v", err))
			case n == 0:
				return false // wait until epfd is readable
			}
			if p.dispatch(events[:n]) {
				return true
			}
		}
	})
	if err != nil {
		panic(fmt.Sprintf("wait for epoll: %v", err))
	}
}

// dispatch signals the streams whose FIFOs are in events, and reports
// whether close asked the loop to end.
func (p *poller) dispatch(events []syscall.EpollEvent) (quit bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range events {
		if int(ev.Fd) == p.quit {
			return true
		}
		if ch := p.ready[ev.Fd]; ch != nil {
			select {
			case ch <- struct{}{}:
			default: // already signalled
			}
		}
	}
	return false
}

// add registers fd, armed: ch receives a value once fd is readable. The
// caller reads fd until EAGAIN and calls arm before it waits on ch again.
func (p *poller) add(fd int, ch chan struct{}) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLONESHOT, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("watch fifo: %w", err)
	}
	p.ready[int32(fd)] = ch
	return nil
}

// arm asks for the next readiness of fd. Level-triggered: a FIFO that
// already has data is signalled at once.
func (p *poller) arm(fd int) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLONESHOT, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, fd, &ev); err != nil {
		return fmt.Errorf("watch fifo: %w", err)
	}
	return nil
}

// remove forgets fd; the caller closes it afterwards.
func (p *poller) remove(fd int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.ready, int32(fd))
	if p.closed {
		return nil
	}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, nil); err != nil {
		return fmt.Errorf("unwatch fifo: %w", err)
	}
	return nil
}

// close stops the loop and waits for it. FIFOs still registered are no
// longer signalled. Calls after the first do nothing.
func (p *poller) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	one := [8]byte{1}
	if _, err := syscall.Write(p.quit, one[:]); err != nil {
		return fmt.Errorf("stop poller: %w", err)
	}
	<-p.done
	return errors.Join(syscall.Close(p.quit), p.ep.Close())
}
