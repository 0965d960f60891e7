package elasticsearch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/outbox"
	"github.com/logferry/logferry/internal/ratelog"
)

// ErrClosed is returned by Close when the sink was already closed.
var ErrClosed = outbox.ErrClosed

// Credentials authenticate the sink to Elasticsearch: basic auth or an API
// key, never both. They come from the plugin's settings (`docker plugin
// set`), never from log-opts, which `docker inspect` shows. Formatting
// them with fmt or slog prints no secret.
type Credentials struct {
	Username, Password string
	// APIKey is the base64 "encoded" value of Elasticsearch's create API
	// key response, sent as "Authorization: ApiKey <APIKey>".
	APIKey string
}

// String describes c without its secrets.
func (c Credentials) String() string {
	switch {
	case c.APIKey != "":
		return "api key (redacted)"
	case c.Username != "":
		return fmt.Sprintf("basic auth as %q (password redacted)", c.Username)
	}
	return "none"
}

// GoString describes c without its secrets, for %#v.
func (c Credentials) GoString() string { return "elasticsearch.Credentials{" + c.String() + "}" }

// LogValue describes c without its secrets, for log/slog.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

func (c Credentials) validate() error {
	switch {
	case c.APIKey != "" && (c.Username != "" || c.Password != ""):
		return errors.New("elasticsearch credentials: set an API key or a username and password, not both")
	case c.Password != "" && c.Username == "":
		return errors.New("elasticsearch credentials: a password needs a username")
	}
	return nil
}

// Stats counts what happened to the events given to Send. Every event ends
// up in exactly one of Indexed, Duplicates, Rejected, Dropped and Unsent,
// or is still Queued (without a disk buffer: or in flight).
type Stats struct {
	// Indexed counts documents Elasticsearch created.
	Indexed uint64
	// Duplicates counts documents that were already there (409 on create,
	// after a retry or a replay): delivered all the same.
	Duplicates uint64
	// Retries counts documents sent again after a 429 or 5xx answer.
	Retries uint64
	// RequestFailures counts _bulk requests that failed as a whole
	// (connection refused, timeout, 503 ...) and were retried.
	RequestFailures uint64
	// Rejected counts documents refused for good (4xx other than 409 and
	// 429, such as mapping errors); DeadLettered of them were written to
	// the dead-letter file.
	Rejected     uint64
	DeadLettered uint64
	// RetryCount counts the _bulk requests sent again (a failed request,
	// or documents answered 429 or 5xx).
	RetryCount uint64
	// ItemErrors counts the documents Elasticsearch answered with an
	// error, by status; a document sent again counts each time.
	ItemErrors ItemErrors
	// InFlight is the number of _bulk requests in flight, and Concurrency
	// how many may be at once now: 1 to Config.Workers, lower while the
	// cluster pushes back.
	InFlight, Concurrency int
	// Stats are what the buffer holds (Queued: with a disk buffer, the
	// events in flight too, and after Close those kept on disk for the
	// next sink) and what was lost: Dropped by the full buffer
	// (buffer-full: by default the oldest go first) or sent after Close,
	// Unsent when Close gave up without a disk buffer.
	outbox.Stats
}

// ItemErrors counts documents answered with an error, by status.
type ItemErrors struct {
	// Status429 counts documents refused for now because the cluster is
	// overloaded (es_rejected_execution_exception): sent again.
	Status429 uint64
	// Status5xx counts documents refused for now for another reason (5xx,
	// 408, or an item without a status): sent again.
	Status5xx uint64
	// Status4xx counts documents refused for good (other 4xx, such as
	// mapping errors; not 409, which is in Duplicates).
	Status4xx uint64
}

