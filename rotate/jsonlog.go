package rotate

import (
	"encoding/binary"
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
		dst = append(dst, `"stream":`...)
		dst = appendString(dst, []byte(e.Stream))
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
	dst = e.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, `"}`+"\n"...)
}

// appendString appends s as a JSON string escaped exactly as json-file does:
// control characters as \u00XX except \n and \r, HTML-sensitive <, > and &
// as \u003c etc., invalid UTF-8 as \ufffd, and U+2028/U+2029 escaped.
func appendString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if i += plainWords(s[i:]); i == len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '\\' && b != '"' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
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

// plainWords returns the length of the longest prefix of s made of whole
// 8-byte words whose bytes all appear unescaped in a JSON string (printable
// ASCII except " \ < > &), testing eight bytes at a time.
func plainWords(s []byte) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	// zero has the high bit of a byte set where x has a zero byte (and
	// maybe above it, which does not matter here).
	zero := func(x uint64) uint64 { return (x - ones) & ^x & highs }
	n := 0
	for ; len(s)-n >= 8; n += 8 {
		x := binary.LittleEndian.Uint64(s[n:])
		bad := x&highs | // not ASCII
			(x-ones*0x20)&^x&highs | // control character
			zero(x^(ones*'"')) | zero(x^(ones*'\\')) |
			zero(x^(ones*'<')) | zero(x^(ones*'>')) | zero(x^(ones*'&'))
		if bad != 0 {
			break
		}
	}
	return n
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
