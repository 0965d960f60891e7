// Package fluentdtest provides a strict Fluentd Forward protocol receiver
// for tests, in the manner of net/http/httptest.
//
// A Server accepts the four carrier modes (Message, Forward, PackedForward,
// CompressedPackedForward), integer and EventTime times, the size, chunk
// and compressed options and heartbeats, answers chunks with acks, and
// records every deviation from the Forward Protocol Specification v1 it
// sees (wrong array lengths, a tag that is not a str, an EventTime that is
// not ext type 0 of 8 bytes, a size that does not match, a chunk that is
// not base64 of 128 bits, a compressed request that is not gzip, a record
// that is not a map of str keys, bytes after a request...). Unknown option
// keys are accepted, as the specification lets servers ignore them. The test
// fails when the Server is closed if any deviation was recorded and not
// taken with TakeViolations.
//
// It can be stopped and restarted on the same address, made to withhold
// acks or close connections (SetHook, CutAfter) and serve TLS (Config.TLS,
// with a CA made by NewCA). With Config.Security it asks every connection
// for the shared-key handshake (HELO, PING, PONG) as Fluentd's <security>
// does, and refuses a wrong key, a wrong user or password, and a
// connection that sends anything but a PING first.
package fluentdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Action is what a Server does with a request, as decided by a hook.
type Action int

const (
	// Accept records the request and acknowledges it if it has a chunk.
	Accept Action = iota
	// NoAck records the request but does not acknowledge it.
	NoAck
	// CloseNoAck records the request and closes the connection without
	// acknowledging it, like a server that dies after storing it.
	CloseNoAck
	// Discard closes the connection without recording or acknowledging
	// the request, like a server that dies before storing it.
	Discard
)

// Config configures a Server. The zero value listens on TCP 127.0.0.1 at a
// free port.
type Config struct {
	// Network is "tcp" (default) or "unix".
	Network string
	// Addr is the address to listen on: default "127.0.0.1:0" for tcp; a
	// socket path (say in t.TempDir) for unix.
	Addr string
	// TLS, when set, makes the Server speak TLS.
	TLS *tls.Config
	// Security, when set, makes the Server authenticate every connection.
	Security *Security
}

// Security is a Server's <security> section.
type Security struct {
	// SharedKey is the key clients must prove they know.
	SharedKey string
	// Hostname is the Server's name in PONG; default "fluentdtest".
	Hostname string
	// Users, when not empty, are the user names and passwords one of
	// which a client must give.
	Users map[string]string
	// FluentBit makes the handshake Fluent Bit's in_forward's: the nonce
	// and the user salt are str (of random bytes), the salt is sent even
	// without users, HELO has no keepalive, and a wrong shared key closes
	// the connection without a PONG.
	FluentBit bool
}

// Server is a Forward protocol receiver. Its methods are safe for
// concurrent use.
type Server struct {
	tb  testing.TB
	cfg Config

	// cut, when positive, is how many more bytes the Server reads before
	// it closes the connection reading them.
	cut atomic.Int64

	// mu guards every field below.
	mu         sync.Mutex
	addr       string // resolved listen address, kept across restarts
	ln         net.Listener
	conns      map[net.Conn]struct{}
	connSeq    int
	requests   []*Request
	violations []error
	chunks     map[string]int // times each chunk was received
	heartbeats int
	truncated  int
	handshakes int      // failed TLS handshakes
	authOK     int      // connections authenticated
	authFailed []string // why connections failed authentication
	hook       func(*Request) Action
	changed    chan struct{} // closed and replaced when requests change
	closed     bool

	wg sync.WaitGroup // the accept loop and connection handlers
}

// NewServer starts a Server and registers its Close with tb.Cleanup.
func NewServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.Network == "" {
		cfg.Network = "tcp"
	}
	if cfg.Addr == "" {
		if cfg.Network != "tcp" {
			tb.Fatalf("fluentdtest: a %s server needs Config.Addr", cfg.Network)
		}
		cfg.Addr = "127.0.0.1:0"
	}
	s := &Server{
		tb:      tb,
		cfg:     cfg,
		addr:    cfg.Addr,
		conns:   map[net.Conn]struct{}{},
		chunks:  map[string]int{},
		changed: make(chan struct{}),
	}
	if err := s.listen(); err != nil {
		tb.Fatalf("fluentdtest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Addr returns the listen address: host:port, or the socket path.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL returns the address as a fluentd-address value: tcp://host:port,
// tls://host:port or unix:///path.
func (s *Server) URL() string {
	addr := s.Addr()
	switch {
	case s.cfg.Network == "unix":
		return "unix://" + addr
	case s.cfg.TLS != nil:
		return "tls://" + addr
	}
	return "tcp://" + addr
}

func (s *Server) listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	if s.cfg.Network == "unix" {
		os.Remove(s.addr)
	}
	ln, err := net.Listen(s.cfg.Network, s.addr)
	if err != nil {
		return fmt.Errorf("listen on %s %s: %w", s.cfg.Network, s.addr, err)
	}
	s.addr = ln.Addr().String()
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

// Start listens again, on the same address, after Stop.
func (s *Server) Start() {
	s.tb.Helper()
	var err error
	for range 50 { // the port may linger briefly
		if err = s.listen(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.tb.Fatalf("fluentdtest: restart: %v", err)
}

// Stop closes the listener and every connection, as a crashed server
// would, and waits for them to end. What was received is kept.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Close stops the Server and fails the test if deviations from the
// specification were recorded. It is idempotent.
func (s *Server) Close() {
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for _, err := range s.violations {
		s.tb.Errorf("fluentdtest: %s: protocol violation: %v", s.addr, err)
	}
}

// SetHook makes the Server ask hook what to do with each request it
// decodes from now on; nil restores Accept.
func (s *Server) SetHook(hook func(*Request) Action) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = hook
}

// CutAfter makes the Server close the connection it is reading once it has
// read n more bytes, such as in the middle of a request.
func (s *Server) CutAfter(n int64) { s.cut.Store(n) }

// Requests returns the requests received so far.
func (s *Server) Requests() []*Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Request(nil), s.requests...)
}

// Events returns the events of every request received so far, in order,
// duplicates included.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var evs []Event
	for _, r := range s.requests {
		evs = append(evs, r.Events...)
	}
	return evs
}

