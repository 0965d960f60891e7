package fluentd

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

// encodeOne encodes ev alone with cfg and parses the requests strictly.
func encodeOne(t testing.TB, cfg Config, c forward.Container, ev *forward.Event) []*fluentdtest.Request {
	enc := newEncoder(cfg, c)
	if err := enc.add(ev); err != nil {
		t.Fatal(err)
	}
	var b batch
	if err := enc.finish(&b, 0, 0); err != nil {
		t.Fatal(err)
	}
	var reqs []*fluentdtest.Request
	for _, raw := range b.reqs {
		req, errs := fluentdtest.Parse(raw)
		if len(errs) > 0 {
			t.Fatalf("violations %v in % x", errs, raw)
		}
		reqs = append(reqs, req)
	}
	return reqs
}

func TestEventTimeEncoding(t *testing.T) {
	tests := []struct {
		t       time.Time
		seconds bool
		want    []byte
	}{
		{time.Unix(1441588984, 5), false, []byte{0xd7, 0x00, 0x55, 0xec, 0xe6, 0xf8, 0, 0, 0, 5}},
		{time.Unix(1441588984, 999999999), true, []byte{0xd2, 0x55, 0xec, 0xe6, 0xf8}},
		{time.Unix(0, 0), false, []byte{0xd7, 0x00, 0, 0, 0, 0, 0, 0, 0, 0}},
		{time.Unix(1<<32-1, 1), false, []byte{0xd7, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1}},
	}
	for _, tc := range tests {
		got, err := eventTime{t: tc.t, seconds: tc.seconds}.MarshalMsg(nil)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("eventTime(%v, seconds %v) = % x, %v; want % x", tc.t, tc.seconds, got, err, tc.want)
		}
	}
}

// FuzzEncode checks that any line, label and piece encodes, in every mode,
// into requests the strict receiver accepts with the line intact.
func FuzzEncode(f *testing.F) {
	f.Add([]byte("hello"), "label", "value", "", 0, false)
	f.Add([]byte(`{"a":1,"log":"x"}`), "log", "v", "id", 2, true)
	f.Add([]byte{0xff, 0x00, 0xc1}, "", "", "p", 1, false)
	f.Fuzz(func(t *testing.T, line []byte, key, value, partialID string, ordinal int, last bool) {
		c := forward.Container{ID: testContainer.ID, Name: "n", Tag: "t", Extra: map[string]string{key: value}}
		ev := &forward.Event{Time: testTime, Source: "stdout", Line: line}
		if partialID != "" {
			ev.Partial = &forward.Partial{ID: partialID, Ordinal: ordinal, Last: last}
		}
		want := dockerRecord(c, ev)
		for _, cfg := range []Config{{}, {Gzip: true}, {Mode: ModeForward}, {Mode: ModeMessage, RequestAck: true}, {SharedOptions: forward.SharedOptions{JSONFields: true}}} {
			reqs := encodeOne(t, cfg, c, ev)
			if len(reqs) != 1 || len(reqs[0].Events) != 1 {
				t.Fatalf("%+v: %d requests", cfg, len(reqs))
			}
			rec := reqs[0].Events[0].Record
			for k, v := range want {
				if rec[k] != v {
					t.Fatalf("%+v: field %q = %#v, want %#v", cfg, k, rec[k], v)
				}
			}
			if !cfg.JSONFields && len(rec) != len(want) {
				t.Fatalf("%+v: record %v, want %v", cfg, rec, want)
			}
		}
	})
}

func benchEvents(n int) []forward.Event {
	evs := make([]forward.Event, n)
	for i := range evs {
		evs[i] = forward.Event{
			Time:   testTime.Add(time.Duration(i)),
			Source: "stdout",
			Line:   []byte(`2025-06-07T08:09:10.123Z INFO  request served method=GET path=/api/v1/items status=200 took=3ms n=` + strconv.Itoa(i)),
		}
	}
	return evs
}

// BenchmarkEncodeBatch measures turning 1000 events into requests.
func BenchmarkEncodeBatch(b *testing.B) {
	evs := benchEvents(1000)
	jsonEvs := make([]forward.Event, len(evs))
	for i := range jsonEvs {
		jsonEvs[i] = evs[i]
		jsonEvs[i].Line = []byte(`{"level":"info","msg":"request served","method":"GET","path":"/api/v1/items","status":200,"took_ms":3,"n":` + strconv.Itoa(i) + `}`)
	}
	var lineBytes int64
	for _, e := range evs {
		lineBytes += int64(len(e.Line))
	}
	for _, bc := range []struct {
		name string
		cfg  Config
		evs  []forward.Event
	}{
		{"packedforward", Config{}, evs},
		{"packedforward-gzip", Config{Gzip: true}, evs},
		{"forward", Config{Mode: ModeForward}, evs},
		{"message", Config{Mode: ModeMessage}, evs},
		{"packedforward-ack", Config{RequestAck: true}, evs},
		{"packedforward-seconds", Config{SecondPrecision: true}, evs},
		{"packedforward-json", Config{SharedOptions: forward.SharedOptions{JSONFields: true}}, jsonEvs},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// As the sink builds a batch: in a buffer from the batch
			// memory, given back once the batch is sent.
			batches := forward.NewBatches(8 << 20)
			enc := newEncoder(bc.cfg, testContainer)
			var bt batch
			size := 0
			b.SetBytes(lineBytes)
			b.ReportAllocs()
			for b.Loop() {
				enc.begin(batches.Get(context.Background(), 1<<20))
				for i := range bc.evs {
					if err := enc.add(&bc.evs[i]); err != nil {
						b.Fatal(err)
					}
				}
				if err := enc.finish(&bt, 1, 1001); err != nil {
					b.Fatal(err)
				}
				size = 0
				for _, r := range bt.reqs {
					size += len(r)
				}
				bt.release(batches)
			}
			b.ReportMetric(float64(size)/float64(len(bc.evs)), "wire-B/event")
		})
	}
}

// BenchmarkSend measures the hot path: copying an event into the queue.
func BenchmarkSend(b *testing.B) {
	// A server that accepts and discards, so the queue drains.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = bytes.NewBuffer(nil).ReadFrom(c) }()
		}
	}()
	s, err := New(Config{Servers: tcp(ln.Addr().String())}, testContainer, nil)
	if err != nil {
		b.Fatal(err)
	}
	ev := benchEvents(1)[0]
	b.SetBytes(int64(len(ev.Line)))
	b.ReportAllocs()
	for b.Loop() {
		s.Send(&ev)
	}
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Close(ctx)
}
