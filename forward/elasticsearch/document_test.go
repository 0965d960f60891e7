package elasticsearch

import (
	"bytes"
	"encoding/json"
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
	Extra: map[string]string{"com.example.team": "core", "log": "ignored: reserved", "env": "prod"},
}

func decode(t *testing.T, doc string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("document %s: %v", doc, err)
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
			a := enc.encode(&item{ev: tt.ev})
			if got := decode(t, a.doc); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("document\n got %v\nwant %v", got, tt.want)
			}
			if a.index != "docker-20240309" {
				t.Errorf("index %q", a.index)
			}
			if !strings.HasPrefix(a.doc, `{"@timestamp":"2024-03-09T22:59:59.000000120Z","log":`) {
				t.Errorf("fields out of order: %s", a.doc)
			}
		})
	}
}

func TestActionSizeIsExact(t *testing.T) {
	t.Parallel()
	p, _ := parseIndexPattern(DefaultIndex)
	a := newEncoder(testContainer, p, false).encode(&item{ev: forward.Event{Time: time.Now(), Source: "stderr", Line: []byte("x")}})
	lines, err := bulkRequest(&a).Source()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(lines[0]) + len(lines[1]) + 2; got != a.size {
		t.Errorf("size %d, body adds %d (%s)", a.size, got, lines[0])
	}
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

func TestSequencer(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(100, 0)
	t1 := t0.Add(1)
	var q sequencer
	var got []uint32
	for _, at := range []time.Time{t0, t0, t1, t0, t1, t1} {
		got = append(got, q.next(at))
	}
	if want := []uint32{0, 1, 0, 2, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("sequence %v, want %v", got, want)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\`, "\x00\x1f\x7f", "\xff\xfe", "é\u2028\u2029", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendString(nil, s)
		if !json.Valid(out) {
			t.Fatalf("%q encodes to invalid JSON %s", s, out)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(s) // encoding/json's view of invalid UTF-8
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q round-trips to %q, encoding/json to %q", s, back, wantBack)
		}
		if !bytes.Equal(out, appendString(nil, []byte(s))) {
			t.Errorf("string and []byte encodings of %q differ", s)
		}
	})
}

func FuzzEncodeJSONLine(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[1,"x",null]}}`, `{"log":"x","@timestamp":1}`, `{}`} {
		f.Add([]byte(s))
	}
	p, _ := parseIndexPattern(DefaultIndex)
	f.Fuzz(func(t *testing.T, line []byte) {
		enc := newEncoder(testContainer, p, true)
		a := enc.encode(&item{ev: forward.Event{Time: time.Unix(1, 0), Source: "stdout", Line: line}})
		if !json.Valid([]byte(a.doc)) {
			t.Fatalf("line %q makes invalid document %s", line, a.doc)
		}
	})
}