// Sink sends the events of one container to Elasticsearch as documents.
// Send never blocks: events wait in a bounded queue that drops the oldest
// when full, while goroutines owned by the sink batch them into _bulk
// requests. Send, Stats and Close are safe for concurrent use; Send is meant
// to be called by the container's one stream, in order.
type Sink struct {
	cfg       Config
	pattern   *indexPattern
	container forward.Container
	log       *slog.Logger
	limit     *ratelog.Log
	out       *outbox.Outbox
	dial      dialFunc
	batches   *forward.Batches
	backoff   outbox.Backoff
	// shared is the client this sink uses with others, given back once
	// its goroutines stopped; nil for a fake client.
	shared *sharedClient
	dead   *deadLetter
	// press decides when the next request may go; again holds the
	// documents to send again.
	press *pressure
	again retryList
	// maxBody is the largest body a request may have since Elasticsearch
	// answered 413 to a larger one, in bytes; 0 before.
	maxBody atomic.Int64

	// dialSema guards es: a worker holds its token to read es or, while
	// es is nil, to dial and set it. A channel rather than a mutex, so
	// that the other workers wait for a dial with their context.
	dialSema chan struct{}
	es       bulkClient

	indexed, duplicates, retries, requestFailures atomic.Uint64
	rejected, deadLettered, retryCount            atomic.Uint64
	itemErrors                                    struct{ status429, status5xx, status4xx atomic.Uint64 }
}

// New returns a sink for container c that has started sending in the
// background. It checks cfg and creds and reads the TLS CA file, but never
// touches the network: it connects once the first batch is ready, and
// retries with backoff while Elasticsearch is unreachable. Sinks with
// the same URLs, TLS settings, credentials, sniffing and health check
// interval share one client: its connections and its health checks. With
// cfg.BufferDir it opens the disk buffer there (see package diskq), whose
// earlier contents are sent first; if it cannot, it logs why and keeps
// events in memory. log receives rate-limited errors; nil discards them.
func New(cfg Config, creds Credentials, c forward.Container, log *slog.Logger) (*Sink, error) {
	if err := creds.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	shared, err := clients.acquire(cfg, creds)
	if err != nil {
		return nil, err
	}
	s, err := newSink(cfg, c, log, dialOlivere(cfg, shared))
	if err != nil {
		clients.release(shared)
		return nil, err
	}
	s.shared = shared
	s.start()
	return s, nil
}

// newSink builds a sink that dials with dial; start starts it. Tests use it
// to fake the client.
func newSink(cfg Config, c forward.Container, log *slog.Logger, dial dialFunc) (*Sink, error) {
	cfg = cfg.withDefaults()
	if len(cfg.URLs) == 0 {
		return nil, fmt.Errorf("elasticsearch sink: no %s", KeyURL)
	}
	p, err := parseIndexPattern(cfg.Index)
	if err != nil {
		return nil, forward.OptionError(KeyIndex, cfg.Index, err.Error())
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("container", c.ShortID(), "destination", Name)
	s := &Sink{
		cfg:       cfg,
		pattern:   p,
		container: c,
		log:       log,
		limit:     ratelog.New(log, cfg.ErrorLogInterval),
		dial:      dial,
		batches:   cfg.Batches,
		backoff:   outbox.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax, Jitter: true},
		dead:      &deadLetter{path: cfg.DeadLetterPath, max: cfg.DeadLetterMaxSize},
		dialSema:  make(chan struct{}, 1),
		press:     newPressure(cfg),
	}
	s.out = outbox.Open(outbox.Config{
		Name: Name, Dir: cfg.BufferDir, Buffer: cfg.Buffer,
		MemEvents: cfg.QueueEvents, MemBytes: int64(cfg.QueueBytes),
		PartialMerge: cfg.PartialMerge, Merge: cfg.Merge,
		Numbered: true, LogInterval: cfg.ErrorLogInterval,
	}, log)
	return s, nil
}

func (s *Sink) start() { s.out.Start(s.run, s.press.changed.Signal) }

// Send queues a copy of ev, numbered among the events of its nanosecond
// (part of its _id, kept with it in the buffer so that a replay by a
// later sink gives it the same _id). It never waits for the network; see
// outbox.Outbox.Send.
func (s *Sink) Send(ev *forward.Event) { s.out.Send(ev) }

// Flush makes the events Sent so far survive a crash of the process; see
// outbox.Outbox.Flush.
func (s *Sink) Flush() { s.out.Flush() }

