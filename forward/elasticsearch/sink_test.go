package elasticsearch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/elasticsearch/estest"
)

// fast makes a config for tests: short intervals, so nothing sleeps long.
func fast(urls ...string) Config {
	return Config{
		URLs:                urls,
		BulkActions:         50,
		FlushInterval:       10 * time.Millisecond,
		RetryMin:            time.Millisecond,
		RetryMax:            20 * time.Millisecond,
		RequestTimeout:      5 * time.Second,
		HealthcheckInterval: 200 * time.Millisecond,
		ErrorLogInterval:    time.Hour,
	}
}

// logBuffer collects a sink's log.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newTestSink(t *testing.T, cfg Config, creds Credentials, log *slog.Logger) *Sink {
	t.Helper()
	s, err := New(cfg, creds, testContainer, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func closeSink(t *testing.T, s *Sink, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v (stats %+v)", err, s.Stats())
	}
}

var epoch = time.Date(2024, 3, 9, 12, 0, 0, 0, time.UTC)

// sendLines sends lines "line-from" to "line-to-1", one nanosecond apart.
func sendLines(s *Sink, from, to int) {
	for i := from; i < to; i++ {
		ev := forward.Event{Time: epoch.Add(time.Duration(i)), Source: "stdout", Line: []byte(fmt.Sprintf("line-%d", i))}
		s.Send(&ev)
		ev.Line[0] = 'X' // Send copied it
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a ceiling for loaded machines
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// linesOnce checks that the server holds lines "line-0" to "line-n-1",
// each exactly once.
func linesOnce(t *testing.T, srv *estest.Server, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, d := range srv.AllDocuments() {
		seen[d.Fields()["log"].(string)]++
	}
	for i := range n {
		if c := seen[fmt.Sprintf("line-%d", i)]; c != 1 {
			t.Errorf("line-%d stored %d times", i, c)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct lines stored, want %d", len(seen), n)
	}
}

func TestDeliversEveryLineExactlyOnce(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{RejectRate: 0.3, Seed: 1})
	defer srv.Close()
	cfg := fast(srv.URL)
	cfg.Workers = 3
	cfg.QueueEvents = 100_000
	cfg.QueueBytes = 64 << 20
	s := newTestSink(t, cfg, Credentials{}, nil)

	const n = 3000
	sendLines(s, 0, 1000)
	waitFor(t, "first lines", func() bool { return srv.Count() > 200 })

	srv.SetUnavailable(true) // whole-request 503s
	sendLines(s, 1000, 1500)
	waitFor(t, "a 503", func() bool { return srv.Stats().Unavailable > 3 })
	srv.SetUnavailable(false)

	srv.Stop() // connections refused
	sendLines(s, 1500, 2000)
	time.Sleep(50 * time.Millisecond)
	srv.Start()
	// Stored, but the client never hears: without 429s, so that what is
	// dropped is stored and its retry answered 409.
	srv.SetRejectRate(0)
	srv.DropResponses(2)
	sendLines(s, 2000, 2500)
	waitFor(t, "dropped answers", func() bool { return srv.Stats().Dropped == 2 })
	srv.SetRejectRate(0.3)
	srv.Restart()
	sendLines(s, 2500, n)

	closeSink(t, s, 20*time.Second)
	linesOnce(t, srv, n)
	st := s.Stats()
	if st.Indexed+st.Duplicates != n || st.Dropped+st.Unsent+st.Rejected != 0 {
		t.Errorf("stats %+v, want %d indexed or duplicate and nothing lost", st, n)
	}
	if st.Retries == 0 || st.RequestFailures == 0 {
		t.Errorf("stats %+v: no retries under 429s and outages", st)
	}
	if st.Duplicates == 0 {
		t.Errorf("stats %+v: the dropped answers caused no 409", st)
	}
	// A 409 whose answer the server dropped too is counted by the server
	// only: the sink hears the one its next retry gets.
	if srv.Stats().Conflicts < int(st.Duplicates) {
		t.Errorf("server answered %d conflicts, sink counted %d", srv.Stats().Conflicts, st.Duplicates)
	}
}

func TestIdenticalLinesInOneNanosecond(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	s := newTestSink(t, fast(srv.URL), Credentials{}, nil)
	for range 3 {
		s.Send(&forward.Event{Time: epoch, Source: "stdout", Line: []byte("same")})
	}
	s.Send(&forward.Event{Time: epoch, Source: "stderr", Line: []byte("same")})
	closeSink(t, s, 10*time.Second)
	if srv.Count() != 4 {
		t.Errorf("%d documents, want 4", srv.Count())
	}
}

func TestReplayIsNotDuplicated(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	const n = 200
	for run := range 2 {
		s := newTestSink(t, fast(srv.URL), Credentials{}, nil)
		sendLines(s, 0, 1)
		s.Send(&forward.Event{Time: epoch, Source: "stdout", Line: []byte("line-0")}) // same time as line-0
		sendLines(s, 1, n)
		closeSink(t, s, 10*time.Second)
		st := s.Stats()
		switch run {
		case 0:
			if st.Indexed != n+1 {
				t.Errorf("first run: %+v", st)
			}
		case 1:
			if st.Duplicates != n+1 || st.Indexed != 0 {
				t.Errorf("replay: %+v, want every document a 409 duplicate", st)
			}
		}
	}
	if srv.Count() != n+1 {
		t.Errorf("%d documents after a replay, want %d", srv.Count(), n+1)
	}
}

func TestDocumentsAsIndexed(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	cfg := fast(srv.URL)
	cfg.Pipeline = "docker"
	cfg.Compress = true
	cfg.JSONFields = true
	s := newTestSink(t, cfg, Credentials{}, nil)
	// Either side of midnight UTC: two daily indices.
	s.Send(&forward.Event{Time: time.Date(2024, 3, 9, 23, 59, 59, 999_999_999, time.UTC), Source: "stdout", Line: []byte(`{"level":"warn"}`)})
	s.Send(&forward.Event{Time: time.Date(2024, 3, 10, 1, 0, 0, 1, time.FixedZone("CET", 3600)), Source: "stderr", Line: []byte("plain")})
	closeSink(t, s, 10*time.Second)

	if got := srv.Indices(); strings.Join(got, ",") != "docker-20240309,docker-20240310" {
		t.Fatalf("indices %v", got)
	}
	d := srv.Documents("docker-20240309")[0]
	f := d.Fields()
	if f["@timestamp"] != "2024-03-09T23:59:59.999999999Z" || f["log"] != `{"level":"warn"}` || f["level"] != "warn" ||
		f["container_id"] != testContainer.ID || f["container_name"] != "/web" || f["@log_name"] != "docker.web" ||
		f["source"] != "stdout" || f["com.example.team"] != "core" {
		t.Errorf("document %s", d.Source)
	}
	if d.Pipeline != "docker" {
		t.Errorf("pipeline %q", d.Pipeline)
	}
	if f := srv.Documents("docker-20240310")[0].Fields(); f["@timestamp"] != "2024-03-10T00:00:00.000000001Z" {
		t.Errorf("second document %v", f)
	}
	gzipped := false
	for _, r := range srv.Requests() {
		if r.Path == "/_bulk" {
			gzipped = gzipped || r.Header.Get("Content-Encoding") == "gzip"
			if ct := r.Header.Get("Content-Type"); ct != "application/x-ndjson" {
				t.Errorf("Content-Type %q", ct)
			}
			if q, _ := url.ParseQuery(r.Query); q.Get("filter_path") != bulkFilterPath || q.Get("pipeline") != "docker" {
				t.Errorf("query %q", r.Query)
			}
		}
	}
	if !gzipped {
		t.Error("elasticsearch-compress sent no gzip body")
	}
}

// TestPartialMerge sends a line dockerd split in three pieces between two
// whole lines: with partial-merge it becomes one document without the
// partial_* fields, without it three documents with them; a line whose
// pieces stop coming goes as one piece at the timeout, or at Close.
func TestPartialMerge(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("0123456789abcdef", 1024) // 16 KiB, as dockerd splits
	type doc = mergedDoc
	wholeLong := doc{log: long + long + "end"}
	tests := []struct {
		name    string
		merge   bool
		timeout time.Duration
		disk    bool
		last    bool // the third piece is sent, with Last set
		// beforeClose is how many documents must arrive before Close
		// (the timeout's); want is every document, in any order.
		beforeClose int
		want        []doc
	}{
		{"merged", true, 0, false, true, 3, []doc{{log: "before"}, {log: "after"}, wholeLong}},
		{"merged, disk buffer", true, 0, true, true, 3, []doc{{log: "before"}, {log: "after"}, wholeLong}},
		{"not merged", false, 0, false, true, 5, []doc{{log: "before"}, {log: "after"},
			{long, "1/false"}, {long, "2/false"}, {"end", "3/true"}}},
		{"unfinished, timeout", true, 50 * time.Millisecond, false, false, 3, []doc{{log: "before"}, {log: "after"}, {long + long, "1/false"}}},
		{"unfinished, closed", true, time.Hour, false, false, 2, []doc{{log: "before"}, {log: "after"}, {long + long, "1/false"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := estest.NewServer(estest.Options{})
			defer srv.Close()
			cfg := fast(srv.URL)
			cfg.PartialMerge, cfg.Merge.Timeout = tt.merge, tt.timeout
			if tt.disk {
				cfg.BufferDir = filepath.Join(t.TempDir(), "buffer")
			}
			s := newTestSink(t, cfg, Credentials{}, nil)
			send := func(line string, p *forward.Partial) {
				ev := forward.Event{Time: epoch, Source: "stdout", Line: []byte(line), Partial: p}
				s.Send(&ev)
				ev.Line[0] = 'X' // Send copied it
			}
			send("before", nil)
			send(long, &forward.Partial{ID: "L", Ordinal: 1})
			send(long, &forward.Partial{ID: "L", Ordinal: 2})
			if tt.last {
				send("end", &forward.Partial{ID: "L", Ordinal: 3, Last: true})
			}
			send("after", nil)
			waitFor(t, fmt.Sprintf("%d documents", tt.beforeClose), func() bool { return srv.Count() >= tt.beforeClose })
			closeSink(t, s, 10*time.Second)

			got := map[doc]int{}
			for _, d := range srv.AllDocuments() {
				f := d.Fields()
				k := doc{log: f["log"].(string)}
				if f["partial_message"] != nil {
					k.partial = fmt.Sprintf("%v/%v", f["partial_ordinal"], f["partial_last"])
					if f["partial_message"] != "true" || f["partial_id"] != "L" {
						t.Errorf("piece %s", d.Source)
					}
				}
				got[k]++
			}
			want := map[doc]int{}
			for _, d := range tt.want {
				want[d]++
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("documents:\n got %v\nwant %v", got, want)
			}
			if st := s.Stats(); st.Indexed != uint64(len(tt.want)) || st.Queued != 0 || st.Dropped != 0 {
				t.Errorf("stats %+v, want %d indexed", st, len(tt.want))
			}
		})
	}
}

// mergedDoc is a document of TestPartialMerge.
type mergedDoc struct {
	log     string
	partial string // partial_ordinal/partial_last, "" on a whole line
}

// String shows the length of the log rather than the log.
func (d mergedDoc) String() string { return fmt.Sprintf("{%d bytes %s}", len(d.log), d.partial) }

func TestMappingErrorsGoToDeadLetterFile(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	var logs logBuffer
	cfg := fast(srv.URL)
	cfg.JSONFields = true
	cfg.DeadLetterPath = filepath.Join(t.TempDir(), "container-json.log.deadletter")
	s := newTestSink(t, cfg, Credentials{}, logs.logger())

	s.Send(&forward.Event{Time: epoch, Source: "stdout", Line: []byte(`{"n":1}`)})
	waitFor(t, "the mapping of n", func() bool { return srv.Count() == 1 })
	const bad = 20
	for i := range bad {
		s.Send(&forward.Event{Time: epoch.Add(time.Duration(i + 1)), Source: "stdout", Line: []byte(fmt.Sprintf(`{"n":"not a number %d"}`, i))})
	}
	s.Send(&forward.Event{Time: epoch.Add(time.Second), Source: "stdout", Line: []byte(`{"n":2}`)})
	closeSink(t, s, 10*time.Second)

	st := s.Stats()
	if st.Rejected != bad || st.DeadLettered != bad || st.Indexed != 2 || st.Retries != 0 {
		t.Errorf("stats %+v", st)
	}
	fi, err := os.Stat(cfg.DeadLetterPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("dead-letter file mode %v, want 0640", fi.Mode().Perm())
	}
	f, _ := os.Open(cfg.DeadLetterPath)
	defer f.Close()
	sc := bufio.NewScanner(f)
	lines := 0
	for sc.Scan() {
		lines++
		var rec struct {
			Index  string
			ID     string `json:"_id"`
			Status int
			Error  struct{ Type, Reason string }
			Doc    map[string]any `json:"document"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("dead letter %s: %v", sc.Bytes(), err)
		}
		if rec.Status != 400 || rec.Error.Type != "mapper_parsing_exception" || rec.Index != "docker-20240309" ||
			rec.ID == "" || !strings.HasPrefix(rec.Doc["log"].(string), `{"n":"not a number`) {
			t.Errorf("dead letter %s", sc.Bytes())
		}
	}
	if lines != bad {
		t.Errorf("%d dead letters, want %d", lines, bad)
	}
	if n := strings.Count(logs.String(), "elasticsearch rejected a document"); n != 1 {
		t.Errorf("%d rejection logs within the rate limit, want 1:\n%s", n, logs.String())
	}
}

func TestRequestTooLargeIsSplit(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{MaxContentLength: 4000})
	defer srv.Close()
	cfg := fast(srv.URL)
	cfg.BulkActions = 100
	cfg.FlushInterval = 100 * time.Millisecond
	s := newTestSink(t, cfg, Credentials{}, nil)
	sendLines(s, 0, 60)
	s.Send(&forward.Event{Time: epoch.Add(time.Hour), Source: "stdout", Line: bytes.Repeat([]byte("x"), 5000)})
	closeSink(t, s, 10*time.Second)
	linesOnce(t, srv, 60)
	if st := s.Stats(); st.Indexed != 60 || st.Rejected != 1 {
		t.Errorf("stats %+v, want 60 indexed and the one too large rejected", st)
	}
}

func TestBulkLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		actions     int
		size        int
		maxPerBatch int
	}{
		{"by actions", 7, DefaultBulkSize, 7},
		{"by bytes", 1000, 2000, 2000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeClient{}
			cfg := fast("http://fake")
			cfg.BulkActions, cfg.BulkSize = tt.actions, tt.size
			cfg.FlushInterval = time.Hour // only the limits and Close flush
			s, err := newSink(cfg, testContainer, nil, func(context.Context) (bulkClient, error) { return fake, nil })
			if err != nil {
				t.Fatal(err)
			}
			s.start()
			sendLines(s, 0, 100)
			closeSink(t, s, 10*time.Second)
			total := 0
			for _, b := range fake.batches() {
				total += len(b)
				size := 0
				for _, a := range b {
					size += a.size()
				}
				if tt.name == "by actions" && len(b) > tt.maxPerBatch {
					t.Errorf("batch of %d actions", len(b))
				}
				if tt.name == "by bytes" && size > tt.maxPerBatch {
					t.Errorf("batch of %d bytes", size)
				}
			}
			if total != 100 {
				t.Errorf("%d documents sent", total)
			}
		})
	}
}

