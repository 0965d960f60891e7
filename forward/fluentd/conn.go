package fluentd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// server is one address of a Fluentd server: a configured Server, or one
// of the addresses its host name resolves to. Its health is shared with
// the other sinks sending to it; its counters are the sink's, updated by
// the sender and the watcher; its link and score are the sender's alone.
type server struct {
	Server
	addr string      // what is dialled: Server.Address, or an address its host resolves to
	tls  *tls.Config // nil unless Network is "tls"
	*health
	// events, bytes, acks and failures count what went to the server:
	// events delivered, bytes written, acknowledgements received and
	// failed attempts (to connect, authenticate, write or get an ack).
	events, bytes, acks, failures atomic.Uint64

	link  link
	score int // the smooth weighted round robin's running score
}

func (s *server) String() string {
	if s.addr == s.Address {
		return s.Server.String()
	}
	return s.Server.String() + " (" + s.addr + ")"
}

// link is the sender's connection to one server.
type link struct {
	conn  net.Conn
	r     *msgp.Reader // reads acknowledgements
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

// newServers returns the servers of cfg as configured, before any host
// name is resolved, with their health from hm.
func newServers(cfg Config, hm *healthMap) ([]*server, error) {
	servers := make([]*server, len(cfg.Servers))
	for i, srv := range cfg.Servers {
		servers[i] = &server{Server: srv, addr: srv.Address}
		switch srv.Network {
		case "tls":
			tc, err := clientTLS(cfg.TLS, hostOf(srv.Address))
			if err != nil {
				return nil, err
			}
			servers[i].tls = tc
		case "tcp", "unix":
		default:
			return nil, fmt.Errorf("fluentd: server %q: unknown network %q", srv.Address, srv.Network)
		}
	}
	for _, srv := range servers {
		srv.health = hm.acquire(healthKey(cfg, srv.Server, srv.addr))
	}
	return servers, nil
}

// list returns the servers as last resolved.
func (s *Sink) list() []*server { return *s.servers.Load() }

// dial connects to srv, TLS handshake and authentication included, within
// DialTimeout.
func (s *Sink) dial(ctx context.Context, srv *server) (net.Conn, *msgp.Reader, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	d := &net.Dialer{}
	var conn net.Conn
	var err error
	switch srv.Network {
	case "tls":
		td := &tls.Dialer{NetDialer: d, Config: srv.tls}
		conn, err = td.DialContext(ctx, "tcp", srv.addr)
	case "unix":
		conn, err = d.DialContext(ctx, "unix", srv.addr)
	default:
		conn, err = d.DialContext(ctx, "tcp", srv.addr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dial %q: %w", srv.String(), err)
	}
	r := msgp.NewReader(conn)
	if s.cfg.Auth.enabled() {
		deadline, _ := ctx.Deadline()
		if err := s.cfg.Auth.handshake(conn, r, deadline); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("handshake with %q: %w", srv.String(), err)
		}
	}
	return conn, r, nil
}

// connect opens srv's link.
func (s *Sink) connect(ctx context.Context, srv *server) error {
	conn, r, err := s.dial(ctx, srv)
	if err != nil {
		return err
	}
	srv.link = link{conn: conn, r: r, since: time.Now()}
	srv.link.stop = context.AfterFunc(ctx, func() { conn.Close() })
	s.linked = append(s.linked, srv)
	return nil
}

// disconnect closes srv's link, if open.
func (s *Sink) disconnect(srv *server) {
	l := &srv.link
	if l.conn == nil {
		return
	}
	l.stop()
	l.conn.Close()
	*l = link{}
	for i, o := range s.linked {
		if o == srv {
			s.linked = append(s.linked[:i], s.linked[i+1:]...)
			break
		}
	}
}

// disconnectAll closes every link; only the sender calls it.
func (s *Sink) disconnectAll() {
	for len(s.linked) > 0 {
		s.disconnect(s.linked[0])
	}
}

// markDown records a failure of srv, whose link it closes.
func (s *Sink) markDown(srv *server, err error) {
	s.disconnect(srv)
	s.noteFailure(srv, err)
}

// noteFailure counts a failure of srv and marks it down. The first sink
// to see it down logs it; a failed handshake, a configuration to fix
// rather than an outage, is an error every time (rate-limited).
func (s *Sink) noteFailure(srv *server, err error) {
	srv.failures.Add(1)
	wasDown := srv.down.Swap(true)
	switch {
	case errors.Is(err, ErrAuth) || errors.Is(err, errNoHelo) || errors.Is(err, errWantsAuth):
		s.log.Error("auth "+srv.String(), "Fluentd server down: authentication", "server", srv.String(), "error", err)
	case !wasDown:
		s.log.Warn("down "+srv.String(), "Fluentd server down", "server", srv.String(), "error", err)
	}
}

// markUp records that srv delivered or passed a probe.
func (s *Sink) markUp(srv *server) {
	srv.lastOK.Store(time.Now().UnixNano())
	if srv.down.Swap(false) {
		s.log.Info("up "+srv.String(), "Fluentd server up", "server", srv.String())
		s.wake.Signal()
	}
}

// rank orders servers for an attempt: healthy ones before standbys (with
// BalanceWeighted) before those known to be down.
func rank(srv *server) int {
	switch {
	case srv.down.Load():
		return 2
	case srv.Standby:
		return 1
	}
	return 0
}

// candidates returns the servers to try a batch on, in order: with
// BalanceWeighted the one the weights choose first; then the healthy
// ones, the standbys and those known to be down, each in the configured
// order (those down last, as they may be back).
func (s *Sink) candidates(list []*server) []*server {
	order := s.order[:0]
	var first *server
	if s.cfg.Balance == BalanceWeighted {
		first = pickWeighted(list)
		if first != nil {
			order = append(order, first)
		}
	}
	for r := range 3 {
		for _, srv := range list {
			if srv != first && rank(srv) == r {
				order = append(order, srv)
			}
		}
	}
	s.order = order
	return order
}

// pickWeighted chooses among the healthy servers of the best rank, in
// proportion to their weights, by smooth weighted round robin (as nginx
// does): the choices interleave rather than come in runs. Nil when every
// server is down.
func pickWeighted(list []*server) *server {
	best := 2
	for _, srv := range list {
		best = min(best, rank(srv))
	}
	if best == 2 {
		return nil
	}
	var pick *server
	total := 0
	for _, srv := range list {
		if rank(srv) != best {
			continue
		}
		srv.score += srv.Weight
		total += srv.Weight
		if pick == nil || srv.score > pick.score {
			pick = srv
		}
	}
	pick.score -= total
	return pick
}

// prune closes the links of servers no longer in list (their host name
// resolves elsewhere now).
func (s *Sink) prune(list []*server) {
	for i := 0; i < len(s.linked); {
		if srv := s.linked[i]; !slices.Contains(list, srv) {
			s.disconnect(srv) // removes it from s.linked
			continue
		}
		i++
	}
}

// deliver makes one attempt to deliver what b has not delivered yet: on
// each candidate server in turn, until one takes it or the batch was
// written (its memory given back, with a disk buffer) and failed.
func (s *Sink) deliver(ctx context.Context, b *batch) error {
	list := s.list()
	s.prune(list)
	s.wasUp = false
	var errs []error
	for i, srv := range s.candidates(list) {
		err := s.deliverTo(ctx, srv, b, b.attempts > 0 || i > 0)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil || b.buf == nil {
			break
		}
	}
	return errors.Join(errs...)
}

// deliverTo makes one attempt to deliver what b has not delivered yet to
// srv; again says whether its requests were sent before.
func (s *Sink) deliverTo(ctx context.Context, srv *server, b *batch, again bool) error {
	if !s.cfg.Auth.enabled() && srv.wantsAuth.Load() {
		err := fmt.Errorf("write to %q: %w", srv.String(), errWantsAuth)
		s.markDown(srv, err)
		return err
	}
	l := &srv.link
	if l.conn != nil {
		if s.cfg.ReconnectInterval > 0 && time.Since(l.since) > s.cfg.ReconnectInterval {
			s.disconnect(srv)
		} else if !s.cfg.RequestAck {
			// Without acknowledgements, a write on a connection the
			// server has closed would seem to succeed and be lost.
			switch peek(l.conn) {
			case peerClosed:
				s.disconnect(srv)
			case peerSent:
				if s.cfg.Auth.enabled() {
					s.disconnect(srv) // not a HELO: start again
					break
				}
				srv.wantsAuth.Store(true)
				err := fmt.Errorf("write to %q: %w", srv.String(), errWantsAuth)
				s.markDown(srv, err)
				return err
			}
		}
	}
	if l.conn == nil {
		if err := s.connect(ctx, srv); err != nil {
			s.markDown(srv, err)
			return err
		}
	}
	if s.cfg.Balance == BalanceFailover {
		s.use(srv)
	}
	name := srv.String()
	bufs := make(net.Buffers, 0, len(b.reqs))
	size := 0
	for i, req := range b.reqs {
		if !b.acked[i] {
			bufs = append(bufs, req)
			size += len(req)
		}
	}
	pending := len(bufs) // WriteTo consumes bufs
	if again {
		s.retries.Add(uint64(pending))
	}
	fail := func(err error) error {
		s.wasUp = s.wasUp || l.wasUp
		s.markDown(srv, err)
		return err
	}
	if err := setDeadline(l.conn.SetWriteDeadline, s.cfg.WriteTimeout); err != nil {
		return fail(fmt.Errorf("write to %q: %w", name, err))
	}
	if _, err := bufs.WriteTo(l.conn); err != nil {
		return fail(fmt.Errorf("write to %q: %w", name, err))
	}
	srv.bytes.Add(uint64(size))
	if s.out.OnDisk() {
		// Written: should the acknowledgement not come, the batch is
		// read from disk again, so its memory can go now.
		b.release(s.batches)
	}
	if !s.cfg.RequestAck {
		for i := range b.acked {
			if !b.acked[i] {
				b.acked[i] = true
				s.delivered(srv, b.counts[i])
			}
		}
		l.wasUp = true
		return nil
	}
	for range pending {
		if err := setDeadline(l.conn.SetReadDeadline, s.cfg.AckTimeout); err != nil {
			return fail(fmt.Errorf("read ack from %q: %w", name, err))
		}
		if t, err := l.r.NextType(); err == nil && t == msgp.ArrayType && !s.cfg.Auth.enabled() {
			// The only array a server sends is HELO.
			srv.wantsAuth.Store(true)
			return fail(fmt.Errorf("read ack from %q: %w", name, errWantsAuth))
		}
		var resp ackResponse
		if err := resp.DecodeMsg(l.r); err != nil {
			return fail(fmt.Errorf("read ack from %q: %w", name, err))
		}
		i := b.pendingChunk(resp.Ack)
		if i < 0 {
			return fail(fmt.Errorf("read ack from %q: unexpected ack %q", name, resp.Ack))
		}
		b.acked[i] = true
		srv.acks.Add(1)
		s.delivered(srv, b.counts[i])
		l.wasUp = true
	}
	return nil
}

// errWantsAuth is wrapped when a server sends HELO to a logferry that has
// no shared key.
var errWantsAuth = errors.New("the server asks for shared-key authentication (it sent HELO): set the plugin's " + SettingSharedKey)

// delivered counts n events delivered to srv.
func (s *Sink) delivered(srv *server, n int) {
	s.emitted.Add(uint64(n))
	srv.events.Add(uint64(n))
	s.markUp(srv)
}

// use makes srv the server in use with BalanceFailover: the link of the
// one used before closes, as only one is in use.
func (s *Sink) use(srv *server) {
	prev := s.current
	if prev == srv {
		return
	}
	s.current = srv
	if prev != nil {
		s.disconnect(prev)
	}
	if len(s.cfg.Servers) > 1 || len(s.list()) > 1 {
		s.log.Info("connect", "connected to Fluentd", "server", srv.String())
	}
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

// peer is what a non-blocking look at a connection finds.
type peer int

const (
	peerIdle   peer = iota // open, nothing to read
	peerClosed             // closed by the server, or broken
	peerSent               // the server sent something unasked
)

// peek looks at conn's socket without waiting: the server never sends
// anything unasked (but HELO, to a client that should authenticate), so
// end of file means it closed the connection (or died). TLS records, such
// as session tickets, may be waiting on a TLS connection: that is an
// open connection too.
func peek(conn net.Conn) peer {
	tc, isTLS := conn.(*tls.Conn)
	if isTLS {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return peerIdle
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return peerClosed
	}
	state := peerIdle
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0 && !isTLS:
			state = peerSent
		case n > 0 || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
		default:
			state = peerClosed
		}
		return true // never wait for the socket to become readable
	})
	if err != nil {
		return peerClosed
	}
	return state
}
