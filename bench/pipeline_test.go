//go:build bench

package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/driver"
	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/elasticsearch"
	"github.com/logferry/logferry/forward/fluentd"
)

// BenchmarkPipeline drives the plugin's path from FIFO to files in this
// process, with package driver as a library: frames written into a real
// FIFO, decoded, encoded as json-file records and written to the
// container's file. One op is one 100-byte line. "write=frame" writes one
// frame per write(2), as dockerd does; "write=32KiB" writes 256 at a time,
// which shows the cost of the path without the per-frame wake-ups.
// allocs/op counts every goroutine (the writer's too), so it is an upper
// bound on the plugin's.
//
// It is the place to profile what the end-to-end numbers show:
//
//	go test -tags bench -run '^$' -bench Pipeline -cpuprofile cpu.out ./bench
func BenchmarkPipeline(b *testing.B) {
	b.Run("write=frame", func(b *testing.B) { benchmarkPipeline(b, 1) })
	b.Run("write=32KiB", func(b *testing.B) { benchmarkPipeline(b, 256) })
}

func benchmarkPipeline(b *testing.B, perWrite int) {
	dir := b.TempDir()
	d := driver.New(driver.Config{Root: dir, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	defer func() {
		if err := d.Close(ctx); err != nil {
			b.Error(err)
		}
	}()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		b.Fatal(err)
	}
	id := strings.Repeat("ab", 32)
	if err := d.StartLogging(fifo, &driver.Info{ContainerID: id, ContainerName: "/bench"}); err != nil {
		b.Fatal(err)
	}
	// The driver holds the FIFO open for reading: this does not wait.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()

	var frames []byte
	e := driver.LogEntry{Source: "stdout", TimeNano: benchTime.UnixNano(), Line: benchLine}
	b.SetBytes(int64(len(benchLine) + 1))
	b.ReportAllocs()
	for sent := 0; sent < b.N; {
		frames = frames[:0]
		for range min(perWrite, b.N-sent) {
			e.TimeNano += 1000
			frames = driver.AppendFrame(frames, &e)
			sent++
		}
		if _, err := w.Write(frames); err != nil {
			b.Fatal(err)
		}
	}
	// Returns once every record is in the file.
	if err := d.StopLogging(ctx, fifo); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

// benchLine is a 99-byte line (100 with its newline), benchTime its time.
var (
	benchLine = []byte(strings.Repeat(lineTemplate, 2)[:99])
	benchTime = time.Date(2024, 3, 5, 7, 8, 9, 0, time.UTC)
)

// BenchmarkSink measures one destination's sink on its own, from Send to
// the receiver of the end-to-end harness counting the line, with a queue
// that holds the whole run: what one sink costs per line and how many
// lines per second it delivers (lines/s = 1e9 / ns/op; run with -cpu 1 for
// one core). allocs/op includes the receiver's.
//
//	go test -tags bench -run '^$' -bench Sink -cpu 1 -cpuprofile cpu.out ./bench
func BenchmarkSink(b *testing.B) {
	// One Fluentd server, and two with fluentd-balance=weighted: spreading
	// batches must cost nothing per line.
	for _, tc := range []struct {
		name      string
		receivers int
	}{{"fluentd", 1}, {"fluentd-2-weighted", 2}} {
		b.Run(tc.name, func(b *testing.B) {
			var addrs []string
			var rs []*forwardReceiver
			for range tc.receivers {
				r, err := startForwardReceiver()
				if err != nil {
					b.Fatal(err)
				}
				defer r.close()
				rs, addrs = append(rs, r), append(addrs, r.addr())
			}
			cfg, _, err := fluentd.ParseConfig(map[string]string{"fluentd-address": strings.Join(addrs, ","), "fluentd-balance": "weighted"})
			if err != nil {
				b.Fatal(err)
			}
			cfg.QueueEvents, cfg.QueueBytes = b.N+1, 1<<40
			s, err := fluentd.New(cfg, testContainer, nil)
			if err != nil {
				b.Fatal(err)
			}
			benchmarkSink(b, s, func() int64 {
				var n int64
				for _, r := range rs {
					n += r.count()
				}
				return n
			})
		})
	}
	b.Run("elasticsearch", func(b *testing.B) {
		r, err := startBulkReceiver()
		if err != nil {
			b.Fatal(err)
		}
		defer r.close()
		cfg, _, err := elasticsearch.ParseConfig(map[string]string{"elasticsearch-url": r.url()})
		if err != nil {
			b.Fatal(err)
		}
		cfg.QueueEvents, cfg.QueueBytes = b.N+1, 1<<40
		s, err := elasticsearch.New(cfg, elasticsearch.Credentials{}, testContainer, nil)
		if err != nil {
			b.Fatal(err)
		}
		benchmarkSink(b, s, r.count)
	})
}

// sink is what the driver needs of a destination.
type sink interface {
	Send(ev *forward.Event)
	Close(ctx context.Context) error
}

func benchmarkSink(b *testing.B, s sink, delivered func() int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	base := delivered()
	ev := forward.Event{Time: benchTime, Source: "stdout", Line: benchLine}
	b.SetBytes(int64(len(benchLine) + 1))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ev.Time = ev.Time.Add(time.Microsecond)
		s.Send(&ev)
	}
	// Close sends what is queued and returns once it is delivered.
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
	for delivered()-base < int64(b.N) {
		if ctx.Err() != nil {
			b.Fatalf("%d of %d lines delivered", delivered()-base, b.N)
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
}
