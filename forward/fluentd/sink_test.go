package fluentd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

const waitLong = 10 * time.Second

var testContainer = forward.Container{
	ID:    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	Name:  "web",
	Tag:   "docker.web",
	Extra: map[string]string{"com.example.team": "core", "STAGE": "prod"},
}

var testTime = time.Date(2025, 6, 7, 8, 9, 10, 123456789, time.UTC)

// fast shortens the timings of cfg for tests; fields already set are kept.
func fast(cfg Config) Config {
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 10 * time.Millisecond
	}
	if cfg.RetryWait == 0 {
		cfg.RetryWait = 20 * time.Millisecond
	}
	if cfg.MaxRetryWait == 0 {
		cfg.MaxRetryWait = 100 * time.Millisecond
	}
	if cfg.HealthCheckInterval == 0 {
		cfg.HealthCheckInterval = 50 * time.Millisecond
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = 2 * time.Second
	}
	return cfg
}

// newSink starts a Sink whose Close (with a deadline) and goroutine check
// run at the end of the test.
func newSink(t *testing.T, cfg Config, c forward.Container) *Sink {
	t.Helper()
	s, err := New(cfg, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		s.Close(ctx)
		checkNoGoroutines(t)
	})
	return s
}

// checkNoGoroutines fails if goroutines of this package's Sink are left.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	var stacks string
	for range 100 {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "fluentd.(*Sink)") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("goroutines left behind:\n%s", stacks)
}

func line(i int) string { return "line " + strconv.Itoa(i) }

func sendLines(s *Sink, from, to int) {
	for i := from; i < to; i++ {
		s.Send(&forward.Event{Time: testTime, Source: "stdout", Line: []byte(line(i))})
	}
}

// logs returns the log field of events.
func logs(evs []fluentdtest.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i], _ = e.Record["log"].(string)
	}
	return out
}

func wantLines(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, line(i))
	}
	return out
}

