//go:build bench

package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	fluent "github.com/fluent/fluent-logger-golang/fluent"
	"github.com/tinylib/msgp/msgp"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/elasticsearch"
	"github.com/logferry/logferry/forward/fluentd"
)

const testTimeout = 20 * time.Second

var testContainer = forward.Container{ID: strings.Repeat("ab", 32), Name: "bench", Tag: "bench"}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sendAndClose sends the lines "line 0" to "line n-1" through s and
// closes it, which delivers them.
func sendAndClose(t *testing.T, s interface {
	Send(*forward.Event)
	Close(context.Context) error
}, n int) {
	t.Helper()
	ev := forward.Event{Time: time.Unix(1700000000, 5), Source: "stdout"}
	for i := range n {
		ev.Line = fmt.Appendf(ev.Line[:0], "line %d", i)
		s.Send(&ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func startForward(t *testing.T) *forwardReceiver {
	t.Helper()
	r, err := startForwardReceiver()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.close(); err != nil {
			t.Error(err)
		}
		if n, err := r.failures(); n > 0 {
			t.Errorf("%d malformed requests, the last: %v", n, err)
		}
	})
	return r
}

// TestForwardReceiverCountsLogferry sends events with logferry's own Fluentd
// sink in every mode, with and without acks, and checks the count.
func TestForwardReceiverCountsLogferry(t *testing.T) {
	r := startForward(t)
	for _, tc := range []struct {
		name string
		opts map[string]string
	}{
		{"packedforward", nil},
		{"compressed", map[string]string{"fluentd-compress": "gzip"}},
		{"forward", map[string]string{"fluentd-mode": "forward"}},
		{"message", map[string]string{"fluentd-mode": "message"}},
		{"packedforward ack", map[string]string{"fluentd-request-ack": "true"}},
		{"message ack seconds", map[string]string{"fluentd-mode": "message", "fluentd-request-ack": "true", "fluentd-sub-second-precision": "false"}},
		{"small batches", map[string]string{"fluentd-batch-size": "4k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := map[string]string{"fluentd-address": r.addr(), "fluentd-flush-interval": "10ms"}
			for k, v := range tc.opts {
				opts[k] = v
			}
			cfg, _, err := fluentd.ParseConfig(opts)
			if err != nil {
				t.Fatal(err)
			}
			s, err := fluentd.New(cfg, testContainer, nil)
			if err != nil {
				t.Fatal(err)
			}
			base := r.count()
			const n = 3000
			sendAndClose(t, s, n)
			if st := s.Stats(); st.Emitted != n || st.Dropped != 0 {
				t.Errorf("sink stats %+v, want %d emitted", st, n)
			}
			waitFor(t, "every event", func() bool { return r.count()-base >= n })
			if got := r.count() - base; got != n {
				t.Errorf("received %d events, want %d", got, n)
			}
		})
	}
}

// TestForwardReceiverCountsDockerDriver sends events as Docker's fluentd
// driver does: fluent-logger-golang, one Message request per event.
func TestForwardReceiverCountsDockerDriver(t *testing.T) {
	r := startForward(t)
	host, port, _ := net.SplitHostPort(r.addr())
	p, _ := strconv.Atoi(port)
	for _, subSecond := range []bool{false, true} {
		t.Run(fmt.Sprintf("sub-second=%t", subSecond), func(t *testing.T) {
			l, err := fluent.New(fluent.Config{FluentHost: host, FluentPort: p, SubSecondPrecision: subSecond})
			if err != nil {
				t.Fatal(err)
			}
			base := r.count()
			const n = 500
			for i := range n {
				rec := map[string]string{"container_id": testContainer.ID, "log": fmt.Sprintf("line %d", i), "source": "stdout"}
				if err := l.PostWithTime("bench", time.Now(), rec); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "every event", func() bool { return r.count()-base >= n })
		})
	}
}

// TestForwardReceiverCountsPackedEntries sends PackedForward requests without
// a size option, plain and gzipped, which the receiver must count itself.
func TestForwardReceiverCountsPackedEntries(t *testing.T) {
	r := startForward(t)
	var entries []byte
	const n = 7
	for i := range n {
		entries = msgp.AppendArrayHeader(entries, 2)
		entries = msgp.AppendInt64(entries, 1700000000+int64(i))
		entries = msgp.AppendMapHeader(entries, 1)
		entries = msgp.AppendString(msgp.AppendString(entries, "log"), "x")
	}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(entries)
	zw.Close()

	var req []byte
	req = msgp.AppendArrayHeader(req, 2)
	req = msgp.AppendString(req, "tag")
	req = msgp.AppendBytes(req, entries)
	req = msgp.AppendArrayHeader(req, 3)
	req = msgp.AppendString(req, "tag")
	req = msgp.AppendBytes(req, zipped.Bytes())
	req = msgp.AppendMapHeader(req, 2)
	req = msgp.AppendString(msgp.AppendString(req, "compressed"), "gzip")
	req = msgp.AppendString(msgp.AppendString(req, "chunk"), "Y2h1bms=")

	c, err := net.Dial("tcp", r.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(testTimeout))
	ack := map[string]any{}
	if err := msgp.NewReader(c).ReadMapStrIntf(ack); err != nil {
		t.Fatal(err)
	}
	if ack["ack"] != "Y2h1bms=" {
		t.Errorf("ack = %v", ack)
	}
	waitFor(t, "both requests", func() bool { return r.count() >= 2*n })
	if got := r.count(); got != 2*n {
		t.Errorf("received %d events, want %d", got, 2*n)
	}
}

// TestForwardReceiverRefusesGarbage checks that a request that is not the
// Forward protocol counts as an error.
func TestForwardReceiverRefusesGarbage(t *testing.T) {
	r, err := startForwardReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	c, err := net.Dial("tcp", r.addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(msgp.AppendMapHeader(nil, 0))
	c.Close()
	waitFor(t, "the error", func() bool { n, _ := r.failures(); return n == 1 })
}

// TestBulkReceiverCountsLogferry sends documents with logferry's own
// Elasticsearch sink, plain and gzipped.
func TestBulkReceiverCountsLogferry(t *testing.T) {
	r, err := startBulkReceiver()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.close(); err != nil {
			t.Error(err)
		}
	})
	for _, compress := range []string{"false", "true"} {
		t.Run("compress="+compress, func(t *testing.T) {
			cfg, _, err := elasticsearch.ParseConfig(map[string]string{
				"elasticsearch-url":            r.url(),
				"elasticsearch-flush-interval": "10ms",
				"elasticsearch-compress":       compress,
			})
			if err != nil {
				t.Fatal(err)
			}
			s, err := elasticsearch.New(cfg, elasticsearch.Credentials{}, testContainer, nil)
			if err != nil {
				t.Fatal(err)
			}
			base := r.count()
			const n = 2500
			sendAndClose(t, s, n)
			if st := s.Stats(); st.Indexed != n {
				t.Errorf("sink stats %+v, want %d indexed", st, n)
			}
			if got := r.count() - base; got != n {
				t.Errorf("received %d documents, want %d", got, n)
			}
			if r.failures() != 0 {
				t.Errorf("%d requests refused", r.failures())
			}
		})
	}
}

