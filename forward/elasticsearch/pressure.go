package elasticsearch

import (
	"context"
	"sync"
	"time"

	"github.com/logferry/logferry/forward/outbox"
)

// pressure decides when a sink may start its next _bulk request, from how
// Elasticsearch answered the last ones: how many requests may be in flight
// at once (the limit, between 1 and Config.Workers), and a pause before the
// next one. It is the sink's one answer to a cluster that pushes back, so
// that documents answered 429 are sent again with the next request instead
// of waiting out a backoff of their own, which would hold back every
// document behind them.
//
// The limit follows AIMD, as Vector's adaptive request concurrency does
// (its RFC 1858): half as many requests in flight (at least 1) on
// pushback: a tenth of a request's documents or more answered 429 or 5xx
// (fewer shrink it in proportion at the end of the round), or a request
// that failed as a whole; at most once per round: answers to requests sent before the last
// decrease do not decrease it again. After a round of answers without
// pushback in which every slot was used, the latency decides, as in TCP
// Vegas: from the least latency per document seen (base) and the round's
// mean, limit×(1-base/mean) estimates how many of the sink's requests
// wait in the cluster's queues rather than being worked on. Under half a
// request: one more in flight would be worked on at once (a cluster with
// idle capacity); over one and a half: one fewer, as latency grows with
// no more throughput. In between the limit holds, which keeps a cluster
// that indexes at a fixed rate busy without filling its write queue
// until it rejects. The base drifts up slowly, so that a cluster that
// became slower for good is measured anew.
//
// The pause keeps a sink at limit 1 from sending faster than the cluster
// indexes. After an answer that refused part of the documents, the next
// request waits for as long as the cluster would take to index what it
// refused at the rate it took the rest: the request's latency times
// refused/accepted. 5% refused costs about 5% of the time; 50% halves the
// rate. After an answer that made no progress at all (every document
// refused, the request failed) it backs off exponentially, RetryMin to
// RetryMax with jitter, as before any document can be indexed again. An
// answer without pushback ends the pause.
type pressure struct {
	max int
	// backoff is the pause after answers that made no progress; its Max
	// also bounds the pause after partial refusals.
	backoff outbox.Backoff

	// mu guards every field below.
	mu       sync.Mutex
	limit    float64 // requests allowed in flight, 1 to max
	inFlight int
	// round counts the decreases; a request remembers the round it was
	// sent in, and its answer decreases the limit only in that round.
	round     uint64
	clean     int  // answers in this round with less than smallShare refused
	saturated bool // every slot was in use in this round
	failures  int  // answers in a row that made no progress
	// base is the least latency per document of a clean answer, drifting
	// up; sum and sumN add up this round's, and accepted and refused its
	// documents.
	base              float64
	sum               float64
	sumN              int
	accepted, refused int
	notBefore         time.Time
	// changed is signalled when a slot is freed or the pause changes.
	changed outbox.Wake
}

func newPressure(cfg Config) *pressure {
	return &pressure{
		max: cfg.Workers, backoff: outbox.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax, Jitter: true},
		limit: 1, changed: outbox.NewWake(),
	}
}

// answer is how Elasticsearch answered one request.
type answer struct {
	round uint64 // from acquire
	// accepted and refused count the request's documents settled
	// (indexed, already there, or rejected for good) and those to be sent
	// again (429, 5xx, no status); failed is set when the request failed
	// as a whole and every document is to be sent again.
	accepted, refused int
	failed            bool
	latency           time.Duration
}

// pushback reports whether a said that the cluster is overloaded or
// unavailable.
func (a answer) pushback() bool { return a.failed || a.refused > 0 }

// acquire waits for a slot under the limit and for the pause to end, and
// takes the slot; release or done gives it back. It returns the round the
// request is sent in, and false if ctx ended first. capWait shortens a
// pause once the sink's Close has a deadline, so that it ends in time for
// a last attempt (see outbox.Outbox.CapWait).
func (p *pressure) acquire(ctx context.Context, capWait func(time.Duration) time.Duration) (round uint64, ok bool) {
	paused := false // the last wait was the whole pause, cut short or not
	for {
		p.mu.Lock()
		wait := time.Duration(0)
		if p.inFlight < int(p.limit) {
			wait = capWait(time.Until(p.notBefore))
			if wait <= 0 || paused {
				p.inFlight++
				if p.inFlight >= int(p.limit) {
					p.saturated = true
				}
				round = p.round
				p.mu.Unlock()
				return round, true
			}
		}
		p.mu.Unlock()
		var woken bool
		if woken, ok = p.wait(ctx, wait); !ok {
			return 0, false
		}
		paused = wait > 0 && !woken
	}
}

