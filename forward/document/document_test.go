package document

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

// TestPlain8 puts every byte value at every place among plain bytes, and
// next to other bytes that need escaping.
func TestPlain8(t *testing.T) {
	t.Parallel()
	plain := func(c byte) bool { return c >= 0x20 && c != '"' && c != '\\' && c < 0x80 }
	for _, fill := range []byte{'a', ' ', '~', '!', '#', '[', ']'} {
		for c := range 256 {
			for at := range 8 {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[at] = byte(c)
				if got, want := plain8(binary.LittleEndian.Uint64(w[:])), plain(byte(c)); got != want {
					t.Fatalf("%q: plain8 %v, want %v", w, got, want)
				}
			}
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\`, "\x00\x1f\x7f", "\xff\xfe", "é\u2028\u2029", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString(nil, s)
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
		if !bytes.Equal(out, AppendString(nil, []byte(s))) {
			t.Errorf("string and []byte encodings of %q differ", s)
		}
	})
}

func TestEncoderAppend(t *testing.T) {
	t.Parallel()
	c := forward.Container{ID: "0123456789abcdef", Name: "web", Tag: "web-tag", Extra: map[string]string{"env": "prod", "source": "label"}}
	at := time.Date(2026, 12, 7, 13, 15, 0, 123456789, time.UTC)
	tests := []struct {
		name       string
		jsonFields bool
		ev         forward.Event
		want       string
	}{
		{"whole line", false, forward.Event{Time: at, Source: "stdout", Line: []byte(`say "hi"`)},
			`{"@timestamp":"2026-12-07T13:15:00.123456789Z","log":"say \"hi\"","container_id":"0123456789abcdef","container_name":"/web","@log_name":"web-tag","env":"prod","source":"label"}`},
		{"piece", false, forward.Event{Time: at, Source: "stderr", Line: []byte("x"), Partial: &forward.Partial{ID: "p1", Ordinal: 2, Last: true}},
			`{"@timestamp":"2026-12-07T13:15:00.123456789Z","log":"x","container_id":"0123456789abcdef","container_name":"/web","@log_name":"web-tag","env":"prod","source":"label","partial_message":"true","partial_id":"p1","partial_ordinal":"2","partial_last":"true"}`},
		{"json line", true, forward.Event{Time: at, Source: "stdout", Line: []byte(`{"b":1,"a":[true],"log":"no"}`)},
			`{"@timestamp":"2026-12-07T13:15:00.123456789Z","log":"{\"b\":1,\"a\":[true],\"log\":\"no\"}","container_id":"0123456789abcdef","container_name":"/web","@log_name":"web-tag","env":"prod","source":"label","a":[true],"b":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NewEncoder(c, tc.jsonFields).Append([]byte("prefix:"), &tc.ev)
			if string(got) != "prefix:"+tc.want {
				t.Errorf("got  %s\nwant prefix:%s", got, tc.want)
			}
			if !json.Valid(got[len("prefix:"):]) {
				t.Error("invalid JSON")
			}
		})
	}
}
