package elasticsearch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/olivere/elastic/v7"

	"github.com/logferry/logferry/forward"
)

var benchLines = map[string][]byte{
	"text": []byte(`192.0.2.7 - - [09/Mar/2024:12:00:00 +0000] "GET /api/v1/items?page=2 HTTP/1.1" 200 5123 "-" "curl/8.5.0"`),
	"json": []byte(`{"level":"info","ts":"2024-03-09T12:00:00.123Z","msg":"request done","status":200,"latency_ms":12.5,"path":"/api/v1/items","user":{"id":42,"roles":["a","b"]}}`),
}

// BenchmarkEncode measures turning one event into its action: document,
// index name and _id.
func BenchmarkEncode(b *testing.B) {
	p, _ := parseIndexPattern(DefaultIndex)
	for _, name := range []string{"text", "json"} {
		b.Run(name, func(b *testing.B) {
			enc := newEncoder(testContainer, p, name == "json")
			it := item{ev: forward.Event{Time: epoch, Source: "stdout", Line: benchLines[name]}}
			var buf []byte
			b.SetBytes(int64(len(it.ev.Line)))
			b.ReportAllocs()
			for b.Loop() {
				it.ev.Time = it.ev.Time.Add(1)
				buf, _ = enc.appendAction(buf[:0], &it)
			}
		})
	}
}

// cannedDoer answers every _bulk request with 201 for each action, without
// a network, so that the benchmark measures the body's encoding and the
// answer's decoding.
type cannedDoer struct{}

func (cannedDoer) Do(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	n := bytes.Count(body, []byte("\n")) / 2
	var out strings.Builder
	out.WriteString(`{"took":1,"errors":false,"items":[`)
	for i := range n {
		if i > 0 {
			out.WriteByte(',')
		}
		out.WriteString(`{"create":{"_index":"docker-20240309","_id":"x","_version":1,"result":"created","status":201}}`)
	}
	out.WriteString(`]}`)
	return &http.Response{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(out.String())),
		Request:    r,
	}, nil
}

// BenchmarkBulkRequest measures one _bulk request of 500 documents through
// the client, with no network: the body made of the encoded actions, the
// library's request, and decoding the answer.
func BenchmarkBulkRequest(b *testing.B) {
	es, err := elastic.NewClient(elastic.SetURL("http://es.invalid:9200"), elastic.SetHttpClient(cannedDoer{}),
		elastic.SetHealthcheck(false), elastic.SetSniff(false))
	if err != nil {
		b.Fatal(err)
	}
	c := &olivereClient{es: es}
	p, _ := parseIndexPattern(DefaultIndex)
	enc := newEncoder(testContainer, p, false)
	bt := getBatch(&forward.Slab{})
	for i := range 500 {
		bt.add(enc, &item{ev: forward.Event{Time: epoch.Add(time.Duration(i)), Source: "stdout", Line: benchLines["text"]}}, 0, math.MaxInt)
	}
	bt.repoint()
	b.SetBytes(int64(len(bt.body())))
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Bulk(context.Background(), bt)
		if err != nil || len(res) != len(bt.actions) {
			b.Fatal(err, len(res))
		}
	}
}

// BenchmarkSend measures the container's side: copying an event into the
// queue.
func BenchmarkSend(b *testing.B) {
	fake := &fakeClient{}
	cfg := fast("http://fake")
	cfg.QueueEvents = 1 << 16
	s, err := newSink(cfg, testContainer, nil, func(context.Context) (bulkClient, error) { return fake, nil })
	if err != nil {
		b.Fatal(err)
	}
	// Not started: the queue fills and drops, which Send pays for too.
	ev := forward.Event{Time: epoch, Source: "stdout", Line: benchLines["text"]}
	b.ReportAllocs()
	for b.Loop() {
		s.Send(&ev)
	}
	b.StopTimer()
	if st := s.Stats(); st.Queued == 0 {
		b.Fatal(fmt.Sprint(st))
	}
}