func TestFlushInterval(t *testing.T) {
	t.Parallel()
	fake := &fakeClient{}
	cfg := fast("http://fake")
	cfg.FlushInterval = 50 * time.Millisecond
	s, _ := newSink(cfg, testContainer, nil, func(context.Context) (bulkClient, error) { return fake, nil })
	s.start()
	defer closeSink(t, s, time.Second)
	start := time.Now()
	sendLines(s, 0, 3)
	waitFor(t, "the interval flush", func() bool { return len(fake.batches()) == 1 })
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("flushed after %v, before the interval", d)
	}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	const (
		user   = "elastic"
		pass   = "pa55-Word-never-logged"
		apiKey = "QVBJLUtFWS1uZXZlci1sb2dnZWQ="
	)
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	tests := []struct {
		name      string
		creds     Credentials
		delivered bool
		header    string
	}{
		{"basic auth", Credentials{Username: user, Password: pass}, true, "Basic " + basic},
		{"api key", Credentials{APIKey: apiKey}, true, "ApiKey " + apiKey},
		{"wrong password", Credentials{Username: user, Password: pass + "x"}, false, ""},
		{"wrong api key", Credentials{APIKey: apiKey + "x"}, false, ""},
		{"none", Credentials{}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := estest.NewServer(estest.Options{Username: user, Password: pass, APIKey: apiKey})
			defer srv.Close()
			var logs logBuffer
			cfg := fast(srv.URL)
			cfg.Sniff = true // the library's sniffer must authenticate too
			cfg.ErrorLogInterval = time.Nanosecond
			s := newTestSink(t, cfg, tt.creds, logs.logger())
			sendLines(s, 0, 10)
			var closeErr error
			if tt.delivered {
				closeSink(t, s, 10*time.Second)
				if srv.Count() != 10 {
					t.Errorf("%d documents", srv.Count())
				}
				for _, r := range srv.Requests() {
					if got := r.Header.Get("Authorization"); got != tt.header {
						t.Errorf("%s %s sent Authorization %q", r.Method, r.Path, got)
					}
				}
			} else {
				waitFor(t, "a refusal", func() bool { return srv.Stats().BadRequests >= 2 })
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				closeErr = s.Close(ctx)
				cancel()
				if closeErr == nil || srv.Count() != 0 {
					t.Errorf("delivered without credentials: %v", closeErr)
				}
			}
			text := logs.String() + fmt.Sprint(closeErr) +
				fmt.Sprintf("%v %+v %#v %s", tt.creds, tt.creds, tt.creds, tt.creds)
			slog.New(slog.NewTextHandler(&logs, nil)).Info("creds", "creds", tt.creds)
			text += logs.String()
			for _, secret := range []string{pass, apiKey, basic, base64.StdEncoding.EncodeToString([]byte(user + ":" + pass + "x"))} {
				if strings.Contains(text, secret) {
					t.Errorf("a secret leaked into logs or errors:\n%s", text)
				}
			}
		})
	}
}

