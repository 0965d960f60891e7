//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/logferry/logferry/forward/elasticsearch/estest"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

// formatsScript prints a line that dockerd splits into 16 KiB pieces
// (40 000 bytes: three pieces), a JSON object, a line that only looks like
// one, and a JSON object whose keys clash with the record's own.
const formatsScript = `
head -c 40000 /dev/zero | tr '\0' 'x'; echo END
echo '{"level":"warn","msg":"disk almost full","free_mb":512,"tags":["a","b"]}'
echo '{"not": json}'
echo '{"log":"spoofed","source":"spoofed","user":"ann"}' >&2
`

// TestForwardPartialMergeAndJSON: with partial-merge, Fluentd and
// Elasticsearch get the long line whole, without partial_* fields, while
// the files keep json-file's pieces; with log-format=json, a JSON object's
// fields join the record (the record's own keys win), in Fluentd and in
// Elasticsearch alike.
func TestForwardPartialMergeAndJSON(t *testing.T) {
	t.Parallel()
	fsrv := fluentdtest.NewServer(t, fluentdtest.Config{})
	esrv := esServer(t, estest.Options{})
	c := run(t, spec{
		driver: suite.driver,
		logOpts: []string{
			"fluentd-address=" + fsrv.Addr(),
			"elasticsearch-url=" + esrv.URL,
			"elasticsearch-flush-interval=200ms",
			"partial-merge=true",
			"log-format=json",
		},
		script: formatsScript,
	})
	long := strings.Repeat("x", 40000) + "END"

	recs := allRecords(t, c.logFiles(t, false))
	if len(recs) != 6 {
		t.Fatalf("%s: %d records in the file, want 6 (3 pieces of the long line and 3 lines)", c, len(recs))
	}
	// stdout and stderr reach the plugin in whatever order dockerd's
	// copiers run; stdout alone keeps its order.
	var stdout []string
	for _, r := range recs {
		if r.Stream == "stdout" {
			stdout = append(stdout, r.Log)
		}
	}
	if got := strings.Join(stdout[:3], ""); got != long+"\n" || strings.HasSuffix(stdout[0], "\n") {
		t.Errorf("%s: the first three records on stdout are not the long line's pieces", c)
	}

	evs := fsrv.WaitEvents(4, fwdCeiling)
	docs := esDocs(t, esrv, 4, fwdCeiling)
	if len(evs) != 4 || len(docs) != 4 {
		t.Fatalf("Fluentd received %d events and Elasticsearch %d documents, want 4 each (the long line whole and 3 lines)", len(evs), len(docs))
	}
	bySource := func(get func(i int) map[string]any, n int) map[string]map[string]any {
		out := make(map[string]map[string]any)
		for i := range n {
			r := get(i)
			log, _ := r["log"].(string)
			out[log] = r
		}
		return out
	}
	destinations := map[string]map[string]map[string]any{
		"Fluentd":       bySource(func(i int) map[string]any { return evs[i].Record }, len(evs)),
		"Elasticsearch": bySource(func(i int) map[string]any { return docs[i].Fields() }, len(docs)),
	}
	jsonLine := `{"level":"warn","msg":"disk almost full","free_mb":512,"tags":["a","b"]}`
	spoof := `{"log":"spoofed","source":"spoofed","user":"ann"}`
	plain := destinations["Fluentd"][long]
	for dest, records := range destinations {
		if r, ok := records[long]; !ok {
			t.Errorf("%s: the long line did not arrive whole; got %v", dest, keysOf(records))
		} else if _, ok := r["partial_message"]; ok {
			t.Errorf("%s: the merged line still has partial_message: %v", dest, clip(asJSON(r)))
		}
		r := records[jsonLine]
		if r == nil {
			t.Errorf("%s: no record of the JSON line; got %v", dest, keysOf(records))
			continue
		}
		if r["level"] != "warn" || r["msg"] != "disk almost full" || asJSON(r["free_mb"]) != "512" || asJSON(r["tags"]) != `["a","b"]` {
			t.Errorf("%s: the JSON line's fields are not in the record: %s", dest, asJSON(r))
		}
		if r := records[`{"not": json}`]; r == nil || dest == "Fluentd" && len(r) != len(plain) {
			t.Errorf("%s: a line that is not JSON gained fields or went missing: %s", dest, asJSON(r))
		}
		r = records[spoof]
		if r == nil || r["source"] != "stderr" || r["user"] != "ann" {
			t.Errorf("%s: the record's own keys must win over the line's: %s", dest, asJSON(r))
		}
	}
	for _, err := range fsrv.TakeViolations() {
		t.Errorf("Fluentd: protocol violation: %v", err)
	}
}

func asJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func keysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, clipTo(k, 60))
	}
	return keys
}
