package estest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// bulkAnswer is the answer of a _bulk request.
type bulkAnswer struct {
	Errors bool                                    `json:"errors"`
	Items  []map[string]map[string]json.RawMessage `json:"items"`
}

type item struct {
	op     string
	status int
	typ    string
}

func (a bulkAnswer) items(t *testing.T) []item {
	t.Helper()
	var out []item
	for _, m := range a.Items {
		for op, fields := range m {
			it := item{op: op}
			if err := json.Unmarshal(fields["status"], &it.status); err != nil {
				t.Fatalf("item without status: %v", m)
			}
			if raw, ok := fields["error"]; ok {
				var e struct {
					Type   string `json:"type"`
					Reason string `json:"reason"`
				}
				if err := json.Unmarshal(raw, &e); err != nil || e.Type == "" || e.Reason == "" {
					t.Fatalf("error without type and reason: %s", raw)
				}
				it.typ = e.Type
			}
			out = append(out, it)
		}
	}
	return out
}

func post(t *testing.T, s *Server, path, contentType string, body []byte, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, out
}

func bulk(t *testing.T, s *Server, body string) (int, bulkAnswer) {
	t.Helper()
	status, out := post(t, s, "/_bulk", "application/x-ndjson", []byte(body), nil)
	var a bulkAnswer
	if status == http.StatusOK {
		if err := json.Unmarshal(out, &a); err != nil {
			t.Fatalf("answer %s: %v", out, err)
		}
	}
	return status, a
}

func TestBulkValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		want        int
	}{
		{"ndjson", "application/x-ndjson", "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n", 200},
		{"ndjson with charset", "application/x-ndjson; charset=UTF-8", "{\"index\":{\"_index\":\"a\"}}\n{\"x\":1}\n", 200},
		{"json content type", "application/json", "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n", 406},
		{"no content type", "", "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n", 406},
		{"no trailing newline", "application/x-ndjson", "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}", 400},
		{"empty", "application/x-ndjson", "", 400},
		{"source missing", "application/x-ndjson", "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n", 400},
		{"unknown action", "application/x-ndjson", "{\"upsert\":{\"_index\":\"a\"}}\n{}\n", 400},
		{"two actions in a line", "application/x-ndjson", "{\"create\":{},\"index\":{}}\n{}\n", 400},
		{"action not json", "application/x-ndjson", "create a\n{}\n", 400},
		{"unknown metadata", "application/x-ndjson", "{\"create\":{\"_index\":\"a\",\"_idx\":\"1\"}}\n{}\n", 400},
		{"no index", "application/x-ndjson", "{\"create\":{\"_id\":\"1\"}}\n{}\n", 400},
	}
	s := NewServer(Options{})
	defer s.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := post(t, s, "/_bulk", tt.contentType, []byte(tt.body), nil)
			if status != tt.want {
				t.Fatalf("status %d (%s), want %d", status, out, tt.want)
			}
			if status != 200 && !bytes.Contains(out, []byte(`"status":`)) {
				t.Errorf("error answer without status: %s", out)
			}
		})
	}
}