// unique returns lines without repeats, in order of first appearance.
func unique(lines []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closeSink(t *testing.T, s *Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestModes(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		mode     fluentdtest.Mode
		requests int
	}{
		{"packedforward", Config{}, fluentdtest.PackedForward, 1},
		{"gzip", Config{Gzip: true}, fluentdtest.CompressedPackedForward, 1},
		{"forward", Config{Mode: ModeForward}, fluentdtest.Forward, 1},
		{"message", Config{Mode: ModeMessage}, fluentdtest.Message, 5},
		{"packedforward with acks", Config{RequestAck: true}, fluentdtest.PackedForward, 1},
		{"gzip with acks", Config{Gzip: true, RequestAck: true}, fluentdtest.CompressedPackedForward, 1},
		{"forward with acks", Config{Mode: ModeForward, RequestAck: true}, fluentdtest.Forward, 1},
		{"message with acks", Config{Mode: ModeMessage, RequestAck: true}, fluentdtest.Message, 5},
		{"integer seconds", Config{SecondPrecision: true}, fluentdtest.PackedForward, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := fluentdtest.NewServer(t, fluentdtest.Config{})
			cfg := tc.cfg
			cfg.Servers = tcp(srv.Addr())
			cfg.FlushInterval = time.Hour // only Close flushes: one batch
			s := newSink(t, cfg, testContainer)
			sendLines(s, 0, 5)
			closeSink(t, s)
			evs := srv.WaitEvents(5, waitLong) // without acks, Close does not wait for the server
			if got := logs(evs); !reflect.DeepEqual(got, wantLines(0, 5)) {
				t.Fatalf("received %q", got)
			}
			reqs := srv.Requests()
			if len(reqs) != tc.requests {
				t.Fatalf("%d requests, want %d", len(reqs), tc.requests)
			}
			for _, r := range reqs {
				if r.Mode != tc.mode || r.Tag != "docker.web" {
					t.Errorf("request mode %v tag %q, want %v docker.web", r.Mode, r.Tag, tc.mode)
				}
				if r.StrEntries {
					t.Error("entries sent as str, not bin")
				}
				if (r.Chunk != "") != tc.cfg.RequestAck {
					t.Errorf("chunk %q with RequestAck %v", r.Chunk, tc.cfg.RequestAck)
				}
				wantSize := len(r.Events)
				if tc.mode == fluentdtest.Message {
					wantSize = -1 // as Docker's driver: no size option
				}
				if r.Size != wantSize {
					t.Errorf("size option %d, want %d", r.Size, wantSize)
				}
			}
			for _, e := range evs {
				if e.EventTime == tc.cfg.SecondPrecision {
					t.Errorf("EventTime %v with SecondPrecision %v", e.EventTime, tc.cfg.SecondPrecision)
				}
				want := testTime
				if tc.cfg.SecondPrecision {
					want = testTime.Truncate(time.Second)
				}
				if !e.Time.Equal(want) {
					t.Errorf("time %v, want %v", e.Time, want)
				}
			}
			if st := s.Stats(); st.Emitted != 5 || st.Dropped != 0 || st.Retries != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// dockerRecord is the record Docker's fluentd driver builds for an event:
// the facts of moby's daemon/logger/fluentd (a map of strings, labels/env
// replacing its keys, partial_* replacing those), sent the way it sends
// it: with fluent-logger-golang.
func dockerRecord(c forward.Container, ev *forward.Event) map[string]string {
	data := map[string]string{
		"container_id":   c.ID,
		"container_name": "/" + c.Name, // Docker's container names start with "/"
		"source":         ev.Source,
		"log":            string(ev.Line),
	}
	for k, v := range c.Extra {
		data[k] = v
	}
	if p := ev.Partial; p != nil {
		data["partial_message"] = "true"
		data["partial_id"] = p.ID
		data["partial_ordinal"] = strconv.Itoa(p.Ordinal)
		data["partial_last"] = strconv.FormatBool(p.Last)
	}
	return data
}

// TestRecordsAsDocker sends the same events through fluent-logger-golang
// as Docker's driver does and through a Sink, and compares what arrives.
func TestRecordsAsDocker(t *testing.T) {
	containers := map[string]forward.Container{
		"plain":  {ID: testContainer.ID, Name: "web", Tag: "web"},
		"extras": testContainer,
		"extras replacing keys": {ID: testContainer.ID, Name: "web", Tag: "t", Extra: map[string]string{
			"log": "label log", "container_name": "label name", "partial_id": "label partial", "source": "env source",
		}},
	}
	events := []*forward.Event{
		{Time: testTime, Source: "stdout", Line: []byte("hello")},
		{Time: testTime, Source: "stderr", Line: []byte("oops \x00 \xff not UTF-8")},
		{Time: testTime, Source: "stdout", Line: []byte("")},
		{Time: testTime, Source: "stdout", Line: []byte(strings.Repeat("x", 100)), Partial: &forward.Partial{ID: "abc", Ordinal: 1}},
		{Time: testTime, Source: "stdout", Line: []byte("end"), Partial: &forward.Partial{ID: "abc", Ordinal: 2, Last: true}},
	}
	for name, c := range containers {
		t.Run(name, func(t *testing.T) {
			docker := fluentdtest.NewServer(t, fluentdtest.Config{})
			host, port, _ := net.SplitHostPort(docker.Addr())
			p, _ := strconv.Atoi(port)
			f, err := fluent.New(fluent.Config{FluentHost: host, FluentPort: p})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				if err := f.PostWithTime(c.Tag, ev.Time, dockerRecord(c, ev)); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()

			ours := fluentdtest.NewServer(t, fluentdtest.Config{})
			// Docker's defaults: integer seconds.
			s := newSink(t, Config{Servers: tcp(ours.Addr()), SecondPrecision: true}, c)
			for _, ev := range events {
				s.Send(ev)
			}
			closeSink(t, s)

			want := docker.WaitEvents(len(events), waitLong)
			got := ours.WaitEvents(len(events), waitLong)
			if len(got) != len(events) || len(want) != len(events) {
				t.Fatalf("received %d events from the sink and %d from Docker's driver, want %d", len(got), len(want), len(events))
			}
			for i := range events {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("event %d:\nsink   %+v\ndocker %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestJSONLines(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	s := newSink(t, Config{Servers: tcp(srv.Addr()), SharedOptions: forward.SharedOptions{JSONFields: true}}, testContainer)
	for _, l := range []string{
		`{"level":"info","msg":"hi","n":42,"big":18446744073709551615,"f":1.5,"ok":true,"nil":null,"tags":["a",1],"obj":{"k":"v"}}`,
		`{"log":"not mine","source":"nor this","STAGE":"nor this","container_id":"x","extra":1}`,
		`not json`,
		`{"broken":`,
		`[1,2]`,
	} {
		s.Send(&forward.Event{Time: testTime, Source: "stdout", Line: []byte(l)})
	}
	closeSink(t, s)
	evs := srv.WaitEvents(5, waitLong)
	if len(evs) != 5 {
		t.Fatalf("%d events", len(evs))
	}
	want0 := map[string]any{
		"level": "info", "msg": "hi", "n": int64(42), "big": uint64(18446744073709551615), "f": 1.5, "ok": true, "nil": nil,
		"tags": []any{"a", int64(1)}, "obj": map[string]any{"k": "v"},
	}
	for k, v := range want0 {
		if !reflect.DeepEqual(evs[0].Record[k], v) {
			t.Errorf("field %s = %#v, want %#v", k, evs[0].Record[k], v)
		}
	}
	if evs[0].Record["log"] != `{"level":"info","msg":"hi","n":42,"big":18446744073709551615,"f":1.5,"ok":true,"nil":null,"tags":["a",1],"obj":{"k":"v"}}` {
		t.Errorf("log field changed: %v", evs[0].Record["log"])
	}
	r1 := evs[1].Record
	if r1["source"] != "stdout" || r1["STAGE"] != "prod" || r1["container_id"] != testContainer.ID || r1["extra"] != int64(1) {
		t.Errorf("the record's own keys must win: %v", r1)
	}
	for i := 2; i < 5; i++ {
		if len(evs[i].Record) != 6 {
			t.Errorf("non-object line %d got fields: %v", i, evs[i].Record)
		}
	}
}

func TestPartialMerge(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	s := newSink(t, Config{Servers: tcp(srv.Addr()), SharedOptions: forward.SharedOptions{PartialMerge: true, Merge: forward.MergeConfig{Timeout: 50 * time.Millisecond}}, FlushInterval: 10 * time.Millisecond}, testContainer)
	piece := func(src, id string, ord int, last bool, l string) *forward.Event {
		return &forward.Event{Time: testTime, Source: src, Line: []byte(l), Partial: &forward.Partial{ID: id, Ordinal: ord, Last: last}}
	}
	s.Send(piece("stdout", "a", 1, false, "A1"))
	s.Send(piece("stderr", "b", 1, false, "B1"))
	s.Send(&forward.Event{Time: testTime, Source: "stdout", Line: []byte("whole")})
	s.Send(piece("stdout", "a", 2, true, "A2"))
	s.Send(piece("stderr", "c", 1, false, "C1")) // its last piece never comes
	s.Send(piece("stderr", "b", 2, true, "B2"))
	evs := srv.WaitEvents(4, waitLong)
	got := map[string]map[string]any{}
	for _, e := range evs {
		got[e.Record["log"].(string)] = e.Record
	}
	for _, l := range []string{"whole", "A1A2", "B1B2"} {
		r, ok := got[l]
		if !ok {
			t.Errorf("no record %q in %q", l, logs(evs))
			continue
		}
		if _, partial := r["partial_message"]; partial {
			t.Errorf("merged line %q still marked partial", l)
		}
	}
	if r := got["C1"]; r == nil || r["partial_message"] != "true" || r["partial_last"] != "false" || r["partial_id"] != "c" {
		t.Errorf("timed-out piece: %v", r)
	}
}

func TestBatchBySize(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	const batch = 2048
	s := newSink(t, Config{Servers: tcp(srv.Addr()), BatchSize: batch, FlushInterval: time.Hour}, testContainer)
	long := strings.Repeat("x", 200)
	for i := range 50 {
		s.Send(&forward.Event{Time: testTime, Source: "stdout", Line: []byte(long + strconv.Itoa(i))})
	}
	// Full batches go out without waiting for the (hour-long) interval.
	evs := srv.WaitEvents(40, waitLong)
	if len(evs) < 40 {
		t.Fatalf("only %d events sent by size", len(evs))
	}
	// full: one more event of the same size would not have fitted.
	full := func(r *fluentdtest.Request) bool { return r.Bytes+r.Bytes/len(r.Events) > batch }
	reqs := srv.Requests()
	for i, r := range reqs {
		// A batch closes once it reaches the size: it may exceed it by
		// less than one event.
		if r.Bytes > batch+500 {
			t.Errorf("request %d: %d bytes with %d events, batch size %d", i, r.Bytes, len(r.Events), batch)
		}
		// A batch waits until the buffer holds about a batch size of
		// events, unless the one before it was full: then the sender is
		// behind and takes at once what is left.
		if r.Bytes < batch/encodedPerStored && (i == 0 || !full(reqs[i-1])) {
			t.Errorf("request %d: %d bytes with %d events, not right after a full one", i, r.Bytes, len(r.Events))
		}
	}
	closeSink(t, s)
	if n := len(srv.WaitEvents(50, waitLong)); n != 50 {
		t.Errorf("%d events after Close, want 50", n)
	}
}

func TestBatchByInterval(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	const interval = 100 * time.Millisecond
	s := newSink(t, Config{Servers: tcp(srv.Addr()), FlushInterval: interval}, testContainer)
	start := time.Now()
	sendLines(s, 0, 3)
	evs := srv.WaitEvents(3, waitLong)
	elapsed := time.Since(start)
	if len(evs) != 3 {
		t.Fatalf("%d events", len(evs))
	}
	if elapsed < interval {
		t.Errorf("sent after %v, before the flush interval %v", elapsed, interval)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests, want the 3 events in 1", n)
	}
}

func TestAckResend(t *testing.T) {
	tests := []struct {
		name string
		// first is what the server does with the first request.
		first     fluentdtest.Action
		cut       bool // or it closes the connection in the middle of it
		duplicate bool // whether Fluentd may end up with the batch twice
	}{
		{"ack withheld", fluentdtest.NoAck, false, true},
		{"closed after storing", fluentdtest.CloseNoAck, false, true},
		{"closed before storing", fluentdtest.Discard, false, false},
		{"closed mid-chunk", fluentdtest.Accept, true, false},
	}
	for _, tc := range tests {
		// With a disk buffer the batch is read from disk again for the
		// resend: the same requests, chunk IDs included, all the same.
		for _, disk := range []bool{false, true} {
			for _, mode := range []Mode{ModePackedForward, ModeMessage} {
				t.Run(fmt.Sprintf("%s/%s/disk=%v", tc.name, mode, disk), func(t *testing.T) {
					testAckResend(t, tc.first, tc.cut, tc.duplicate, mode, disk)
				})
			}
		}
	}
}

func testAckResend(t *testing.T, firstAction fluentdtest.Action, cut, duplicate bool, mode Mode, disk bool) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	var mu sync.Mutex
	first := true
	srv.SetHook(func(*fluentdtest.Request) fluentdtest.Action {
		mu.Lock()
		defer mu.Unlock()
		if first {
			first = false
			return firstAction
		}
		return fluentdtest.Accept
	})
	if cut {
		srv.CutAfter(100)
	}
	cfg := Config{Servers: tcp(srv.Addr()), RequestAck: true, Mode: mode, FlushInterval: time.Hour, AckTimeout: 200 * time.Millisecond, RetryWait: 10 * time.Millisecond}
	if disk {
		cfg.BufferDir = t.TempDir()
	}
	s := newSink(t, cfg, testContainer)
	sendLines(s, 0, 20)
	closeSink(t, s)
	got := logs(srv.Events())
	if !reflect.DeepEqual(unique(got), wantLines(0, 20)) {
		t.Fatalf("received %q", got)
	}
	st := s.Stats()
	dups := srv.Duplicates()
	if duplicate && dups == 0 {
		t.Error("no duplicate: the first request should have been resent")
	}
	if !duplicate && dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if st.Retries == 0 || uint64(dups) > st.Retries {
		t.Errorf("%d retries counted for %d duplicates", st.Retries, dups)
	}
	if st.Emitted != 20 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestReconnectWithoutAck(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	s := newSink(t, fast(Config{Servers: tcp(srv.Addr())}), testContainer)
	sendLines(s, 0, 5)
	srv.WaitEvents(5, waitLong)
	// A restart between batches loses nothing, even without acks: the
	// Sink notices the closed connection before writing on it.
	srv.Stop()
	srv.Start()
	sendLines(s, 5, 10)
	if got := logs(srv.WaitEvents(10, waitLong)); !reflect.DeepEqual(got, wantLines(0, 10)) {
		t.Fatalf("received %q", got)
	}
}

func TestUnreachableAtStart(t *testing.T) {
	for _, ack := range []bool{false, true} {
		t.Run(fmt.Sprint("ack=", ack), func(t *testing.T) {
			srv := fluentdtest.NewServer(t, fluentdtest.Config{})
			srv.Stop()
			start := time.Now()
			s := newSink(t, fast(Config{Servers: tcp(srv.Addr()), RequestAck: ack}), testContainer)
			sendLines(s, 0, 10)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("New and Send took %v with the server down", d)
			}
			time.Sleep(100 * time.Millisecond)
			srv.Start()
			if got := logs(srv.WaitEvents(10, waitLong)); !reflect.DeepEqual(got, wantLines(0, 10)) {
				t.Fatalf("received %q", got)
			}
		})
	}
}

// TestSingleServerBackBeforeRetry: a lone server that comes back is used
// within a health-check interval, not after the retry wait that grew while
// it was down.
func TestSingleServerBackBeforeRetry(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	srv.Stop()
	cfg := fast(Config{Servers: tcp(srv.Addr()), RetryWait: time.Minute, MaxRetryWait: time.Minute})
	s := newSink(t, cfg, testContainer)
	sendLines(s, 0, 10)
	time.Sleep(200 * time.Millisecond) // the first attempt failed: the next is a minute away
	srv.Start()
	back := time.Now()
	if got := logs(srv.WaitEvents(10, 30*time.Second)); !reflect.DeepEqual(got, wantLines(0, 10)) {
		t.Fatalf("received %q within 30 s of the server's return (retry wait: a minute)", got)
	}
	t.Logf("delivered %v after the server came back", time.Since(back).Round(time.Millisecond))
}

func TestUnixSocket(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{Network: "unix", Addr: filepath.Join(t.TempDir(), "f.sock")})
	cfg, _, err := ParseConfig(map[string]string{KeyAddress: srv.URL(), KeyRequestAck: "true"})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t, fast(cfg), testContainer)
	sendLines(s, 0, 3)
	if got := logs(srv.WaitEvents(3, waitLong)); !reflect.DeepEqual(got, wantLines(0, 3)) {
		t.Fatalf("received %q", got)
	}
}

func TestFailover(t *testing.T) {
	a := fluentdtest.NewServer(t, fluentdtest.Config{})
	b := fluentdtest.NewServer(t, fluentdtest.Config{})
	cfg, _, err := ParseConfig(map[string]string{KeyAddress: a.URL() + "," + b.URL(), KeyRequestAck: "true"})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t, fast(cfg), testContainer)

	sendLines(s, 0, 5)
	waitFor(t, "a to receive 0-4", func() bool { return len(a.Events()) == 5 })

	a.Stop()
	sendLines(s, 5, 10)
	waitFor(t, "b to receive 5-9", func() bool { return len(b.Events()) == 5 })

	a.Start()
	// Back to a once its health check passes: keep sending until it does.
	i := 10
	waitFor(t, "a to receive again", func() bool {
		sendLines(s, i, i+1)
		i++
		time.Sleep(10 * time.Millisecond)
		return len(a.Events()) > 5
	})
	closeSink(t, s)
	all := append(logs(a.Events()), logs(b.Events())...)
	if len(unique(all)) != i {
		t.Errorf("received %d distinct lines of %d", len(unique(all)), i)
	}
	if got := logs(b.Events()); !reflect.DeepEqual(got[:5], wantLines(5, 10)) {
		t.Errorf("b received %q", got)
	}
}

func TestFailoverWhenFirstIsDownAtStart(t *testing.T) {
	a := fluentdtest.NewServer(t, fluentdtest.Config{})
	b := fluentdtest.NewServer(t, fluentdtest.Config{})
	a.Stop()
	s := newSink(t, fast(Config{Servers: append(tcp(a.Addr()), tcp(b.Addr())...)}), testContainer)
	sendLines(s, 0, 5)
	if got := logs(b.WaitEvents(5, waitLong)); !reflect.DeepEqual(got, wantLines(0, 5)) {
		t.Fatalf("b received %q", got)
	}
}

func TestTLS(t *testing.T) {
	ca := fluentdtest.NewCA(t)
	otherCA := fluentdtest.NewCA(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile, otherCAFile := write("ca.pem", ca.CertPEM), write("other.pem", otherCA.CertPEM)
	cert, key := ca.Issue("client")
	certFile, keyFile := write("cert.pem", cert), write("key.pem", key)
	otherCert, otherKey := otherCA.Issue("client")
	otherCertFile, otherKeyFile := write("ocert.pem", otherCert), write("okey.pem", otherKey)

	tests := []struct {
		name       string
		clientCert bool // the server requires one
		opts       map[string]string
		delivered  bool
	}{
		{"right CA", false, map[string]string{KeyTLSCA: caFile}, true},
		{"wrong CA", false, map[string]string{KeyTLSCA: otherCAFile}, false},
		{"system roots", false, map[string]string{}, false},
		{"wrong CA, verification off", false, map[string]string{KeyTLSCA: otherCAFile, KeyTLSInsecureSkipVerify: "true"}, true},
		{"server name not in certificate", false, map[string]string{KeyTLSCA: caFile, KeyTLSServerName: "fluentd.example"}, false},
		{"server name in certificate", false, map[string]string{KeyTLSCA: caFile, KeyTLSServerName: "localhost"}, true},
		{"client certificate", true, map[string]string{KeyTLSCA: caFile, KeyTLSCert: certFile, KeyTLSKey: keyFile}, true},
		{"no client certificate", true, map[string]string{KeyTLSCA: caFile}, false},
		{"client certificate of another CA", true, map[string]string{KeyTLSCA: caFile, KeyTLSCert: otherCertFile, KeyTLSKey: otherKeyFile}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := fluentdtest.NewServer(t, fluentdtest.Config{TLS: ca.ServerTLS(tc.clientCert)})
			opts := map[string]string{KeyAddress: srv.URL(), KeyRequestAck: "true"}
			for k, v := range tc.opts {
				opts[k] = v
			}
			cfg, _, err := ParseConfig(opts)
			if err != nil {
				t.Fatal(err)
			}
			s := newSink(t, fast(cfg), testContainer)
			sendLines(s, 0, 3)
			if tc.delivered {
				if got := logs(srv.WaitEvents(3, waitLong)); !reflect.DeepEqual(got, wantLines(0, 3)) {
					t.Fatalf("received %q", got)
				}
				return
			}
			// TLS 1.3 clients learn that their certificate was refused only
			// when reading: either side may see the handshake fail.
			waitFor(t, "failed attempts", func() bool { return s.Stats().Retries > 0 || srv.FailedHandshakes() > 1 })
			time.Sleep(50 * time.Millisecond)
			if n := len(srv.Events()); n != 0 {
				t.Fatalf("%d events delivered", n)
			}
			if st := s.Stats(); st.Emitted != 0 {
				t.Errorf("stats %+v", st)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Close = %v, want the deadline", err)
			}
		})
	}
}

func TestQueueOverflowDropsOldest(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	srv.Stop()
	s := newSink(t, fast(Config{Servers: tcp(srv.Addr()), QueueEvents: 10, BatchSize: 1}), testContainer)
	sendLines(s, 0, 1)
	// The sender takes line 0 as its batch and keeps retrying it.
	waitFor(t, "the first batch", func() bool { return s.Stats().Queued == 0 })
	sendLines(s, 1, 21)
	st := s.Stats()
	if st.Dropped != 10 || st.Queued != 10 {
		t.Errorf("stats %+v, want 10 dropped and 10 queued", st)
	}
	srv.Start()
	want := append(wantLines(0, 1), wantLines(11, 21)...)
	if got := logs(srv.WaitEvents(11, waitLong)); !reflect.DeepEqual(got, want) {
		t.Fatalf("received %q, want %q", got, want)
	}
}

func TestMaxRetries(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	srv.Stop()
	s := newSink(t, fast(Config{Servers: tcp(srv.Addr()), MaxRetries: 2, RetryWait: time.Millisecond, MaxRetryWait: time.Millisecond}), testContainer)
	sendLines(s, 0, 3)
	waitFor(t, "the batch to be dropped", func() bool { return s.Stats().Dropped == 3 })
	srv.Start()
	sendLines(s, 3, 4)
	if got := logs(srv.WaitEvents(1, waitLong)); !reflect.DeepEqual(got, wantLines(3, 4)) {
		t.Fatalf("received %q", got)
	}
}

func TestCloseDeadline(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*fluentdtest.Server)
	}{
		{"server down", func(s *fluentdtest.Server) { s.Stop() }},
		{"acks withheld", func(s *fluentdtest.Server) {
			s.SetHook(func(*fluentdtest.Request) fluentdtest.Action { return fluentdtest.NoAck })
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := fluentdtest.NewServer(t, fluentdtest.Config{})
			tc.setup(srv)
			s := newSink(t, Config{Servers: tcp(srv.Addr()), RequestAck: true, AckTimeout: time.Hour, RetryWait: time.Hour, FlushInterval: time.Millisecond}, testContainer)
			sendLines(s, 0, 10)
			time.Sleep(50 * time.Millisecond) // let the first batch go out
			sendLines(s, 10, 20)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := s.Close(ctx)
			if d := time.Since(start); d > time.Second {
				t.Errorf("Close took %v with a 100ms deadline", d)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "20 events not delivered") {
				t.Errorf("Close = %v, want 20 events not delivered and the deadline", err)
			}
			if st := s.Stats(); st.Unsent != 20 || st.Dropped != 0 || st.Emitted != 0 {
				t.Errorf("stats %+v", st)
			}
			checkNoGoroutines(t)
		})
	}
}

func TestCloseTwiceAndSendAfterClose(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	s := newSink(t, fast(Config{Servers: tcp(srv.Addr())}), testContainer)
	sendLines(s, 0, 2)
	closeSink(t, s)
	if err := s.Close(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	sendLines(s, 2, 3)
	if st := s.Stats(); st.Emitted != 2 || st.Dropped != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestConcurrentSend(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	s := newSink(t, fast(Config{Servers: tcp(srv.Addr()), RequestAck: true, BatchSize: 4096}), testContainer)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() { sendLines(s, g*250, (g+1)*250) })
	}
	wg.Wait()
	closeSink(t, s)
	if got := unique(logs(srv.Events())); len(got) != 1000 {
		t.Errorf("%d distinct lines, want 1000", len(got))
	}
	if st := s.Stats(); st.Emitted != 1000 {
		t.Errorf("stats %+v", st)
	}
}

func TestSendCopiesEvent(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	s := newSink(t, Config{Servers: tcp(srv.Addr()), FlushInterval: time.Hour}, testContainer)
	buf := []byte("original")
	p := &forward.Partial{ID: "id", Ordinal: 1}
	s.Send(&forward.Event{Time: testTime, Source: "stdout", Line: buf, Partial: p})
	copy(buf, "XXXXXXXX")
	p.ID = "changed"
	closeSink(t, s)
	evs := srv.WaitEvents(1, waitLong)
	if len(evs) != 1 || evs[0].Record["log"] != "original" || evs[0].Record["partial_id"] != "id" {
		t.Errorf("received %+v", evs)
	}
}

func TestReconnectInterval(t *testing.T) {
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	s := newSink(t, fast(Config{Servers: tcp(srv.Addr()), ReconnectInterval: 100 * time.Millisecond}), testContainer)
	sendLines(s, 0, 1)
	srv.WaitEvents(1, waitLong)
	time.Sleep(150 * time.Millisecond)
	sendLines(s, 1, 2)
	srv.WaitEvents(2, waitLong)
	reqs := srv.Requests()
	if len(reqs) != 2 || reqs[0].Conn == reqs[1].Conn {
		t.Errorf("requests on connections %d and %d, want a new connection", reqs[0].Conn, reqs[1].Conn)
	}
}

// TestSendNeverBlocks sends to a server that accepts connections and never
// reads: Send must keep returning at once, dropping the oldest events.
func TestSendNeverBlocks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	// With no write timeout, a Send that waited for the network would
	// hang for good.
	s := newSink(t, fast(Config{Servers: tcp(ln.Addr().String()), QueueBytes: 1 << 20, BatchSize: 64 << 10, WriteTimeout: -1}), testContainer)
	big := strings.Repeat("x", 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// 20 MiB: more than the queue and the socket buffers hold.
		for i := range 20000 {
			s.Send(&forward.Event{Time: testTime, Source: "stdout", Line: []byte(big + strconv.Itoa(i))})
		}
	}()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("Send blocked")
	}
	if st := s.Stats(); st.Dropped == 0 || st.QueuedBytes > 1<<20 {
		t.Errorf("stats %+v: want drops and at most 1 MiB queued", st)
	}
	// What is left may or may not fit in the socket buffers: Close may
	// succeed or report the deadline, but must return in time.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
}
