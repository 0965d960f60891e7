package rotate

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Entry is one record of a json-file log: a whole line, or one piece of a
// line that was split.
type Entry struct {
	// Line is the text, with its trailing "\n" when the line is complete.
	Line []byte
	// Stream is "stdout" or "stderr".
	Stream string
	// Time is when the line was read from the container.
	Time time.Time
}

// ErrBadRecord reports a json-file record that cannot be parsed.
var ErrBadRecord = errors.New("malformed json-file record")

// AppendJSON appends e to dst as one json-file record: the object Docker's
// json-file driver writes, with keys log, stream, attrs and time in that
// order and the same string escaping, followed by "\n". attrs is a
// marshalled JSON object, or nil for none. The time is written in UTC.
func AppendJSON(dst []byte, e *Entry, attrs []byte) []byte {
	var enc Encoder
	return enc.AppendJSON(dst, e, attrs)
}

// Encoder writes json-file records as AppendJSON does, faster for records
// of the same second, whose date and clock it formats once. The zero value
// is ready to use; an Encoder is not safe for concurrent use.
type Encoder struct {
	sec int64 // Unix second of clock
	// clock[:n] is "YYYY-MM-DDTHH:MM:SS" of sec in UTC; n is 0 before
	// the first record.
	clock [len("2006-01-02T15:04:05")]byte
	n     int
}

// AppendJSON appends e to dst as one json-file record, see AppendJSON.
func (enc *Encoder) AppendJSON(dst []byte, e *Entry, attrs []byte) []byte {
	dst = append(dst, '{')
	first := true
	if len(e.Line) != 0 {
		first = false
		dst = append(dst, `"log":`...)
		dst = appendString(dst, e.Line)
	}
	if e.Stream != "" {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		switch e.Stream {
		case "stdout":
			dst = append(dst, `"stream":"stdout"`...)
		case "stderr":
			dst = append(dst, `"stream":"stderr"`...)
		default:
			dst = append(dst, `"stream":`...)
			dst = appendString(dst, []byte(e.Stream))
		}
	}
	if len(attrs) != 0 {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, `"attrs":`...)
		dst = append(dst, attrs...)
	}
	if !first {
		dst = append(dst, ',')
	}
	dst = append(dst, `"time":"`...)
	dst = enc.appendTime(dst, e.Time)
	return append(dst, `"}`+"\n"...)
}

// appendTime appends t in UTC as time.RFC3339Nano does: the fraction
// without trailing zeros, none for a whole second.
func (enc *Encoder) appendTime(dst []byte, t time.Time) []byte {
	sec, nsec := t.Unix(), t.Nanosecond()
	if enc.n == 0 || sec != enc.sec {
		u := t.UTC()
		if y := u.Year(); y < 0 || y > 9999 {
			return u.AppendFormat(dst, time.RFC3339Nano)
		}
		enc.n = copy(enc.clock[:], u.AppendFormat(enc.clock[:0], "2006-01-02T15:04:05"))
		enc.sec = sec
	}
	dst = append(dst, enc.clock[:enc.n]...)
	if nsec != 0 {
		// Nine digits, two at a time, each pair computed on its own.
		ns := uint32(nsec)
		var frac [10]byte
		frac[0] = '.'
		putPair(frac[1:], ns/1e7)
		putPair(frac[3:], ns/1e5%100)
		putPair(frac[5:], ns/1e3%100)
		putPair(frac[7:], ns/10%100)
		frac[9] = byte('0' + ns%10)
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		dst = append(dst, frac[:n]...)
	}
	return append(dst, 'Z')
}

// digitPairs holds "00" to "99" one after the other.
const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// putPair writes the two digits of d < 100 to b.
func putPair(b []byte, d uint32) {
	b[0], b[1] = digitPairs[2*d], digitPairs[2*d+1]
}

// plainByte tells the bytes that appear unescaped in a JSON string:
// printable ASCII except quote, backslash, <, > and &.
var plainByte = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// appendString appends s as a JSON string escaped exactly as json-file does:
// control characters as \u00XX except \n and \r, HTML-sensitive <, > and &
// as \u003c etc., invalid UTF-8 as \ufffd, and U+2028/U+2029 escaped.
func appendString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// A fast scan, then plain bytes up to the first other byte in
		// the few it may leave.
		i += plainPrefix(s[i:])
		for i < len(s) && plainByte[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRune(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// record is the json-file object as it is read back; attrs are not needed
// to serve logs and are skipped.
type record struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// ParseJSON parses one json-file record (with or without its trailing
// newline) into e. e.Line does not alias line.
func ParseJSON(line []byte, e *Entry) error {
	if parseRecord(line, e) {
		return nil
	}
	var r record
	if err := json.Unmarshal(line, &r); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	e.Line = []byte(r.Log)
	e.Stream = r.Stream
	e.Time = r.Time
	return nil
}
