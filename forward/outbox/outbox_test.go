package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

func TestSequencer(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(100, 0)
	t1 := t0.Add(1)
	var q sequencer
	var got []uint32
	for _, at := range []time.Time{t0, t0, t1, t0, t1, t1} {
		got = append(got, q.next(at))
	}
	if want := []uint32{0, 1, 0, 2, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("sequence %v, want %v", got, want)
	}
}

func line(i int) *forward.Event {
	return &forward.Event{Line: []byte(fmt.Sprintf("line %d", i)), Source: "stdout", Time: time.Unix(100, 0)}
}

// reader is a sender that reads every event, notes it, and acknowledges
// what it read (after Read: a token is the outbox's once Read returns),
// until the outbox is closed and empty.
func reader(o *Outbox, got *[]forward.Item) func(ctx context.Context) {
	return func(ctx context.Context) {
		for {
			from := len(*got)
			_, err := o.Read(ctx, 100, math.MaxInt, func(it *forward.Item) bool {
				cp := *it
				cp.Event = it.Event.Clone()
				*got = append(*got, cp)
				return true
			})
			for _, it := range (*got)[from:] {
				o.Ack(it.Token, it.Token+1)
			}
			if err != nil {
				return
			}
		}
	}
}

// stuck is a sender that reads nothing until its context ends, as one
// whose destination is down.
func stuck(ctx context.Context) { <-ctx.Done() }

func TestOutbox(t *testing.T) {
	t.Parallel()
	for _, disk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			t.Parallel()
			cfg := Config{Name: "test", Numbered: true}
			dir := func() string {
				if disk {
					return t.TempDir()
				}
				return ""
			}

			t.Run("delivered", func(t *testing.T) {
				cfg := cfg
				cfg.Dir = dir()
				o := Open(cfg, nil)
				if o.OnDisk() != disk {
					t.Fatalf("OnDisk = %v", o.OnDisk())
				}
				var got []forward.Item
				o.Start(reader(o, &got), nil)
				for i := range 5 {
					o.Send(line(i))
				}
				if err := o.Close(context.Background()); err != nil {
					t.Fatalf("Close: %v", err)
				}
				if len(got) != 5 {
					t.Fatalf("read %d events, want 5", len(got))
				}
				for i, it := range got {
					if string(it.Event.Line) != fmt.Sprintf("line %d", i) || it.Seq != uint32(i) {
						t.Errorf("event %d: %q seq %d", i, it.Event.Line, it.Seq)
					}
				}
				o.Send(line(5))
				if err := o.Close(context.Background()); !errors.Is(err, ErrClosed) {
					t.Errorf("second Close = %v, want ErrClosed", err)
				}
				if st := o.Stats(); st != (Stats{Dropped: 1}) {
					t.Errorf("stats %+v, want the event sent after Close dropped", st)
				}
			})

			t.Run("hard stop", func(t *testing.T) {
				cfg := cfg
				cfg.Dir = dir()
				o := Open(cfg, nil)
				woken := make(chan struct{})
				o.Start(stuck, func() { close(woken) })
				for i := range 3 {
					o.Send(line(i))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				err := o.Close(ctx)
				<-woken
				st := o.Stats()
				if disk {
					// Kept for the next outbox on the directory.
					if err != nil || st.Queued != 3 || st.Unsent != 0 {
						t.Fatalf("Close = %v, stats %+v: want 3 kept on disk", err, st)
					}
					next := Open(cfg, nil)
					var got []forward.Item
					next.Start(reader(next, &got), nil)
					if err := next.Close(context.Background()); err != nil || len(got) != 3 || got[2].Seq != 2 {
						t.Fatalf("replay: Close = %v, %d events %+v", err, len(got), got)
					}
					return
				}
				if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "close test sink: 3 events not delivered") {
					t.Errorf("Close = %v, want 3 not delivered and the deadline", err)
				}
				if st.Unsent != 3 || st.Queued != 0 || st.Dropped != 0 {
					t.Errorf("stats %+v", st)
				}
			})
		})
	}
}

func TestOutboxAbandonAndDrop(t *testing.T) {
	t.Parallel()
	for _, disk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			t.Parallel()
			cfg := Config{Name: "test"}
			if disk {
				cfg.Dir = t.TempDir()
			}
			o := Open(cfg, nil)
			o.Drop(2)
			o.Abandon(3)
			want := Stats{Dropped: 2, Unsent: 3}
			if disk {
				want.Unsent = 0 // abandoned events stay on disk
			}
			if st := o.Stats(); st.Dropped != want.Dropped || st.Unsent != want.Unsent {
				t.Errorf("stats %+v, want %+v", st, want)
			}
			_ = o.Close(context.Background())
		})
	}
}

// TestOutboxUnopenableDir: a disk buffer that cannot be opened does not
// fail the sink; its events wait in memory, and the log says why.
func TestOutboxUnopenableDir(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	o := Open(Config{Name: "test", Dir: filepath.Join(file, "buffer")}, slog.New(slog.NewTextHandler(&logs, nil)))
	defer o.Close(context.Background())
	if o.OnDisk() {
		t.Fatal("OnDisk with a directory under a file")
	}
	if !strings.Contains(logs.String(), "keeping events in memory") {
		t.Errorf("log %q does not say why", logs.String())
	}
}

// TestOutboxBufferFull: a full memory buffer drops, counts and says so,
// and Send never blocks.
func TestOutboxBufferFull(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	o := Open(Config{Name: "test", MemEvents: 10}, slog.New(slog.NewTextHandler(&logs, nil)))
	for i := range 25 {
		o.Send(line(i))
	}
	st := o.Stats()
	if st.Dropped != 15 || st.Queued != 10 {
		t.Errorf("stats %+v, want 15 dropped and 10 queued", st)
	}
	if !strings.Contains(logs.String(), "buffer full: dropped the oldest events") {
		t.Errorf("log %q", logs.String())
	}
	_ = o.Close(context.Background())
}

func TestStatsCounters(t *testing.T) {
	t.Parallel()
	st := Stats{Queued: 4, QueuedBytes: 40, Dropped: 2, Unsent: 3, Corrupt: 1}
	want := forward.Counters{Emitted: 7, Dropped: 5, RetryCount: 6, CorruptRegions: 1, BufferQueueLength: 4, BufferTotalQueuedSize: 40}
	if got := st.Counters(7, 6); !reflect.DeepEqual(got, want) {
		t.Errorf("Counters = %+v, want %+v", got, want)
	}
}
