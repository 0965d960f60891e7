package diskq

import "github.com/logferry/logferry/forward"

// Append encodes a copy of ev, with the sink's number seq, into the
// buffer of entries waiting in memory, and returns. It writes them itself
// (one write(2), no fsync) when the buffer would pass WriteBuffer; else
// Flush, or the queue's goroutine after FlushDelay, does. When the entry
// does not fit (Buffer.MaxSize, the shared Budget, or WriteBuffer while
// writing fails), the overflow policy applies: drop-oldest drops the
// oldest segment on disk, or, when it is memory that is full (writing
// fails) or nothing on disk can go, the oldest entry waiting in memory;
// drop-newest drops ev; block waits for room up to Buffer.BlockTimeout
// once per stall. It returns how many entries this call dropped, each
// counted in Dropped. In steady state it does not allocate.
func (q *Queue) Append(ev *forward.Event, seq uint32) (dropped int) {
	need := frameSize(ev, seq)
	q.mu.Lock()
	if q.closedW || need-frameHeaderSize > MaxRecordSize || int64(need) > q.cfg.Buffer.MaxSize {
		q.dropped++
		q.mu.Unlock()
		return 1
	}
	ok, n := q.roomLocked(need)
	dropped += n
	if !ok {
		q.dropped++
		q.mu.Unlock()
		return dropped + 1
	}
	if q.pending == nil {
		q.pending = getWriteBuf()
	}
	q.pending = appendFrame(q.pending, ev, seq)
	q.pendingRecs++
	q.used += int64(need)
	q.noteMemLocked()
	kick := !q.flushDue
	q.flushDue = true
	q.mu.Unlock()
	if kick {
		q.wakeWriter() // to write it after FlushDelay, unless Flush does
	}
	return dropped
}

// Flush writes the entries waiting in memory to the segment file, with
// write(2) and no fsync, so that they survive a crash of the process
// (kill -9). It does nothing, at the cost of an atomic load, when none
// wait. While writing fails it tries again at most every 10ms (the
// entries wait in memory meanwhile, bounded by WriteBuffer). It may wait
// for another goroutine's write, never for an fsync.
func (q *Queue) Flush() {
	if q.inMem.Load() == 0 {
		return
	}
	q.wmu.Lock()
	q.flushLocked(false)
	q.wmu.Unlock()
}

// askWrite asks the I/O goroutine to write what waits in memory at once,
// unless it was asked already. It reports false when it cannot: the
// queues asked and not yet served hold one of writeSlots each, and none
// is free.
func (q *Queue) askWrite() bool {
	if q.writeNow.Load() {
		return true
	}
	select {
	case writeSlots() <- struct{}{}:
	default:
		return false
	}
	if q.writeNow.Swap(true) {
		<-writeSlots() // asked meanwhile, with a slot of its own
	} else {
		q.wakeWriter()
	}
	return true
}

// handOffLocked gives the frames waiting in memory, a full write buffer,
// to the I/O goroutine (asked to write with askWrite) and lets Append go
// on with a new buffer. Only one is handed off at a time, and only while
// the writer has nothing else to write, so that what waits in memory
// stays within twice WriteBuffer.
func (q *Queue) handOffLocked() {
	q.handoff, q.hstart = q.pending, q.pstart
	q.writing, q.writingRecs = int64(len(q.pending)-q.pstart), q.pendingRecs
	q.pending, q.pstart, q.pendingRecs = nil, 0, 0
}

// noteMemLocked updates inMem.
func (q *Queue) noteMemLocked() {
	q.inMem.Store(int64(len(q.pending)-q.pstart) + q.writing)
}
