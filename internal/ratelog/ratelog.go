// Package ratelog keeps repeated messages from flooding the plugin's log:
// a sink whose destination is down, or a stream whose container writes
// faster than its destinations take, would otherwise log the same error
// for every batch or line.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Log logs each kind of message at most once per interval, and adds to
// the next one how many it held back in between. It is safe for concurrent
// use.
type Log struct {
	log   *slog.Logger
	every time.Duration

	// mu guards last and held.
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

// New returns a Log writing to log at most once every interval
// per kind.
func New(log *slog.Logger, every time.Duration) *Log {
	return &Log{log: log, every: every, last: map[string]time.Time{}, held: map[string]int{}}
}

// Info logs msg at info level unless kind was logged within the interval.
func (r *Log) Info(kind, msg string, args ...any) { r.emit(slog.LevelInfo, kind, msg, args) }

// Warn logs msg at warn level unless kind was logged within the interval.
func (r *Log) Warn(kind, msg string, args ...any) { r.emit(slog.LevelWarn, kind, msg, args) }

// Error logs msg at error level unless kind was logged within the interval.
func (r *Log) Error(kind, msg string, args ...any) { r.emit(slog.LevelError, kind, msg, args) }

func (r *Log) emit(level slog.Level, kind, msg string, args []any) {
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
