package driver

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/internal/ratelog"
	"github.com/logferry/logferry/rotate"
)

// errorLogInterval is the least time between two logs of the same error of
// a stream.
const errorLogInterval = 10 * time.Second

// destFile names the container's files in the metrics, beside the names
// of the destinations (forward.Destination.Name).
const destFile = "file"

// destination is a running sink of a container, one that events are
// forwarded to. Send never blocks on the network, and copies what it
// keeps of ev: the caller reuses it. Flush, called whenever the stream
// has decoded all it read (before a read that may wait), writes what Send
// took so that it survives a crash of the process (a disk buffer's
// write(2)) and frees the memory it waited in; it never waits for the
// network.
type destination struct {
	name string
	forward.Sink
}

// containerFiles is the rotating log of one container, shared by the streams
// that dockerd opens for it (a running container, and the short-lived ones it
// opens to read a stopped container's logs).
type containerFiles struct {
	id   string
	path string
	w    *rotate.Writer
	// refs counts the streams using w; guarded by Driver.mu.
	refs int

	// mu serialises writers of w.
	mu sync.Mutex
}

// stream carries one FIFO's entries into its container's files. Its
// goroutine is started by Driver.StartLogging and stopped and waited for by
// Driver.StopLogging or Driver.Close.
type stream struct {
	path  string
	info  *Info
	fifo  *fifo
	files *containerFiles
	attrs []byte
	sinks []destination
	log   *slog.Logger
	done  chan struct{}
	// keepState is set when the plugin stops while the container runs.
	keepState atomic.Bool

	dec *Decoder
	enc rotate.Encoder
	// ev and partial are what forward hands to the sinks, and rec what
	// goes to the file, reused and filled in place field by field (a
	// composite literal is built aside and copied, a slow copy per entry).
	ev      forward.Event
	partial forward.Partial
	rec     rotate.Entry
	// line is a scratch buffer reused for every entry.
	line []byte

	// Counters, read by Stats: entries read, frames skipped, failed
	// writes, and records of this stream that are not in the file
	// (rotate.Writer.Lost). An entry is added to entries before it can
	// count in lost.
	entries, skipped, writeErrors, lost atomic.Uint64
	// unpublished counts the entries written since the last flush and
	// not yet added to entries: one atomic add a read, not one an entry.
	unpublished uint64

	errLog *ratelog.Log
}

// run decodes frames until the FIFO is drained after stop.
func (s *stream) run() {
	var e LogEntry
	dirty := false
	for {
		if s.dec.Buffered() == 0 {
			if dirty {
				// Nothing more is buffered: flush before a read that may wait.
				s.flush()
				dirty = false
			}
			// An idle stream holds no read buffer.
			s.dec.Release()
			if err := s.fifo.wait(); err != nil {
				s.log.Error("read fifo", "error", err)
				return
			}
		}
		err := s.dec.Decode(&e)
		switch {
		case err == nil:
		case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrCorruptFrame):
			s.errLog.Error("frame", "skipped a log frame", "error", err, "skipped", s.skipped.Add(1))
			continue
		case errors.Is(err, io.EOF),
			errors.Is(err, io.ErrUnexpectedEOF) && s.keepState.Load():
			// A frame cut short by a plugin stop is kept for the next
			// process (Pending).
			s.flush()
			return
		default:
			s.flush()
			s.log.Error("read fifo", "error", err)
			return
		}
		s.write(&e)
		dirty = true
	}
}

// write encodes one entry as json-file does: a whole line, or the last
// piece of a split one, ends with "\n"; other pieces do not.
func (s *stream) write(e *LogEntry) {
	complete := !e.Partial
	if e.HasPartialMeta {
		complete = e.PartialLast
	}
	line := e.Line
	if complete {
		s.line = append(append(s.line[:0], e.Line...), '\n')
		line = s.line
	}
	s.rec.Line, s.rec.Stream, s.rec.Time = line, e.Source, time.Unix(0, e.TimeNano)
	s.unpublished++
	s.forward(e, s.rec.Time)
	if err := s.toFiles(&s.rec); err != nil {
		s.errLog.Error("write", "write log record", "error", err, "write_errors", s.writeErrors.Add(1))
	}
}

// toFiles writes rec to the files, or flushes them if rec is nil, and
// counts the records that the Writer lost doing so.
func (s *stream) toFiles(rec *rotate.Entry) error {
	s.files.mu.Lock()
	lost := s.files.w.Lost()
	var err error
	if rec != nil {
		err = s.files.w.WriteEntry(&s.enc, rec, s.attrs)
	} else {
		err = s.files.w.Flush()
	}
	lost = s.files.w.Lost() - lost
	s.files.mu.Unlock()
	s.countLost(lost)
	return err
}

// forward hands e, read at t, to the destinations, before the file write
// so that a slow disk does not delay them.
func (s *stream) forward(e *LogEntry, t time.Time) {
	if len(s.sinks) == 0 {
		return
	}
	// Sinks copy what they keep: one Event per stream serves every entry,
	// where a local one would escape to the heap through Send. Every field
	// is set (see rec).
	s.ev.Time, s.ev.Source, s.ev.Line, s.ev.Partial = t, e.Source, e.Line, nil
	if e.HasPartialMeta {
		s.partial = forward.Partial{ID: string(e.PartialID), Ordinal: int(e.PartialOrdinal), Last: e.PartialLast}
		s.ev.Partial = &s.partial
	}
	for _, sk := range s.sinks {
		sk.Send(&s.ev)
	}
}

// flush writes what the destinations and the file buffer hold, and
// publishes the entries written since the last flush.
func (s *stream) flush() {
	for _, sk := range s.sinks {
		sk.Flush()
	}
	err := s.toFiles(nil)
	s.publish()
	if err != nil {
		s.errLog.Error("write", "flush log records", "error", err, "write_errors", s.writeErrors.Add(1))
	}
}

// publish adds the entries written since it was last called to entries.
func (s *stream) publish() {
	if s.unpublished > 0 {
		s.entries.Add(s.unpublished)
		s.unpublished = 0
	}
}

// countLost adds n records to lost, after publishing the entries they
// belong to.
func (s *stream) countLost(n uint64) {
	if n > 0 {
		s.publish()
		s.lost.Add(n)
	}
}