func TestBulkItems(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{MappingError: func(_ string, doc map[string]any) string {
		if _, ok := doc["poison"]; ok {
			return "failed to parse field [poison]"
		}
		return ""
	}})
	defer s.Close()
	body := strings.Join([]string{
		`{"create":{"_index":"logs","_id":"a"}}`, `{"n":1}`,
		`{"create":{"_index":"logs","_id":"a"}}`, `{"n":2}`, // 409
		`{"create":{"_index":"logs","_id":"b"}}`, `{"n":"not a number"}`, // dynamic mapping conflict
		`{"create":{"_index":"logs","_id":"c"}}`, `{"poison":true}`, // injected
		`{"create":{"_index":"Logs","_id":"d"}}`, `{"n":3}`, // invalid index name
		`{"create":{"_index":"logs","_id":"e"}}`, `{"n":4`, // bad source
		`{"index":{"_index":"logs","_id":"a"}}`, `{"n":5}`, // overwrite
		`{"create":{"_index":"logs"}}`, `{"n":6}`, // automatic id
		`{"delete":{"_index":"logs","_id":"zz"}}`,
	}, "\n") + "\n"
	status, a := bulk(t, s, body)
	if status != 200 || !a.Errors {
		t.Fatalf("status %d errors %v", status, a.Errors)
	}
	want := []item{
		{"create", 201, ""},
		{"create", 409, "version_conflict_engine_exception"},
		{"create", 400, "mapper_parsing_exception"},
		{"create", 400, "mapper_parsing_exception"},
		{"create", 400, "invalid_index_name_exception"},
		{"create", 400, "mapper_parsing_exception"},
		{"index", 200, ""},
		{"create", 201, ""},
		{"delete", 404, ""},
	}
	got := a.items(t)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("items\n got %v\nwant %v", got, want)
	}
	docs := s.Documents("logs")
	if len(docs) != 2 || string(docs[0].Source) != `{"n":5}` {
		t.Errorf("documents %v", docs)
	}
	if st := s.Stats(); st.Conflicts != 1 || st.MappingErrors != 3 || st.Created != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestFilterPath checks the filter_path parameter on _bulk answers, as
// Elasticsearch filters them: selected fields only, arrays traversed, and
// elements that keep nothing left out.
func TestFilterPath(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{})
	defer s.Close()
	body := strings.Join([]string{
		`{"create":{"_index":"logs","_id":"a"}}`, `{"n":1}`,
		`{"create":{"_index":"logs","_id":"a"}}`, `{"n":2}`, // 409
	}, "\n") + "\n"
	tests := []struct {
		filter string
		want   string
	}{
		{"errors,items.*.status,items.*.error",
			`{"errors":true,"items":[{"create":{"status":201}},{"create":{"error":{"index":"logs","reason":"[a]: version conflict, document already exists (current version [1])","type":"version_conflict_engine_exception"},"status":409}}]}`},
		{"items.*.error",
			`{"items":[{"create":{"error":{"index":"logs","reason":"[a]: version conflict, document already exists (current version [1])","type":"version_conflict_engine_exception"}}}]}`},
		{"took", `{"took":1}`},
		{"nothing.here", `{}`},
	}
	for i, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			// Each case on its own index, so that the first create is new.
			b := strings.ReplaceAll(body, `"logs"`, fmt.Sprintf(`"logs%d"`, i))
			status, out := post(t, s, "/_bulk?filter_path="+tt.filter, "application/x-ndjson", []byte(b), nil)
			want := strings.ReplaceAll(tt.want, `"logs"`, fmt.Sprintf(`"logs%d"`, i))
			if status != 200 || string(out) != want {
				t.Errorf("status %d, answer\n%s\nwant\n%s", status, out, want)
			}
		})
	}
}

func TestRejectRate(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{RejectRate: 0.3, Seed: 7})
	defer s.Close()
	var body strings.Builder
	const n = 2000
	for i := range n {
		fmt.Fprintf(&body, "{\"create\":{\"_index\":\"r\",\"_id\":\"%d\"}}\n{\"i\":%d}\n", i, i)
	}
	_, a := bulk(t, s, body.String())
	rejected := 0
	for _, it := range a.items(t) {
		if it.status == 429 {
			rejected++
			if it.typ != "es_rejected_execution_exception" {
				t.Errorf("429 of type %q", it.typ)
			}
		}
	}
	if rejected < n/5 || rejected > 2*n/5 {
		t.Errorf("%d of %d rejected, want about 30%%", rejected, n)
	}
	if s.Count() != n-rejected {
		t.Errorf("stored %d, want %d", s.Count(), n-rejected)
	}
	s.SetRejectRate(0)
	if _, a := bulk(t, s, "{\"create\":{\"_index\":\"r\",\"_id\":\"x\"}}\n{}\n"); a.items(t)[0].status != 201 {
		t.Errorf("after SetRejectRate(0): %v", a.items(t))
	}
}

