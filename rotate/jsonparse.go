package rotate

import (
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// parseRecord is ParseJSON's fast path for records as AppendJSON writes
// them: one object with the keys log, stream, attrs (an object of strings)
// and time (RFC 3339 in UTC), in any order. It reports false for anything
// else, and ParseJSON then falls back to encoding/json, whose result it
// matches wherever it reports true.
func parseRecord(b []byte, e *Entry) bool {
	p := parser{b: b}
	p.space()
	if !p.consume('{') {
		return false
	}
	var out Entry
	p.space()
	if p.consume('}') {
		*e = out
		return p.end()
	}
	for {
		p.space()
		key, ok := p.rawKey()
		if !ok {
			return false
		}
		p.space()
		if !p.consume(':') {
			return false
		}
		p.space()
		switch string(key) {
		case "log":
			s, ok := p.str(nil)
			if !ok {
				return false
			}
			if s == nil {
				s = []byte{}
			}
			out.Line = s
		case "stream":
			s, ok := p.str(nil)
			if !ok {
				return false
			}
			out.Stream = streamName(s)
		case "time":
			s, ok := p.str(nil)
			if !ok || len(s) == 0 || s[len(s)-1] != 'Z' {
				return false
			}
			t, err := time.Parse(time.RFC3339, string(s))
			if err != nil {
				return false
			}
			out.Time = t
		case "attrs":
			if !p.stringObject() {
				return false
			}
		default:
			return false
		}
		p.space()
		if p.consume('}') {
			break
		}
		if !p.consume(',') {
			return false
		}
	}
	if !p.end() {
		return false
	}
	*e = out
	return true
}

// streamName returns the constant for the usual stream names, so that
// reading does not allocate them.
func streamName(s []byte) string {
	switch string(s) {
	case "stdout":
		return "stdout"
	case "stderr":
		return "stderr"
	}
	return string(s)
}

type parser struct {
	b []byte
	i int
}

func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) consume(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) end() bool {
	p.space()
	return p.i == len(p.b)
}

// rawKey returns an object key that has no escapes; keys with escapes are
// left to the slow path.
func (p *parser) rawKey() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			p.i++
			return p.b[start : p.i-1], true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// str parses a JSON string, appending its value to dst. Invalid UTF-8 is
// left to the slow path, which replaces it as encoding/json does.
func (p *parser) str(dst []byte) ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			dst = append(dst, p.b[start:p.i]...)
			p.i++
			return dst, true
		case c < 0x20:
			return nil, false
		case c == '\\':
			dst = append(dst, p.b[start:p.i]...)
			var ok bool
			if dst, ok = p.escape(dst); !ok {
				return nil, false
			}
			start = p.i
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false
			}
			p.i += size
		default:
			p.i++
		}
	}
	return nil, false
}

// escape decodes the escape sequence at p.i.
func (p *parser) escape(dst []byte) ([]byte, bool) {
	if p.i+1 >= len(p.b) {
		return nil, false
	}
	c := p.b[p.i+1]
	p.i += 2
	switch c {
	case '"', '\\', '/':
		return append(dst, c), true
	case 'b':
		return append(dst, '\b'), true
	case 'f':
		return append(dst, '\f'), true
	case 'n':
		return append(dst, '\n'), true
	case 'r':
		return append(dst, '\r'), true
	case 't':
		return append(dst, '\t'), true
	case 'u':
		r, ok := p.hex4()
		if !ok {
			return nil, false
		}
		if utf16.IsSurrogate(r) {
			// Only a valid pair is taken here; encoding/json turns a lone
			// surrogate into U+FFFD.
			if p.i+1 >= len(p.b) || p.b[p.i] != '\\' || p.b[p.i+1] != 'u' {
				return nil, false
			}
			p.i += 2
			r2, ok := p.hex4()
			if !ok {
				return nil, false
			}
			if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
				return nil, false
			}
		}
		return utf8.AppendRune(dst, r), true
	}
	return nil, false
}

func (p *parser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.i += 4
	return r, true
}

// stringObject skips an object whose values are all strings.
func (p *parser) stringObject() bool {
	if !p.consume('{') {
		return false
	}
	p.space()
	if p.consume('}') {
		return true
	}
	for {
		p.space()
		if _, ok := p.str(nil); !ok {
			return false
		}
		p.space()
		if !p.consume(':') {
			return false
		}
		p.space()
		if _, ok := p.str(nil); !ok {
			return false
		}
		p.space()
		if p.consume('}') {
			return true
		}
		if !p.consume(',') {
			return false
		}
	}
}
