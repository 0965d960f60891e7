package elasticsearch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

var testContainer = forward.Container{
	ID:    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	Name:  "web",
	Tag:   "docker.web",
	Extra: map[string]string{"com.example.team": "core", "env": "prod"},
}

// encode returns the action of it, encoded on its own.
func encode(e *encoder, it *item) action {
	_, a := e.appendAction(nil, it)
	return a
}

// decode decodes a document, which must not have a field twice.
func decode(t *testing.T, doc []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("document %s: %v", doc, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(doc, &fields); err != nil {
		t.Fatal(err)
	}
	dec = json.NewDecoder(bytes.NewReader(doc))
	n := 0
	for depth := 0; ; {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		default:
			if _, isKey := tok.(string); isKey && depth == 1 && dec.More() {
				n++
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if n != len(fields) {
		t.Errorf("document %s has %d fields, %d distinct", doc, n, len(fields))
	}
	return m
}

func TestDocumentShape(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 3, 9, 23, 59, 59, 120, time.FixedZone("X", 3600))
	base := map[string]any{
		"@timestamp":       "2024-03-09T22:59:59.000000120Z",
		"source":           "stdout",
		"container_id":     testContainer.ID,
		"container_name":   "/web",
		"@log_name":        "docker.web",
		"com.example.team": "core",
		"env":              "prod",
	}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name      string
		parseJSON bool
		ev        forward.Event
		want      map[string]any
	}{
		{"text", false, forward.Event{Time: at, Source: "stdout", Line: []byte(`hello "world"`)},
			with("log", `hello "world"`)},
		{"json line kept as text", false, forward.Event{Time: at, Source: "stdout", Line: []byte(`{"level":"info"}`)},
			with("log", `{"level":"info"}`)},
		{"json line parsed", true, forward.Event{Time: at, Source: "stdout",
			Line: []byte(`{"level":"info","n":12345678901234567890,"nested":{"b":[1,true,null]},"source":"app","env":"x"}`)},
			with("log", `{"level":"info","n":12345678901234567890,"nested":{"b":[1,true,null]},"source":"app","env":"x"}`,
				"level", "info", "n", json.Number("12345678901234567890"),
				"nested", map[string]any{"b": []any{json.Number("1"), true, nil}})},
		{"not json, parsed as text", true, forward.Event{Time: at, Source: "stdout", Line: []byte(`{oops`)},
			with("log", `{oops`)},
		{"partial", false, forward.Event{Time: at, Source: "stdout", Line: []byte("piece"),
			Partial: &forward.Partial{ID: "p1", Ordinal: 2, Last: true}},
			with("log", "piece", "partial_message", "true", "partial_id", "p1", "partial_ordinal", "2", "partial_last", "true")},
		{"control characters and bad utf-8", false, forward.Event{Time: at, Source: "stdout", Line: []byte("a\tb\x00c\xffd\u2028é")},
			with("log", "a\tb\x00c\ufffdd\u2028é")},
	}
	p, _ := parseIndexPattern(DefaultIndex)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := newEncoder(testContainer, p, tt.parseJSON)
			a := encode(enc, &item{ev: tt.ev})
			if got := decode(t, a.doc()); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("document\n got %v\nwant %v", got, tt.want)
			}
			if a.index != "docker-20240309" {
				t.Errorf("index %q", a.index)
			}
			if !bytes.HasPrefix(a.doc(), []byte(`{"@timestamp":"2024-03-09T22:59:59.000000120Z","log":`)) {
				t.Errorf("fields out of order: %s", a.doc())
			}
		})
	}
}

