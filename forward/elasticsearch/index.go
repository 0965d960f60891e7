package elasticsearch

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// indexDirectives documents the strftime directives of elasticsearch-index.
// Each expands to digits of the entry's own time in UTC:
//
//	%Y  year, 4 digits        %y  year in the century, 2 digits
//	%m  month, 01-12          %d  day of the month, 01-31
//	%H  hour, 00-23           %j  day of the year, 001-366
//	%G  ISO 8601 week-based year, 4 digits
//	%V  ISO 8601 week, 01-53  %%  a literal %
const indexDirectives = "%Y %y %m %d %H %j %G %V %%"

// maxIndexName is Elasticsearch's limit on an index name, in bytes.
const maxIndexName = 255

// indexPattern is a compiled elasticsearch-index value.
type indexPattern struct {
	// parts alternate literal text and directives: a directive is a part
	// of two bytes starting with '%'; "%%" has already become "%".
	parts []indexPart
}

type indexPart struct {
	lit  string
	verb byte // 0 for a literal
}

// widths are the widths of the directives' expansions.
var widths = map[byte]int{'Y': 4, 'y': 2, 'm': 2, 'd': 2, 'H': 2, 'j': 3, 'G': 4, 'V': 2}

// parseIndexPattern compiles pattern and checks that every name it can
// produce is a legal index name: lowercase, none of \ / * ? " < > | , # :
// or white space, not starting with - _ or +, not . or .., at most 255
// bytes. The error says what is wrong, for an option error.
func parseIndexPattern(pattern string) (*indexPattern, error) {
	if pattern == "" {
		return nil, errors.New("must not be empty")
	}
	if !utf8.ValidString(pattern) {
		return nil, errors.New("must be UTF-8")
	}
	p := &indexPattern{}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p.parts = append(p.parts, indexPart{lit: lit.String()})
			lit.Reset()
		}
	}
	maxLen := 0
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '%' {
			lit.WriteByte(c)
			maxLen++
			continue
		}
		if i+1 == len(pattern) {
			return nil, fmt.Errorf("ends in a lone %%; directives are %s", indexDirectives)
		}
		i++
		v := pattern[i]
		if v == '%' {
			lit.WriteByte('%')
			maxLen++
			continue
		}
		w, ok := widths[v]
		if !ok {
			return nil, fmt.Errorf("has the unknown directive %%%c; directives are %s", v, indexDirectives)
		}
		flush()
		p.parts = append(p.parts, indexPart{verb: v})
		maxLen += w
	}
	flush()

	// Directives expand to digits only, so the literal text decides.
	for _, part := range p.parts {
		if part.verb != 0 {
			continue
		}
		for _, r := range part.lit {
			switch {
			case unicode.IsUpper(r):
				return nil, errors.New("must be lowercase")
			case strings.ContainsRune(`\/*?"<>|,#:`, r), unicode.IsSpace(r), unicode.IsControl(r):
				return nil, fmt.Errorf("must not contain %q (index names cannot hold any of \\ / * ? \" < > | , # : or white space)", r)
			}
		}
	}
	if first := p.parts[0]; first.verb == 0 && strings.ContainsRune("-_+", rune(first.lit[0])) {
		return nil, errors.New("must not start with -, _ or +")
	}
	if len(p.parts) == 1 && (p.parts[0].lit == "." || p.parts[0].lit == "..") {
		return nil, errors.New(`must not be "." or ".."`)
	}
	if maxLen > maxIndexName {
		return nil, fmt.Errorf("makes names of %d bytes, more than Elasticsearch's %d", maxLen, maxIndexName)
	}
	return p, nil
}

// Prefix is the fixed text before the first directive, the prefix of every
// name the pattern produces.
func (p *indexPattern) Prefix() string {
	if p == nil || len(p.parts) == 0 || p.parts[0].verb != 0 {
		return ""
	}
	return p.parts[0].lit
}

// Fixed reports whether the pattern has no directive.
func (p *indexPattern) Fixed() bool { return len(p.parts) == 1 && p.parts[0].verb == 0 }

// Format returns the index name for an entry logged at t.
func (p *indexPattern) Format(t time.Time) string {
	return string(p.AppendFormat(make([]byte, 0, 32), t))
}

// AppendFormat appends the index name for an entry logged at t to b.
func (p *indexPattern) AppendFormat(b []byte, t time.Time) []byte {
	t = t.UTC()
	for _, part := range p.parts {
		switch part.verb {
		case 0:
			b = append(b, part.lit...)
		case 'Y':
			b = appendInt(b, t.Year(), 4)
		case 'y':
			b = appendInt(b, t.Year()%100, 2)
		case 'm':
			b = appendInt(b, int(t.Month()), 2)
		case 'd':
			b = appendInt(b, t.Day(), 2)
		case 'H':
			b = appendInt(b, t.Hour(), 2)
		case 'j':
			b = appendInt(b, t.YearDay(), 3)
		case 'G':
			y, _ := t.ISOWeek()
			b = appendInt(b, y, 4)
		case 'V':
			_, w := t.ISOWeek()
			b = appendInt(b, w, 2)
		}
	}
	return b
}

// appendInt appends n zero-padded to width digits; n is clamped to what
// fits, so a name never grows past the length that was validated and
// never holds a '-'.
func appendInt(b []byte, n, width int) []byte {
	limit := 1
	for range width {
		limit *= 10
	}
	n = min(max(n, 0), limit-1)
	for div := limit / 10; div > 0; div /= 10 {
		b = append(b, byte('0'+n/div%10))
	}
	return b
}

// indexCache remembers the last name a pattern produced: consecutive
// entries nearly always fall in the same hour, and every directive is at
// least an hour wide. Not safe for concurrent use: each worker has its own.
type indexCache struct {
	pattern *indexPattern
	hour    int64 // Unix hour of last
	last    string
}

func newIndexCache(p *indexPattern) *indexCache { return &indexCache{pattern: p, hour: -1 << 62} }

// name returns the index name for an entry logged at t.
func (c *indexCache) name(t time.Time) string {
	if c.pattern.Fixed() {
		return c.pattern.parts[0].lit
	}
	h := floorDiv(t.Unix(), 3600)
	if h != c.hour || c.last == "" {
		c.hour, c.last = h, c.pattern.Format(t)
	}
	return c.last
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
