package driver

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// poller tells streams when their FIFOs have data, for all streams at once:
// one epoll instance in which FIFOs are registered one-shot, and one
// goroutine that waits on it. A FIFO therefore wakes its stream once per
// wait however many frames dockerd writes meanwhile, where Go's own network
// poller (edge-triggered) would wake for every write, that is for every
// log line.
type poller struct {
	epfd int
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

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll: %w", err)
	}
	quit, err := eventfd()
	if err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	p := &poller{epfd: epfd, quit: quit, done: make(chan struct{}), ready: make(map[int32]chan struct{})}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(quit)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, quit, &ev); err != nil {
		syscall.Close(quit)
		syscall.Close(epfd)
		return nil, fmt.Errorf("watch eventfd: %w", err)
	}
	go p.loop()
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
func (p *poller) loop() {
	defer close(p.done)
	var events [pollerEvents]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(p.epfd, events[:], -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			// Only a programming error (a closed or invalid epfd) gets
			// here; the streams then stop being woken, so make it loud.
			panic(fmt.Sprintf("epoll_wait: %v", err))
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if int(ev.Fd) == p.quit {
				p.mu.Unlock()
				return
			}
			if ch := p.ready[ev.Fd]; ch != nil {
				select {
				case ch <- struct{}{}:
				default: // already signalled
				}
			}
		}
		p.mu.Unlock()
	}
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
	return errors.Join(syscall.Close(p.quit), syscall.Close(p.epfd))
}