// Stats returns the sink's counters.
func (s *Sink) Stats() Stats {
	st := Stats{
		Indexed:         s.indexed.Load(),
		Duplicates:      s.duplicates.Load(),
		Retries:         s.retries.Load(),
		RequestFailures: s.requestFailures.Load(),
		Rejected:        s.rejected.Load(),
		DeadLettered:    s.deadLettered.Load(),
		RetryCount:      s.retryCount.Load(),
		ItemErrors: ItemErrors{
			Status429: s.itemErrors.status429.Load(),
			Status5xx: s.itemErrors.status5xx.Load(),
			Status4xx: s.itemErrors.status4xx.Load(),
		},
		Stats: s.out.Stats(),
	}
	st.InFlight, st.Concurrency = s.press.state()
	return st
}

// Close stops taking events, sends what is queued and waits for the
// sink's goroutines; when ctx ends first, the requests in flight are
// abandoned. See outbox.Outbox.Close for what is left. Calls after the
// first wait the same way and return ErrClosed.
func (s *Sink) Close(ctx context.Context) error { return s.out.Close(ctx) }

// run owns every goroutine of the sink: the batcher turns queued events,
// and documents to send again, into requests, which cfg.Workers workers
// send, as many at once as s.press allows.
func (s *Sink) run(ctx context.Context) {
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() { s.work(ctx, jobs) })
	}
	s.batch(ctx, jobs)
	wg.Wait()
	// Only after a hard stop can documents wait to be sent again.
	s.again.drain(func(b *batch) {
		s.out.Abandon(len(b.actions))
		b.release(s.batches)
	})
	if s.shared != nil {
		clients.release(s.shared)
	}
	if err := s.dead.close(); err != nil {
		s.log.Error("close dead-letter file", "err", err)
	}
}

// job is a batch for a worker to send, in the round of s.press in which
// its slot was taken.
type job struct {
	b     *batch
	round uint64
}

// batch builds requests and hands them to the workers, one whenever
// s.press grants a slot: the documents to send again first (see
// s.again), then queued events in order. A request goes at
// cfg.BulkActions documents or when its slab is full (cfg.BulkSize, or
// less as the batch memory grants or a 413 taught), cfg.FlushInterval
// after its first event was queued, or at once when documents wait to be
// sent again or the sink is closing. Events wait where they are queued, on
// disk or in the memory queue, while the batch fills: the batch's slab
// is taken only once they are there to be encoded, straight from the
// queue into it. It returns when the queue is closed and empty and no
// document is in flight or waiting to be sent again, or when ctx ends.
func (s *Sink) batch(ctx context.Context, jobs chan<- job) {
	defer close(jobs)
	enc := newEncoder(s.container, s.pattern, s.cfg.JSONFields)
	// A batch waits for BulkActions events, or for as many bytes queued as
	// its slab may hold: an event takes more encoded than queued, so
	// they fill it.
	fullBytes := int64(min(s.cfg.BulkSize, max(int(s.batches.Max()/8), forward.MinSlab)))
	// behind is set when the last batch left events for the next: those
	// have waited already.
	behind := false
	for {
		if !s.awaitWork(ctx) {
			return
		}
		if !behind && s.again.len() == 0 {
			linger, cancel := s.again.waitContext(ctx)
			linger, cancelLinger := context.WithTimeout(linger, s.cfg.FlushInterval)
			_ = s.out.Wait(linger, s.cfg.BulkActions, fullBytes)
			cancelLinger()
			cancel()
		}
		round, ok := s.press.acquire(ctx, s.out.CapWait)
		if !ok {
			return
		}
		b := s.fill(ctx, enc)
		if b == nil {
			s.press.release()
			return // ctx ended
		}
		behind = b.full
		if len(b.actions) == 0 {
			b.release(s.batches)
			s.press.release()
			continue
		}
		select {
		case jobs <- job{b: b, round: round}:
		case <-ctx.Done():
			s.out.Abandon(len(b.actions))
			b.release(s.batches)
			s.press.release()
			return
		}
	}
}

// awaitWork waits until there is something to send: documents to send
// again, or queued events. It reports false when there never will be (the
// queue is closed and empty, and no request in flight can bring documents
// back) or ctx ended.
func (s *Sink) awaitWork(ctx context.Context) bool {
	for {
		if s.again.len() > 0 {
			return true
		}
		wctx, cancel := s.again.waitContext(ctx)
		err := s.out.Wait(wctx, 1, 1)
		woken := wctx.Err() != nil // before cancel ends it
		cancel()
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			return false
		case woken:
			continue // documents to send again
		}
		// Closed and empty. A worker puts back what it sends again before
		// it gives back its slot: once none is in flight, nothing comes.
		if inFlight, _ := s.press.state(); inFlight == 0 && s.again.len() == 0 {
			return false
		}
		if _, ok := s.press.wait(ctx, 0); !ok {
			return false
		}
	}
}