// TestLabelPrecedence checks which value a field gets when labels or env
// (Extra) or a JSON line's fields have its name. The document is the record
// of Docker's fluentd driver (and of the Fluentd sink, forward/fluentd's
// record.go), plus @timestamp and @log_name: labels and env replace
// container_id, container_name, source and log, the partial_* fields of a
// piece replace labels, and a JSON line's fields never replace anything.
func TestLabelPrecedence(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 3, 9, 12, 0, 0, 5, time.UTC)
	const stamp = "2024-03-09T12:00:00.000000005Z"
	labelled := forward.Container{ID: "cid", Name: "/web", Tag: "tag", Extra: map[string]string{
		"log": "label-log", "source": "label-source", "container_id": "label-id", "container_name": "label-name",
		"@timestamp": "label-time", "@log_name": "label-tag", "partial_id": "label-partial", "team": "core",
	}}
	plain := forward.Container{ID: "cid", Name: "web", Tag: "tag"}
	piece := &forward.Partial{ID: "p1", Ordinal: 1}
	tests := []struct {
		name      string
		c         forward.Container
		parseJSON bool
		line      string
		partial   *forward.Partial
		want      map[string]any
	}{
		{"labels replace the record's fields", labelled, false, "the line", nil, map[string]any{
			"@timestamp": stamp, "@log_name": "tag", "log": "label-log", "source": "label-source",
			"container_id": "label-id", "container_name": "label-name", "partial_id": "label-partial", "team": "core"}},
		{"a piece's fields replace labels", labelled, false, "the line", piece, map[string]any{
			"@timestamp": stamp, "@log_name": "tag", "log": "label-log", "source": "label-source",
			"container_id": "label-id", "container_name": "label-name", "team": "core",
			"partial_message": "true", "partial_id": "p1", "partial_ordinal": "1", "partial_last": "false"}},
		{"a JSON line's fields replace nothing", labelled, true, `{"log":"j","team":"j","@log_name":"j","partial_id":"j","level":"info"}`, nil,
			map[string]any{
				"@timestamp": stamp, "@log_name": "tag", "log": "label-log", "source": "label-source",
				"container_id": "label-id", "container_name": "label-name", "partial_id": "label-partial", "team": "core",
				"level": "info"}},
		{"without labels", plain, true, `{"container_id":"j","@timestamp":"j","partial_id":"j"}`, nil, map[string]any{
			"@timestamp": stamp, "@log_name": "tag", "log": `{"container_id":"j","@timestamp":"j","partial_id":"j"}`,
			"source": "stdout", "container_id": "cid", "container_name": "/web", "partial_id": "j"}},
		{"without labels, a piece", plain, true, `{"partial_id":"j","x":1}`, piece, map[string]any{
			"@timestamp": stamp, "@log_name": "tag", "log": `{"partial_id":"j","x":1}`, "source": "stdout",
			"container_id": "cid", "container_name": "/web", "x": json.Number("1"),
			"partial_message": "true", "partial_id": "p1", "partial_ordinal": "1", "partial_last": "false"}},
	}
	p, _ := parseIndexPattern(DefaultIndex)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			enc := newEncoder(tt.c, p, tt.parseJSON)
			a := encode(enc, &item{ev: forward.Event{Time: at, Source: "stdout", Line: []byte(tt.line), Partial: tt.partial}})
			if got := decode(t, a.doc()); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("document\n got %v\nwant %v", got, tt.want)
			}
			if n := bytes.Count(a.doc(), []byte(`"@timestamp":`)); n != 1 {
				t.Errorf("@timestamp %d times in %s", n, a.doc())
			}
		})
	}
}