func TestCountFrames(t *testing.T) {
	var b []byte
	for _, size := range []int{0, 5, 300} {
		b = binary.BigEndian.AppendUint32(b, uint32(size))
		b = append(b, make([]byte, size)...)
		b = binary.BigEndian.AppendUint32(b, uint32(size))
	}
	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		{"empty", nil, 0},
		{"whole", b, 3},
		{"partial header", append(b[:len(b):len(b)], 0, 0), 3},
		{"partial record", b[:len(b)-1], 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := countFramesIn(bufio.NewReader(bytes.NewReader(tc.data)))
			if err != nil || n != tc.want {
				t.Errorf("countFramesIn = %d, %v; want %d", n, err, tc.want)
			}
		})
	}
}

func TestCountLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("a\nb\nc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := countLines(path); err != nil || n != 2 {
		t.Errorf("countLines = %d, %v; want 2", n, err)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestTimeRatio: the time targets give the ratio of medians and, beside
// it, each round's ratio from the runs that succeeded in both
// configurations.
func TestTimeRatio(t *testing.T) {
	w := workload{containers: 1, lines: 1000}
	run := func(driver string, round int, secs float64, err error) result {
		return result{workload: w, driver: driver, round: round, wall: time.Duration(secs * float64(time.Second)),
			sent: 1000, delivered: 1000, err: err}
	}
	for _, tc := range []struct {
		name    string
		results []result
		want    string
		ratio   float64
	}{
		{
			name:    "one round",
			results: []result{run("drain", 1, 2, nil), run("logferry", 1, 2.2, nil)},
			want:    "1.10×", ratio: 1.1,
		},
		{
			name: "rounds in any order, a failed run left out",
			results: []result{
				run("logferry", 2, 3, nil), run("drain", 2, 2, nil),
				run("drain", 1, 2, nil), run("logferry", 1, 2, nil),
				run("drain", 3, 4, nil), run("logferry", 3, 4.4, nil),
				run("drain", 4, 2, nil), run("logferry", 4, 9, errors.New("stalled")),
			},
			// Medians 3 s and 2 s; rounds 1 to 3 only.
			want: "1.50× (by round 1.00, 1.50, 1.10; their median 1.10×)", ratio: 1.5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config{single: w, drivers: []string{"drain", "logferry"}}
			ts := tables(cfg, tc.results)
			if len(ts) != 1 {
				t.Fatalf("%d tables, want 1", len(ts))
			}
			got, r := ts[0].timeRatio("logferry", "drain")
			if got != tc.want || math.Abs(r-tc.ratio) > 1e-9 {
				t.Errorf("timeRatio = %q, %v; want %q, %v", got, r, tc.want, tc.ratio)
			}
		})
	}
}

func TestParseWorkload(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    workload
		wantErr bool
	}{
		{"0", workload{}, false},
		{"20x50000", workload{20, 50000}, false},
		{"20", workload{}, true},
		{"0x5", workload{}, true},
		{"ax5", workload{}, true},
	} {
		got, err := parseWorkload(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("parseWorkload(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestProcStats(t *testing.T) {
	pid := os.Getpid()
	if _, err := cpuTime(pid); err != nil {
		t.Error(err)
	}
	if rss, err := peakRSS(pid); err != nil || rss <= 0 {
		t.Errorf("peakRSS = %d, %v", rss, err)
	}
}
