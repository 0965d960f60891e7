package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRateLog(t *testing.T) {
	var buf bytes.Buffer
	r := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Hour)
	for range 3 {
		r.Error("dial", "cannot dial")
	}
	r.Warn("queue", "queue full")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "cannot dial") || !strings.Contains(lines[1], "queue full") {
		t.Fatalf("logged %q, want one line per kind", lines)
	}

	buf.Reset()
	r = New(slog.New(slog.NewTextHandler(&buf, nil)), time.Nanosecond)
	r.Error("dial", "first")
	r.held["dial"] = 2 // as if two were held back
	time.Sleep(time.Millisecond)
	r.Error("dial", "again")
	if !strings.Contains(buf.String(), "suppressed=2") {
		t.Errorf("the next message does not count what was held back: %q", buf.String())
	}
}