// TestIndexRate: a cluster that indexes 1000 documents a second with a
// write queue of 100 admits 100 of a request of 150, answers once they
// are indexed (a tenth of a second), and rejects what comes while its
// queue is full; once the queue drained it admits again.
func TestIndexRate(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{IndexRate: 1000})
	defer s.Close()
	docs := func(from, n int) string {
		var body strings.Builder
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&body, "{\"create\":{\"_index\":\"r\",\"_id\":\"%d\"}}\n{\"i\":%d}\n", i, i)
		}
		return body.String()
	}
	count := func(a bulkAnswer) (created, rejected int) {
		for _, it := range a.items(t) {
			switch it.status {
			case 201:
				created++
			case 429:
				rejected++
				if it.typ != "es_rejected_execution_exception" {
					t.Errorf("429 of type %q", it.typ)
				}
			}
		}
		return created, rejected
	}
	start := time.Now()
	_, a := bulk(t, s, docs(0, 150))
	took := time.Since(start)
	if c, r := count(a); c != 100 || r != 50 {
		t.Errorf("first request: %d created, %d rejected; want 100 and 50", c, r)
	}
	if took < 90*time.Millisecond {
		t.Errorf("answered after %v, before the 100 documents could be indexed", took)
	}
	// Two requests at once: the second finds the queue full of the first.
	// At 100 documents a second the first keeps the queue full for a
	// second, so that the second finds it so however late it comes (it
	// came 75 ms late under qemu at 1000 a second).
	s.SetIndexRate(100, 100)
	var wg sync.WaitGroup
	var created, rejected [2]int
	for k := range 2 {
		wg.Go(func() {
			if k == 1 {
				time.Sleep(20 * time.Millisecond)
			}
			_, a := bulk(t, s, docs(1000*(k+1), 100))
			created[k], rejected[k] = count(a)
		})
	}
	wg.Wait()
	if created[0] != 100 || rejected[1] < 50 { // 98 when the second comes 20ms after the first
		t.Errorf("two requests at once: created %v, rejected %v; want the first whole, most of the second rejected", created, rejected)
	}
	if st := s.Stats(); st.Overloaded != st.Rejected || st.Overloaded != 50+rejected[0]+rejected[1] {
		t.Errorf("stats %+v", st)
	}
	s.SetIndexRate(0, 0)
	if _, a := bulk(t, s, docs(5000, 500)); a.Errors {
		t.Error("rejected documents without a rate")
	}
}

func TestGzip(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{})
	defer s.Close()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	io.WriteString(zw, "{\"create\":{\"_index\":\"z\",\"_id\":\"1\"}}\n{\"x\":1}\n")
	zw.Close()
	gz := http.Header{"Content-Encoding": {"gzip"}}
	if status, out := post(t, s, "/_bulk", "application/x-ndjson", buf.Bytes(), gz); status != 200 {
		t.Fatalf("gzip body: %d %s", status, out)
	}
	if status, _ := post(t, s, "/_bulk", "application/x-ndjson", []byte("not gzip\n"), gz); status != 400 {
		t.Errorf("bad gzip body: %d, want 400", status)
	}
	if s.Count() != 1 {
		t.Errorf("count %d", s.Count())
	}
}

func TestUnavailableAndRestart(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{})
	defer s.Close()
	doc := "{\"create\":{\"_index\":\"u\",\"_id\":\"1\"}}\n{}\n"
	s.SetUnavailable(true)
	if status, _ := bulk(t, s, doc); status != 503 {
		t.Errorf("unavailable: %d", status)
	}
	s.SetUnavailable(false)
	s.UnavailableFor(50 * time.Millisecond)
	if status, _ := bulk(t, s, doc); status != 503 {
		t.Errorf("unavailable for a while: %d", status)
	}
	time.Sleep(60 * time.Millisecond)
	if status, _ := bulk(t, s, doc); status != 200 {
		t.Errorf("after the outage: %d", status)
	}

	s.Stop()
	if _, err := http.Post(s.URL+"/_bulk", "application/x-ndjson", strings.NewReader(doc)); err == nil {
		t.Error("stopped server answered")
	}
	s.Start()
	if _, a := bulk(t, s, doc); a.items(t)[0].status != 409 {
		t.Errorf("document lost by restart: %v", a.items(t))
	}
}