// fill returns the next batch: the oldest documents to send again, in
// their own slab, or a slab from the batch memory; then, as they fit,
// more documents to send again and queued events. nil when ctx ends.
func (s *Sink) fill(ctx context.Context, enc *encoder) *batch {
	maxBody := int(s.maxBody.Load())
	b := s.again.pop()
	for b != nil && maxBody > 0 && len(b.actions) > 1 && len(b.body()) > maxBody {
		// Put back before Elasticsearch answered 413 to a larger one:
		// halve it rather than send it to be refused.
		s.putBackHalves(ctx, b)
		b = s.again.pop()
	}
	if b != nil {
		b.full = false // room is left for more
	} else {
		buf := s.batches.Get(ctx, s.cfg.BulkSize)
		if buf == nil {
			return nil
		}
		b = getBatch(buf)
	}
	limit := min(b.buf.Grant(), s.cfg.BulkSize)
	if maxBody > 0 {
		limit = min(limit, maxBody)
	}
	s.again.take(b, s.cfg.BulkActions, limit, s.batches)
	take := func(it *forward.Item) bool {
		return b.add(enc, &item{ev: it.Event, seq: it.Seq}, it.Token, limit)
	}
	for !b.full && len(b.actions) < s.cfg.BulkActions {
		// Only what is there: awaitWork waited.
		n, err := s.out.Read(forward.DoneContext, s.cfg.BulkActions-len(b.actions), math.MaxInt, take)
		if err != nil || n == 0 {
			break
		}
	}
	b.full = b.full || len(b.actions) >= s.cfg.BulkActions
	b.repoint() // the slab may have grown for an action
	if ctx.Err() != nil {
		s.out.Abandon(len(b.actions))
		b.release(s.batches)
		return nil
	}
	return b
}

// putBack puts b, whose actions are all to be sent again, on s.again,
// with its slab made their body again: their lines moved to its front,
// or, while the transport may still read it, copied to a new slab. When
// ctx ends first they are abandoned.
func (s *Sink) putBack(ctx context.Context, b *batch) {
	if !b.held {
		b.compact()
		s.again.push(b)
		return
	}
	buf := s.batches.Get(ctx, linesSize(b.actions))
	if buf == nil {
		s.out.Abandon(len(b.actions))
		b.release(s.batches)
		return
	}
	s.batches.Forget(b.moveTo(buf))
	s.again.push(b)
}

// putBackHalves puts b back as two batches, after Elasticsearch refused
// its body as too large (413): the second half in a new slab.
func (s *Sink) putBackHalves(ctx context.Context, b *batch) {
	half := len(b.actions) / 2
	buf := s.batches.Get(ctx, linesSize(b.actions[half:]))
	if buf == nil {
		s.out.Abandon(len(b.actions))
		b.release(s.batches)
		return
	}
	rest := b.splitOff(half, buf)
	s.putBack(ctx, b)
	s.again.push(rest)
}

// work sends batches until there are no more.
func (s *Sink) work(ctx context.Context, jobs <-chan job) {
	for j := range jobs {
		s.send(ctx, j.b, j.round)
	}
}

// client returns the Elasticsearch client, dialing it (with backoff) and
// installing the index template on first use. ok is false when ctx ended.
func (s *Sink) client(ctx context.Context) (es bulkClient, ok bool) {
	select {
	case s.dialSema <- struct{}{}:
	case <-ctx.Done():
		return nil, false
	}
	defer func() { <-s.dialSema }()
	if s.es != nil {
		return s.es, true
	}
	for attempt := 1; ; attempt++ {
		c, err := s.dial(ctx)
		if err == nil {
			s.es = c
			break
		}
		if ctx.Err() != nil {
			return nil, false
		}
		s.limit.Error("dial", "cannot reach elasticsearch, retrying", "err", err)
		if !outbox.Sleep(ctx, s.wait(attempt), nil) {
			return nil, false
		}
	}
	if s.cfg.Template {
		s.installTemplate(ctx)
	}
	return s.es, ctx.Err() == nil
}