func TestCredentialsValidation(t *testing.T) {
	t.Parallel()
	for _, c := range []Credentials{
		{Username: "u", Password: "p", APIKey: "k"},
		{Password: "secret-password"},
	} {
		_, err := New(fast("http://127.0.0.1:1"), c, testContainer, nil)
		if err == nil {
			t.Errorf("%v accepted", c)
		} else if strings.Contains(err.Error(), "secret-password") || strings.Contains(err.Error(), `"k"`) {
			t.Errorf("error leaks a secret: %v", err)
		}
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		caFile    string // "trusted" for the server's CA
		skip      bool
		delivered bool
		newErr    bool
	}{
		{"trusted ca", "trusted", false, true, false},
		{"verification by default", "", false, false, false},
		{"skip verify when asked", "", true, true, false},
		{"not a pem file", "junk", false, false, true},
		{"missing ca file", "missing", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := estest.NewTLSServer(estest.Options{})
			defer srv.Close()
			dir := t.TempDir()
			cfg := fast(srv.URL)
			cfg.TLSInsecureSkipVerify = tt.skip
			switch tt.caFile {
			case "trusted":
				cfg.TLSCAFile = filepath.Join(dir, "ca.pem")
				os.WriteFile(cfg.TLSCAFile, srv.CACertPEM(), 0o600)
			case "junk":
				cfg.TLSCAFile = filepath.Join(dir, "junk.pem")
				os.WriteFile(cfg.TLSCAFile, []byte("junk"), 0o600)
			case "missing":
				cfg.TLSCAFile = filepath.Join(dir, "missing.pem")
			}
			// Long enough for a TLS handshake under the race detector on a
			// loaded machine: a timeout would hide the certificate error.
			cfg.RequestTimeout = 5 * time.Second
			var logs logBuffer
			s, err := New(cfg, Credentials{}, testContainer, logs.logger())
			if tt.newErr {
				if err == nil {
					s.Close(context.Background())
					t.Fatal("New accepted a bad CA file")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s.Send(&forward.Event{Time: time.Now(), Source: "stdout", Line: []byte(tt.name)})
			if tt.delivered {
				closeSink(t, s, 10*time.Second)
				if s.Stats().Indexed != 1 {
					t.Errorf("stats %+v", s.Stats())
				}
				return
			}
			waitFor(t, "a certificate error", func() bool {
				return strings.Contains(logs.String(), "failed to verify certificate")
			})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := s.Close(ctx); err == nil || s.Stats().Unsent != 1 {
				t.Errorf("Close = %v, stats %+v", err, s.Stats())
			}
			if r := srv.Requests(); len(r) != 0 {
				t.Errorf("%d requests got past an unverified certificate", len(r))
			}
		})
	}
}

func TestTemplateInstalled(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	cfg := fast(srv.URL)
	cfg.Template = true
	cfg.JSONFields = true
	s := newTestSink(t, cfg, Credentials{}, nil)
	// Without the template, the first document would map
	// container_name as a number and @timestamp as text.
	s.Send(&forward.Event{Time: epoch, Source: "stdout", Line: []byte("x")})
	closeSink(t, s, 10*time.Second)

	raw, ok := srv.Templates()["logferry-docker"]
	if !ok {
		t.Fatalf("templates %v", srv.Templates())
	}
	var tmpl struct {
		IndexPatterns []string `json:"index_patterns"`
		Template      struct {
			Mappings struct {
				Properties map[string]struct{ Type string } `json:"properties"`
			} `json:"mappings"`
		} `json:"template"`
	}
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		t.Fatal(err)
	}
	if strings.Join(tmpl.IndexPatterns, ",") != "docker-*" {
		t.Errorf("index patterns %v", tmpl.IndexPatterns)
	}
	want := map[string]string{"@timestamp": "date", "log": "text", "container_id": "keyword",
		"container_name": "keyword", "@log_name": "keyword", "source": "keyword"}
	for field, typ := range want {
		if got := tmpl.Template.Mappings.Properties[field].Type; got != typ {
			t.Errorf("%s mapped as %q, want %q", field, got, typ)
		}
	}
	if m := srv.Mapping("docker-20240309"); m["@timestamp"] != "date" || m["container_name"] != "keyword" {
		t.Errorf("index mapping %v", m)
	}
}

