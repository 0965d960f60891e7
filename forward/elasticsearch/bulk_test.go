package elasticsearch

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestBulkBody checks the body of a request: the actions' lines back to
// back, compressed or not, for a whole batch and for the actions left to
// retry.
func TestBulkBody(t *testing.T) {
	t.Parallel()
	p, _ := parseIndexPattern(DefaultIndex)
	enc := newEncoder(testContainer, p, false)
	b := getBatch()
	defer b.release()
	for i := range 5 {
		b.add(enc, &item{ev: forward.Event{Time: epoch.Add(time.Duration(i)), Source: "stdout", Line: []byte(fmt.Sprint("line-", i))}}, uint64(10+i))
	}
	if from, to := b.tokens(); from != 10 || to != 15 {
		t.Errorf("tokens [%d, %d), want [10, 15)", from, to)
	}
	retry := []action{b.actions[1], b.actions[3]}
	for _, tc := range []struct {
		name    string
		actions []action
		want    []byte
	}{
		{"batch", b.actions, b.buf},
		{"retry", retry, append(append([]byte(nil), retry[0].line...), retry[1].line...)},
	} {
		for _, compress := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s gzip=%v", tc.name, compress), func(t *testing.T) {
				var gz *gzip.Writer
				if compress {
					gz = gzip.NewWriter(io.Discard)
				}
				body, err := bulkBody(tc.actions, gz)
				if err != nil {
					t.Fatal(err)
				}
				got := []byte(body)
				if compress {
					zr, err := gzip.NewReader(strings.NewReader(body))
					if err != nil {
						t.Fatal(err)
					}
					if got, err = io.ReadAll(zr); err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(got, tc.want) {
					t.Errorf("body\n%s\nwant\n%s", got, tc.want)
				}
			})
		}
	}
}

// TestBatchMoveLast checks that an action moved to the next batch keeps
// its lines, and leaves the batch it came from as if never added.
func TestBatchMoveLast(t *testing.T) {
	t.Parallel()
	p, _ := parseIndexPattern(DefaultIndex)
	enc := newEncoder(testContainer, p, false)
	a, b := getBatch(), getBatch()
	defer a.release()
	defer b.release()
	for i := range 3 {
		a.add(enc, &item{ev: forward.Event{Time: epoch.Add(time.Duration(i)), Source: "stdout", Line: []byte(fmt.Sprint("line-", i))}}, uint64(i))
	}
	last := string(a.actions[2].line)
	before := string(a.buf[:len(a.buf)-len(last)])
	a.moveLast(b)
	if len(a.actions) != 2 || string(a.buf) != before {
		t.Errorf("batch left with %d actions and body\n%s", len(a.actions), a.buf)
	}
	if len(b.actions) != 1 || string(b.buf) != last || string(b.actions[0].line) != last || b.actions[0].tok != 2 {
		t.Errorf("next batch: %d actions, body %q", len(b.actions), b.buf)
	}
	if got := string(b.actions[0].doc()); !strings.Contains(got, `"log":"line-2"`) {
		t.Errorf("moved document %s", got)
	}
	ev := forward.Event{Time: epoch.Add(2), Source: "stdout"}
	if got, want := string(b.actions[0].id()), documentID(testContainer.ID, &ev, 0); got != want {
		t.Errorf("moved id %s, want %s", got, want)
	}
}
