package rotate

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// slowParse is ParseJSON without its fast path.
func slowParse(line []byte) (Entry, error) {
	var r record
	err := json.Unmarshal(line, &r)
	return Entry{Line: []byte(r.Log), Stream: r.Stream, Time: r.Time}, err
}

func sameEntry(a, b Entry) bool {
	return bytes.Equal(a.Line, b.Line) && a.Stream == b.Stream && a.Time.Equal(b.Time)
}

func TestParseRecordMatchesEncodingJSON(t *testing.T) {
	ts := time.Date(2026, 11, 22, 1, 2, 3, 450000000, time.UTC)
	tests := []struct {
		name string
		rec  string
		fast bool // the fast path takes it
	}{
		{"as written", string(AppendJSON(nil, &Entry{Line: []byte("a\tb\"<>&\u2028é\n"), Stream: "stdout", Time: ts}, nil)), true},
		{"with attrs", string(AppendJSON(nil, &Entry{Line: []byte("x\n"), Stream: "stderr", Time: ts}, []byte(`{"a":"b","c":"\u003cd\u003e"}`))), true},
		{"partial piece", string(AppendJSON(nil, &Entry{Line: []byte("piece"), Stream: "stdout", Time: ts}, nil)), true},
		{"no log key", `{"stream":"stdout","time":"2026-11-22T01:02:03Z"}`, true},
		{"reordered with spaces", ` { "time" : "2026-11-22T01:02:03.1Z" , "log" : "x\/y\b\f" , "stream":"stdout" } ` + "\n", true},
		{"surrogate pair", `{"log":"\ud83d\ude00","stream":"stdout","time":"2026-11-22T01:02:03Z"}`, true},
		{"empty object", `{}`, true},
		{"lone surrogate", `{"log":"\ud83d","stream":"stdout","time":"2026-11-22T01:02:03Z"}`, false},
		{"invalid utf-8", "{\"log\":\"\xff\",\"stream\":\"stdout\",\"time\":\"2026-11-22T01:02:03Z\"}", false},
		{"key in other case", `{"LOG":"x","stream":"stdout","time":"2026-11-22T01:02:03Z"}`, false},
		{"time with offset", `{"log":"x","stream":"stdout","time":"2026-11-22T01:02:03+01:00"}`, false},
		{"null log", `{"log":null,"stream":"stdout","time":"2026-11-22T01:02:03Z"}`, false},
		{"nested attrs", `{"log":"x","attrs":{"a":{"b":"c"}},"time":"2026-11-22T01:02:03Z"}`, false},
		{"unknown key", `{"log":"x","extra":1,"time":"2026-11-22T01:02:03Z"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fast Entry
			ok := parseRecord([]byte(tt.rec), &fast)
			if ok != tt.fast {
				t.Fatalf("parseRecord(%q) ok = %v, want %v", tt.rec, ok, tt.fast)
			}
			slow, err := slowParse([]byte(tt.rec))
			if ok && (err != nil || !sameEntry(fast, slow)) {
				t.Errorf("fast %+v, encoding/json %+v (%v)", fast, slow, err)
			}
			var got Entry
			if perr := ParseJSON([]byte(tt.rec), &got); (perr == nil) != (err == nil) || (err == nil && !sameEntry(got, slow)) {
				t.Errorf("ParseJSON = %+v, %v; encoding/json %+v, %v", got, perr, slow, err)
			}
		})
	}
}

func FuzzParseRecord(f *testing.F) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	f.Add(AppendJSON(nil, &Entry{Line: []byte("hello\n"), Stream: "stdout", Time: ts}, nil))
	f.Add(AppendJSON(nil, &Entry{Line: []byte("\x00\xff\u2029"), Stream: "stderr", Time: ts}, []byte(`{"k":"v"}`)))
	f.Add([]byte(`{"log":"\u00e9\ud83d\ude00","time":"2026-01-02T03:04:05Z"}`))
	f.Fuzz(func(t *testing.T, rec []byte) {
		var fast Entry
		if !parseRecord(rec, &fast) {
			return
		}
		slow, err := slowParse(rec)
		if err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", rec, err)
		}
		if !sameEntry(fast, slow) {
			t.Fatalf("record %q: fast %+v, encoding/json %+v", rec, fast, slow)
		}
	})
}

func BenchmarkParseJSONSlowPath(b *testing.B) {
	record := AppendJSON(nil, &benchEntry, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := slowParse(record); err != nil {
			b.Fatal(err)
		}
	}
}
