package elasticsearch

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

// countServer is a _bulk endpoint that keeps no documents, only how many
// times each line "s<sink>-<n> …" was created, so that the memory of the
// test's process is the sinks'. As Elasticsearch does with an _id, it
// answers 409 to a document created already. While unavailable it reads
// each request and answers 503.
type countServer struct {
	*httptest.Server
	unavailable atomic.Bool
	requests    atomic.Int64 // _bulk requests
	refused     atomic.Int64 // _bulk requests answered 503

	mu      sync.Mutex // guards created and twice
	created [][]uint8  // [sink][n]
	twice   int        // 409s answered
}

func newCountServer(t *testing.T, sinks, lines int) *countServer {
	t.Helper()
	s := &countServer{created: make([][]uint8, sinks)}
	for i := range s.created {
		s.created[i] = make([]uint8, lines)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

func (s *countServer) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path != "/_bulk" {
		io.WriteString(w, `{"version":{"number":"7.17.0"},"tagline":"You Know, for Search"}`)
		return
	}
	s.requests.Add(1)
	if s.unavailable.Load() {
		s.refused.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"type":"cluster_block_exception","reason":"blocked"},"status":503}`)
		return
	}
	var out bytes.Buffer
	out.WriteString(`{"errors":false,"items":[`)
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	s.mu.Lock()
	for i := 1; i < len(lines); i += 2 {
		if i > 1 {
			out.WriteByte(',')
		}
		status := 400
		if k, n, ok := lineOf(lines[i]); ok && k < len(s.created) && n < len(s.created[k]) {
			status = 201
			if s.created[k][n]++; s.created[k][n] > 1 {
				s.created[k][n], status = 1, 409
				s.twice++
			}
		}
		fmt.Fprintf(&out, `{"create":{"status":%d}}`, status)
	}
	s.mu.Unlock()
	out.WriteString(`]}`)
	w.Write(out.Bytes())
}

// lineOf returns the sink and number of the document's line,
// "s<sink>-<n> …".
func lineOf(doc []byte) (sink, n int, ok bool) {
	i := bytes.Index(doc, []byte(`"log":"s`))
	if i < 0 {
		return 0, 0, false
	}
	rest := doc[i+len(`"log":"s`):]
	dash := bytes.IndexByte(rest, '-')
	space := bytes.IndexByte(rest, ' ')
	if dash < 0 || space < dash {
		return 0, 0, false
	}
	sink, err1 := strconv.Atoi(string(rest[:dash]))
	n, err2 := strconv.Atoi(string(rest[dash+1 : space]))
	return sink, n, err1 == nil && err2 == nil
}

// check reports the lines not created, and how many were created again.
func (s *countServer) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	missing := 0
	for k, counts := range s.created {
		for n, c := range counts {
			if c == 0 {
				if missing < 10 {
					t.Errorf("line s%d-%d never created", k, n)
				}
				missing++
			}
		}
	}
	if missing > 0 || s.twice > 0 {
		t.Errorf("%d lines missing; %d documents sent again after they were created", missing, s.twice)
	}
}

// peaks samples the batch memory handed out and the heap in use.
type peaks struct {
	batches, heap int64
}

func (p *peaks) sample(b *forward.Batches) {
	used, _ := b.Used()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.batches = max(p.batches, used)
	p.heap = max(p.heap, int64(ms.HeapInuse))
}

func (p peaks) String() string {
	return fmt.Sprintf("batch memory %.1f MiB, heap in use %.1f MiB", float64(p.batches)/(1<<20), float64(p.heap)/(1<<20))
}