// TestTemplateInstalledOnce: the sinks of containers that share a client
// put the index template, and the lifecycle policy, once between them, and
// again only on a client made after they all closed.
func TestTemplateInstalledOnce(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	cfg := fast(srv.URL)
	cfg.Template, cfg.Retention = true, "30d"
	count := func(path string) int {
		n := 0
		for _, r := range srv.Requests() {
			if r.Method == http.MethodPut && r.Path == path {
				n++
			}
		}
		return n
	}
	puts := func() int { return count("/_index_template/logferry-docker") }
	for round := 1; round <= 2; round++ {
		sinks := make([]*Sink, 5)
		for i := range sinks {
			sinks[i] = newTestSink(t, cfg, Credentials{}, nil)
		}
		for i, s := range sinks {
			// The sinks are the same container's: distinct times keep
			// their documents' IDs apart.
			at := epoch.Add(time.Duration(10*round+i) * time.Second)
			s.Send(&forward.Event{Time: at, Source: "stdout", Line: []byte(strconv.Itoa(i))})
		}
		for _, s := range sinks {
			closeSink(t, s, 10*time.Second)
		}
		if n := puts(); n != round {
			t.Errorf("after %d rounds of 5 sinks: %d template requests, want %d", round, n, round)
		}
		if n := count("/_ilm/policy/logferry-docker"); n != round {
			t.Errorf("after %d rounds of 5 sinks: %d policy requests, want %d", round, n, round)
		}
	}
	if n := srv.Count(); n != 10 {
		t.Errorf("%d documents, want 10", n)
	}
}

