package s3

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/document"
	"github.com/logferry/logferry/forward/outbox"
	"github.com/logferry/logferry/internal/ratelog"
)

// ErrClosed is returned by Close after the first call.
var ErrClosed = outbox.ErrClosed

// readEvents is how many events the sender reads at a time while it
// builds an object.
const readEvents = 256

// store writes objects: Amazon S3 or another S3 store, or a fake in tests.
type store interface {
	// put writes body under key, whole or not at all, replacing an object
	// of the same key.
	put(ctx context.Context, key string, body []byte) error
	// close lets go of idle connections.
	close()
}

// Stats are a Sink's counters since New.
type Stats struct {
	// Emitted counts lines in objects written.
	Emitted uint64
	// Objects counts objects written.
	Objects uint64
	// Retries counts attempts to write an object again after a failure.
	Retries uint64
	// Stats are what waits in the buffer and what was lost.
	outbox.Stats
}

// Sink archives one container's lines to a bucket as gzip-compressed
// NDJSON objects of the documents Elasticsearch gets. Send never blocks:
// lines wait in the buffer (on disk, or in memory) until an object is cut,
// which happens at a size, at a time after its first line, or at Close;
// see run for why the cut is the same when a disk buffer is replayed.
type Sink struct {
	cfg       Config
	key       *keyTemplate
	container forward.Container
	log       *ratelog.Log
	out       *outbox.Outbox
	store     store
	backoff   outbox.Backoff
	// wake ends a retry wait early when Close sets its deadline.
	wake outbox.Wake

	emitted, objects, retries atomic.Uint64
}

// New returns a sink for container c that has started its sender. It
// never touches the network: objects are written in the background.
func New(cfg Config, c forward.Container, log *slog.Logger) (*Sink, error) {
	cfg = cfg.withDefaults()
	st, err := newMinio(cfg)
	if err != nil {
		return nil, err
	}
	s, err := newSink(cfg, c, log, st)
	if err != nil {
		st.close()
		return nil, err
	}
	return s, nil
}

// newSink returns a started sink writing to st.
func newSink(cfg Config, c forward.Container, log *slog.Logger, st store) (*Sink, error) {
	cfg = cfg.withDefaults()
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("s3 sink: no %s", KeyBucket)
	}
	key, err := parseKeyTemplate(cfg.Key)
	if err != nil {
		return nil, forward.OptionError(KeyKey, cfg.Key, err.Error())
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("container", c.ShortID(), "destination", Name)
	s := &Sink{
		cfg:       cfg,
		key:       key,
		container: c,
		log:       ratelog.New(log, 30*time.Second),
		store:     st,
		backoff:   outbox.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax, Jitter: true},
		wake:      outbox.NewWake(),
	}
	s.out = outbox.Open(outbox.Config{
		Name: Name, Dir: cfg.BufferDir, Buffer: cfg.Buffer,
		MemEvents: cfg.QueueEvents, MemBytes: cfg.QueueBytes,
		PartialMerge: cfg.PartialMerge, Merge: cfg.Merge,
		// The number of the first line among those of its nanosecond is
		// part of the object's key: it must not change on a replay.
		Numbered: true,
	}, log)
	s.out.Start(s.run, s.wake.Signal)
	return s, nil
}

// Send queues a copy of ev; see outbox.Outbox.Send.
func (s *Sink) Send(ev *forward.Event) { s.out.Send(ev) }

// Flush makes the lines Sent so far survive a crash; see
// outbox.Outbox.Flush.
func (s *Sink) Flush() { s.out.Flush() }

// Close writes what waits as objects until ctx ends, then stops; see
// outbox.Outbox.Close for what is left. Later calls return ErrClosed.
func (s *Sink) Close(ctx context.Context) error {
	err := s.out.Close(ctx)
	s.store.close()
	return err
}

// Stats returns the sink's counters.
func (s *Sink) Stats() Stats {
	return Stats{Emitted: s.emitted.Load(), Objects: s.objects.Load(), Retries: s.retries.Load(), Stats: s.out.Stats()}
}

// Counters returns the sink's Stats in the shape of the plugin's
// monitoring.
func (s *Sink) Counters() forward.Counters {
	st := s.Stats()
	return st.Counters(st.Emitted, st.Retries)
}

// object is an object being built or written: its key, its compressed
// body (from bodies, nil when none), and the buffer tokens of its lines.
type object struct {
	key      string
	body     *bytes.Buffer
	lines    int
	from, to uint64
}

// reset forgets the object and gives its body back.
func (o *object) reset() {
	if o.body != nil {
		o.body.Reset()
		bodies.Put(o.body)
	}
	*o = object{}
}

// maxUploads bounds the objects being built or written at once by all the
// sinks of the process: each holds a compressor (about a megabyte) and its
// compressed body, so that a hundred containers stopping at once do not
// hold a hundred of each. Eight writes of a few hundred KiB at a time keep
// up with millions of lines a second.
const maxUploads = 8

