package elasticsearch

import (
	"testing"
	"time"
)

func TestIndexPatternFormat(t *testing.T) {
	t.Parallel()
	// 23:30 on 31 December 2024 in New York is already 1 January 2025 in
	// UTC; 2024-12-30 is in ISO week 1 of 2025.
	ny := time.FixedZone("EST", -5*3600)
	tests := []struct {
		pattern string
		t       time.Time
		want    string
	}{
		{DefaultIndex, time.Date(2024, 3, 9, 12, 0, 0, 0, time.UTC), "docker-20240309"},
		{DefaultIndex, time.Date(2024, 12, 31, 23, 30, 0, 0, ny), "docker-20250101"},
		{DefaultIndex, time.Date(2024, 12, 31, 23, 59, 59, 999_999_999, time.UTC), "docker-20241231"},
		{DefaultIndex, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), "docker-20250101"},
		{"logstash-%Y.%m.%d", time.Date(2024, 3, 9, 0, 0, 0, 0, time.UTC), "logstash-2024.03.09"},
		{"h-%y%m%d%H", time.Date(2024, 3, 9, 7, 0, 0, 0, time.UTC), "h-2403090" + "7"},
		{"w-%G.%V", time.Date(2024, 12, 30, 0, 0, 0, 0, time.UTC), "w-2025.01"},
		{"w-%G.%V", time.Date(2021, 1, 3, 0, 0, 0, 0, time.UTC), "w-2020.53"},
		{"d-%Y.%j", time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC), "d-2024.366"},
		{"pct-%%-%Y", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), "pct-%-2024"},
		{"fixed", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), "fixed"},
		{"%Y", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), "0001"},
		{"%Y", time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC), "9999"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.t.String(), func(t *testing.T) {
			p, err := parseIndexPattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Format(tt.t); got != tt.want {
				t.Errorf("Format = %q, want %q", got, tt.want)
			}
			if got := newIndexCache(p).name(tt.t); got != tt.want {
				t.Errorf("cached name = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIndexCacheCrossesHours(t *testing.T) {
	t.Parallel()
	p, _ := parseIndexPattern("h-%Y%m%d%H")
	c := newIndexCache(p)
	base := time.Date(2024, 6, 1, 22, 59, 59, 0, time.UTC)
	for i, want := range []string{"h-2024060122", "h-2024060123", "h-2024060200", "h-2024060123"} {
		at := base.Add(time.Duration(i) * time.Hour)
		if i == 3 {
			at = base.Add(time.Hour) // back in time: an older entry
		}
		if got := c.name(at); got != want {
			t.Errorf("name(%v) = %q, want %q", at, got, want)
		}
	}
	// Before 1970, where Unix seconds are negative.
	old := time.Date(1969, 12, 31, 23, 59, 0, 0, time.UTC)
	if got := c.name(old); got != "h-1969123123" {
		t.Errorf("name(%v) = %q", old, got)
	}
}

func TestIndexPatternPrefix(t *testing.T) {
	t.Parallel()
	for pattern, want := range map[string]string{
		"docker-%Y%m%d": "docker-", "%Y-x": "", "fixed": "fixed", "a%%b-%Y": "a%b-",
	} {
		p, err := parseIndexPattern(pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Prefix(); got != want {
			t.Errorf("Prefix(%q) = %q, want %q", pattern, got, want)
		}
	}
}