func TestQueueOverflowIsCountedAndSendNeverBlocks(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	srv.SetDelay(time.Hour) // Elasticsearch hangs
	var logs logBuffer
	cfg := fast(srv.URL)
	cfg.QueueEvents = 100
	s := newTestSink(t, cfg, Credentials{}, logs.logger())
	start := time.Now()
	const n = 5000
	sendLines(s, 0, n)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Send took %v for %d events", d, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := s.Close(ctx)
	st := s.Stats()
	if err == nil || st.Dropped < n-100-2*uint64(cfg.BulkActions) {
		t.Errorf("Close = %v, stats %+v: want most events dropped", err, st)
	}
	if st.Dropped+st.Unsent+st.Indexed != n {
		t.Errorf("stats %+v do not add up to %d", st, n)
	}
	if !strings.Contains(logs.String(), "dropped the oldest events") {
		t.Errorf("no log of the drops:\n%s", logs.String())
	}
}

func TestCloseHonoursDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(*estest.Server) string
	}{
		{"hanging server", func(s *estest.Server) string { s.SetDelay(time.Hour); return s.URL }},
		{"unavailable server", func(s *estest.Server) string { s.SetUnavailable(true); return s.URL }},
		{"nothing listening", func(s *estest.Server) string { s.Stop(); return s.URL }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := estest.NewServer(estest.Options{})
			defer srv.Close()
			cfg := fast(tt.setup(srv))
			// Far beyond the ceiling below: a Close that waited for the
			// request rather than its deadline fails it even on a busy
			// machine.
			cfg.RequestTimeout = time.Minute
			s := newTestSink(t, cfg, Credentials{}, nil)
			sendLines(s, 0, 100)
			time.Sleep(20 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := s.Close(ctx)
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("Close took %v with a 200ms deadline", d)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Close = %v, want a deadline error", err)
			}
			if st := s.Stats(); st.Unsent != 100 || st.Queued != 0 {
				t.Errorf("stats %+v, want 100 unsent", st)
			}
			if err := s.Close(context.Background()); !errors.Is(err, ErrClosed) {
				t.Errorf("second Close = %v, want ErrClosed", err)
			}
			s.Send(&forward.Event{Time: time.Now(), Line: []byte("late")})
			if st := s.Stats(); st.Dropped != 1 {
				t.Errorf("Send after Close: stats %+v", st)
			}
		})
	}
}

