package elasticsearch

import (
	"context"
	"sync"

	"github.com/logferry/logferry/forward"
)

// retryList holds the documents Elasticsearch refused for now (429, 5xx,
// or a request that failed as a whole), still encoded, in the batches
// they were sent in, until the batcher puts them at the front of its next
// requests. They count against the batch memory meanwhile, and, with a
// disk buffer, stay unacknowledged there. An answer puts back the batch
// it answered (two halves after a 413), and the next request is built in
// the oldest, so the list holds about as many batches as there are
// requests in flight.
type retryList struct {
	// mu guards everything below.
	mu      sync.Mutex
	batches []*batch
	n       int // actions in batches
	// wake ends the context of the batcher's wait, if it waits.
	wake context.CancelFunc
}

// len returns how many documents wait to be sent again.
func (r *retryList) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// push adds b, whose actions are all to be sent again and whose slab is
// their body (not b.held), and wakes the batcher. The list owns b from now on.
func (r *retryList) push(b *batch) {
	r.mu.Lock()
	r.batches = append(r.batches, b)
	r.n += len(b.actions)
	wake := r.wake
	r.wake = nil
	r.mu.Unlock()
	if wake != nil {
		wake()
	}
}

// waitContext returns a context derived from ctx that push ends, for the
// batcher to wait on the queue with; cancel it when the wait is over.
func (r *retryList) waitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancel(ctx)
	r.mu.Lock()
	if r.n > 0 {
		cancel()
	} else {
		r.wake = cancel
	}
	r.mu.Unlock()
	return wctx, func() {
		r.mu.Lock()
		r.wake = nil
		r.mu.Unlock()
		cancel()
	}
}

// pop removes the oldest batch and returns it, nil when there is none.
// Its slab is the body of its actions.
func (r *retryList) pop() *batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.batches) == 0 {
		return nil
	}
	b := r.batches[0]
	r.batches[0] = nil
	r.batches = r.batches[1:]
	if len(r.batches) == 0 {
		r.batches = nil
	}
	r.n -= len(b.actions)
	return b
}

// take appends documents to send again, oldest first, to dst: at most
// maxActions in all, and no more bytes than limit. It sets dst.full when
// some are left, and gives the batches it emptied back to m.
func (r *retryList) take(dst *batch, maxActions, limit int, m *forward.Batches) {
	r.mu.Lock()
	defer r.mu.Unlock()
	grown := false
	for len(r.batches) > 0 {
		src := r.batches[0]
		k := 0
		for ; k < len(src.actions); k++ {
			a := src.actions[k]
			if len(dst.actions) >= maxActions || len(dst.actions) > 0 && len(dst.buf.B)+a.size() > limit {
				dst.full = true
				break
			}
			c := cap(dst.buf.B)
			dst.buf.B = append(dst.buf.B, a.line...)
			grown = grown || cap(dst.buf.B) != c
			end := len(dst.buf.B)
			a.line = dst.buf.B[end-len(a.line) : end : end]
			dst.actions = append(dst.actions, a)
		}
		r.n -= k
		if k < len(src.actions) {
			// The rest stays, at the front of src's slab again.
			rest := copy(src.actions, src.actions[k:])
			clear(src.actions[rest:])
			src.actions = src.actions[:rest]
			src.compact()
			break
		}
		src.release(m)
		r.batches[0] = nil
		r.batches = r.batches[1:]
	}
	if len(r.batches) == 0 {
		r.batches = nil
	}
	if grown {
		dst.repoint()
	}
}

// drain passes every batch held to fn and forgets it.
func (r *retryList) drain(fn func(*batch)) {
	r.mu.Lock()
	batches := r.batches
	r.batches, r.n = nil, 0
	r.mu.Unlock()
	for _, b := range batches {
		fn(b)
	}
}
