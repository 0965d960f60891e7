package forward

import (
	"bytes"
	"encoding/json"
)

// JSONFields returns the fields of line when line is exactly one JSON
// object (surrounding white space allowed); numbers are kept as
// json.Number so they are forwarded without losing precision. ok is false
// for anything else, and the line is then forwarded as plain text.
func JSONFields(line []byte) (fields map[string]any, ok bool) {
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) < 2 || trimmed[0] != '{' || trimmed[len(trimmed)-1] != '}' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil || dec.More() {
		return nil, false
	}
	return fields, true
}