func TestNewNeverTouchesTheNetwork(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil { // a server that never answers
			accepted <- struct{}{}
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	start := time.Now()
	s, err := New(fast("http://"+ln.Addr().String()), Credentials{}, testContainer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("New took %v", d)
	}
	select {
	case <-accepted:
		t.Error("New connected before there was anything to send")
	case <-time.After(50 * time.Millisecond):
	}
	closeSink(t, s, time.Second) // nothing queued: nothing to wait for
}

// TestSinksShareAClient: sinks with the same settings share one client,
// which outlives the closing of any but the last of them; other settings
// (credentials, health check interval) get a client of their own.
func TestSinksShareAClient(t *testing.T) {
	t.Parallel()
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	cfg := fast(srv.URL)
	other := cfg
	other.HealthcheckInterval = 300 * time.Millisecond
	a := newTestSink(t, cfg, Credentials{}, nil)
	b := newTestSink(t, cfg, Credentials{}, nil)
	c := newTestSink(t, other, Credentials{}, nil)
	d := newTestSink(t, cfg, Credentials{Username: "u", Password: "p"}, nil)
	if a.shared != b.shared {
		t.Error("two sinks with the same settings have a client each")
	}
	if c.shared == a.shared || d.shared == a.shared || c.shared == d.shared {
		t.Error("sinks with different settings share a client")
	}
	shared := func(k clientKey) bool {
		clients.mu.Lock()
		defer clients.mu.Unlock()
		return clients.m[k] != nil
	}
	key := a.shared.key

	sendLines(a, 0, 100)
	closeSink(t, a, 10*time.Second)
	sendLines(b, 100, 200) // a is closed: its client must still work for b
	waitFor(t, "200 documents", func() bool { return srv.Count() >= 200 })
	if !shared(key) {
		t.Error("the client went with the first of its two sinks")
	}
	closeSink(t, b, 10*time.Second)
	if shared(key) {
		t.Error("the client outlived its last sink")
	}
	if got := srv.Count(); got != 200 {
		t.Errorf("%d documents, want 200", got)
	}
}

func TestLoadBalancedAndHealthChecked(t *testing.T) {
	t.Parallel()
	a := estest.NewServer(estest.Options{})
	defer a.Close()
	b := estest.NewServer(estest.Options{})
	defer b.Close()
	cfg := fast(a.URL, b.URL)
	cfg.BulkActions = 5
	s := newTestSink(t, cfg, Credentials{}, nil)
	sendLines(s, 0, 100)
	waitFor(t, "both nodes used", func() bool { return a.Count()+b.Count() == 100 })
	if a.Stats().BulkRequests == 0 || b.Stats().BulkRequests == 0 {
		t.Errorf("requests: a %d, b %d", a.Stats().BulkRequests, b.Stats().BulkRequests)
	}
	b.Stop()
	sendLines(s, 100, 200)
	closeSink(t, s, 10*time.Second)
	seen := map[string]bool{}
	for _, srv := range []*estest.Server{a, b} {
		for _, d := range srv.AllDocuments() {
			seen[d.Fields()["log"].(string)] = true
		}
	}
	if len(seen) != 200 {
		t.Errorf("%d of 200 lines arrived with one node down", len(seen))
	}
}

// TestNoGoroutineLeak runs sinks through failures and checks that Close
// leaves none of their goroutines, nor the library's, behind. It does not
// run in parallel, so that other tests' goroutines do not count.
func TestNoGoroutineLeak(t *testing.T) {
	srv := estest.NewServer(estest.Options{RejectRate: 0.2})
	defer srv.Close()
	sinkRounds(t, srv, 3, 2, func(i int, cfg *Config) {
		cfg.Workers = 3
		cfg.Template = true
		cfg.Sniff = i == 1
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaked := leakedGoroutines()
		if leaked == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after Close:\n%s", leaked)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leakedGoroutines returns the stacks of goroutines of the sink, the
// library or an HTTP client connection.
func leakedGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "TestNoGoroutineLeak") || strings.Contains(g, "leakedGoroutines") {
			continue
		}
		for _, mark := range []string{"elasticsearch.(*Sink)", "olivere/elastic", "net/http.(*persistConn)"} {
			if strings.Contains(g, mark) {
				leaked = append(leaked, g)
				break
			}
		}
	}
	return strings.Join(leaked, "\n\n")
}

// fakeClient records batches and accepts every document.
type fakeClient struct {
	mu   sync.Mutex // guards sent
	sent [][]action
}

func (f *fakeClient) Bulk(_ context.Context, b *batch) ([]itemResult, error) {
	if err := checkBody(b); err != nil {
		return nil, err
	}
	actions := b.actions
	sent := append([]action(nil), actions...)
	for i := range sent { // the sink reuses the buffer they point into
		sent[i].line = bytes.Clone(sent[i].line)
	}
	f.mu.Lock()
	f.sent = append(f.sent, sent)
	f.mu.Unlock()
	res := make([]itemResult, len(actions))
	for i := range res {
		res[i].status = 201
	}
	return res, nil
}

func (f *fakeClient) PutIndexTemplate(context.Context, string, string) error { return nil }

func (f *fakeClient) PutRetention(context.Context, string, string, string) (string, error) {
	return "", nil
}

func (f *fakeClient) batches() [][]action {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]action(nil), f.sent...)
}

// checkBody returns a 400 error, which rejects every document (and so
// fails the test), unless b's body is its actions' lines back to back,
// each a create action and its document.
func checkBody(b *batch) error {
	var want []byte
	for _, a := range b.actions {
		if !bytes.HasPrefix(a.line, []byte(`{"create":`)) || bytes.Count(a.line, []byte("\n")) != 2 {
			return &requestError{status: 400, err: fmt.Errorf("malformed action %q", a.line)}
		}
		want = append(want, a.line...)
	}
	if !bytes.Equal(b.body(), want) {
		return &requestError{status: 400, err: fmt.Errorf("body\n%s\nis not the actions\n%s", b.body(), want)}
	}
	return nil
}

// scriptClient answers each Bulk call with its script.
type scriptClient struct {
	mu       sync.Mutex // guards calls and sizes
	calls    int
	sizes    []int
	script   func(call int, actions []action) ([]itemResult, error)
	template func(call int) error
	tcalls   int
}

func (c *scriptClient) Bulk(_ context.Context, b *batch) ([]itemResult, error) {
	if err := checkBody(b); err != nil {
		return nil, err
	}
	actions := b.actions
	c.mu.Lock()
	call := c.calls
	c.calls++
	c.sizes = append(c.sizes, len(actions))
	c.mu.Unlock()
	return c.script(call, actions)
}