var (
	// uploads holds a token for each object being built or written.
	uploads = make(chan struct{}, maxUploads)
	// bodies keeps the buffers of compressed bodies between objects.
	bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// acquire takes an upload token, false if ctx ends first.
func acquire(ctx context.Context) bool {
	select {
	case uploads <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func release() { <-uploads }

// run is the sender. It cuts the waiting lines into objects, writes each
// and acknowledges its lines, retrying with backoff until the write
// succeeds or Close gives up.
//
// An object's key comes from its first line, so a retry, or the replay of
// a disk buffer after a crash, writes the same key again, never a second
// copy, as long as the object holds the same lines. The cut therefore
// depends on the lines alone: an object ends before the line that would
// take its NDJSON past ObjectSize, or before the first line whose time is
// FlushInterval or more after its first line's. Only when no such line
// has come does the clock decide: the sender waits until FlushInterval
// and LateLines after it saw the first line (all lines of the object's
// time span have reached it by then, unless one was late by more than
// LateLines) and cuts what there is. A replay cuts the same way, since
// the lines are all there at once.
func (s *Sink) run(ctx context.Context) {
	enc := document.NewEncoder(s.container, s.cfg.JSONFields)
	var obj object
	var scratch []byte
	fails := 0
	rebuild := false // the lines of an object that failed are read again
	for {
		if obj.lines == 0 {
			if err := s.out.Wait(ctx, 1, 1); err != nil {
				return // closed and empty, or the hard stop
			}
			if !rebuild {
				linger, cancel := context.WithTimeout(ctx, s.cfg.FlushInterval+s.cfg.LateLines)
				// The buffer counts fewer bytes than the documents take:
				// once it holds ObjectSize, an object fills.
				_ = s.out.Wait(linger, math.MaxInt32, int64(s.cfg.ObjectSize))
				cancel()
			}
			if ctx.Err() != nil || !acquire(ctx) {
				return
			}
			scratch = s.build(&obj, enc, scratch)
			if obj.lines == 0 {
				obj.reset()
				release()
				continue
			}
		} else if !acquire(ctx) { // a retry in memory, with its object
			s.out.Abandon(obj.lines)
			return
		}
		err := s.store.put(ctx, obj.key, obj.body.Bytes())
		release()
		if err == nil {
			s.out.Ack(obj.from, obj.to)
			s.emitted.Add(uint64(obj.lines))
			s.objects.Add(1)
			obj.reset()
			fails, rebuild = 0, false
			continue
		}
		if ctx.Err() != nil {
			s.out.Abandon(obj.lines)
			return
		}
		fails++
		s.retries.Add(1)
		s.log.Error("put", "cannot write an object to S3, will retry", "bucket", s.cfg.Bucket, "key", obj.key,
			"lines", obj.lines, "attempt", fails, "err", err)
		if s.out.OnDisk() {
			// Read again from disk for the next attempt: an outage holds
			// no object in memory.
			s.out.Rewind(obj.from)
			obj.reset()
			rebuild = true
		}
		if !outbox.Sleep(ctx, s.out.CapWait(s.backoff.Wait(fails)), s.wake) {
			if obj.lines > 0 {
				s.out.Abandon(obj.lines)
			}
			return
		}
	}
}

// build reads the lines of the next object into obj, compressed, and
// names it; see run for where it ends. It returns scratch for reuse.
func (s *Sink) build(obj *object, enc *document.Encoder, scratch []byte) []byte {
	obj.body = bodies.Get().(*bytes.Buffer)
	gz := getGzip(obj.body)
	defer putGzip(gz)
	var first time.Time
	var firstSeq uint32
	var cutoff time.Time
	size := 0
	full := false
	for !full {
		n, err := s.out.Read(forward.DoneContext, readEvents, math.MaxInt, func(it *forward.Item) bool {
			ev := &it.Event
			if obj.lines > 0 && !ev.Time.Before(cutoff) {
				full = true
				return false
			}
			scratch = append(enc.Append(scratch[:0], ev), '\n')
			if obj.lines > 0 && size+len(scratch) > s.cfg.ObjectSize {
				full = true
				return false
			}
			if obj.lines == 0 {
				first, firstSeq, cutoff = ev.Time, it.Seq, ev.Time.Add(s.cfg.FlushInterval)
				obj.from = it.Token
			}
			_, _ = gz.Write(scratch) // to a bytes.Buffer: never fails
			size += len(scratch)
			obj.lines++
			obj.to = it.Token + 1
			return true
		})
		if err != nil || n == 0 {
			break
		}
	}
	_ = gz.Close()
	if obj.lines > 0 {
		obj.key = s.key.key(&s.container, first, firstSeq)
	}
	return scratch
}

// gzips keeps gzip writers between objects: one holds about a megabyte of
// compressor state, which only an object being built needs.
var gzips sync.Pool

func getGzip(w *bytes.Buffer) *gzip.Writer {
	if gz, ok := gzips.Get().(*gzip.Writer); ok {
		gz.Reset(w)
		return gz
	}
	gz, _ := gzip.NewWriterLevel(w, gzip.DefaultCompression) // a valid level: no error
	return gz
}

func putGzip(gz *gzip.Writer) {
	gz.Reset(nil)
	gzips.Put(gz)
}
