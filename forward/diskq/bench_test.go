package diskq

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

var benchEvent = forward.Event{
	Time:   testTime,
	Source: "stdout",
	Line:   []byte(`192.168.1.20 - - [07/Jun/2025:08:09:10 +0000] "GET /api/v1/items?page=2 HTTP/1.1" 200 5123`),
}

// BenchmarkAppend measures Append with the queue's goroutine writing to a
// real file system behind it and a consumer reading and acknowledging, as
// on the FIFO path of a container whose destination keeps up.
func BenchmarkAppend(b *testing.B) {
	q, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	consumed := consume(q)
	b.SetBytes(int64(frameSize(&benchEvent, 0)))
	b.ReportAllocs()
	for b.Loop() {
		q.Append(&benchEvent, 0)
	}
	b.StopTimer()
	q.CloseWrite()
	n := <-consumed
	if d := q.Dropped(); d > 0 {
		b.Logf("%d of %d dropped, %d consumed", d, b.N, n)
	}
}

// BenchmarkEndToEnd measures the sustained rate through the queue (Append,
// write, read back, acknowledge, delete) with the block policy, so that
// nothing is dropped: the producer waits for the consumer.
func BenchmarkEndToEnd(b *testing.B) {
	q, err := Open(Config{Dir: b.TempDir(), Buffer: forward.BufferConfig{
		MaxSize: 16 << 20, Full: forward.Block, BlockTimeout: time.Minute,
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	consumed := consume(q)
	b.SetBytes(int64(frameSize(&benchEvent, 0)))
	b.ReportAllocs()
	for b.Loop() {
		q.Append(&benchEvent, 0)
	}
	q.CloseWrite()
	n := <-consumed
	if d := q.Dropped(); d > 0 || n != b.N {
		b.Fatalf("%d dropped, %d of %d consumed", d, n, b.N)
	}
}

func waitWrittenB(b *testing.B, q *Queue) {
	for {
		q.mu.Lock()
		done := len(q.pending) == q.pstart && q.writing == 0
		q.mu.Unlock()
		if done {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkReplay measures what a sink does after a restart: open the
// queue on what an earlier one left (100 000 entries, about 12 MB), read
// it all back, acknowledge it and close (deleting the files).
func BenchmarkReplay(b *testing.B) {
	const n = 100_000
	template := b.TempDir()
	q, err := Open(Config{Dir: template, Buffer: forward.BufferConfig{MaxSize: 1 << 30}})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		q.Append(&benchEvent, 0)
		if i%1000 == 0 {
			waitWrittenB(b, q)
		}
	}
	if err := q.Close(); err != nil || q.Dropped() > 0 {
		b.Fatalf("filling: %v, %d dropped", err, q.Dropped())
	}
	b.SetBytes(int64(n * frameSize(&benchEvent, 0)))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		copyDirB(b, template, dir)
		b.StartTimer()
		q, err := Open(Config{Dir: dir, Buffer: forward.BufferConfig{MaxSize: 1 << 30}})
		if err != nil {
			b.Fatal(err)
		}
		q.CloseWrite()
		got := 0
		for {
			k, err := readAck(b.Context(), q, 1000, 1<<20)
			got += k
			if errors.Is(err, forward.ErrQueueClosed) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if got != n {
			b.Fatalf("replayed %d of %d", got, n)
		}
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func copyDirB(b *testing.B, src, dst string) {
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o750)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o640)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// readAck reads up to maxEvents entries, as a sink does, acknowledges them
// and returns how many it took.
func readAck(ctx context.Context, q *Queue, maxEvents, maxBytes int) (int, error) {
	var from, to uint64
	n, err := q.Read(ctx, maxEvents, maxBytes, func(it *forward.Item) bool {
		if to == 0 {
			from = it.Token
		}
		to = it.Token + 1
		return true
	})
	if n > 0 {
		q.Ack(from, to)
	}
	return n, err
}

// consume reads and acknowledges everything q hands out, in the background,
// and sends how many entries it consumed once q is closed for writing and
// drained.
func consume(q *Queue) <-chan int {
	consumed := make(chan int, 1)
	go func() {
		n := 0
		for {
			k, err := readAck(context.Background(), q, 10_000, 4<<20)
			n += k
			if err != nil {
				consumed <- n
				return
			}
		}
	}()
	return consumed
}
