package rotate

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
	"unicode/utf8"
)

// sampleTime has all nine fractional digits.
var sampleTime = time.Date(2024, 3, 5, 7, 8, 9, 123456789, time.UTC)

const sampleTimeJSON = `"time":"2024-03-05T07:08:09.123456789Z"}` + "\n"

// TestAppendJSONEscaping checks the escaping of the log text against what
// Docker's json-file driver writes.
func TestAppendJSONEscaping(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want string // the JSON string written for line
	}{
		{"plain", "hello world\n", `"hello world\n"`},
		{"tab", "a\tb", `"a\u0009b"`},
		{"NUL", "a\x00b", `"a\u0000b"`},
		{"ESC", "\x1b[31mred\x1b[0m", `"\u001b[31mred\u001b[0m"`},
		{"other control characters", "\x01\x07\x08\x0b\x0c\x1f", `"\u0001\u0007\u0008\u000b\u000c\u001f"`},
		{"DEL is not escaped", "a\x7fb", "\"a\x7fb\""},
		{"newline and carriage return", "a\r\nb\n", `"a\r\nb\n"`},
		{"quotes", `say "hi"`, `"say \"hi\""`},
		{"backslash", `C:\dir\`, `"C:\\dir\\"`},
		{"HTML characters", "<a href='x'>&amp;</a>", `"\u003ca href='x'\u003e\u0026amp;\u003c/a\u003e"`},
		{"invalid byte", "a\xffb", `"a\ufffdb"`},
		{"lone continuation bytes", "\x80\xbf", `"\ufffd\ufffd"`},
		{"truncated 2-byte sequence at the end", "caf\xc3", `"caf\ufffd"`},
		{"truncated 3-byte sequence", "\xe2\x82x", `"\ufffd\ufffdx"`},
		{"truncated 4-byte sequence", "\xf0\x9f\x9a\n", `"\ufffd\ufffd\ufffd\n"`},
		{"overlong encoding", "\xc0\xaf", `"\ufffd\ufffd"`},
		{"UTF-16 surrogate", "\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
		{"beyond U+10FFFF", "\xf4\x90\x80\x80", `"\ufffd\ufffd\ufffd\ufffd"`},
		{"valid U+FFFD is kept", "\uFFFD", "\"\uFFFD\""},
		{"line and paragraph separators", "a\u2028b\u2029c", `"a\u2028b\u2029c"`},
		{"other U+202x kept", "\u2027\u202a", "\"\u2027\u202a\""},
		{"non-ASCII", "café ψ ω β € 中文", `"café ψ ω β € 中文"`},
		{"emoji", "🚀 launch 👩‍💻\n", `"🚀 launch 👩‍💻\n"`},
		{"everything at once", "\t\"<\xff\u2028🚀\\\n", `"\u0009\"\u003c\ufffd\u2028🚀\\\n"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Entry{Line: []byte(tc.line), Stream: "stdout", Time: sampleTime}
			got := string(AppendJSON(nil, &e, nil))
			want := `{"log":` + tc.want + `,"stream":"stdout",` + sampleTimeJSON
			if got != want {
				t.Errorf("AppendJSON(%q)\n got %s\nwant %s", tc.line, got, want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("AppendJSON(%q) is not valid JSON: %s", tc.line, got)
			}
		})
	}
}

