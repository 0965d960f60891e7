package forward

import (
	"context"
	"log/slog"
)

// Destination is a kind of place a container's entries are sent to besides
// its files: its name, the log-opts it owns, and how to start a sink for
// one container. cmd/logferry hands the driver a list of them; the driver
// knows no destination by name.
type Destination struct {
	// Name names the destination in metrics, logs and the directory of its
	// disk buffer ("fluentd"); its own log-opts begin with Name and "-".
	Name string
	// Keys are the log-opts it owns, each beginning with Name and "-";
	// the options every destination shares (SharedKeys) are not among
	// them: each parses those with ParseSharedOptions.
	Keys []string
	// Configure checks a container's log-opts (all of them) and returns
	// what starts its sink, or nil when they leave the destination off.
	// Errors name the option, the value and what is accepted.
	Configure func(opts map[string]string) (Starter, error)
}

// Starter starts the sink of one container from the options Configure
// checked. It must not wait for the network.
type Starter func(env SinkEnv) (Sink, error)

// SinkEnv is what the driver gives a sink besides its options.
type SinkEnv struct {
	// Container describes the container whose entries the sink gets.
	Container Container
	// BufferDir is the directory of the container's disk buffer for this
	// destination; empty: entries wait in memory.
	BufferDir string
	// LogDir is the directory of the container's log files, for what a
	// destination keeps beside them (Elasticsearch's dead letters).
	LogDir string
	// Budget bounds the disk buffers of all containers and destinations
	// together; nil for none.
	Budget *Budget
	// Log receives the sink's messages.
	Log *slog.Logger
}

// Sink is the running destination of one container. Send never waits for
// the network; Close delivers what is left until ctx ends.
type Sink interface {
	Send(ev *Event)
	Flush()
	Close(ctx context.Context) error
	Counters() Counters
}

// Counters are what one destination of one container has done, in the
// shape the plugin's monitoring serves.
type Counters struct {
	// Emitted counts entries delivered: written to the file, accepted by
	// Fluentd, or indexed by Elasticsearch (409s included).
	Emitted uint64
	// Dropped counts entries lost: a full buffer, retries run out, a
	// corrupt frame or a failed file write.
	Dropped uint64
	// RetryCount counts sends made again after a failure.
	RetryCount uint64
	// CorruptRegions counts regions of the disk buffer skipped because
	// they were not intact entries (torn writes, bad checksums); what they
	// held is lost and not in Dropped.
	CorruptRegions uint64
	// BufferQueueLength and BufferTotalQueuedSize are the entries and
	// bytes waiting to be delivered.
	BufferQueueLength     int
	BufferTotalQueuedSize int64
	// Pressure is how hard the destination pushes back; nil for those
	// that never answer per entry (the file, Fluentd).
	Pressure *Pressure
	// Servers are what went to each server of a destination that has
	// several (Fluentd); nil for the others.
	Servers []ServerCounters
}

// ServerCounters are what one server of a destination got, and its state.
type ServerCounters struct {
	// Server names it: its address, and the address it resolved to.
	Server string
	// State is "up" (taking entries), "standby" (healthy, taking none
	// while another is up) or "down".
	State string
	// Weight is its share of the entries relative to the others', 0 when
	// they are not spread by weight.
	Weight int
	// Emitted counts the entries it accepted (acknowledged, or written
	// without acknowledgements) and Bytes the bytes written to it.
	Emitted, Bytes uint64
	// Acks counts the acknowledgements it sent, Failures the attempts
	// that failed (to connect, authenticate, write or be acknowledged).
	Acks, Failures uint64
}

// Pressure is how hard a destination that answers per entry
// (Elasticsearch) pushes back, and how the sink adapts.
type Pressure struct {
	// Rejected429, Rejected5xx and Rejected4xx count entries the
	// destination answered with an error: 429 (overloaded) and 5xx (or no
	// status) are sent again and count each time, 4xx (other than 409)
	// are refused for good.
	Rejected429, Rejected5xx, Rejected4xx uint64
	// RequestsInFlight is the number of requests being answered, and
	// ConcurrencyLimit how many may be at once now: from 1 to the
	// destination's workers, lower while it pushes back.
	RequestsInFlight, ConcurrencyLimit int
}

// NewDestination returns a Destination named name, with keys, whose
// Configure parses the log-opts with parse (enabled false: off) and whose
// Starter passes the parsed configuration to start.
func NewDestination[C any, S Sink](name string, keys []string, parse func(map[string]string) (C, bool, error),
	start func(cfg C, env SinkEnv) (S, error)) Destination {
	return Destination{Name: name, Keys: keys, Configure: func(opts map[string]string) (Starter, error) {
		cfg, enabled, err := parse(opts)
		if err != nil || !enabled {
			return nil, err
		}
		return func(env SinkEnv) (Sink, error) {
			s, err := start(cfg, env)
			if err != nil {
				return nil, err // not a nil S in a non-nil Sink
			}
			return s, nil
		}, nil
	}}
}
