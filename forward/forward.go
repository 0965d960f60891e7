// Package forward is what every destination shares: the Event the driver
// turns FIFO entries into, the destination contract (Destination, Sink,
// Counters) through which the driver starts sinks without knowing any by
// name, the options every destination honours (buffer-*, log-format,
// partial-merge*) with their parsing and error wording, the memory queue
// (Queue) and the byte limit (Budget) of the buffers where events wait,
// the memory of batches (Batches), and the reassembly of split lines
// (Merger, MergeStage). It knows nothing about Docker's plugin protocol.
//
// Its sub-packages: diskq is the disk buffer, outbox the machinery around
// every sink's delivery (buffer, drops, stopping, backoff), and one
// package per destination (fluentd, elasticsearch) adds its protocol.
package forward

import (
	"bytes"
	"time"
)

// Event is one log entry on its way to a destination. Sinks copy what they
// keep: the caller reuses Line after Send returns.
type Event struct {
	// Time is when dockerd read the line.
	Time time.Time
	// Source is "stdout" or "stderr".
	Source string
	// Line is the text without a trailing newline.
	Line []byte
	// Partial is set on a piece of a line dockerd split (at 16 KiB), nil
	// for a whole line.
	Partial *Partial
}

// Clone returns a copy of ev that shares no memory with it: what a sink
// keeps of an event its caller reuses.
func (ev *Event) Clone() Event {
	out := *ev
	out.Line = bytes.Clone(ev.Line)
	if ev.Partial != nil {
		p := *ev.Partial
		out.Partial = &p
	}
	return out
}

// Partial identifies one piece of a split line.
type Partial struct {
	// ID is shared by all pieces of one line.
	ID string
	// Ordinal counts pieces from 1.
	Ordinal int
	// Last is set on the final piece.
	Last bool
}

// Container describes the source of a stream of events; it does not change
// while the stream lives.
type Container struct {
	// ID is the full container ID.
	ID string
	// Name is the container name without its leading "/".
	Name string
	// Tag is the expanded log tag.
	Tag string
	// Extra holds the labels and environment variables selected by the
	// labels, labels-regex, env and env-regex options.
	Extra map[string]string
}

// ShortID returns the first 12 characters of the container's ID, as docker
// ps shows it: how sinks name the container in their messages.
func (c *Container) ShortID() string { return c.ID[:min(12, len(c.ID))] }
