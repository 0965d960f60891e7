package forward

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestJSONFields(t *testing.T) {
	tests := []struct {
		name string
		line string
		want map[string]any
	}{
		{"object", `{"level":"info","n":12345678901234567890,"ok":true,"x":null}`,
			map[string]any{"level": "info", "n": json.Number("12345678901234567890"), "ok": true, "x": nil}},
		{"nested and padded", "  {\"a\":{\"b\":[1,\"c\"]}}\t",
			map[string]any{"a": map[string]any{"b": []any{json.Number("1"), "c"}}}},
		{"empty object", `{}`, map[string]any{}},
		{"plain text", `hello {"a":1}`, nil},
		{"array", `[1,2]`, nil},
		{"two objects", `{"a":1} {"b":2}`, nil},
		{"truncated", `{"a":`, nil},
		{"looks like an object", `{not json}`, nil},
		{"empty", ``, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := JSONFields([]byte(tt.line))
			if ok != (tt.want != nil) {
				t.Fatalf("JSONFields(%q) ok = %v, want %v", tt.line, ok, tt.want != nil)
			}
			if ok && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("JSONFields(%q) = %#v, want %#v", tt.line, got, tt.want)
			}
		})
	}
}

func FuzzJSONFields(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{}`, `{"a":{"b":[]}}`, `x`, `{"a":"\u00e9"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		fields, ok := JSONFields(line)
		if !ok {
			return
		}
		if _, err := json.Marshal(fields); err != nil {
			t.Fatalf("fields of %q do not marshal: %v", line, err)
		}
	})
}