// wait waits until the limit or the pause may have changed (woken), or
// for d when d > 0; ok is false if ctx ended first.
func (p *pressure) wait(ctx context.Context, d time.Duration) (woken, ok bool) {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-p.changed:
		return true, true
	case <-timer:
		return false, true
	case <-ctx.Done():
		return false, false
	}
}

// release gives back a slot whose request was not sent, or whose answer
// says nothing of the cluster's load.
func (p *pressure) release() {
	p.mu.Lock()
	p.inFlight--
	p.mu.Unlock()
	p.changed.Signal()
}

// done gives back the slot of an answered request and adapts the limit
// and the pause to the answer. It returns the pause before the next
// request.
func (p *pressure) done(a answer) time.Duration {
	p.mu.Lock()
	defer p.changed.Signal()
	defer p.mu.Unlock()
	p.inFlight--
	var pause time.Duration
	switch {
	case a.failed || (a.refused > 0 && a.accepted == 0):
		p.failures++
		p.decreaseLocked(a.round)
		pause = p.backoff.Wait(p.failures)
	case a.refused > 0:
		p.failures = 0
		if float64(a.refused) >= smallShare*float64(a.accepted+a.refused) {
			p.decreaseLocked(a.round)
		} else if a.round == p.round {
			p.cleanLocked(a)
		}
		pause = min(time.Duration(float64(a.latency)*float64(a.refused)/float64(a.accepted)), p.backoff.Max)
	default:
		p.failures = 0
		if a.round == p.round {
			p.cleanLocked(a)
		}
	}
	p.notBefore = time.Now().Add(pause)
	return pause
}

// smallShare is the share of a request's documents refused under which
// the refusal is taken for a hot spot (a shard's full queue) rather than
// the cluster's overload: the limit then shrinks in proportion at the end
// of the round, instead of being halved at once.
const smallShare = 0.1

// cleanLocked notes an answer without pushback, or with less than
// smallShare of it, in the current round, and adapts the limit at the
// end of a saturated round: shrunk by the round's share refused, and
// then one more, one fewer or the same as the latency says.
func (p *pressure) cleanLocked(a answer) {
	p.clean++
	p.accepted += a.accepted
	p.refused += a.refused
	if a.accepted > 0 && a.latency > 0 {
		perDoc := float64(a.latency) / float64(a.accepted)
		if p.base == 0 || perDoc < p.base {
			p.base = perDoc
		} else {
			p.base += p.base / baseDrift
		}
		p.sum += perDoc
		p.sumN++
	}
	if !p.saturated || p.clean < int(p.limit) {
		return
	}
	queued := 0.0
	if p.sumN > 0 {
		queued = p.limit * (1 - p.base/(p.sum/float64(p.sumN)))
	}
	limit := p.limit
	if p.refused > 0 {
		limit *= 1 - float64(p.refused)/float64(p.accepted+p.refused)
	}
	switch {
	case queued < 0.5:
		limit++
	case queued > 1.5:
		limit--
	}
	p.limit = min(float64(p.max), max(1, limit))
	p.resetRoundLocked()
}

// resetRoundLocked starts a new round of answers.
func (p *pressure) resetRoundLocked() {
	p.clean, p.saturated, p.sum, p.sumN, p.accepted, p.refused = 0, false, 0, 0, 0, 0
}

// baseDrift is how many clean answers it takes the base latency to grow
// by about its own size, when no answer is faster.
const baseDrift = 128

// decreaseLocked halves the limit, once per round.
func (p *pressure) decreaseLocked(round uint64) {
	if round != p.round {
		return
	}
	p.limit = max(1, p.limit/2)
	p.round++
	p.resetRoundLocked()
}

// state returns the requests in flight and the current limit.
func (p *pressure) state() (inFlight, limit int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inFlight, int(p.limit)
}
