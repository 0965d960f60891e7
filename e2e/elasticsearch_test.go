//go:build e2e

package e2e

// Shipping to Elasticsearch through the real engine, against estest, a
// stand-in that keeps Elasticsearch's _bulk contract: every line must be
// indexed exactly once, in docker-YYYYMMDD of the entry's UTC date, with the
// fields the Fluentd + fluent-plugin-elasticsearch pipeline gives it, also
// while the server rejects documents with 429 and requests with 503.

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward/elasticsearch/estest"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
	"github.com/logferry/logferry/internal/tally"
)

// esServer starts an estest server that stops when the test ends.
func esServer(t testing.TB, opts estest.Options) *estest.Server {
	t.Helper()
	srv := estest.NewServer(opts)
	t.Cleanup(srv.Close)
	return srv
}

// esIndex is the index of an entry logged at ts with the default pattern
// docker-%Y%m%d, evaluated in UTC.
func esIndex(ts time.Time) string { return "docker-" + ts.UTC().Format("20060102") }

// esTimestamp checks a document's @timestamp: RFC 3339 in UTC with the
// nanoseconds of the entry's time.
func esTimestamp(doc map[string]any, want time.Time) error {
	s, _ := doc["@timestamp"].(string)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !strings.HasSuffix(s, "Z") || !ts.Equal(want) {
		return fmt.Errorf("@timestamp %q, want %s", s, want.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// esDocs waits until srv holds at least n documents and returns them.
func esDocs(t testing.TB, srv *estest.Server, n int, ceiling time.Duration) []estest.Document {
	t.Helper()
	deadline := time.Now().Add(ceiling)
	for srv.Count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d documents indexed after %v, want %d; server: %+v", srv.Count(), ceiling, n, srv.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return srv.AllDocuments()
}

// esStrings returns a document's fields, which must all be strings.
func esStrings(t testing.TB, d estest.Document) map[string]string {
	t.Helper()
	fields := d.Fields()
	out := make(map[string]string, len(fields))
	for k, v := range fields {
		s, ok := v.(string)
		if !ok {
			t.Errorf("document %s: field %q is %#v, not a string", d.ID, k, v)
		}
		out[k] = s
	}
	return out
}

// esLinesScript writes "line 1" to "line N", every tenth on stderr, in the
// bursts given by the shell function "burst COUNT" (defined here) between
// awaits of the test's signals.
const esLinesScript = fwdWaitScript + `n=0
burst() { i=1; while [ $i -le $1 ]; do n=$((n+1)); if [ $((n % 10)) -eq 0 ]; then echo "line $n" >&2; else echo "line $n"; fi; i=$((i+1)); done; }
`

// TestElasticsearchIndexesEveryLine compares every document with the
// record logferry's file holds for the same entry: the index of its UTC
// date, @timestamp, log, source, container_id, container_name, @log_name
// and the selected labels and env, and nothing else; each exactly once.
func TestElasticsearchIndexesEveryLine(t *testing.T) {
	t.Parallel()
	srv := esServer(t, estest.Options{})
	name := containerName(t)
	c := run(t, spec{
		name:   name,
		driver: suite.driver,
		logOpts: []string{
			"elasticsearch-url=" + srv.URL,
			"elasticsearch-flush-interval=200ms",
			"labels=com.example.team",
			"env=APP_MODE",
			"tag=app.{{.Name}}",
		},
		flags: []string{"--label", "com.example.team=ops", "--label", "unrelated=x", "-e", "APP_MODE=prod", "-e", "UNRELATED=y"},
		script: esLinesScript + `burst 200
printf 'quotes "q" tab\t backslash \\ invalid \377 emoji \360\237\230\200\n' >&2
printf '{"json":"stays a string","n":1}\n'`,
	})
	recs := allRecords(t, c.logFiles(t, false))
	if len(recs) != 202 {
		t.Fatalf("test bug: the file holds %d records, want 202", len(recs))
	}
	docs := esDocs(t, srv, len(recs), fwdCeiling)

	type key struct{ source, log string }
	want := make(map[key]record, len(recs))
	for _, r := range recs {
		want[key{r.Stream, strings.TrimSuffix(r.Log, "\n")}] = r
	}
	seen := make(map[key]int)
	for _, d := range docs {
		fields := esStrings(t, d)
		k := key{fields["source"], fields["log"]}
		r, ok := want[k]
		if !ok {
			t.Errorf("document %s in %s matches no record of the file: %s", d.ID, d.Index, clip(string(d.Source)))
			continue
		}
		if seen[k]++; seen[k] > 1 {
			t.Errorf("%s %q indexed %d times", k.source, k.log, seen[k])
		}
		if d.Index != esIndex(r.Time) {
			t.Errorf("%q is in index %s, want %s", k.log, d.Index, esIndex(r.Time))
		}
		if err := esTimestamp(d.Fields(), r.Time); err != nil {
			t.Errorf("%q: %v", k.log, err)
		}
		delete(fields, "@timestamp")
		wantFields := map[string]string{
			"log":              k.log,
			"source":           r.Stream,
			"container_id":     c.id,
			"container_name":   "/" + name,
			"@log_name":        "app." + name,
			"com.example.team": "ops",
			"APP_MODE":         "prod",
		}
		if !maps.Equal(fields, wantFields) {
			t.Errorf("document of %q has fields %q, want %q", k.log, fields, wantFields)
		}
	}
	if len(seen) != len(want) || len(docs) != len(recs) {
		t.Errorf("%d documents for %d distinct records of %d in the file", len(docs), len(seen), len(recs))
	}
}

// TestElasticsearchRetries indexes lines while the server rejects about
// 30% of the documents with 429 throughout and answers every request 503
// for 10 s: every line must still be indexed exactly once.
func TestElasticsearchRetries(t *testing.T) {
	t.Parallel()
	const burst = 300
	srv := esServer(t, estest.Options{RejectRate: 0.3, Seed: 20})
	gate := newFwdSync(t)
	c := create(t, spec{
		driver: suite.driver,
		logOpts: []string{
			"elasticsearch-url=" + srv.URL,
			"elasticsearch-flush-interval=200ms",
			"elasticsearch-bulk-actions=50",
		},
		flags: gate.flag(),
		script: esLinesScript + fmt.Sprintf(`burst %d; await outage
burst %d; await recovered
burst %d`, burst, burst, burst),
	})
	c.start(t)

	esDocs(t, srv, burst, fwdCeiling)
	srv.SetUnavailable(true)
	outage := time.Now()
	gate.signal(t, "outage")
	fwdWait(t, fwdCeiling, "requests answered 503", func() bool { return srv.Stats().Unavailable >= 3 })
	// The cluster stays unavailable for 10 s at least.
	time.Sleep(time.Until(outage.Add(10 * time.Second)))
	srv.SetUnavailable(false)
	gate.signal(t, "recovered")
	c.wait(t)

	esEachLineOnce(t, srv, 3*burst)
	st := srv.Stats()
	if st.Rejected == 0 || st.Unavailable < 3 {
		t.Fatalf("test bug: the server rejected %d documents with 429 and answered %d requests 503", st.Rejected, st.Unavailable)
	}
	t.Logf("server: %+v", st)
}

// esEachLineOnce waits for srv to hold total documents and checks that
// they are "line 1" to "line total" (esLinesScript), each exactly once.
func esEachLineOnce(t testing.TB, srv *estest.Server, total int) {
	t.Helper()
	docs := esDocs(t, srv, total, fwdCeiling)
	counts := make(map[int]int)
	for _, d := range docs {
		log, _ := d.Fields()["log"].(string)
		n, err := strconv.Atoi(strings.TrimPrefix(log, "line "))
		if err != nil || n < 1 || n > total {
			t.Errorf("unexpected document %s", clip(string(d.Source)))
			continue
		}
		counts[n]++
	}
	missing, repeated := tally.Gaps(counts, 1, total)
	if len(missing) > 0 || len(repeated) > 0 || len(docs) != total {
		t.Errorf("%d documents for %d lines; missing %s; indexed more than once %s", len(docs), total, fwdClipInts(missing), fwdClipInts(repeated))
	}
}

// TestElasticsearchPushback logs through a cluster that pushes back: one
// that rejects 5% or 30% of the items with 429 at random, and one that
// indexes at most 2000 documents a second and rejects what its write
// queue cannot hold. Every line is indexed exactly once, and the
// plugin's metrics show the pushback: the items rejected, as many as the
// server rejected, the requests in flight and the concurrency limit.
func TestElasticsearchPushback(t *testing.T) {
	t.Parallel()
	const alias = "logferry-e2e-pushback:latest"
	addr := fwdFreePort(t)
	installPlugin(t, alias, t.TempDir(), "METRICS_ADDR="+addr)
	for _, tc := range []struct {
		name string
		opts estest.Options
		// rejects: the server must have rejected some; the cluster
		// under load may never be pushed that far.
		rejects bool
	}{
		{"5% rejected", estest.Options{RejectRate: 0.05, Seed: 5}, true},
		{"30% rejected", estest.Options{RejectRate: 0.30, Seed: 30}, true},
		{"2000 docs per second", estest.Options{IndexRate: 2000, QueueDocs: 500}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const lines = 4000
			srv := esServer(t, tc.opts)
			c := create(t, spec{
				driver: alias,
				logOpts: []string{
					"elasticsearch-url=" + srv.URL,
					"elasticsearch-flush-interval=100ms",
					"elasticsearch-bulk-actions=250",
				},
				// It stays up: the metrics are those of running containers.
				script: esLinesScript + fmt.Sprintf("burst %d; sleep 600", lines),
			})
			c.start(t)
			esEachLineOnce(t, srv, lines)
			st := srv.Stats()
			if tc.rejects && st.Rejected == 0 {
				t.Fatalf("test bug: the server rejected nothing: %+v", st)
			}
			samples, err := scrape(addr)
			if err != nil {
				t.Fatal(err)
			}
			labels := `{container_id="` + c.id + `",container_name="` + c.name + `",destination="elasticsearch"`
			if got := samples["logferry_rejected_items_total"+labels+`,status="429"}`]; got != float64(st.Rejected) {
				t.Errorf("logferry_rejected_items_total 429 = %v, the server rejected %d", got, st.Rejected)
			}
			if got, ok := samples["logferry_concurrency_limit"+labels+"}"]; !ok || got < 1 || got > 4 {
				t.Errorf("logferry_concurrency_limit = %v (present: %v), want 1 to 4 (elasticsearch-workers)", got, ok)
			}
			if _, ok := samples["logferry_requests_in_flight"+labels+"}"]; !ok {
				t.Error("no logferry_requests_in_flight")
			}
			e, _, err := destEntry(addr, c, "elasticsearch")
			if err != nil || e.RejectedItems["429"] != uint64(st.Rejected) {
				t.Errorf("/api/plugins.json: %+v, %v; want %d items rejected with 429", e, err, st.Rejected)
			}
			t.Logf("server: %d items for %d lines, %d rejected (%.1f%%)", st.Items, lines, st.Rejected, 100*float64(st.Rejected)/float64(st.Items))
		})
	}
}

// TestElasticsearchTemplateOnce runs three containers at once that log to
// the same cluster with elasticsearch-template=true: the plugin puts the
// index template once for them all, before the index it maps is created.
func TestElasticsearchTemplateOnce(t *testing.T) {
	t.Parallel()
	const containers, burst = 3, 20
	srv := esServer(t, estest.Options{})
	gate := newFwdSync(t)
	cs := make([]*container, containers)
	for i := range cs {
		cs[i] = create(t, spec{
			driver: suite.driver,
			logOpts: []string{
				"elasticsearch-url=" + srv.URL,
				"elasticsearch-flush-interval=200ms",
				"elasticsearch-template=true",
			},
			flags:  gate.flag(),
			script: esLinesScript + fmt.Sprintf("burst %d; await done", burst),
		})
	}
	for _, c := range cs {
		c.start(t)
	}
	// Every container's sink has sent its documents, and so put the
	// template or found it put, while all of them were running.
	docs := esDocs(t, srv, containers*burst, fwdCeiling)
	gate.signal(t, "done")
	for _, c := range cs {
		c.wait(t)
	}
	puts := 0
	for _, r := range srv.Requests() {
		if r.Method == http.MethodPut && strings.HasPrefix(r.Path, "/_index_template/") {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("%d index template requests for %d containers, want 1", puts, containers)
	}
	if _, ok := srv.Templates()["logferry-docker"]; !ok {
		t.Fatalf("templates %v, want logferry-docker", srv.Templates())
	}
	if m := srv.Mapping(docs[0].Index); m["@timestamp"] != "date" || m["container_name"] != "keyword" {
		t.Errorf("index %s mapped %v, want @timestamp a date and container_name a keyword", docs[0].Index, m)
	}
	if len(docs) != containers*burst {
		t.Errorf("%d documents, want %d", len(docs), containers*burst)
	}
}

// TestElasticsearchRetention: elasticsearch-retention with the template
// installs a lifecycle policy deleting old indices (ILM on Elasticsearch,
// ISM on OpenSearch, told apart by GET /), the shapes checked by estest as
// the APIs define them; with S3 beside it, "recent logs in Elasticsearch,
// all logs in the bucket" is two options.
func TestElasticsearchRetention(t *testing.T) {
	t.Parallel()
	for _, dist := range []string{estest.Elasticsearch, estest.OpenSearch} {
		t.Run(dist, func(t *testing.T) {
			t.Parallel()
			srv := esServer(t, estest.Options{Distribution: dist})
			run(t, spec{
				driver: suite.driver,
				logOpts: []string{
					"elasticsearch-url=" + srv.URL, "elasticsearch-flush-interval=200ms",
					"elasticsearch-template=true", "elasticsearch-retention=30d",
				},
				script: simpleScript,
			})
			esDocs(t, srv, 2, fwdCeiling)
			pol, ok := srv.Policies()["logferry-docker"]
			if !ok {
				t.Fatalf("policies %v, want logferry-docker", srv.Policies())
			}
			tmpl := string(srv.Templates()["logferry-docker"])
			switch dist {
			case estest.Elasticsearch:
				if !strings.Contains(string(pol.Body), `"min_age":"30d","actions":{"delete":{}}`) || !strings.Contains(tmpl, `"index.lifecycle.name":"logferry-docker"`) {
					t.Errorf("ILM policy %s, template %s", pol.Body, tmpl)
				}
			case estest.OpenSearch:
				if !strings.Contains(string(pol.Body), `"min_index_age":"30d"`) || strings.Contains(tmpl, "lifecycle") {
					t.Errorf("ISM policy %s, template %s", pol.Body, tmpl)
				}
			}
			if st := srv.Stats(); st.BadRequests != 0 {
				t.Errorf("the server refused %d requests", st.BadRequests)
			}
		})
	}
}

// TestFluentdAndElasticsearchTogether sends one container's entries to its
// files, to Fluentd and to Elasticsearch at once. Every destination gets
// every line; each document is the Fluentd record of the same entry plus
// @timestamp (the event's time) and @log_name (the tag), as the
// Fluentd + Elasticsearch pipeline would index it.
func TestFluentdAndElasticsearchTogether(t *testing.T) {
	t.Parallel()
	fsrv := fluentdtest.NewServer(t, fluentdtest.Config{})
	esrv := esServer(t, estest.Options{})
	name := containerName(t)
	c := run(t, spec{
		name:   name,
		driver: suite.driver,
		logOpts: []string{
			"max-size=1m", "max-file=2",
			"fluentd-address=" + fsrv.Addr(),
			"elasticsearch-url=" + esrv.URL,
			"elasticsearch-flush-interval=200ms",
			"labels=com.example.team",
			"env=APP_MODE",
		},
		flags:  []string{"--label", "com.example.team=ops", "-e", "APP_MODE=prod"},
		script: dropInScript,
	})
	recs := allRecords(t, c.logFiles(t, false))
	evs := fsrv.WaitEvents(len(recs), fwdCeiling)
	docs := esDocs(t, esrv, len(recs), fwdCeiling)

	// Files and Fluentd: the same lines, stream by stream.
	for _, stream := range []string{"stdout", "stderr"} {
		var fromFile, fromFluentd []string
		for _, r := range recs {
			if r.Stream == stream {
				fromFile = append(fromFile, strings.TrimSuffix(r.Log, "\n"))
			}
		}
		for _, ev := range evs {
			if ev.Record["source"] == stream {
				fromFluentd = append(fromFluentd, fwdJSONString(fluentdLog(ev)))
			}
		}
		if !slices.Equal(fromFile, fromFluentd) {
			t.Errorf("%s: the file holds %d lines, Fluentd received %d, or they differ", stream, len(fromFile), len(fromFluentd))
		}
	}

	// Elasticsearch: each document is a Fluentd record.
	type key struct{ source, log string }
	byKey := make(map[key]fluentdtest.Event, len(evs))
	for _, ev := range evs {
		source, _ := ev.Record["source"].(string)
		byKey[key{source, fwdJSONString(fluentdLog(ev))}] = ev
	}
	seen := make(map[key]int)
	for _, d := range docs {
		fields := esStrings(t, d)
		k := key{fields["source"], fields["log"]}
		ev, ok := byKey[k]
		if !ok {
			t.Errorf("document %s matches no Fluentd event: %s", d.ID, clip(string(d.Source)))
			continue
		}
		if seen[k]++; seen[k] > 1 {
			t.Errorf("%s %q indexed %d times", k.source, clipTo(k.log, 80), seen[k])
		}
		if err := esTimestamp(d.Fields(), ev.Time); err != nil {
			t.Errorf("%q: %v", clipTo(k.log, 80), err)
		}
		if d.Index != esIndex(ev.Time) {
			t.Errorf("%q is in index %s, want %s", clipTo(k.log, 80), d.Index, esIndex(ev.Time))
		}
		if fields["@log_name"] != ev.Tag {
			t.Errorf("%q: @log_name %q, Fluentd tag %q", clipTo(k.log, 80), fields["@log_name"], ev.Tag)
		}
		delete(fields, "@timestamp")
		delete(fields, "@log_name")
		want := make(map[string]string, len(ev.Record))
		for k, v := range ev.Record {
			s, _ := v.(string)
			want[k] = fwdJSONString(s)
		}
		if !maps.Equal(fields, want) {
			t.Errorf("document %s differs from the Fluentd record\ndocument: %v\nFluentd:  %v",
				d.ID, fluentdShape{record: fwdToAny(fields)}, fluentdShape{tag: ev.Tag, record: fwdToAny(want)})
		}
	}
	if len(docs) != len(recs) || len(seen) != len(recs) {
		t.Errorf("%d documents, %d distinct, for %d records in the file", len(docs), len(seen), len(recs))
	}
	if ev := evs[0]; ev.Tag != c.id[:12] || ev.Record["com.example.team"] != "ops" || ev.Record["APP_MODE"] != "prod" {
		t.Errorf("Fluentd event with tag %q and record %v: want the default tag {{.ID}} and the label and env", ev.Tag, ev.Record)
	}

	stdout, stderr := c.logs(t)
	var wantOut, wantErr strings.Builder
	for _, r := range recs {
		if r.Stream == "stdout" {
			wantOut.WriteString(r.Log)
		} else {
			wantErr.WriteString(r.Log)
		}
	}
	sameOutput(t, "stdout of docker logs", wantOut.String(), stdout)
	sameOutput(t, "stderr of docker logs", wantErr.String(), stderr)
	for _, err := range fsrv.TakeViolations() {
		t.Errorf("Fluentd: protocol violation: %v", err)
	}
}

func fwdToAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestElasticsearchInvalidOptionsFailRun(t *testing.T) {
	t.Parallel()
	const url = "elasticsearch-url=http://127.0.0.1:9200"
	tests := []struct {
		name string
		opts []string
		// want are substrings of docker run's error; mustLack must not be
		// in it.
		want     []string
		mustLack string
	}{
		{name: "url scheme", opts: []string{"elasticsearch-url=ftp://x"}, want: []string{"elasticsearch-url", "ftp://x"}},
		{name: "index name", opts: []string{url, "elasticsearch-index=Bad*Name"}, want: []string{"elasticsearch-index", "Bad*Name"}},
		{name: "index without url", opts: []string{"elasticsearch-index=logs"}, want: []string{"elasticsearch-index", "elasticsearch-url"}},
		{
			name:     "credentials in url",
			opts:     []string{"elasticsearch-url=http://elastic:s3cret@127.0.0.1:9200"},
			want:     []string{"elasticsearch-url", "docker plugin set"},
			mustLack: "s3cret",
		},
		{name: "bulk actions", opts: []string{url, "elasticsearch-bulk-actions=0"}, want: []string{"elasticsearch-bulk-actions", "0"}},
		{name: "flush interval", opts: []string{url, "elasticsearch-flush-interval=soon"}, want: []string{"elasticsearch-flush-interval", "soon"}},
		{name: "retention without template", opts: []string{url, "elasticsearch-retention=30d"}, want: []string{"elasticsearch-retention", "elasticsearch-template=true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stderr := checkRunRefused(t, tt.opts, tt.want)
			if tt.mustLack != "" && strings.Contains(stderr, tt.mustLack) {
				t.Errorf("docker run --log-opt %q: the error shows %q:\n%s", tt.opts, tt.mustLack, stderr)
			}
		})
	}
}