// EventCount returns how many events were received so far, duplicates
// included, without copying them.
func (s *Server) EventCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countLocked()
}

// countLocked counts the events received; s.mu must be held.
func (s *Server) countLocked() int {
	n := 0
	for _, r := range s.requests {
		n += len(r.Events)
	}
	return n
}

// Duplicates returns how many requests repeated a chunk already received.
func (s *Server) Duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, times := range s.chunks {
		n += times - 1
	}
	return n
}

// Heartbeats returns how many msgpack nil heartbeats were received.
func (s *Server) Heartbeats() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heartbeats
}

// Truncated returns how many connections ended in the middle of a request
// (not counting those cut by CutAfter or Stop).
func (s *Server) Truncated() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.truncated
}

// FailedHandshakes returns how many TLS handshakes failed.
func (s *Server) FailedHandshakes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handshakes
}

// Authenticated returns how many connections passed the shared-key
// handshake.
func (s *Server) Authenticated() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authOK
}

// AuthFailures returns why connections failed the shared-key handshake,
// as the Server told them in PONG.
func (s *Server) AuthFailures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.authFailed...)
}

// TakeViolations returns the deviations recorded so far and forgets them,
// for tests that send invalid requests on purpose.
func (s *Server) TakeViolations() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.violations
	s.violations = nil
	return v
}

// WaitEvents waits until at least n events were received or timeout
// passes, and returns the events received.
func (s *Server) WaitEvents(n int, timeout time.Duration) []Event {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		count := s.countLocked()
		changed := s.changed
		s.mu.Unlock()
		if count >= n {
			return s.Events()
		}
		select {
		case <-changed:
		case <-deadline.C:
			return s.Events()
		}
	}
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // closed by Stop
		}
		s.mu.Lock()
		if s.ln != ln {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.connSeq++
		seq := s.connSeq
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(conn, seq)
	}
}

// errCut is returned by cutReader when CutAfter strikes.
var errCut = errors.New("cut by CutAfter")

// cutReader reads from a connection and closes it when CutAfter's count
// runs out.
type cutReader struct {
	s    *Server
	conn net.Conn
}

func (r cutReader) Read(p []byte) (int, error) {
	left := r.s.cut.Load()
	if left > 0 && int64(len(p)) > left {
		p = p[:left]
	}
	n, err := r.conn.Read(p)
	if left > 0 && n > 0 {
		if r.s.cut.Add(-int64(n)) <= 0 {
			r.s.cut.Store(0)
			r.conn.Close()
			return n, errCut
		}
	}
	return n, err
}

func (s *Server) serve(conn net.Conn, seq int) {
	defer s.wg.Done()
	defer func() {
		conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
	}()
	if tc, ok := conn.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.mu.Lock()
			s.handshakes++
			s.mu.Unlock()
			return
		}
	}
	r := msgp.NewReader(cutReader{s, conn})
	if s.cfg.Security != nil && !s.authenticate(conn, r) {
		return
	}
	for {
		var raw msgp.Raw
		err := raw.DecodeMsg(r)
		if err != nil {
			s.readError(err)
			return
		}
		if len(raw) == 0 {
			s.mu.Lock()
			s.heartbeats++
			s.mu.Unlock()
			continue
		}
		if !s.handle(conn, seq, raw) {
			return
		}
	}
}

// readError classifies an error that ended a connection.
func (s *Server) readError(err error) {
	var netErr net.Error
	switch {
	case errors.Is(err, io.EOF): // the client closed between requests
	case errors.Is(err, errCut), errors.Is(err, net.ErrClosed):
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.mu.Lock()
		s.truncated++
		s.mu.Unlock()
	case errors.As(err, &netErr):
		// Reset by the client: not a protocol matter.
	default:
		s.violate(fmt.Errorf("malformed msgpack: %w", err))
	}
}

func (s *Server) violate(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, errs...)
}

// handle records one request and answers it; false closes the connection.
func (s *Server) handle(conn net.Conn, seq int, raw []byte) bool {
	req, errs := Parse(raw)
	if len(errs) > 0 {
		s.violate(errs...)
	}
	if req == nil {
		return false
	}
	req.Conn = seq
	req.At = time.Now()
	s.mu.Lock()
	hook := s.hook
	s.mu.Unlock()
	action := Accept
	if hook != nil {
		action = hook(req)
	}
	if action == Discard {
		return false
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	if req.Chunk != "" {
		s.chunks[req.Chunk]++
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	switch {
	case action == CloseNoAck:
		return false
	case action == NoAck || req.Chunk == "":
		return true
	}
	ack := msgp.AppendMapHeader(nil, 1)
	ack = msgp.AppendString(ack, "ack")
	ack = msgp.AppendString(ack, req.Chunk)
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := conn.Write(ack)
	return err == nil
}