func TestDropResponses(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{})
	defer s.Close()
	s.DropResponses(1)
	doc := "{\"create\":{\"_index\":\"d\",\"_id\":\"1\"}}\n{}\n"
	_, err := s.Client().Post(s.URL+"/_bulk", "application/x-ndjson", strings.NewReader(doc))
	if err == nil {
		t.Fatal("dropped answer arrived")
	}
	if s.Count() != 1 {
		t.Errorf("document not stored before the drop")
	}
	if _, a := bulk(t, s, doc); a.items(t)[0].status != 409 {
		t.Errorf("retry: %v", a.items(t))
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{Username: "elastic", Password: "s3cret", APIKey: "a2V5OnZhbHVl"})
	defer s.Close()
	doc := []byte("{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{}\n")
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"none", nil, 401},
		{"basic", http.Header{"Authorization": {"Basic ZWxhc3RpYzpzM2NyZXQ="}}, 200},
		{"wrong password", http.Header{"Authorization": {"Basic ZWxhc3RpYzp4"}}, 401},
		{"api key", http.Header{"Authorization": {"ApiKey a2V5OnZhbHVl"}}, 200},
		{"wrong api key", http.Header{"Authorization": {"ApiKey eA=="}}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status, out := post(t, s, "/_bulk", "application/x-ndjson", doc, tt.header); status != tt.want {
				t.Errorf("status %d (%s), want %d", status, out, tt.want)
			}
		})
	}
}

func TestTemplatesMapDates(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{})
	defer s.Close()
	tmpl := `{"index_patterns":["docker-*"],"template":{"mappings":{"properties":{"@timestamp":{"type":"date"},"n":{"type":"long"}}}}}`
	req, _ := http.NewRequest(http.MethodPut, s.URL+"/_index_template/t", strings.NewReader(tmpl))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("put template: %v %v", res, err)
	}
	res.Body.Close()
	body := strings.Join([]string{
		`{"create":{"_index":"docker-1","_id":"1"}}`, `{"@timestamp":"2024-01-02T03:04:05.123456789Z","n":"12"}`,
		`{"create":{"_index":"docker-1","_id":"2"}}`, `{"@timestamp":"yesterday"}`,
		`{"create":{"_index":"other","_id":"3"}}`, `{"@timestamp":"yesterday"}`,
	}, "\n") + "\n"
	_, a := bulk(t, s, body)
	got := a.items(t)
	if got[0].status != 201 || got[1].status != 400 || got[2].status != 201 {
		t.Errorf("items %v", got)
	}
	if m := s.Mapping("docker-1"); m["@timestamp"] != "date" || m["n"] != "long" {
		t.Errorf("mapping %v", m)
	}
	if _, ok := s.Templates()["t"]; !ok {
		t.Error("template not kept")
	}
}

func TestTLSAndInfo(t *testing.T) {
	t.Parallel()
	s := NewTLSServer(Options{Version: "8.13.0"})
	defer s.Close()
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL)
	}
	if _, err := http.Get(s.URL + "/"); err == nil {
		t.Error("untrusted certificate accepted")
	}
	res, err := s.Client().Get(s.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var info struct {
		Version struct{ Number string } `json:"version"`
	}
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil || info.Version.Number != "8.13.0" {
		t.Errorf("info %+v %v", info, err)
	}
	res2, err := s.Client().Get(s.URL + "/_nodes/http")
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Body.Close()
	b, _ := io.ReadAll(res2.Body)
	if !bytes.Contains(b, []byte(strings.TrimPrefix(s.URL, "https://"))) {
		t.Errorf("nodes info without the publish address: %s", b)
	}
}
