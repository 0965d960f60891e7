package diskq

import (
	"runtime"
	"sync"
)

// Buffers shared by every queue of the process. A queue holds a write
// buffer only while entries wait in memory, and a read window only during
// a read, so that memory does not grow with the number of queues.
var (
	writeBufs = make(chan []byte, 64)
	readBufs  = make(chan []byte, 16)
)

// writeSlots bounds the queues that handed a full write buffer to their
// goroutine and were not served yet: each holds a second buffer
// meanwhile. With none free, Append writes itself, as Flush does; so with
// hundreds of containers busy at once, no more buffers wait than when
// every reader wrote its own. It is made on first use, so that it follows
// the GOMAXPROCS the process set when it started.
var writeSlots = sync.OnceValue(func() chan struct{} {
	return make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0)))
})

// firstWriteBuf is the capacity of a new write buffer: most hold the
// entries of one read of a container's FIFO; they grow as needed.
const firstWriteBuf = 16 << 10

// getWriteBuf returns an empty buffer for entries waiting to be written.
func getWriteBuf() []byte {
	select {
	case b := <-writeBufs:
		return b[:0]
	default:
	}
	return make([]byte, 0, firstWriteBuf)
}

// putWriteBuf gives back a buffer from getWriteBuf; one that grew much
// bigger (a big entry passed) is left to the garbage collector.
func putWriteBuf(b []byte) {
	if b == nil || cap(b) > 2*DefaultWriteBuffer {
		return
	}
	select {
	case writeBufs <- b[:0]:
	default:
	}
}

// getReadBuf returns a read window of readChunk bytes.
func getReadBuf() []byte {
	select {
	case b := <-readBufs:
		return b[:0]
	default:
	}
	return make([]byte, 0, readChunk)
}

// putReadBuf gives back a window from getReadBuf; others are dropped.
func putReadBuf(b []byte) {
	if cap(b) != readChunk {
		return
	}
	select {
	case readBufs <- b[:0]:
	default:
	}
}