// installTemplate puts the lifecycle policy (with elasticsearch-retention)
// and the index template, each retried while Elasticsearch is unavailable;
// other failures (no privilege, a server without composable templates or
// ILM) are logged and the documents are sent all the same.
func (s *Sink) installTemplate(ctx context.Context) {
	name, pattern := templateName(s.pattern)
	var settings string
	if r := s.cfg.Retention; r != "" && s.untilDone(ctx, "lifecycle policy", name, func(ctx context.Context) (err error) {
		settings, err = s.es.PutRetention(ctx, name, pattern, r)
		return err
	}) {
		s.log.Info("installed lifecycle policy: indices older than the retention are deleted", "policy", name, "indices", pattern, "retention", r)
	}
	body := templateBody(pattern, settings)
	if s.untilDone(ctx, "index template", name, func(ctx context.Context) error { return s.es.PutIndexTemplate(ctx, name, body) }) {
		s.log.Info("installed index template", "template", name)
	}
}

// untilDone calls put, within the request timeout, until it succeeds
// (true), fails for another reason than the cluster being unavailable, or
// ctx ends (false); what names it in the log.
func (s *Sink) untilDone(ctx context.Context, what, name string, put func(ctx context.Context) error) bool {
	for attempt := 1; ; attempt++ {
		reqCtx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		err := put(reqCtx)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		var re *requestError
		if errors.As(err, &re) && !unavailable(re.status) {
			s.log.Error("cannot install "+what, "name", name, "err", err)
			return false
		}
		s.limit.Error(what, "cannot install "+what+", retrying", "name", name, "err", err)
		if !outbox.Sleep(ctx, s.wait(attempt), nil) {
			return false
		}
	}
}

// send sends b once, in the slot of round that the batcher took, and
// settles what the answer allows: documents indexed, already there (409)
// or rejected for good are acknowledged to the buffer; those answered 429
// or 5xx, or all of them when the request failed as a whole, are put back
// to go at the front of a later request (s.again), while the requests
// after this one carry on with newer documents. b keeps its slab until
// then: without a disk buffer the documents are nowhere else. The answer
// tells s.press how hard the cluster pushes back.
func (s *Sink) send(ctx context.Context, b *batch, round uint64) {
	es, ok := s.client(ctx)
	if !ok {
		s.out.Abandon(len(b.actions)) // drain: the batcher stops at ctx's end
		b.release(s.batches)
		s.press.release()
		return
	}
	n := len(b.actions)
	start := time.Now()
	reqCtx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	results, err := es.Bulk(reqCtx, b)
	cancel()
	a := answer{round: round, latency: time.Since(start)}
	if ctx.Err() != nil {
		s.out.Abandon(n)
		b.release(s.batches)
		s.press.release()
		return
	}
	status := 0 // the first status that sends documents again, for the log
	k := acks{q: s.out}
	if err != nil {
		var re *requestError
		if errors.As(err, &re) {
			status = re.status
		}
		switch {
		case status == http.StatusRequestEntityTooLarge && n > 1:
			// Too large for the cluster, not a sign of load: later
			// requests take at most half of this one's body.
			s.shrinkBody(len(b.body()) / 2)
			s.putBackHalves(ctx, b)
			s.press.release()
			return
		case !retryableRequest(status, n):
			for i := range b.actions {
				s.reject(&b.actions[i], itemResult{status: status, errType: "request_failed", reason: err.Error()})
				k.add(b.actions[i].tok)
			}
			k.flush()
			a.accepted = n
			clear(b.actions)
			b.actions = b.actions[:0]
		default:
			s.requestFailures.Add(1)
			s.limit.Error("request", "bulk request failed, retrying", "err", err, "documents", n)
			a.failed, a.refused = true, n
		}
	} else {
		again := b.actions[:0] // in place: again[j] is written after b.actions[j] is read
		for i, r := range results {
			switch {
			case r.status >= 200 && r.status < 300:
				s.indexed.Add(1)
			case r.status == http.StatusConflict:
				s.duplicates.Add(1)
			case retryableItem(r.status):
				if status == 0 {
					status = r.status
				}
				s.countItemError(r.status)
				again = append(again, b.actions[i])
				continue
			default:
				s.countItemError(r.status)
				s.reject(&b.actions[i], r)
			}
			k.add(b.actions[i].tok)
		}
		k.flush()
		clear(b.actions[len(again):])
		b.actions = again
		a.accepted, a.refused = n-len(again), len(again)
	}
	if len(b.actions) == 0 {
		b.release(s.batches)
	} else {
		if !a.failed {
			s.retries.Add(uint64(len(b.actions)))
		}
		s.retryCount.Add(1)
		s.putBack(ctx, b)
	}
	pause := s.press.done(a)
	if a.pushback() && !a.failed {
		_, limit := s.press.state()
		s.limit.Warn("pushback", "elasticsearch is pushing back: documents it refused for now go with the next requests",
			"refused", a.refused, "documents", n, "share", fmt.Sprintf("%.1f%%", 100*float64(a.refused)/float64(n)),
			"status", status, "concurrency", limit, "pause", pause.Round(time.Millisecond))
	}
}

