package diskq

// handoutBlock is how many handouts are allocated at a time.
const handoutBlock = 128

type handoutBlockArr [handoutBlock]handout

// handoutBlocks are shared by every queue: a queue holds blocks only for
// the entries it has in flight, and gives each back once its entries are
// acknowledged or taken back. At most 256 blocks (768 KiB) are kept.
var handoutBlocks = make(chan *handoutBlockArr, 256)

func getHandoutBlock() *handoutBlockArr {
	select {
	case b := <-handoutBlocks:
		return b
	default:
		return new(handoutBlockArr)
	}
}

// putHandoutBlock keeps a cleared block for reuse, if there is room.
func putHandoutBlock(b *handoutBlockArr) {
	select {
	case handoutBlocks <- b:
	default:
	}
}

// handouts is the FIFO of the entries handed out and not yet
// acknowledged, in blocks from handoutBlocks, so that it neither copies
// nor keeps memory as it grows and shrinks.
type handouts struct {
	blocks []*handoutBlockArr
	head   int // index of the oldest in blocks[0]
	n      int
}

func (h *handouts) len() int { return h.n }

// at returns the i-th oldest handout.
func (h *handouts) at(i int) *handout {
	j := h.head + i
	return &h.blocks[j/handoutBlock][j%handoutBlock]
}

func (h *handouts) push(x handout) {
	j := h.head + h.n
	if j/handoutBlock == len(h.blocks) {
		h.blocks = append(h.blocks, getHandoutBlock())
	}
	h.blocks[j/handoutBlock][j%handoutBlock] = x
	h.n++
}

// popFront removes the oldest handout.
func (h *handouts) popFront() {
	h.blocks[0][h.head] = handout{}
	h.head++
	h.n--
	if h.n == 0 {
		h.truncate(0)
		return
	}
	if h.head == handoutBlock {
		putHandoutBlock(h.blocks[0])
		h.blocks = append(h.blocks[:0], h.blocks[1:]...)
		h.head = 0
	}
}

// truncate keeps the k oldest handouts.
func (h *handouts) truncate(k int) {
	for i := k; i < h.n; i++ {
		*h.at(i) = handout{}
	}
	h.n = k
	if k == 0 {
		h.head = 0
		if len(h.blocks) > 0 {
			// The first block may still have cleared slots before head.
			clear(h.blocks[0][:])
		}
	}
	keep := (h.head + h.n + handoutBlock - 1) / handoutBlock
	for i := keep; i < len(h.blocks); i++ {
		putHandoutBlock(h.blocks[i])
		h.blocks[i] = nil
	}
	h.blocks = h.blocks[:keep]
	if len(h.blocks) == 0 && cap(h.blocks) > 64 {
		h.blocks = nil // let a long list go
	}
}

// Ack acknowledges the entries whose tokens are in [from, to): the
// destination has them (or they were given up on and counted by the
// sink). A segment is deleted once every entry in it is acknowledged;
// the acknowledged position is written to disk every SyncInterval and at
// Close, so that a queue opened later resumes after it. Tokens out of
// range, or acknowledged already, are ignored. Entries may be
// acknowledged in any order.
func (q *Queue) Ack(from, to uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	from = max(from, q.ringBase)
	to = min(to, q.nextToken)
	for t := from; t < to; t++ {
		q.ring.at(int(t - q.ringBase)).acked = true
	}
	wake := false
	for q.ring.len() > 0 && q.ring.at(0).acked {
		h := q.ring.at(0)
		if s := h.seg; !s.dropped && !s.deleted {
			s.acked++
			s.commit = max(s.commit, int64(h.end))
			s.gen.ackDirty = true
			wake = wake || (s.done && s.acked >= s.handed)
		}
		q.ring.popFront()
		q.ringBase++
	}
	if wake {
		q.wakeWriter()
	}
}