// TestManySinksBoundedMemory sends 100 containers' lines at once, through
// disk buffers, to one Elasticsearch: the batch memory stays within the
// shared budget (plus a small buffer per sink past it), and so does the
// process's heap, also while Elasticsearch answers 503 to everything;
// once it takes them, every line is created exactly once.
//
// Not parallel: it measures the process's heap, and its 200 goroutines
// would slow down the tests that time their sinks.
func TestManySinksBoundedMemory(t *testing.T) {
	const (
		sinks = 100
		// Each sink holds at most two batches (the one being sent and the
		// next), those past the budget of MinSlab bytes.
		maxBatches = forward.DefaultBatchMemory + 2*sinks*forward.MinSlab
		// The heap: the batches, the disk buffers' pooled write buffers and
		// read windows, the requests and answers in flight, 100 sinks'
		// state and the test's own (the server's counts: 1 MiB).
		maxHeap = 64 << 20
	)
	lines, heapLimit := 10_000, int64(maxHeap)
	if raceEnabled {
		// The race detector makes everything 5 to 10 times slower, and
		// sync.Pool drop some of what is put back.
		lines, heapLimit = 1_000, math.MaxInt64
	}
	for _, outage := range []bool{false, true} {
		t.Run(fmt.Sprintf("outage=%v", outage), func(t *testing.T) {
			srv := newCountServer(t, sinks, lines)
			srv.unavailable.Store(outage)
			batches := forward.NewBatches(forward.DefaultBatchMemory)
			dir := t.TempDir()
			ss := make([]*Sink, sinks)
			for k := range ss {
				cfg := Config{
					URLs:                []string{srv.URL},
					FlushInterval:       100 * time.Millisecond,
					RetryMin:            20 * time.Millisecond,
					RetryMax:            200 * time.Millisecond,
					RequestTimeout:      30 * time.Second,
					HealthcheckInterval: time.Hour,
					ErrorLogInterval:    time.Hour,
					BufferDir:           filepath.Join(dir, strconv.Itoa(k)),
					Batches:             batches,
				}
				c := testContainer
				c.ID = fmt.Sprintf("%064d", k)
				s, err := New(cfg, Credentials{}, c, nil)
				if err != nil {
					t.Fatal(err)
				}
				ss[k] = s
			}
			var mu sync.Mutex // guards p
			var p peaks
			stop := make(chan struct{})
			var sampler sync.WaitGroup
			sampler.Go(func() {
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					mu.Lock()
					p.sample(batches)
					mu.Unlock()
					select {
					case <-tick.C:
					case <-stop:
						return
					}
				}
			})
			defer func() {
				close(stop)
				sampler.Wait()
			}()
			start := time.Now()
			var senders sync.WaitGroup
			for k, s := range ss {
				senders.Go(func() {
					line := make([]byte, 0, 100)
					for n := range lines {
						line = fmt.Appendf(line[:0], "s%d-%d ", k, n)
						for len(line) < 100 {
							line = append(line, 'x')
						}
						s.Send(&forward.Event{Time: epoch.Add(time.Duration(n)), Source: "stdout", Line: line})
						if n%100 == 99 {
							s.Flush()
						}
					}
					s.Flush()
				})
			}
			senders.Wait()
			if outage {
				// Every sink fails and backs off, holding its batch.
				waitFor(t, "every sink to have tried", func() bool { return srv.refused.Load() >= 3*sinks })
				mu.Lock()
				t.Logf("during the outage: %v, after %d refused requests", p, srv.refused.Load())
				during := p
				mu.Unlock()
				if during.batches > maxBatches || during.heap > heapLimit {
					t.Errorf("during the outage: %v, want at most %d and %d bytes", during, maxBatches, heapLimit)
				}
				srv.unavailable.Store(false)
			}
			total := uint64(sinks * lines)
			waitFor(t, "every line indexed", func() bool {
				var n uint64
				for _, s := range ss {
					n += s.Stats().Indexed
				}
				return n >= total
			})
			elapsed := time.Since(start)
			for _, s := range ss {
				closeSink(t, s, 10*time.Second)
			}
			mu.Lock()
			t.Logf("%d lines in %v (%d requests): %v", total, elapsed.Round(time.Millisecond), srv.requests.Load(), p)
			if p.batches > maxBatches || p.heap > heapLimit {
				t.Errorf("peak %v, want at most %d and %d bytes", p, maxBatches, heapLimit)
			}
			mu.Unlock()
			srv.check(t)
			var indexed uint64
			for k, s := range ss {
				st := s.Stats()
				indexed += st.Indexed
				if st.Dropped != 0 || st.Rejected != 0 || st.Unsent != 0 || st.Queued != 0 {
					t.Errorf("sink %d: stats %+v", k, st)
				}
			}
			if indexed != total {
				t.Errorf("%d documents indexed, want %d", indexed, total)
			}
			if used, _ := batches.Used(); used != 0 {
				t.Errorf("%d bytes of batch memory still handed out after Close", used)
			}
		})
	}
}
