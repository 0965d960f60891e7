//go:build bench

package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/tinylib/msgp/msgp"
)

// forwardReceiver is a Fluentd Forward protocol server on 127.0.0.1 that
// counts events and decodes as little as it can: it skips tags, times and
// records without decoding them, takes a PackedForward request's event
// count from its "size" option when there is one (counting the entries of
// its bin otherwise, gunzipping it if need be), and answers "chunk" options
// with acks. It takes all four modes: Message, Forward, PackedForward and
// CompressedPackedForward. A request it cannot parse is counted as an
// error and closes its connection.
//
// Its goroutines are started by startForwardReceiver and stopped and waited
// for by close.
type forwardReceiver struct {
	ln     net.Listener
	events atomic.Int64
	errs   atomic.Int64
	wg     sync.WaitGroup

	// mu guards conns and closed.
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	// lastErr is the last protocol error, for the report; guarded by mu.
	lastErr error
}

func startForwardReceiver() (*forwardReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fluentd receiver: %w", err)
	}
	r := &forwardReceiver{ln: ln, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.accept()
	}()
	return r, nil
}

// addr is host:port, as fluentd-address takes it.
func (r *forwardReceiver) addr() string { return r.ln.Addr().String() }

// count returns the events received so far.
func (r *forwardReceiver) count() int64 { return r.events.Load() }

// failures returns how many requests could not be parsed, and the last
// error.
func (r *forwardReceiver) failures() (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs.Load(), r.lastErr
}

// close stops accepting, closes the connections and waits for their
// goroutines.
func (r *forwardReceiver) close() error {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	err := r.ln.Close()
	r.wg.Wait()
	return err
}

func (r *forwardReceiver) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.conns[c] = struct{}{}
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serve(c)
			r.mu.Lock()
			delete(r.conns, c)
			r.mu.Unlock()
			c.Close()
		}()
	}
}

// serve reads requests until the connection ends.
func (r *forwardReceiver) serve(c net.Conn) {
	p := newForwardParser(c)
	w := bufio.NewWriter(c)
	for {
		n, chunk, err := p.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.mu.Lock()
				r.errs.Add(1)
				r.lastErr = err
				r.mu.Unlock()
			}
			return
		}
		r.events.Add(int64(n))
		if chunk != nil {
			b := msgp.AppendMapHeader(p.ack[:0], 1)
			b = msgp.AppendString(b, "ack")
			b = msgp.AppendStringFromBytes(b, chunk)
			p.ack = b
			if _, err := w.Write(b); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// forwardParser reads Forward protocol requests from one connection,
// reusing its buffers.
type forwardParser struct {
	r     *msgp.Reader
	bin   []byte // a PackedForward request's entries
	chunk []byte // the current request's chunk option, nil for none
	buf   []byte // chunk's storage
	key   []byte
	val   []byte
	ack   []byte
	plain bytes.Buffer
	gz    *gzip.Reader
}

func newForwardParser(rd io.Reader) *forwardParser {
	r := msgp.NewReaderSize(rd, 256<<10)
	// A batch is at most a few MiB; refuse absurd sizes rather than
	// allocate them.
	r.SetMaxElements(64 << 20)
	return &forwardParser{r: r}
}

// next reads one request and returns its number of events and its chunk
// option (nil for none; valid until the next call). io.EOF means the
// connection ended between requests.
func (p *forwardParser) next() (events int, chunk []byte, err error) {
	n, err := p.r.ReadArrayHeader()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		return 0, nil, fmt.Errorf("request: %w", err)
	}
	if n < 2 || n > 4 {
		return 0, nil, fmt.Errorf("request: array of %d elements", n)
	}
	if err := p.r.Skip(); err != nil { // tag
		return 0, nil, fmt.Errorf("tag: %w", err)
	}
	t, err := p.r.NextType()
	if err != nil {
		return 0, nil, fmt.Errorf("request: %w", err)
	}
	var packed bool
	left := n - 2
	switch t {
	case msgp.ArrayType: // Forward: [tag, [[time, record], ...], option?]
		m, err := p.r.ReadArrayHeader()
		if err != nil {
			return 0, nil, fmt.Errorf("entries: %w", err)
		}
		for range m {
			if err := p.r.Skip(); err != nil {
				return 0, nil, fmt.Errorf("entry: %w", err)
			}
		}
		events = int(m)
	case msgp.BinType, msgp.StrType: // (Compressed)PackedForward
		if t == msgp.BinType {
			p.bin, err = p.r.ReadBytes(p.bin[:0])
		} else {
			p.bin, err = p.r.ReadStringAsBytes(p.bin[:0])
		}
		if err != nil {
			return 0, nil, fmt.Errorf("entries: %w", err)
		}
		packed, events = true, -1
	default: // Message: [tag, time, record, option?]
		if n < 3 {
			return 0, nil, fmt.Errorf("message: array of %d elements", n)
		}
		if err := p.r.Skip(); err != nil { // time
			return 0, nil, fmt.Errorf("time: %w", err)
		}
		if err := p.r.Skip(); err != nil { // record
			return 0, nil, fmt.Errorf("record: %w", err)
		}
		left--
		events = 1
	}
	var compressed bool
	if left > 1 {
		return 0, nil, fmt.Errorf("request: array of %d elements", n)
	}
	if left == 1 {
		size, gz, err := p.option()
		if err != nil {
			return 0, nil, err
		}
		compressed = gz
		if packed && size >= 0 {
			events = size
		}
		chunk = p.chunk
	}
	if events < 0 {
		if events, err = p.countPacked(compressed); err != nil {
			return 0, nil, err
		}
	}
	return events, chunk, nil
}

// option reads the option map: the size (-1 without one), whether the
// entries are gzipped, and the chunk into p.chunk (nil without one).
func (p *forwardParser) option() (size int, gz bool, err error) {
	size = -1
	p.chunk = nil
	m, err := p.r.ReadMapHeader()
	if err != nil {
		return 0, false, fmt.Errorf("option: %w", err)
	}
	for range m {
		if p.key, err = p.r.ReadStringAsBytes(p.key[:0]); err != nil {
			return 0, false, fmt.Errorf("option key: %w", err)
		}
		switch string(p.key) {
		case "size":
			size, err = p.r.ReadInt()
		case "chunk":
			if p.buf, err = p.r.ReadStringAsBytes(p.buf[:0]); err == nil {
				p.chunk = p.buf
			}
		case "compressed":
			if p.val, err = p.r.ReadStringAsBytes(p.val[:0]); err == nil {
				gz = string(p.val) == "gzip"
			}
		default:
			err = p.r.Skip()
		}
		if err != nil {
			return 0, false, fmt.Errorf("option %q: %w", p.key, err)
		}
	}
	return size, gz, nil
}

// countPacked counts the entries in p.bin, gunzipping them first if need be.
func (p *forwardParser) countPacked(compressed bool) (int, error) {
	b := p.bin
	if compressed {
		var err error
		if p.gz == nil {
			p.gz, err = gzip.NewReader(bytes.NewReader(b))
		} else {
			err = p.gz.Reset(bytes.NewReader(b))
		}
		if err != nil {
			return 0, fmt.Errorf("compressed entries: %w", err)
		}
		p.plain.Reset()
		if _, err := p.plain.ReadFrom(p.gz); err != nil {
			return 0, fmt.Errorf("compressed entries: %w", err)
		}
		b = p.plain.Bytes()
	}
	n := 0
	for len(b) > 0 {
		var err error
		if b, err = msgp.Skip(b); err != nil {
			return 0, fmt.Errorf("packed entry %d: %w", n, err)
		}
		n++
	}
	return n, nil
}