func (c *scriptClient) PutIndexTemplate(context.Context, string, string) error {
	c.mu.Lock()
	call := c.tcalls
	c.tcalls++
	c.mu.Unlock()
	if c.template == nil {
		return nil
	}
	return c.template(call)
}

func (c *scriptClient) PutRetention(context.Context, string, string, string) (string, error) {
	return "", nil
}

func statuses(codes ...int) []itemResult {
	out := make([]itemResult, len(codes))
	for i, c := range codes {
		out[i] = itemResult{status: c, errType: "t", reason: "r"}
	}
	return out
}

func all(n, code int) []itemResult {
	codes := make([]int, n)
	for i := range codes {
		codes[i] = code
	}
	return statuses(codes...)
}

func TestResultHandling(t *testing.T) {
	t.Parallel()
	reqErr := func(status int) error { return &requestError{status: status, err: fmt.Errorf("status %d", status)} }
	// then answers call 0 with first and every later call with 201s.
	then := func(first func(actions []action) ([]itemResult, error)) func(int, []action) ([]itemResult, error) {
		return func(call int, actions []action) ([]itemResult, error) {
			if call == 0 {
				return first(actions)
			}
			return all(len(actions), 201), nil
		}
	}
	tests := []struct {
		name   string
		docs   int
		script func(int, []action) ([]itemResult, error)
		want   Stats
		calls  []int // documents per call
	}{
		{"created", 2, then(func(a []action) ([]itemResult, error) { return all(2, 201), nil }),
			Stats{Indexed: 2}, []int{2}},
		{"429 and 503 retried alone", 3, then(func([]action) ([]itemResult, error) { return statuses(201, 429, 503), nil }),
			Stats{Indexed: 3, Retries: 2, RetryCount: 1, ItemErrors: ItemErrors{Status429: 1, Status5xx: 1}}, []int{3, 2}},
		{"409 is delivered", 2, then(func([]action) ([]itemResult, error) { return statuses(409, 201), nil }),
			Stats{Indexed: 1, Duplicates: 1}, []int{2}},
		{"retried then 409", 1, func(call int, a []action) ([]itemResult, error) {
			return statuses([]int{429, 409}[call]), nil
		}, Stats{Duplicates: 1, Retries: 1, RetryCount: 1, ItemErrors: ItemErrors{Status429: 1}}, []int{1, 1}},
		{"mapping error not retried", 2, then(func([]action) ([]itemResult, error) { return statuses(400, 201), nil }),
			Stats{Indexed: 1, Rejected: 1, DeadLettered: 1, ItemErrors: ItemErrors{Status4xx: 1}}, []int{2}},
		{"404 item not retried", 1, then(func([]action) ([]itemResult, error) { return statuses(404), nil }),
			Stats{Rejected: 1, DeadLettered: 1, ItemErrors: ItemErrors{Status4xx: 1}}, []int{1}},
		{"missing item status retried", 1, then(func([]action) ([]itemResult, error) { return statuses(0), nil }),
			Stats{Indexed: 1, Retries: 1, RetryCount: 1, ItemErrors: ItemErrors{Status5xx: 1}}, []int{1, 1}},
		{"connection refused retried", 2, then(func([]action) ([]itemResult, error) { return nil, reqErr(0) }),
			Stats{Indexed: 2, RequestFailures: 1, RetryCount: 1}, []int{2, 2}},
		{"503 retried", 2, then(func([]action) ([]itemResult, error) { return nil, reqErr(503) }),
			Stats{Indexed: 2, RequestFailures: 1, RetryCount: 1}, []int{2, 2}},
		{"401 retried", 2, then(func([]action) ([]itemResult, error) { return nil, reqErr(401) }),
			Stats{Indexed: 2, RequestFailures: 1, RetryCount: 1}, []int{2, 2}},
		{"404 request retried", 2, then(func([]action) ([]itemResult, error) { return nil, reqErr(404) }),
			Stats{Indexed: 2, RequestFailures: 1, RetryCount: 1}, []int{2, 2}},
		{"400 request rejected", 2, then(func([]action) ([]itemResult, error) { return nil, reqErr(400) }),
			Stats{Rejected: 2, DeadLettered: 2}, []int{2}},
		{"413 split", 4, func(call int, a []action) ([]itemResult, error) {
			if len(a) > 1 {
				return nil, reqErr(413)
			}
			return all(1, 201), nil
		}, Stats{Indexed: 4}, []int{4, 2, 1, 1, 1, 1}},
		{"too few items retried", 2, then(func([]action) ([]itemResult, error) { return nil, &requestError{err: errors.New("1 item")} }),
			Stats{Indexed: 2, RequestFailures: 1, RetryCount: 1}, []int{2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &scriptClient{script: tt.script}
			cfg := fast("http://fake")
			cfg.DeadLetterPath = filepath.Join(t.TempDir(), "dead")
			cfg.FlushInterval = time.Hour
			cfg.Workers = 1 // the calls in order
			s, err := newSink(cfg, testContainer, nil, func(context.Context) (bulkClient, error) { return c, nil })
			if err != nil {
				t.Fatal(err)
			}
			s.start()
			sendLines(s, 0, tt.docs)
			closeSink(t, s, 10*time.Second)
			tt.want.Concurrency = 1 // Workers
			if got := s.Stats(); got != tt.want {
				t.Errorf("stats\n got %+v\nwant %+v", got, tt.want)
			}
			if fmt.Sprint(c.sizes) != fmt.Sprint(tt.calls) {
				t.Errorf("documents per call %v, want %v", c.sizes, tt.calls)
			}
		})
	}
}

func TestTemplateFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		template func(call int) error
		calls    int
		logged   string
	}{
		{"unavailable, then installed", func(call int) error {
			if call < 2 {
				return &requestError{status: 503, err: errors.New("status 503")}
			}
			return nil
		}, 3, "installed index template"},
		{"forbidden: documents go all the same", func(int) error {
			return &requestError{status: 403, err: errors.New("status 403")}
		}, 1, "cannot install index template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &scriptClient{template: tt.template, script: func(_ int, a []action) ([]itemResult, error) {
				return all(len(a), 201), nil
			}}
			var logs logBuffer
			cfg := fast("http://fake")
			cfg.Template = true
			s, _ := newSink(cfg, testContainer, logs.logger(), func(context.Context) (bulkClient, error) { return c, nil })
			s.start()
			sendLines(s, 0, 3)
			closeSink(t, s, 10*time.Second)
			if s.Stats().Indexed != 3 || c.tcalls != tt.calls {
				t.Errorf("stats %+v after %d template calls", s.Stats(), c.tcalls)
			}
			if !strings.Contains(logs.String(), tt.logged) {
				t.Errorf("log lacks %q:\n%s", tt.logged, logs.String())
			}
		})
	}
}

func TestDialRetried(t *testing.T) {
	t.Parallel()
	c := &scriptClient{script: func(_ int, a []action) ([]itemResult, error) { return all(len(a), 201), nil }}
	var mu sync.Mutex // guards dials
	dials := 0
	dial := func(context.Context) (bulkClient, error) {
		mu.Lock()
		defer mu.Unlock()
		if dials++; dials < 3 {
			return nil, &requestError{err: errors.New("no Elasticsearch node available")}
		}
		return c, nil
	}
	cfg := fast("http://fake")
	cfg.Workers = 4
	s, _ := newSink(cfg, testContainer, nil, dial)
	s.start()
	sendLines(s, 0, 500)
	closeSink(t, s, 10*time.Second)
	if s.Stats().Indexed != 500 || dials != 3 {
		t.Errorf("stats %+v after %d dials", s.Stats(), dials)
	}
}

// TestRefusedDocumentsDoNotHoldBackOthers: a document Elasticsearch keeps
// answering 429 goes again with each next request while the documents
// behind it are indexed; the wait between attempts follows the share
// refused, not the document's retries (RetryMin is a minute here), and
// the pushback is logged with the container and the share.
func TestRefusedDocumentsDoNotHoldBackOthers(t *testing.T) {
	t.Parallel()
	var refuse atomic.Bool
	refuse.Store(true)
	c := &scriptClient{script: func(_ int, actions []action) ([]itemResult, error) {
		out := all(len(actions), 201)
		for i, a := range actions {
			if refuse.Load() && bytes.Contains(a.doc(), []byte(`"line-0"`)) {
				out[i] = itemResult{status: 429, errType: "es_rejected_execution_exception", reason: "queue full"}
			}
		}
		return out, nil
	}}
	cfg := fast("http://fake")
	cfg.BulkActions = 10
	cfg.RetryMin, cfg.RetryMax = time.Minute, time.Minute
	var logs logBuffer
	s, err := newSink(cfg, testContainer, logs.logger(), func(context.Context) (bulkClient, error) { return c, nil })
	if err != nil {
		t.Fatal(err)
	}
	// Every line is queued before the sender starts, so that each request
	// holds BulkActions documents: one cut while line-0 was the only one
	// queued (a loaded machine) would be refused whole and wait RetryMin.
	sendLines(s, 0, 100)
	s.start()
	deadline := time.Now().Add(20 * time.Second) // not a minute: RetryMin
	// The pushback is logged after the answer is counted.
	for s.Stats().Indexed < 99 || !strings.Contains(logs.String(), "pushing back") {
		if time.Now().After(deadline) {
			t.Fatalf("99 documents not indexed (and the pushback logged) in 20s behind one refused: %+v", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := s.Stats()
	if st.Retries == 0 || st.ItemErrors.Status429 != st.Retries {
		t.Errorf("stats %+v: want the refused document counted in Retries and ItemErrors.Status429", st)
	}
	text := logs.String()
	for _, want := range []string{"pushing back", "container=" + testContainer.ShortID(), "refused=1", "share=10.0%", "status=429"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	refuse.Store(false)
	closeSink(t, s, 15*time.Second) // the pause ends in time for a last attempt
	if st := s.Stats(); st.Indexed != 100 || st.Unsent != 0 {
		t.Errorf("after Close: %+v", st)
	}
}

// sinkRounds runs rounds sinks on srv one after the other, each sending
// lines 0 to 300 and closing; the one of round hard also sends lines 300
// to 400 while srv hangs, and is closed at a 50ms deadline. set adjusts
// each round's Config.
func sinkRounds(t *testing.T, srv *estest.Server, rounds, hard int, set func(i int, cfg *Config)) {
	t.Helper()
	for i := range rounds {
		cfg := fast(srv.URL)
		set(i, &cfg)
		s, err := New(cfg, Credentials{}, testContainer, nil)
		if err != nil {
			t.Fatal(err)
		}
		sendLines(s, 0, 300)
		if i == hard {
			srv.SetDelay(time.Hour)
			sendLines(s, 300, 400)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			_ = s.Close(ctx)
			cancel()
			srv.SetDelay(0)
			continue
		}
		closeSink(t, s, 10*time.Second)
	}
}
