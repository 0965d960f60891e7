package diskq

import (
	"time"

	"github.com/logferry/logferry/forward"
)

// roomLocked makes room for an entry of need bytes, as the policy says,
// and reserves it in the budget. ok is false if the entry must be
// dropped; n is how many other entries were dropped for it. It may
// release q.mu to write what waits in memory, or to wait for room.
func (q *Queue) roomLocked(need int) (ok bool, n int) {
	var deadline time.Time
	for {
		waiting := len(q.pending) - q.pstart
		memFull := waiting > 0 && waiting+need > q.cfg.WriteBuffer
		if memFull && !q.closedW && (!q.failing || !time.Now().Before(q.failedAt.Add(retryThrottle))) {
			if q.writing == 0 && !q.failing && q.askWrite() {
				q.handOffLocked()
				continue
			}
			// Write what waits, then look again; while writing fails,
			// try again before dropping (see retryThrottle).
			q.mu.Unlock()
			q.Flush()
			q.mu.Lock()
			continue
		}
		// Room for the headers of the segments that what waits may
		// start: every segment closed for size holds SegmentSize bytes.
		headers := headerSize * (1 + (q.writing+int64(waiting+need))/q.cfg.SegmentSize)
		diskFull := q.used+int64(need)+headers > q.cfg.Buffer.MaxSize
		if !memFull && !diskFull && q.budget.TryReserve(int64(need)) {
			q.shedding = false // room again: the next time it fills, wait again
			return true, n
		}
		switch q.cfg.Buffer.Full {
		case forward.DropNewest:
			return false, n
		case forward.Block:
			if q.shedding || q.closedW {
				return false, n
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(q.cfg.Buffer.BlockTimeout)
			}
			if !q.waitRoomLocked(deadline) {
				q.shedding = true
				return false, n
			}
		default: // DropOldest
			switch {
			case memFull:
				n += q.dropPendingLocked()
			case q.dropSegmentLocked(&n):
			case waiting > 0:
				n += q.dropPendingLocked()
			default:
				return false, n // nothing of ours to drop: over the shared budget
			}
		}
	}
}

// waitRoomLocked waits, with q.mu held on entry and on return, until room
// may have been made; false when deadline passed or the queue closed.
func (q *Queue) waitRoomLocked(deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	if q.space == nil {
		q.space = make(chan struct{})
	}
	space := q.space
	q.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	ok := false
	select {
	case <-space:
		ok = true
	case <-t.C:
	case <-q.stop:
	}
	q.mu.Lock()
	return ok && !q.closedW
}

// roomMadeLocked wakes Appends waiting for room, to look again.
func (q *Queue) roomMadeLocked() {
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
}

// dropPendingLocked drops the oldest entry waiting in memory.
func (q *Queue) dropPendingLocked() int {
	l := frameHeaderSize + int(binaryLE32(q.pending[q.pstart:]))
	q.pstart += l
	q.pendingRecs--
	q.used -= int64(l)
	q.budget.Release(int64(l))
	q.dropped++
	if q.pstart == len(q.pending) {
		q.pending, q.pstart = q.pending[:0], 0
	} else if q.pstart >= q.cfg.WriteBuffer/4 {
		// Keep len(pending) near WriteBuffer, so that its capacity is
		// kept, not regrown.
		q.pending = q.pending[:copy(q.pending, q.pending[q.pstart:])]
		q.pstart = 0
	}
	q.noteMemLocked()
	return 1
}

// dropSegmentLocked drops the oldest segment that holds entries, counting
// in *n those not handed out yet; entries already handed out are in
// flight and are neither dropped nor counted. It reports whether it
// dropped one.
func (q *Queue) dropSegmentLocked(n *int) bool {
	for _, s := range q.segs {
		if s.dropped || s.deleted || s.size <= headerSize && s.records == 0 {
			continue
		}
		s.dropped, s.sealed = true, true
		if k := s.records - s.handed; k > 0 {
			*n += k
			q.dropped += uint64(k)
		}
		q.used -= s.size
		q.budget.Release(s.size)
		if s == q.active {
			q.active = nil // the writer starts a new segment
		}
		q.roomMadeLocked()
		q.wakeWriter() // to delete the file
		q.wakeReader() // in case it reads that segment
		return true
	}
	return false
}