// TestAppendJSONRecord checks which keys are written, in which order.
func TestAppendJSONRecord(t *testing.T) {
	const attrs = `{"hello":"world","value":1234}`
	for _, tc := range []struct {
		name  string
		e     Entry
		attrs string
		want  string
	}{
		{"complete line", Entry{Line: []byte("hello\n"), Stream: "stdout", Time: sampleTime}, "",
			`{"log":"hello\n","stream":"stdout",` + sampleTimeJSON},
		{"partial line without newline", Entry{Line: []byte("part"), Stream: "stderr", Time: sampleTime}, "",
			`{"log":"part","stream":"stderr",` + sampleTimeJSON},
		{"empty line", Entry{Line: []byte{}, Stream: "stdout", Time: sampleTime}, "",
			`{"stream":"stdout",` + sampleTimeJSON},
		{"nil line", Entry{Stream: "stderr", Time: sampleTime}, "",
			`{"stream":"stderr",` + sampleTimeJSON},
		{"no stream", Entry{Line: []byte("x\n"), Time: sampleTime}, "",
			`{"log":"x\n",` + sampleTimeJSON},
		{"attrs", Entry{Line: []byte("x\n"), Stream: "stdout", Time: sampleTime}, attrs,
			`{"log":"x\n","stream":"stdout","attrs":{"hello":"world","value":1234},` + sampleTimeJSON},
		{"attrs without line", Entry{Stream: "stdout", Time: sampleTime}, attrs,
			`{"stream":"stdout","attrs":{"hello":"world","value":1234},` + sampleTimeJSON},
		{"attrs only", Entry{Time: sampleTime}, attrs,
			`{"attrs":{"hello":"world","value":1234},` + sampleTimeJSON},
		{"empty attrs", Entry{Line: []byte("x"), Stream: "stdout", Time: sampleTime}, "",
			`{"log":"x","stream":"stdout",` + sampleTimeJSON},
		{"stream escaped", Entry{Stream: `a"<b`, Time: sampleTime}, "",
			`{"stream":"a\"\u003cb",` + sampleTimeJSON},
		{"zero entry", Entry{}, "", `{"time":"0001-01-01T00:00:00Z"}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var attrs []byte
			if tc.attrs != "" {
				attrs = []byte(tc.attrs)
			}
			got := string(AppendJSON(nil, &tc.e, attrs))
			if got != tc.want {
				t.Errorf("AppendJSON\n got %s\nwant %s", got, tc.want)
			}
		})
	}
	t.Run("empty non-nil attrs", func(t *testing.T) {
		e := Entry{Line: []byte("x"), Time: sampleTime}
		if got, want := string(AppendJSON(nil, &e, []byte{})), `{"log":"x",`+sampleTimeJSON; got != want {
			t.Errorf("AppendJSON\n got %s\nwant %s", got, want)
		}
	})
	t.Run("appends to dst", func(t *testing.T) {
		e := Entry{Line: []byte("x"), Time: sampleTime}
		if got, want := string(AppendJSON([]byte("prev\n"), &e, nil)), "prev\n"+`{"log":"x",`+sampleTimeJSON; got != want {
			t.Errorf("AppendJSON\n got %s\nwant %s", got, want)
		}
	})
}

// TestAppendJSONTime checks the RFC 3339 time written, in UTC with trailing
// zeros of the fraction dropped.
func TestAppendJSONTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		time time.Time
		want string
	}{
		{"one nanosecond", time.Date(2017, 9, 1, 1, 1, 1, 1, time.UTC), "2017-09-01T01:01:01.000000001Z"},
		{"all nine digits", time.Date(2024, 3, 5, 7, 8, 9, 999999999, time.UTC), "2024-03-05T07:08:09.999999999Z"},
		{"trailing zeros dropped", time.Date(2024, 3, 5, 7, 8, 9, 120000000, time.UTC), "2024-03-05T07:08:09.12Z"},
		{"microseconds", time.Date(2024, 3, 5, 7, 8, 9, 123456000, time.UTC), "2024-03-05T07:08:09.123456Z"},
		{"leading zeros kept", time.Date(2024, 3, 5, 7, 8, 9, 100, time.UTC), "2024-03-05T07:08:09.0000001Z"},
		{"whole second", time.Date(2024, 3, 5, 7, 8, 9, 0, time.UTC), "2024-03-05T07:08:09Z"},
		{"other zone converted to UTC", time.Date(2024, 6, 1, 1, 30, 0, 500000000, time.FixedZone("X", -(5*3600+1800))),
			"2024-06-01T07:00:00.5Z"},
		{"zone crossing the date", time.Date(2024, 1, 1, 0, 15, 0, 0, time.FixedZone("CET", 3600)), "2023-12-31T23:15:00Z"},
		{"unix epoch", time.Unix(0, 0), "1970-01-01T00:00:00Z"},
		{"zero time", time.Time{}, "0001-01-01T00:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Entry{Line: []byte("x"), Time: tc.time}
			got := string(AppendJSON(nil, &e, nil))
			want := `{"log":"x","time":"` + tc.want + `"}` + "\n"
			if got != want {
				t.Errorf("AppendJSON\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestParseJSON(t *testing.T) {
	for _, tc := range []struct {
		name   string
		record string
		want   Entry
	}{
		{"record as Docker writes it", `{"log":"hello\n","stream":"stdout","time":"2024-03-05T07:08:09.123456789Z"}` + "\n",
			Entry{Line: []byte("hello\n"), Stream: "stdout", Time: sampleTime}},
		{"without trailing newline", `{"log":"hello\n","stream":"stdout","time":"2024-03-05T07:08:09.123456789Z"}`,
			Entry{Line: []byte("hello\n"), Stream: "stdout", Time: sampleTime}},
		{"attrs skipped", `{"log":"x","stream":"stderr","attrs":{"a":"b","n":[1,2]},"time":"2024-03-05T07:08:09.123456789Z"}` + "\n",
			Entry{Line: []byte("x"), Stream: "stderr", Time: sampleTime}},
		{"no log", `{"stream":"stdout","time":"2024-03-05T07:08:09.123456789Z"}`,
			Entry{Line: []byte{}, Stream: "stdout", Time: sampleTime}},
		{"escapes", `{"log":"\u0009\"\u003c\ufffd\u2028🚀\\\n","time":"2024-03-05T07:08:09.123456789Z"}`,
			Entry{Line: []byte("\t\"<\uFFFD\u2028🚀\\\n"), Time: sampleTime}},
		{"other key order", `{"time":"2024-03-05T07:08:09.123456789Z","stream":"stdout","log":"x"}`,
			Entry{Line: []byte("x"), Stream: "stdout", Time: sampleTime}},
		{"offset time", `{"log":"x","time":"2024-03-05T08:08:09.123456789+01:00"}`,
			Entry{Line: []byte("x"), Time: sampleTime}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Entry
			if err := ParseJSON([]byte(tc.record), &got); err != nil {
				t.Fatalf("ParseJSON: %v", err)
			}
			if !bytes.Equal(got.Line, tc.want.Line) || got.Stream != tc.want.Stream || !got.Time.Equal(tc.want.Time) {
				t.Errorf("ParseJSON = {%q %q %v}, want {%q %q %v}",
					got.Line, got.Stream, got.Time, tc.want.Line, tc.want.Stream, tc.want.Time)
			}
		})
	}
}

func TestParseJSONBadRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		record string
	}{
		{"empty", ""},
		{"not JSON", "hello\n"},
		{"truncated", `{"log":"x","stream":"stdout","time":"2024-03-05T07:`},
		{"log not a string", `{"log":1,"time":"2024-03-05T07:08:09Z"}`},
		{"bad time", `{"log":"x","time":"yesterday"}`},
		{"array", `["log"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Entry
			if err := ParseJSON([]byte(tc.record), &e); !errors.Is(err, ErrBadRecord) {
				t.Errorf("ParseJSON(%q) = %v, want ErrBadRecord", tc.record, err)
			}
		})
	}
}

func TestParseJSONDoesNotAlias(t *testing.T) {
	record := AppendJSON(nil, &Entry{Line: []byte("abc"), Time: sampleTime}, nil)
	var e Entry
	if err := ParseJSON(record, &e); err != nil {
		t.Fatal(err)
	}
	clear(record)
	if string(e.Line) != "abc" {
		t.Errorf("Line changed with the record: %q", e.Line)
	}
}

// replaceInvalid returns s with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as json-file records it.
func replaceInvalid(s []byte) []byte {
	return []byte(string([]rune(string(s))))
}

// checkRoundTrip checks that the record AppendJSON writes for e is valid
// JSON that reads back as e.
func checkRoundTrip(t *testing.T, e *Entry, attrs []byte) {
	t.Helper()
	out := AppendJSON(nil, e, attrs)
	if !json.Valid(out) {
		t.Fatalf("AppendJSON(%q, %q) is not valid JSON: %s", e.Line, attrs, out)
	}
	if n, want := bytes.Count(out, []byte("\n")), 1+bytes.Count(attrs, []byte("\n")); n != want || out[len(out)-1] != '\n' {
		t.Fatalf("AppendJSON(%q) is not one line: %q", e.Line, out)
	}
	var fields struct {
		Log   string          `json:"log"`
		Attrs json.RawMessage `json:"attrs"`
	}
	if err := json.Unmarshal(out, &fields); err != nil {
		t.Fatalf("encoding/json cannot read %s: %v", out, err)
	}
	if len(attrs) != 0 && !bytes.Equal(fields.Attrs, bytes.Trim(attrs, " \t\r\n")) {
		t.Fatalf("encoding/json reads attrs %s from %s, want %s", fields.Attrs, out, attrs)
	}
	if log := fields.Log; log != string(replaceInvalid(e.Line)) {
		t.Fatalf("encoding/json reads log %q from %s, want %q", log, out, replaceInvalid(e.Line))
	}
	var got Entry
	if err := ParseJSON(out, &got); err != nil {
		t.Fatalf("ParseJSON(%s): %v", out, err)
	}
	if !bytes.Equal(got.Line, replaceInvalid(e.Line)) {
		t.Fatalf("ParseJSON(AppendJSON(%q)).Line = %q", e.Line, got.Line)
	}
	if utf8.Valid(e.Line) && !bytes.Equal(got.Line, e.Line) {
		t.Fatalf("ParseJSON(AppendJSON(%q)).Line = %q, want it unchanged", e.Line, got.Line)
	}
	if got.Stream != string(replaceInvalid([]byte(e.Stream))) {
		t.Fatalf("ParseJSON(AppendJSON(stream %q)).Stream = %q", e.Stream, got.Stream)
	}
	if !got.Time.Equal(e.Time) {
		t.Fatalf("ParseJSON(AppendJSON(time %v)).Time = %v", e.Time, got.Time)
	}
}

// randomLine returns up to 200 characters mixing the kinds of text that
// need care.
func randomLine(r *rand.Rand) []byte {
	pieces := []string{"a", "Z", " ", "0", "\t", "\x00", "\x1b", "\x7f", "\n", "\r", `"`, `\`, "<", ">", "&",
		"é", "€", "🚀", "\u2028", "\u2029", "\uFFFD", "\u00a0", "\ufeff"}
	var b []byte
	for range r.IntN(200) {
		if r.IntN(4) == 0 {
			// Any valid rune, surrogates excepted.
			c := rune(r.Int32N(utf8.MaxRune + 1))
			if !utf8.ValidRune(c) {
				c = 'x'
			}
			b = utf8.AppendRune(b, c)
			continue
		}
		b = append(b, pieces[r.IntN(len(pieces))]...)
	}
	return b
}

// TestAppendJSONProperties checks random valid UTF-8 entries: every record
// is JSON that encoding/json reads and that ParseJSON turns back into the
// entry.
func TestAppendJSONProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	streams := []string{"stdout", "stderr", ""}
	attrs := [][]byte{nil, []byte(`{"com.example.tag":"a\u003cb","n":"1"}`)}
	for range 5000 {
		e := Entry{
			Line:   randomLine(r),
			Stream: streams[r.IntN(len(streams))],
			Time:   time.Unix(0, r.Int64N(1<<62)).In(time.FixedZone("Z", 3600*(r.IntN(25)-12))),
		}
		checkRoundTrip(t, &e, attrs[r.IntN(len(attrs))])
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add([]byte("hello\n"), "stdout", int64(1709622489123456789), []byte(nil))
	f.Add([]byte("\t\"<\xff\u2028🚀\\\n\x00\xe2\x82"), "stderr", int64(0), []byte(`{"a":"b"}`))
	f.Add([]byte(""), "", int64(-1), []byte(`{}`))
	f.Add([]byte("\xf0\x9f\x9a"), "std\xffout", int64(1<<62), []byte("not json"))
	f.Fuzz(func(t *testing.T, line []byte, stream string, nanos int64, attrs []byte) {
		if !json.Valid(attrs) {
			attrs = nil
		}
		checkRoundTrip(t, &Entry{Line: line, Stream: stream, Time: time.Unix(0, nanos)}, attrs)
	})
}

func TestAppendJSONAllocs(t *testing.T) {
	e := Entry{Line: []byte("a typical line with <html> & \"quotes\"\tand \xff and 🚀\n"), Stream: "stdout",
		Time: time.Now()}
	attrs := []byte(`{"tag":"web"}`)
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(1000, func() { buf = AppendJSON(buf[:0], &e, attrs) }); n != 0 {
		t.Errorf("AppendJSON: %v allocations, want 0", n)
	}
}

// benchEntry is a typical 100-byte line.
var benchEntry = Entry{
	Line:   []byte(`2024-03-05T07:08:09Z INFO request handled method=GET path=/api/v1/items status=200 dur=1.2ms` + "\n"),
	Stream: "stdout",
	Time:   sampleTime,
}

// BenchmarkAppendJSON encodes records a microsecond apart, as a stream's
// Encoder does.
func BenchmarkAppendJSON(b *testing.B) {
	var enc Encoder
	e := benchEntry
	buf := enc.AppendJSON(nil, &e, nil)
	b.SetBytes(int64(len(e.Line)))
	b.ReportAllocs()
	for b.Loop() {
		e.Time = e.Time.Add(time.Microsecond)
		buf = enc.AppendJSON(buf[:0], &e, nil)
	}
}

func BenchmarkParseJSON(b *testing.B) {
	record := AppendJSON(nil, &benchEntry, nil)
	b.SetBytes(int64(len(benchEntry.Line)))
	b.ReportAllocs()
	var e Entry
	for b.Loop() {
		if err := ParseJSON(record, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPlainPrefix checks plainPrefix against a byte-by-byte reading, for
// every byte value at every position of three blocks, for every length of
// them and for random input.
func TestPlainPrefix(t *testing.T) {
	plain := func(b byte) bool {
		return b >= 0x20 && b < utf8.RuneSelf && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	want := func(s []byte) int {
		for i, b := range s {
			if !plain(b) {
				return i
			}
		}
		return len(s)
	}
	check := func(s []byte) {
		t.Helper()
		// Bytes short of a block at the end may be left to the caller.
		if got, want := plainPrefix(s), want(s); got > want || got < want && len(s)-got >= plainBlock {
			t.Fatalf("plainPrefix(%q) = %d, want %d", s, got, want)
		}
	}
	base := []byte("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL")
	for v := range 256 {
		for pos := range len(base) {
			s := bytes.Clone(base)
			s[pos] = byte(v)
			check(s)
			check(s[:pos+1])
			check(s[:pos])
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		s := make([]byte, r.IntN(80))
		for i := range s {
			s[i] = byte(0x1e + r.IntN(0x62)) // mostly printable, some not
		}
		check(s)
	}
}

func BenchmarkAppendJSONText(b *testing.B) {
	e := benchEntry
	e.Line = []byte("Запрос обработан: метод=GET путь=/api/v1/items статус=200 длительность=1.2ms 🚀\n")
	buf := AppendJSON(nil, &e, nil)
	b.SetBytes(int64(len(e.Line)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &e, nil)
	}
}

// TestEncoderTime: an Encoder that reuses the clock of the previous second
// writes every time as time.RFC3339Nano in UTC does.
func TestEncoderTime(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var enc Encoder
	ts := time.Date(2026, 11, 22, 23, 59, 58, 0, time.FixedZone("X", 3600))
	var times []time.Time
	for range 2000 {
		switch r.IntN(4) {
		case 0: // same second
			ts = ts.Truncate(time.Second).Add(time.Duration(r.IntN(1e9)))
		case 1: // a few ms later, maybe the next second or day
			ts = ts.Add(time.Duration(r.IntN(5e8)))
		case 2: // whole seconds and trailing zeros
			ts = ts.Truncate(time.Duration(1) * time.Duration([]int{1e9, 1e6, 1e3, 10}[r.IntN(4)])).Add(time.Second)
		default: // anywhere, also outside years 0-9999
			ts = time.Unix(r.Int64N(1<<40)-1<<39, r.Int64N(1e9))
		}
		times = append(times, ts)
	}
	times = append(times, time.Unix(0, 0), time.Unix(-1, 999999999), time.Date(10000, 1, 1, 0, 0, 0, 5, time.UTC))
	for _, ts := range times {
		got := string(enc.appendTime(nil, ts))
		if want := ts.UTC().Format(time.RFC3339Nano); got != want {
			t.Fatalf("appendTime(%v) = %s, want %s", ts, got, want)
		}
	}
}
