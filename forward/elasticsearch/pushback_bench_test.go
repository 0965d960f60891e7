package elasticsearch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/elasticsearch/estest"
)

// pushbackCase is a cluster the sink delivers to in BenchmarkPushback.
type pushbackCase struct {
	name       string
	lines      int
	rejectRate float64 // share of items answered 429 at random
	indexRate  float64 // documents a second the cluster indexes; 0: no limit
	workers    int     // elasticsearch-workers; 0: the default
}

// pushbackCases are the scenarios: a cluster that takes every
// document, one that rejects 5% or 30% of the items at random (a hot
// shard, other clients' load), and one that indexes at most 20k documents
// a second and rejects the excess.
var pushbackCases = []pushbackCase{
	{name: "none", lines: 100_000},
	{name: "reject-5%", lines: 100_000, rejectRate: 0.05},
	{name: "reject-30%", lines: 100_000, rejectRate: 0.30},
	{name: "rate-20k", lines: 200_000, indexRate: 20_000},
	{name: "rate-20k/workers-1", lines: 200_000, indexRate: 20_000, workers: 1},
}

// BenchmarkPushback sends a burst of lines through a sink with a disk
// buffer, as the plugin runs it, to the test server modelling a cluster
// that pushes back, and reports per run: lines/s (from the first Send to
// the last document indexed), stall-s (the longest time without a
// document indexed), rejected-% (items answered 429 of all items sent),
// and, against a rate-limited cluster, capacity-% (lines/s of its rate).
// Every line must be in the index exactly once. Compare lines/s with the
// "none" case of the same run.
func BenchmarkPushback(b *testing.B) {
	for _, pc := range pushbackCases {
		b.Run(pc.name, func(b *testing.B) {
			var st pushbackStats
			for b.Loop() {
				st = runPushback(b, pc)
			}
			b.ReportMetric(float64(pc.lines)/st.elapsed.Seconds(), "lines/s")
			b.ReportMetric(st.stall.Seconds(), "stall-s")
			b.ReportMetric(100*float64(st.rejected)/float64(st.items), "rejected-%")
			if pc.indexRate > 0 {
				b.ReportMetric(100*float64(pc.lines)/st.elapsed.Seconds()/pc.indexRate, "capacity-%")
			}
			b.ReportMetric(0, "ns/op") // one op is a whole run: lines/s says it
		})
	}
}

type pushbackStats struct {
	elapsed, stall  time.Duration
	items, rejected int
}

// runPushback delivers pc.lines lines to a new server and sink, checks
// that each is indexed exactly once, and measures the run.
func runPushback(b testing.TB, pc pushbackCase) pushbackStats {
	b.Helper()
	srv := estest.NewServer(estest.Options{RejectRate: pc.rejectRate, Seed: 1, IndexRate: pc.indexRate, MaxRequests: 1})
	defer srv.Close()
	cfg := Config{
		URLs:                []string{srv.URL},
		Workers:             pc.workers,
		BufferDir:           b.TempDir(),
		HealthcheckInterval: time.Hour,
		ErrorLogInterval:    time.Hour,
		Batches:             forward.NewBatches(forward.DefaultBatchMemory),
	}
	cfg.Buffer.MaxSize = int64(pc.lines) * 1024 // room for the burst: no drops
	s, err := New(cfg, Credentials{}, testContainer, nil)
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	var stall time.Duration
	start := time.Now()
	sampler.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		last, lastAt := uint64(0), start
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				if n := s.Stats().Indexed; n != last {
					last, lastAt = n, now
				} else {
					stall = max(stall, now.Sub(lastAt))
				}
			}
		}
	})
	line := []byte(benchLines["text"])
	for i := range pc.lines {
		s.Send(&forward.Event{Time: epoch.Add(time.Duration(i)), Source: "stdout", Line: line})
	}
	s.Flush()
	deadline := time.Now().Add(5 * time.Minute)
	for s.Stats().Indexed < uint64(pc.lines) {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d indexed after 5 minutes: %+v", pc.name, s.Stats().Indexed, pc.lines, s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	close(stop)
	sampler.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
	ss := srv.Stats()
	if got := srv.Count(); got != pc.lines || ss.Conflicts != 0 {
		b.Fatalf("%s: %d documents in the index (%d conflicts), want %d exactly once", pc.name, got, ss.Conflicts, pc.lines)
	}
	if st := s.Stats(); st.Dropped != 0 || st.Rejected != 0 {
		b.Fatalf("%s: stats %+v", pc.name, st)
	}
	return pushbackStats{elapsed: elapsed, stall: stall, items: ss.Items, rejected: ss.Rejected}
}

// TestPushbackCases runs the benchmark's scenarios small, for their
// checks: every line indexed exactly once, nothing dropped.
func TestPushbackCases(t *testing.T) {
	t.Parallel()
	for _, pc := range pushbackCases {
		pc.lines = 3_000
		if pc.indexRate > 0 {
			pc.indexRate = 10_000
		}
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			st := runPushback(t, pc)
			t.Logf("%d lines in %v, longest stall %v, %d of %d items rejected", pc.lines, st.elapsed, st.stall, st.rejected, st.items)
		})
	}
}
