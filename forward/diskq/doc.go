// Package diskq is the disk-backed buffer of one destination of one
// container: a write-ahead queue of forward.Events in segment files, from
// which a sink reads back what to send and which deletes entries only once
// the destination has acknowledged them. What is on disk survives a crash
// or a restart of the plugin and is delivered by the next queue opened on
// the same directory.
//
// # Flow
//
// Append (called by the sink's Send, on the container's FIFO path) encodes
// the event into a small memory buffer, from a pool shared by every queue,
// and returns; it does not allocate in steady state. The entries waiting
// in memory are written to the current segment, with one write(2) per
// segment touched, and never an fsync: by Flush, which the driver calls
// from the container's reader whenever it has decoded all it read from the
// FIFO, so that what it has read survives a kill -9 of the process
// (writing there costs less than waking another goroutine for a read's
// worth of entries); by the queue's goroutine after an Append filled the
// buffer (Config.WriteBuffer, 64 KiB; Append goes on with a new one), and
// otherwise FlushDelay (20ms) after the first of them. Append writes
// itself when a second buffer fills while the first is written, or more
// queues (two per core, at least four) wait for their goroutine already,
// so that with hundreds of busy containers no more buffers wait than when
// every reader wrote. The buffer then goes back to the pool: a queue holds
// none between writes. The goroutine also fsyncs, closes finished
// segments, deletes acknowledged ones and records the acknowledged
// position; nobody waits for an fsync.
//
// Read (the sink's sender) hands entries back from the files, in order,
// each with a token, to a callback, through a read window from a pool
// given back when Read returns. Wait lets a sender wait, holding nothing, until a batch
// worth of entries is on disk. Ack(from, to) acknowledges tokens, in any
// order. Entries are handed out once per queue; those not acknowledged
// when the queue is closed are handed out again by the next one. A sender
// that could not deliver a batch gives its memory back and either takes
// the entries back (Rewind: handed out again, with the same tokens) or
// reads them again by token (Reread).
//
// # Files
//
// Under Config.Dir each queue writes to a generation of its own,
// gen-<16 hex digits>/, holding the segment files <16 hex>.seg, an "ack"
// file and a "lock" file locked with flock(2) while a queue owns the
// generation. A queue adopts (locks and reads) every generation not
// locked by another: at Open, in the background, before it hands out
// anything of its own, and every RescanInterval, so that what a queue that
// was still closing left behind is picked up too. An adopted generation
// is deleted once it is all acknowledged; the own generation at Close if
// it is empty. Two queues open on one directory at once (a container
// restarted while its previous sink still delivers) thus never share a
// file, and each is bounded on its own.
//
// A segment file is a 32-byte header (magic "LFQS", version, generation,
// segment number, CRC-32C) and frames: a 12-byte header (payload length,
// CRC-32C of the payload, CRC-32C of those 8 bytes) and the payload, a
// compact binary of the event: source, time in nanoseconds, the sink's
// number for it (forward.Item.Seq: Elasticsearch's place among events of
// the same nanosecond, so that a replay produces the same _id), the
// partial-line id, ordinal and last flag, and the line. See format.go for
// the exact layout. The checksums are computed by the queue's goroutine
// as it writes, and checked when a queue adopts a generation; a queue
// reads its own segments, written by it and read no further than what
// was written whole, without checking them again. A segment is closed
// once it passes SegmentSize
// (MaxSize/16, from 4 KiB to 8 MiB) and a new one started.
//
// # Acknowledgements and replay
//
// The queue keeps, per segment, the end of the prefix of entries
// acknowledged without a gap. A segment whose entries are all handed out
// and acknowledged is deleted. Every SyncInterval (1s), and at Close, the
// position (segment number, offset) of each generation is written to its
// ack file, rewritten in place with a checksum. A queue adopting the
// generation deletes the segments before that position and starts reading
// at it. A stale or damaged ack file means entries are handed out again,
// never lost: delivery is at least once (and exactly once into
// Elasticsearch, whose _id makes a replay a 409).
//
// # Durability
//
// The segment being written is fsynced every SyncInterval (1s) or
// SyncBytes (4 MiB), whichever comes first; a segment closed for size,
// SyncInterval after it was closed; the directory SyncInterval after a
// segment was created. Never per event, and never by the writer of an
// entry. What the destination has acknowledged is not fsynced: a segment
// deleted before its fsync is due never is, so while the sender keeps up
// the buffer's pages are deleted before the kernel writes them back, and
// the disk is spared the write.
//
//   - Process crash (kill -9, a panic, an OOM kill): everything written
//     to a segment is in the kernel's page cache and survives: everything
//     appended before the last Flush. What is lost is what was appended
//     since and not written yet: at most FlushDelay's worth, or
//     WriteBuffer bytes when writing fails. Entries delivered after the
//     last ack file write (up to SyncInterval) are delivered again.
//   - Power loss or kernel crash: in addition, the entries written but
//     not yet fsynced and not acknowledged: up to about two SyncIntervals'
//     worth (a closed segment waits up to one, and the goroutine looks at
//     it once per SyncInterval). The ack file is not fsynced except at
//     Close, so more may be delivered again.
//
// # Bounds and overflow
//
// Config.Buffer.MaxSize bounds the bytes of segment files not yet deleted
// plus those waiting in memory (the 32-byte header of a segment being
// started may go over it); Config.Buffer.Budget, when set, is a limit
// shared with other queues. An entry that does not fit is handled by
// Config.Buffer.Full:
//
//   - drop-oldest (default): the oldest segment holding entries is dropped
//     (its entries not yet handed out are counted; those in flight may
//     still be delivered, and are counted at Close if they were not).
//     Over a shared budget a queue drops only its own segments; with none
//     left, the new entry. When it is the write buffer that is full
//     (writing fails: the disk is full), the oldest entry waiting in
//     memory is dropped: that one is newer than those on disk.
//   - drop-newest: the new entry is dropped.
//   - block: Append waits until room is made (acknowledged segments are
//     deleted), at most Buffer.BlockTimeout (1s). If that passes, the
//     entry is dropped, and so is every later entry that does not fit,
//     without waiting, until room is made again. So the container's FIFO
//     reader waits at most BlockTimeout each time the buffer fills up:
//     backpressure reaches the container at the destination's pace, but a
//     destination that is down costs it one second, not a hang.
//
// Every drop is counted in Stats.Dropped.
//
// # Failures
//
// A write that fails (a full disk) is undone (the file is truncated back
// to its last intact frame, or, if that fails, closed for good) and tried
// again by the next Flush or Append that finds the write buffer full (at
// most every 10ms), or after RetryInterval; meanwhile entries wait in
// memory, and once WriteBuffer is full the overflow policy applies to
// them: drops are counted, and writing resumes by itself when space
// returns. A frame that
// does not check out (a torn write at the end of a segment after a crash,
// a bad checksum) is skipped and counted in Stats.Corrupt; the reader
// resynchronises on the next offset where a frame header and its payload
// check out, so later entries are delivered; it never panics or loops on
// bad data (the decoder is fuzzed).
//
// # Memory
//
// A queue holds no buffer while its entries are on disk: per queue, a few
// hundred bytes of state, its goroutine, and 24 bytes per entry handed out
// and not yet acknowledged (in blocks from a shared pool). The write
// buffer (while entries wait in memory: up to WriteBuffer, and as much
// again being written while writing fails) and the read window (64 KiB,
// more for an entry bigger than that, during a read) come from pools
// shared by every queue, so their memory follows the number of queues
// writing or reading at one moment, not the number of queues.
package diskq
