package s3

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logferry/logferry/forward"
)

// keyDirectives documents what s3-key expands. Time directives take the
// first line's own time in UTC:
//
//	%Y  year, 4 digits     %m  month, 01-12    %d  day, 01-31
//	%H  hour, 00-23        %M  minute, 00-59   %%  a literal %
//	{container_name}  the container's name, without the leading /
//	{container_id}    the full container ID (required)
//	{tag}             the log tag (the tag log-opt, expanded)
//	{position}        the first line's time and number (required)
const keyDirectives = "%Y %m %d %H %M %%, {container_name}, {container_id}, {tag}, {position}"

// maxKey is S3's limit on an object key, in bytes; longKey is the
// template of keys that s3-key would make longer (a very long container
// name or tag), which S3 would refuse for ever.
const (
	maxKey  = 1024
	longKey = "logs/%Y/%m/%d/%H/{container_id}/{position}.ndjson.gz"
)

// keyTemplate is a compiled s3-key value.
type keyTemplate struct {
	parts []keyPart
}

// keyPart is literal text, a time directive (verb) or a field.
type keyPart struct {
	lit   string
	verb  byte
	field string
}

// parseKeyTemplate compiles tmpl. It must name {container_id} and
// {position}, so that the objects of two containers, or two objects of
// one, never share a key, and must not start with "/". The error says what
// is wrong, for an option error.
func parseKeyTemplate(tmpl string) (*keyTemplate, error) {
	switch {
	case tmpl == "":
		return nil, errors.New("must not be empty")
	case !utf8.ValidString(tmpl):
		return nil, errors.New("must be UTF-8")
	case strings.HasPrefix(tmpl, "/"):
		return nil, errors.New("must not start with /")
	}
	t := &keyTemplate{}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, keyPart{lit: lit.String()})
			lit.Reset()
		}
	}
	seen := map[string]bool{}
	for i := 0; i < len(tmpl); i++ {
		switch c := tmpl[i]; c {
		case '%':
			if i+1 == len(tmpl) {
				return nil, fmt.Errorf("ends in a lone %%; it may use %s", keyDirectives)
			}
			i++
			switch v := tmpl[i]; v {
			case '%':
				lit.WriteByte('%')
			case 'Y', 'm', 'd', 'H', 'M':
				flush()
				t.parts = append(t.parts, keyPart{verb: v})
			default:
				return nil, fmt.Errorf("has the unknown directive %%%c; it may use %s", v, keyDirectives)
			}
		case '{':
			end := strings.IndexByte(tmpl[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("has a { without }; it may use %s", keyDirectives)
			}
			name := tmpl[i+1 : i+end]
			switch name {
			case "container_name", "container_id", "tag", "position":
			default:
				return nil, fmt.Errorf("has the unknown field {%s}; it may use %s", name, keyDirectives)
			}
			flush()
			t.parts = append(t.parts, keyPart{field: name})
			seen[name] = true
			i += end
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	for _, f := range []string{"container_id", "position"} {
		if !seen[f] {
			return nil, fmt.Errorf("must name {%s}, so that no two objects share a key", f)
		}
	}
	return t, nil
}

// position names where an object starts: its first line's time in UTC, to
// the nanosecond, and the line's number among those of that nanosecond.
// Sorting keys sorts objects by time.
func position(t time.Time, seq uint32) string {
	return t.UTC().Format("20060102T150405.000000000Z") + "-" + strconv.FormatUint(uint64(seq), 10)
}

// key returns the key of the object of container c whose first line has
// time first and number seq: t's, or longKey's when t's would pass maxKey.
func (t *keyTemplate) key(c *forward.Container, first time.Time, seq uint32) string {
	k := t.expand(c, first, seq)
	if len(k) > maxKey {
		lk, _ := parseKeyTemplate(longKey) // valid: tested
		k = lk.expand(c, first, seq)
	}
	return k
}

// expand returns what t makes of the object of container c whose first
// line has time first and number seq.
func (t *keyTemplate) expand(c *forward.Container, first time.Time, seq uint32) string {
	u := first.UTC()
	var b strings.Builder
	for _, p := range t.parts {
		switch {
		case p.verb != 0:
			var n, width int
			switch p.verb {
			case 'Y':
				n, width = u.Year(), 4
			case 'm':
				n, width = int(u.Month()), 2
			case 'd':
				n, width = u.Day(), 2
			case 'H':
				n, width = u.Hour(), 2
			case 'M':
				n, width = u.Minute(), 2
			}
			s := strconv.Itoa(n)
			for range width - len(s) {
				b.WriteByte('0')
			}
			b.WriteString(s)
		case p.field == "container_name":
			b.WriteString(strings.TrimPrefix(c.Name, "/"))
		case p.field == "container_id":
			b.WriteString(c.ID)
		case p.field == "tag":
			b.WriteString(c.Tag)
		case p.field == "position":
			b.WriteString(position(first, seq))
		default:
			b.WriteString(p.lit)
		}
	}
	return b.String()
}
