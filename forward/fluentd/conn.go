package fluentd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// server is one configured Fluentd server and what is known of its health.
type server struct {
	Server
	tls *tls.Config // nil unless Network is "tls"
	// down is set when connecting to or sending to the server failed, and
	// cleared when a connection or a health check succeeds.
	down atomic.Bool
}

// link is the sender's connection; only the sender goroutine touches it.
type link struct {
	conn  net.Conn
	r     *msgp.Reader // reads acknowledgements
	idx   int          // index of the server in Sink.servers
	since time.Time    // when it was established
	stop  func() bool  // unregisters the close on cancellation
	// wasUp is set once the connection delivered something, so that its
	// failure is retried at once.
	wasUp bool
}

// hostOf returns the host of a host:port address.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// dial connects to server i, TLS handshake included, within DialTimeout.
func (s *Sink) dial(ctx context.Context, i int) (net.Conn, error) {
	srv := s.servers[i]
	d := &net.Dialer{Timeout: s.cfg.DialTimeout}
	var conn net.Conn
	var err error
	switch srv.Network {
	case "tls":
		td := &tls.Dialer{NetDialer: d, Config: srv.tls}
		conn, err = td.DialContext(ctx, "tcp", srv.Address)
	case "unix":
		conn, err = d.DialContext(ctx, "unix", srv.Address)
	default:
		conn, err = d.DialContext(ctx, "tcp", srv.Address)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %q: %w", srv.String(), err)
	}
	return conn, nil
}

// connect connects l to the first server that accepts, trying those not
// known to be down first, each in the configured order.
func (s *Sink) connect(ctx context.Context, l *link) error {
	order := make([]int, 0, len(s.servers))
	for i, srv := range s.servers {
		if !srv.down.Load() {
			order = append(order, i)
		}
	}
	for i, srv := range s.servers {
		if srv.down.Load() {
			order = append(order, i)
		}
	}
	var errs []error
	for _, i := range order {
		conn, err := s.dial(ctx, i)
		if err != nil {
			s.servers[i].down.Store(true)
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		s.servers[i].down.Store(false)
		*l = link{conn: conn, r: msgp.NewReader(conn), idx: i, since: time.Now()}
		l.stop = context.AfterFunc(ctx, func() { conn.Close() })
		if prev := s.active.Swap(int32(i)); prev != int32(i) && len(s.servers) > 1 {
			s.log.Info("connect", "connected to Fluentd", "server", s.servers[i].String())
		}
		return nil
	}
	return errors.Join(errs...)
}

// disconnect closes l's connection, if any.
func (s *Sink) disconnect(l *link) {
	if l.conn == nil {
		return
	}
	l.stop()
	l.conn.Close()
	l.conn, l.r = nil, nil
	s.active.Store(-1)
}

// fail closes l after an error on it and marks its server down.
func (s *Sink) fail(l *link) {
	if l.conn != nil {
		s.servers[l.idx].down.Store(true)
	}
	s.disconnect(l)
}

// betterThan reports whether a server preferred to server i is up.
func (s *Sink) betterThan(i int) bool {
	for _, srv := range s.servers[:i] {
		if !srv.down.Load() {
			return true
		}
	}
	return false
}

// deliver makes one attempt to deliver what b has not delivered yet.
func (s *Sink) deliver(ctx context.Context, l *link, b *batch) error {
	if l.conn != nil {
		switch {
		case s.betterThan(l.idx):
			s.disconnect(l) // fail back to the preferred server
		case s.cfg.ReconnectInterval > 0 && time.Since(l.since) > s.cfg.ReconnectInterval:
			s.disconnect(l)
		case !s.cfg.RequestAck && !peerOpen(l.conn):
			// Without acknowledgements, a write on a connection the
			// server has closed would seem to succeed and be lost.
			s.disconnect(l)
		}
	}
	if l.conn == nil {
		if err := s.connect(ctx, l); err != nil {
			return err
		}
	}
	srv := s.servers[l.idx].String()
	bufs := make(net.Buffers, 0, len(b.reqs))
	for i, req := range b.reqs {
		if !b.acked[i] {
			bufs = append(bufs, req)
		}
	}
	pending := len(bufs) // WriteTo consumes bufs
	if b.attempts > 0 {
		s.retries.Add(uint64(pending))
	}
	if err := setDeadline(l.conn.SetWriteDeadline, s.cfg.WriteTimeout); err != nil {
		s.fail(l)
		return fmt.Errorf("write to %q: %w", srv, err)
	}
	if _, err := bufs.WriteTo(l.conn); err != nil {
		s.fail(l)
		return fmt.Errorf("write to %q: %w", srv, err)
	}
	if s.out.OnDisk() {
		// Written: should the acknowledgement not come, the batch is
		// read from disk again, so its memory can go now.
		b.release(s.batches)
	}
	if !s.cfg.RequestAck {
		for i := range b.acked {
			if !b.acked[i] {
				b.acked[i] = true
				s.emitted.Add(uint64(b.counts[i]))
			}
		}
		l.wasUp = true
		return nil
	}
	for range pending {
		if err := setDeadline(l.conn.SetReadDeadline, s.cfg.AckTimeout); err != nil {
			s.fail(l)
			return fmt.Errorf("read ack from %q: %w", srv, err)
		}
		var resp ackResponse
		if err := resp.DecodeMsg(l.r); err != nil {
			s.fail(l)
			return fmt.Errorf("read ack from %q: %w", srv, err)
		}
		i := b.pendingChunk(resp.Ack)
		if i < 0 {
			s.fail(l)
			return fmt.Errorf("read ack from %q: unexpected ack %q", srv, resp.Ack)
		}
		b.acked[i] = true
		s.emitted.Add(uint64(b.counts[i]))
		l.wasUp = true
	}
	return nil
}

// pendingChunk returns the index of the unacknowledged request with chunk
// ID id, or -1.
func (b *batch) pendingChunk(id string) int {
	for i, c := range b.chunks {
		if c == id && !b.acked[i] {
			return i
		}
	}
	return -1
}

// setDeadline applies a timeout (negative: none) through set.
func setDeadline(set func(time.Time) error, timeout time.Duration) error {
	if timeout < 0 {
		return set(time.Time{})
	}
	return set(time.Now().Add(timeout))
}

// peerOpen reports whether the server has not closed conn, by peeking at
// the socket without waiting: the server never sends anything unasked, so
// end of file means it closed the connection (or died). TLS records, such
// as session tickets, may be waiting: that is an open connection too.
func peerOpen(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := true
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = n > 0 || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)
		return true // never wait for the socket to become readable
	})
	return err == nil && open
}

// healthCheck probes, every HealthCheckInterval, the servers known to be
// down that are preferred to the one in use (all of them when none is), and
// wakes the sender when one accepts connections again.
func (s *Sink) healthCheck(ctx context.Context) {
	t := time.NewTicker(s.cfg.HealthCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		limit := len(s.servers)
		if active := int(s.active.Load()); active >= 0 {
			limit = active
		}
		for i := range limit {
			if !s.servers[i].down.Load() {
				continue
			}
			conn, err := s.dial(ctx, i)
			if err != nil {
				continue
			}
			conn.Close()
			s.servers[i].down.Store(false)
			s.wake.Signal()
			break
		}
	}
}
