package elasticsearch

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/elasticsearch/estest"
)

// bufferFiles lists the files left under dir.
func bufferFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// closeKeeping closes s with a short deadline while Elasticsearch cannot
// take anything: with a disk buffer that is no error, nothing is lost.
func closeKeeping(t *testing.T, s *Sink, kept int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close with everything kept on disk: %v", err)
	}
	st := s.Stats()
	if st.Queued != kept || st.Unsent != 0 || st.Dropped != 0 {
		t.Errorf("stats after Close %+v, want %d kept, none unsent or dropped", st, kept)
	}
}

// TestDiskBufferSurvivesRestart sends events while Elasticsearch is down,
// closes the sink (its deadline passes: the events stay on disk) and
// creates a new sink on the same directory once it is up: every event is
// indexed exactly once.
func TestDiskBufferSurvivesRestart(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	srv.Stop() // connections refused
	dir := filepath.Join(t.TempDir(), "buffer", testContainer.ID, "elasticsearch")
	cfg := fast(srv.URL)
	cfg.BufferDir = dir
	s, err := New(cfg, Credentials{}, testContainer, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	sendLines(s, 0, n)
	closeKeeping(t, s, n)

	srv.Start()
	s2 := newTestSink(t, cfg, Credentials{}, nil)
	sendLines(s2, n, n+10) // after the replay
	closeSink(t, s2, 20*time.Second)
	linesOnce(t, srv, n+10)
	if st := s2.Stats(); st.Indexed != n+10 || st.Duplicates != 0 || st.Queued != 0 || st.QueuedBytes != 0 {
		t.Errorf("stats of the second sink %+v", st)
	}
	if left := bufferFiles(t, filepath.Dir(dir)); len(left) > 0 {
		t.Errorf("buffer files left once everything was delivered: %v", left)
	}
}

// TestReplayKeepsDocumentIDs: documents stored by Elasticsearch whose
// answers never came back stay in the disk buffer; the next sink sends
// them again with the same _id, including the place of identical lines
// logged in the same nanosecond, so every one is a 409 and none is
// indexed twice.
func TestReplayKeepsDocumentIDs(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	srv.DropResponses(1 << 30) // stored, but the client never hears
	cfg := fast(srv.URL)
	cfg.BufferDir = t.TempDir()
	cfg.BulkActions = 1000 // one request: it is retried, never answered
	s, err := New(cfg, Credentials{}, testContainer, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for range 3 {
		s.Send(&forward.Event{Time: epoch, Source: "stdout", Line: []byte("same")})
	}
	sendLines(s, 1, n)
	waitFor(t, "the documents stored", func() bool { return srv.Count() == n+2 })
	closeKeeping(t, s, n+2)

	srv.DropResponses(0)
	s2 := newTestSink(t, cfg, Credentials{}, nil)
	closeSink(t, s2, 20*time.Second)
	if st := s2.Stats(); st.Duplicates != n+2 || st.Indexed != 0 {
		t.Errorf("replay: %+v, want every document a 409 duplicate", st)
	}
	if srv.Count() != n+2 {
		t.Errorf("%d documents after the replay, want %d", srv.Count(), n+2)
	}
}

// TestDiskBufferAckedAfterRetries: documents of a batch answered 429 are
// sent again alone; once they are in, the whole batch leaves the disk
// buffer (it used to stay, from its first document to the first retried
// one, and be sent again by the next sink), and a sink opened on the same
// directory sends nothing.
func TestDiskBufferAckedAfterRetries(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{RejectRate: 0.3, Seed: 2})
	defer srv.Close()
	cfg := fast(srv.URL)
	cfg.BufferDir = t.TempDir()
	s := newTestSink(t, cfg, Credentials{}, nil)
	const n = 1000
	sendLines(s, 0, n)
	waitFor(t, "every document", func() bool { return srv.Count() == n })
	waitFor(t, "an empty buffer", func() bool { return s.Stats().Queued == 0 })
	closeSink(t, s, 10*time.Second)
	linesOnce(t, srv, n)
	if st := s.Stats(); st.Indexed != n || st.Retries == 0 {
		t.Errorf("stats %+v, want %d indexed after retries", st, n)
	}

	before := srv.Stats().Items
	s2 := newTestSink(t, cfg, Credentials{}, nil)
	if st := s2.Stats(); st.Queued != 0 {
		t.Errorf("the next sink found %d events in the buffer", st.Queued)
	}
	closeSink(t, s2, 10*time.Second)
	if items := srv.Stats().Items - before; items != 0 {
		t.Errorf("the next sink sent %d documents again", items)
	}
}

// TestDiskBufferFullIsCounted: with Elasticsearch hanging and a small
// buffer, Send never blocks, the buffer stays bounded, and every event is
// delivered, dropped or kept.
func TestDiskBufferFullIsCounted(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	srv.SetDelay(time.Hour)
	cfg := fast(srv.URL)
	cfg.BufferDir = t.TempDir()
	cfg.Buffer = forward.BufferConfig{MaxSize: 64 << 10}
	s := newTestSink(t, cfg, Credentials{}, nil)
	const n = 20_000
	start := time.Now()
	for i := 0; i < n; i += 100 {
		sendLines(s, i, i+100)
		time.Sleep(time.Millisecond) // let the buffer write
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v for %d events", d, n)
	}
	st := s.Stats()
	if st.Dropped == 0 || st.QueuedBytes > cfg.Buffer.MaxSize+32 {
		t.Errorf("stats %+v: want drops and at most %d bytes", st, cfg.Buffer.MaxSize)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = s.Close(ctx)
	st = s.Stats()
	if st.Dropped+uint64(st.Queued)+st.Indexed+st.Unsent != n {
		t.Errorf("stats %+v do not add up to %d", st, n)
	}
}

func TestBufferOptions(t *testing.T) {
	t.Parallel()
	cfg, on, err := ParseConfig(map[string]string{KeyURL: "http://es:9200", forward.KeyBufferMaxSize: "1g", forward.KeyBufferFull: "drop-newest"})
	if err != nil || !on || cfg.Buffer.MaxSize != 1_000_000_000 || cfg.Buffer.Full != forward.DropNewest {
		t.Errorf("ParseConfig = %+v, %v, %v", cfg.Buffer, on, err)
	}
	if _, _, err := ParseConfig(map[string]string{forward.KeyBufferFull: "oldest"}); err == nil || !strings.Contains(err.Error(), forward.KeyBufferFull) {
		t.Errorf("a bad buffer-full: %v", err)
	}
}

// TestNoGoroutineLeakWithDiskBuffer: Close, also at its deadline, leaves
// no goroutine of the sink or of its disk buffer. Not parallel, so that
// other tests' goroutines do not count.
func TestNoGoroutineLeakWithDiskBuffer(t *testing.T) {
	srv := estest.NewServer(estest.Options{RejectRate: 0.2})
	defer srv.Close()
	dir := t.TempDir()
	sinkRounds(t, srv, 3, 1, func(_ int, cfg *Config) {
		cfg.Workers = 2
		cfg.BufferDir = dir
	})
	linesOnce(t, srv, 400)
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaked := leakedGoroutines()
		buf := make([]byte, 1<<20)
		if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "diskq.(*Queue)") {
			leaked += stacks
		}
		if leaked == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after Close:\n%s", leaked)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnusableBufferDirFallsBackToMemory: a buffer directory that cannot
// be created does not fail the container's start.
func TestUnusableBufferDirFallsBackToMemory(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	var logs logBuffer
	cfg := fast(srv.URL)
	cfg.BufferDir = filepath.Join(file, "buffer")
	s := newTestSink(t, cfg, Credentials{}, logs.logger())
	sendLines(s, 0, 10)
	closeSink(t, s, 10*time.Second)
	linesOnce(t, srv, 10)
	if !strings.Contains(logs.String(), "keeping events in memory only") {
		t.Errorf("no log of the fallback:\n%s", logs.String())
	}
}