// TestActionLines checks the two lines an action adds to a _bulk body:
// the create action with the index and _id, then the document, each
// ending with a newline, and that several actions encoded into one buffer
// keep their own lines.
func TestActionLines(t *testing.T) {
	t.Parallel()
	p, _ := parseIndexPattern(DefaultIndex)
	enc := newEncoder(testContainer, p, false)
	times := []time.Time{epoch, epoch.Add(1), epoch.Add(24 * time.Hour), epoch.Add(24*time.Hour + 1)}
	var (
		buf     []byte
		actions []action
	)
	for i, at := range times {
		var a action
		buf, a = enc.appendAction(buf, &item{ev: forward.Event{Time: at, Source: "stderr", Line: []byte(fmt.Sprintf("x%d", i))}})
		actions = append(actions, a)
	}
	var joined []byte
	for i, a := range actions {
		joined = append(joined, a.line...)
		lines := strings.SplitAfter(string(a.line), "\n")
		if len(lines) != 3 || lines[2] != "" {
			t.Fatalf("action %d: %q is not two lines", i, a.line)
		}
		var meta map[string]map[string]string
		if err := json.Unmarshal([]byte(lines[0]), &meta); err != nil {
			t.Fatalf("action %d: %q: %v", i, lines[0], err)
		}
		ev := forward.Event{Time: times[i], Source: "stderr"}
		want := map[string]map[string]string{"create": {"_index": esIndex(times[i]), "_id": documentID(testContainer.ID, &ev, 0)}}
		if !reflect.DeepEqual(meta, want) {
			t.Errorf("action %d: %v, want %v", i, meta, want)
		}
		if string(a.id()) != want["create"]["_id"] || a.index != want["create"]["_index"] {
			t.Errorf("action %d: id %q, index %q, want %v", i, a.id(), a.index, want)
		}
		if string(a.doc())+"\n" != lines[1] || a.size() != len(a.line) {
			t.Errorf("action %d: doc %q, size %d, line %q", i, a.doc(), a.size(), a.line)
		}
		if got := decode(t, a.doc())["log"]; got != fmt.Sprintf("x%d", i) {
			t.Errorf("action %d: log %v", i, got)
		}
	}
	if !bytes.Equal(joined, buf) {
		t.Errorf("the actions' lines are not the buffer:\n%s\n%s", joined, buf)
	}
}

// esIndex is the default index of an entry logged at t.
func esIndex(t time.Time) string { return "docker-" + t.UTC().Format("20060102") }

// documentID returns an entry's _id as a string.
func documentID(containerID string, ev *forward.Event, seq uint32) string {
	return string(appendDocumentID(nil, containerID, ev, seq))
}

func TestDocumentIDs(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 1, 1, 0, 0, 0, 5, time.UTC)
	ev := func(line, source string, p *forward.Partial) *forward.Event {
		return &forward.Event{Time: at, Source: source, Line: []byte(line), Partial: p}
	}
	id := func(c string, e *forward.Event, seq uint32) string { return documentID(c, e, seq) }
	a := id("c1", ev("same", "stdout", nil), 0)
	if got := id("c1", ev("same", "stdout", nil), 0); got != a {
		t.Errorf("a replay got another id: %s, %s", got, a)
	}
	if len(a) != 22 || strings.ContainsAny(a, "+/=") {
		t.Errorf("id %q is not 22 URL-safe characters", a)
	}
	distinct := map[string]string{
		"same nanosecond, next line": id("c1", ev("same", "stdout", nil), 1),
		"other stream":               id("c1", ev("same", "stderr", nil), 0),
		"other container":            id("c2", ev("same", "stdout", nil), 0),
		"first piece":                id("c1", ev("same", "stdout", &forward.Partial{ID: "x", Ordinal: 1}), 0),
		"second piece":               id("c1", ev("same", "stdout", &forward.Partial{ID: "x", Ordinal: 2}), 0),
		"other line's piece":         id("c1", ev("same", "stdout", &forward.Partial{ID: "y", Ordinal: 1}), 0),
	}
	seen := map[string]string{a: "first"}
	for name, got := range distinct {
		if other, dup := seen[got]; dup {
			t.Errorf("%s has the id of %s", name, other)
		}
		seen[got] = name
	}
}

func FuzzEncodeJSONLine(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[1,"x",null]}}`, `{"log":"x","@timestamp":1}`, `{}`} {
		f.Add([]byte(s))
	}
	p, _ := parseIndexPattern(DefaultIndex)
	f.Fuzz(func(t *testing.T, line []byte) {
		enc := newEncoder(testContainer, p, true)
		a := encode(enc, &item{ev: forward.Event{Time: time.Unix(1, 0), Source: "stdout", Line: line}})
		if !json.Valid(a.doc()) {
			t.Fatalf("line %q makes invalid document %s", line, a.doc())
		}
	})
}
