package elasticsearch

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/olivere/elastic/v7"

	"github.com/logferry/logferry/forward"
)

// es7Item is an item of Elasticsearch 7's answer to a create, as it writes
// it.
func es7Item(status int) string {
	if status == 201 {
		return `{"create":{"_index":"docker-20240309","_type":"_doc","_id":"a","_version":1,"result":"created",` +
			`"_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}}`
	}
	return fmt.Sprintf(`{"create":{"_index":"docker-20240309","_type":"_doc","_id":"a","status":%d,`+
		`"error":{"type":"t%d","reason":"r%d \"q\" \\ {[","caused_by":{"type":"c","reason":"x]}"}}}}`, status, status, status)
}

func TestParseBulkResponse(t *testing.T) {
	t.Parallel()
	failed := func(status int) itemResult {
		return itemResult{status: status, errType: fmt.Sprintf("t%d", status), reason: fmt.Sprintf(`r%d "q" \ {[`, status)}
	}
	tests := []struct {
		name  string
		body  string
		items int
		want  []itemResult
		err   string
	}{
		{"created", `{"took":3,"errors":false,"items":[` + es7Item(201) + `,` + es7Item(201) + `]}`, 2,
			[]itemResult{{status: 201}, {status: 201}}, ""},
		{"mixed, in order", `{"took":3,"errors":true,"items":[` + es7Item(201) + `,` + es7Item(429) + `,` + es7Item(409) + `,` + es7Item(400) + `]}`, 4,
			[]itemResult{{status: 201}, failed(429), failed(409), failed(400)}, ""},
		{"filtered by filter_path", `{"errors":true,"items":[{"create":{"status":201}},{"create":{"error":{"type":"t429","reason":"r"},"status":429}}]}`, 2,
			[]itemResult{{status: 201}, {status: 429, errType: "t429", reason: "r"}}, ""},
		{"keys in any order, white space", "{ \"items\" : [ {\"index\": {\"status\" : 200 , \"_id\":\"x\"} } ] ,\n\t\"errors\": false, \"took\" : 1 }\r\n", 1,
			[]itemResult{{status: 200}}, ""},
		{"error as a string", `{"errors":true,"items":[{"create":{"status":400,"error":"MapperParsingException[failed]"}}]}`, 1,
			[]itemResult{{status: 400, reason: "MapperParsingException[failed]"}}, ""},
		{"no status", `{"errors":true,"items":[{"create":{"_id":"x"}}]}`, 1, []itemResult{{}}, ""},
		{"unknown fields of every kind", `{"x":[1,{"a":"]"}],"y":null,"z":-1.5e3,"items":[{"create":{"w":[true,false],"status":201}}]}`, 1,
			[]itemResult{{status: 201}}, ""},
		{"too few items", `{"errors":false,"items":[` + es7Item(201) + `]}`, 2, nil, "1 items for 2 actions"},
		{"too many items", `{"errors":false,"items":[` + es7Item(201) + `,` + es7Item(201) + `]}`, 1, nil, "2 items for 1 actions"},
		{"no items", `{"took":1,"errors":false}`, 1, nil, "no items"},
		{"empty", ``, 1, nil, "malformed"},
		{"not an object", `[]`, 1, nil, "malformed"},
		{"truncated", `{"errors":false,"items":[` + es7Item(201)[:50], 1, nil, "malformed"},
		{"truncated string", `{"items":[{"create":{"status":201,"_id":"abc`, 1, nil, "malformed"},
		{"trailing escape", `{"items":[{"create":{"_id":"\`, 1, nil, "malformed"},
		{"trailing garbage", `{"items":[{"create":{"status":201}}]}x`, 1, nil, "malformed"},
		{"item not an object", `{"items":[201]}`, 1, nil, "malformed"},
		{"status not a number", `{"items":[{"create":{"status":"201"}}]}`, 1, nil, "malformed"},
		{"html error page", `<html><body>502 Bad Gateway</body></html>`, 1, nil, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := make([]itemResult, tt.items)
			err := parseBulkResponse([]byte(tt.body), got)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("results\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// FuzzParseBulkResponse checks that the scanner never fails on what
// encoding/json reads as a _bulk answer, agrees with it on every status,
// and never panics on anything else.
func FuzzParseBulkResponse(f *testing.F) {
	for _, s := range []string{
		`{"took":3,"errors":true,"items":[` + es7Item(201) + `,` + es7Item(429) + `]}`,
		`{"items":[{"create":{"status":201}}]}`,
		`{"items":[{"create":{"status":400,"error":"x"}}]}`,
		`{"items":[{"create":{"status":201,"s":"\"\\\u00e9"}}],"e":[[],{}]}`,
		`{"items":[]}`,
		`{"items":[{"create":{"status":201}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// encoding/json matches keys without regard to case or escapes,
		// and keeps the last of duplicate keys: Elasticsearch writes none
		// of these, and the scanner need not agree on them.
		comparable := bytes.Count(body, []byte(`"items"`)) == 1 && !bytes.Contains(body, []byte(`\u`))
		var top map[string]json.RawMessage
		var items []map[string]map[string]json.RawMessage
		refErr := json.Unmarshal(body, &top)
		if refErr == nil {
			refErr = json.Unmarshal(top["items"], &items)
		}
		for _, extra := range []int{0, 1} { // as many slots as items, and one more
			got := make([]itemResult, len(items)+extra)
			err := parseBulkResponse(body, got)
			if refErr != nil || items == nil || !comparable {
				continue // only checked not to panic
			}
			if extra > 0 {
				if err == nil {
					t.Fatalf("%s: no error with %d slots for %d items", body, len(got), len(items))
				}
				continue
			}
			usable := true
			want := make([]itemResult, len(items))
			for i, m := range items {
				if len(m) != 1 {
					usable = false
				}
				for _, it := range m {
					if raw, ok := it["status"]; ok {
						n, err := strconv.Atoi(string(raw))
						if err != nil || n < 0 || n > 1e8 || raw[0] == '-' || raw[0] == '+' {
							usable = false
						}
						want[i].status = n
					}
				}
			}
			if !usable {
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			for i := range got {
				if got[i].status != want[i].status {
					t.Fatalf("%s: item %d status %d, encoding/json reads %d", body, i, got[i].status, want[i].status)
				}
			}
		}
	})
}

// testBatch returns a batch of n actions of lines "line-0" … with tokens
// from 10, encoded in a buffer of cap bytes.
func testBatch(t *testing.T, n, cap int) *batch {
	t.Helper()
	p, _ := parseIndexPattern(DefaultIndex)
	enc := newEncoder(testContainer, p, false)
	b := getBatch(&forward.Slab{B: make([]byte, 0, cap)})
	for i := range n {
		if !b.add(enc, &item{ev: forward.Event{Time: epoch.Add(time.Duration(i)), Source: "stdout", Line: []byte(fmt.Sprint("line-", i))}}, uint64(10+i), math.MaxInt) {
			t.Fatalf("action %d refused", i)
		}
	}
	b.repoint()
	return b
}

// logs returns the "log" field of b's documents, checking that its body
// is their lines back to back.
func batchLogs(t *testing.T, b *batch) []string {
	t.Helper()
	if err := checkBody(b); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range b.actions {
		var doc struct{ Log string }
		if err := json.Unmarshal(a.doc(), &doc); err != nil {
			t.Fatalf("document %s: %v", a.doc(), err)
		}
		ev := forward.Event{Time: epoch.Add(time.Duration(len(out))), Source: "stdout"}
		if i := strings.TrimPrefix(doc.Log, "line-"); i != "" {
			n, _ := strconv.Atoi(i)
			ev.Time = epoch.Add(time.Duration(n))
		}
		if got, want := string(a.id()), documentID(testContainer.ID, &ev, 0); got != want {
			t.Errorf("%s: id %s, want %s", doc.Log, got, want)
		}
		out = append(out, doc.Log)
	}
	return out
}

// TestBatchAdd checks that a batch takes actions up to its limit, the
// first one whatever its size, and leaves its buffer as it was when it
// refuses one.
func TestBatchAdd(t *testing.T) {
	t.Parallel()
	p, _ := parseIndexPattern(DefaultIndex)
	one := len(testBatch(t, 1, 0).body()) // the size of an action of a short line
	tests := []struct {
		name  string
		limit int
		lines []int // line lengths
		want  int   // actions taken
	}{
		{"all fit", 10 * one, []int{5, 5, 5}, 3},
		{"first alone past the limit", 10, []int{5, 5}, 1},
		{"stops at the limit", 2*one + 20, []int{5, 5, 5, 5}, 2},
		{"a long line is left for the next", 4 * one, []int{5, 5, 400, 5}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			enc := newEncoder(testContainer, p, false)
			b := getBatch(&forward.Slab{B: make([]byte, 0, tt.limit)})
			taken := 0
			for i, n := range tt.lines {
				before := string(b.body())
				line := []byte("line-" + strings.Repeat("x", n))
				if !b.add(enc, &item{ev: forward.Event{Time: epoch.Add(time.Duration(i)), Source: "stdout", Line: line}}, uint64(i+1), tt.limit) {
					if string(b.body()) != before || !b.full {
						t.Errorf("refused action %d changed the body or left the batch not full", i)
					}
					break
				}
				taken++
			}
			b.repoint()
			if taken != tt.want || len(b.actions) != tt.want {
				t.Errorf("took %d actions, want %d", taken, tt.want)
			}
			if len(b.actions) > 1 && len(b.body()) > tt.limit {
				t.Errorf("body of %d bytes past the limit %d", len(b.body()), tt.limit)
			}
			if err := checkBody(b); err != nil {
				t.Error(err)
			}
			if from, to := tokens(b); from != 1 || to != uint64(tt.want+1) {
				t.Errorf("tokens [%d, %d), want [1, %d)", from, to, tt.want+1)
			}
		})
	}
}

// tokens returns the range of buffer tokens of b's actions.
func tokens(b *batch) (from, to uint64) {
	if len(b.actions) == 0 {
		return 0, 0
	}
	return b.actions[0].tok, b.actions[len(b.actions)-1].tok + 1
}

// TestBatchRetrySubset checks the ways the sink makes a body of the
// actions left to retry: in place, moved to a new buffer (while the
// transport may still read the old one) and split in two (413).
func TestBatchRetrySubset(t *testing.T) {
	t.Parallel()
	keep := func(b *batch, idx ...int) {
		var kept []action
		for _, i := range idx {
			kept = append(kept, b.actions[i])
		}
		b.actions = append(b.actions[:0], kept...)
	}
	t.Run("compact", func(t *testing.T) {
		t.Parallel()
		b := testBatch(t, 6, 0)
		keep(b, 1, 2, 5)
		b.compact()
		if got := fmt.Sprint(batchLogs(t, b)); got != "[line-1 line-2 line-5]" {
			t.Errorf("after compact %s", got)
		}
	})
	t.Run("moveTo", func(t *testing.T) {
		t.Parallel()
		b := testBatch(t, 6, 0)
		oldBody := string(b.body())
		b.held = true
		keep(b, 0, 4)
		old := b.moveTo(&forward.Slab{})
		if string(old.B) != oldBody || b.held {
			t.Errorf("the old buffer changed, or the batch still held")
		}
		if got := fmt.Sprint(batchLogs(t, b)); got != "[line-0 line-4]" {
			t.Errorf("after moveTo %s", got)
		}
	})
	t.Run("splitOff", func(t *testing.T) {
		t.Parallel()
		b := testBatch(t, 5, 0)
		rest := b.splitOff(2, &forward.Slab{})
		if got := fmt.Sprint(batchLogs(t, b)); got != "[line-0 line-1]" {
			t.Errorf("first half %s", got)
		}
		if got := fmt.Sprint(batchLogs(t, rest)); got != "[line-2 line-3 line-4]" {
			t.Errorf("second half %s", got)
		}
		if from, to := tokens(rest); from != 12 || to != 15 {
			t.Errorf("second half's tokens [%d, %d)", from, to)
		}
	})
}

// bodyDoer answers _bulk requests with 201 for each action and keeps the
// (uncompressed) bodies; with early set it answers without reading or
// closing the body, as a server answering before it was all sent.
type bodyDoer struct {
	early  bool
	mu     sync.Mutex // guards bodies
	bodies [][]byte
	open   []io.ReadCloser
}

func (d *bodyDoer) Do(r *http.Request) (*http.Response, error) {
	n := 1
	if d.early {
		d.mu.Lock()
		d.open = append(d.open, r.Body)
		d.mu.Unlock()
	} else {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				return nil, err
			}
			body = zr
		}
		data, err := io.ReadAll(body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.bodies = append(d.bodies, data)
		d.mu.Unlock()
		n = bytes.Count(data, []byte("\n")) / 2
	}
	items := strings.Repeat(`{"create":{"status":201}},`, n)
	return &http.Response{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(`{"errors":false,"items":[` + strings.TrimSuffix(items, ",") + `]}`)),
		Request:    r,
	}, nil
}

// TestBulkRequestBody checks that a request's body is the batch's body,
// compressed or not, and that a body the transport has not closed when
// the request returns is left alone (held), unless it was a compressed
// copy.
func TestBulkRequestBody(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		compress, early, held bool
	}{
		{false, false, false},
		{true, false, false},
		{false, true, true},
		{true, true, false},
	} {
		t.Run(fmt.Sprintf("gzip=%v early=%v", tc.compress, tc.early), func(t *testing.T) {
			t.Parallel()
			d := &bodyDoer{early: tc.early}
			es, err := elastic.NewClient(elastic.SetURL("http://es.invalid:9200"), elastic.SetHttpClient(trackBodies{d}),
				elastic.SetHealthcheck(false), elastic.SetSniff(false))
			if err != nil {
				t.Fatal(err)
			}
			c := &olivereClient{es: es, compress: tc.compress}
			b := testBatch(t, 3, 0)
			if tc.early {
				b.actions = b.actions[:1]
				b.buf.B = b.buf.B[:b.actions[0].size()]
			}
			res, err := c.Bulk(context.Background(), b)
			if err != nil || len(res) != len(b.actions) || res[0].status != 201 {
				t.Fatalf("results %v, error %v", res, err)
			}
			if b.held != tc.held {
				t.Errorf("held %v, want %v", b.held, tc.held)
			}
			if !tc.early && (len(d.bodies) != 1 || !bytes.Equal(d.bodies[0], b.body())) {
				t.Errorf("bodies sent %q, want %q", d.bodies, b.body())
			}
			for _, rc := range d.open {
				rc.Close()
			}
		})
	}
}