// shrinkBody lowers the largest body a request may have to n bytes, after
// Elasticsearch answered 413 to a larger one; a single document still goes
// alone, however large.
func (s *Sink) shrinkBody(n int) {
	for {
		old := s.maxBody.Load()
		if old > 0 && old <= int64(n) || s.maxBody.CompareAndSwap(old, int64(n)) {
			return
		}
	}
}

// countItemError counts a document answered with an error status other
// than 409, by the kind of status (see ItemErrors).
func (s *Sink) countItemError(status int) {
	switch {
	case status == http.StatusTooManyRequests:
		s.itemErrors.status429.Add(1)
	case unavailable(status):
		s.itemErrors.status5xx.Add(1)
	default:
		s.itemErrors.status4xx.Add(1)
	}
}

// acks acknowledges the tokens of settled documents to the buffer, a run
// of consecutive tokens at a time: usually one call for a request.
type acks struct {
	q        *outbox.Outbox
	from, to uint64 // the run noted so far; none when equal
}

func (k *acks) add(tok uint64) {
	switch {
	case k.from == k.to:
		k.from, k.to = tok, tok+1
	case tok == k.to:
		k.to++
	default:
		k.flush()
		k.from, k.to = tok, tok+1
	}
}

func (k *acks) flush() {
	if k.to > k.from {
		k.q.Ack(k.from, k.to)
	}
	k.from, k.to = 0, 0
}

// unavailable reports whether status means that Elasticsearch could not
// take a request or document for now: no answer at all (0, or a missing
// item status), 408, 429 (rejected execution) and 5xx.
func unavailable(status int) bool {
	return status < 100 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// retryableItem reports whether a document answered status is sent again.
// Other 4xx answers (mapping errors and the like) will never succeed.
func retryableItem(status int) bool { return unavailable(status) }

// retryableRequest reports whether a request of n documents that failed as
// a whole with status is sent again. Only 400, and 413 for a single
// document, blame the documents; anything else (no answer, 401, 403, 404,
// 429, 5xx ...) is a matter of the connection, the configuration or the
// cluster, which retrying with backoff outlasts or the operator fixes.
func retryableRequest(status, n int) bool {
	switch status {
	case http.StatusBadRequest:
		return false
	case http.StatusRequestEntityTooLarge:
		return n > 1
	}
	return true
}

// reject counts a document refused for good and writes it to the
// dead-letter file.
func (s *Sink) reject(a *action, r itemResult) {
	s.rejected.Add(1)
	err := s.dead.write(a, r)
	if err == nil {
		s.deadLettered.Add(1)
	}
	args := []any{"status", r.status, "type", r.errType, "reason", r.reason, "index", a.index}
	if err != nil && !errors.Is(err, errNoDeadLetter) {
		args = append(args, "dead_letter_err", err)
	} else if err == nil {
		args = append(args, "dead_letter", s.dead.path)
	}
	s.limit.Error("reject", "elasticsearch rejected a document", args...)
}

// wait is the wait before attempt number attempt (from 1) to dial or to
// install the template, ended in time for a last attempt before Close's
// deadline.
func (s *Sink) wait(attempt int) time.Duration { return s.out.CapWait(s.backoff.Wait(attempt)) }
