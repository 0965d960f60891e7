package driver

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/elasticsearch/estest"
	"github.com/logferry/logferry/forward/fluentd"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

// TestForwardCopiesToEveryDestination sends one container's entries to the
// files, Fluentd and Elasticsearch at once (Fluentd's "@type copy"), and
// checks that a stopped container's destinations finish delivering after
// StopLogging returned.
func TestForwardCopiesToEveryDestination(t *testing.T) {
	fd := fluentdtest.NewServer(t, fluentdtest.Config{})
	es := estest.NewServer(estest.Options{})
	t.Cleanup(es.Close)

	d, root := newTestDriver(t)
	id := containerID(31)
	ds := start(t, d, id, map[string]string{
		"fluentd-address":              fd.Addr(),
		"fluentd-flush-interval":       "10ms",
		"elasticsearch-url":            es.URL,
		"elasticsearch-flush-interval": "10ms",
		"labels":                       "app",
		"tag":                          "{{.Name}}",
	})
	base := time.Date(2026, 11, 22, 23, 59, 59, 0, time.UTC).UnixNano()
	const n = 300
	for i := range n {
		ds.send(t, LogEntry{Source: "stdout", TimeNano: base + int64(i)*int64(time.Millisecond)*10, Line: fmt.Appendf(nil, "line %d", i)})
	}
	ds.send(t,
		LogEntry{Source: "stderr", TimeNano: base, Line: []byte("split "), Partial: true, HasPartialMeta: true, PartialID: []byte("p1"), PartialOrdinal: 1},
		LogEntry{Source: "stderr", TimeNano: base, Line: []byte("line"), Partial: true, HasPartialMeta: true, PartialID: []byte("p1"), PartialOrdinal: 2, PartialLast: true},
	)
	stop(t, d, ds)

	file, err := os.ReadFile(logFile(root, id))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(file), "\n"); got != n+2 {
		t.Errorf("file has %d records, want %d", got, n+2)
	}

	events := fd.WaitEvents(n+2, testTimeout)
	if len(events) != n+2 {
		t.Fatalf("fluentd received %d events, want %d", len(events), n+2)
	}
	for i, ev := range events[:n] {
		r := ev.Record
		if ev.Tag != "web" || r["log"] != fmt.Sprintf("line %d", i) || r["source"] != "stdout" ||
			r["container_id"] != id || r["container_name"] != "/web" || r["app"] != "shop" {
			t.Fatalf("fluentd event %d = %+v", i, ev)
		}
	}
	last := events[n+1].Record
	if last["log"] != "line" || last["partial_message"] != "true" || last["partial_id"] != "p1" ||
		last["partial_ordinal"] != "2" || last["partial_last"] != "true" {
		t.Errorf("fluentd piece = %v", last)
	}
	if v := fd.TakeViolations(); len(v) != 0 {
		t.Errorf("forward protocol violations: %v", v)
	}

	deadline := time.Now().Add(testTimeout)
	for len(es.AllDocuments()) < n+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// The entries straddle midnight UTC: two daily indices.
	if idx := es.Indices(); len(idx) != 2 || idx[0] != "docker-20261122" || idx[1] != "docker-20261123" {
		t.Errorf("indices = %v, want docker-20261122 and docker-20261123", idx)
	}
	docs := es.AllDocuments()
	if len(docs) != n+2 {
		t.Fatalf("elasticsearch has %d documents, want %d", len(docs), n+2)
	}
	seen := map[string]bool{}
	for _, doc := range docs {
		f := doc.Fields()
		if f["container_id"] != id || f["container_name"] != "/web" || f["@log_name"] != "web" || f["app"] != "shop" {
			t.Fatalf("document %s = %v", doc.ID, f)
		}
		seen[fmt.Sprint(f["log"])] = true
	}
	for i := range n {
		if !seen[fmt.Sprintf("line %d", i)] {
			t.Fatalf("line %d not indexed", i)
		}
	}
}

// discardSink counts what it is sent and keeps nothing.
type discardSink struct{ n int }

func (d *discardSink) Send(*forward.Event)         { d.n++ }
func (d *discardSink) Flush()                      {}
func (d *discardSink) Close(context.Context) error { return nil }
func (d *discardSink) Counters() forward.Counters  { return forward.Counters{} }

// TestForwardDoesNotAllocate: handing an entry to the destinations costs
// no allocation (a whole line; a piece's ID is a new string).
func TestForwardDoesNotAllocate(t *testing.T) {
	sk := &discardSink{}
	s := &stream{sinks: []destination{{name: fluentd.Name, Sink: sk}}}
	e := LogEntry{Source: "stdout", TimeNano: 1, Line: []byte("a line")}
	if n := testing.AllocsPerRun(1000, func() { s.forward(&e, time.Unix(0, e.TimeNano)) }); n != 0 {
		t.Errorf("forward: %v allocations per entry, want 0", n)
	}
	if sk.n == 0 {
		t.Fatal("test bug: the sink got nothing")
	}
}
