package forward

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// RateLog logs each kind of message at most once per interval, and adds to
// the next one how many it held back in between. It is safe for concurrent
// use.
type RateLog struct {
	log   *slog.Logger
	every time.Duration

	// mu guards last and held.
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

// NewRateLog returns a RateLog writing to log at most once every interval
// per kind.
func NewRateLog(log *slog.Logger, every time.Duration) *RateLog {
	return &RateLog{log: log, every: every, last: map[string]time.Time{}, held: map[string]int{}}
}

// Info logs msg at info level unless kind was logged within the interval.
func (r *RateLog) Info(kind, msg string, args ...any) { r.emit(slog.LevelInfo, kind, msg, args) }

// Warn logs msg at warn level unless kind was logged within the interval.
func (r *RateLog) Warn(kind, msg string, args ...any) { r.emit(slog.LevelWarn, kind, msg, args) }

// Error logs msg at error level unless kind was logged within the interval.
func (r *RateLog) Error(kind, msg string, args ...any) { r.emit(slog.LevelError, kind, msg, args) }

func (r *RateLog) emit(level slog.Level, kind, msg string, args []any) {
	now := time.Now()
	r.mu.Lock()
	if last, ok := r.last[kind]; ok && now.Sub(last) < r.every {
		r.held[kind]++
		r.mu.Unlock()
		return
	}
	held := r.held[kind]
	r.last[kind], r.held[kind] = now, 0
	r.mu.Unlock()
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	r.log.Log(context.Background(), level, msg, args...)
}
