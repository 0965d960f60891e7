package forward

import (
	"errors"
	"fmt"
	"time"

	units "github.com/docker/go-units"
)

// Option keys of the buffer every destination has, shared by all of them:
// the driver adds BufferKeys to the options it accepts once, and each
// sink's ParseConfig reads them with ParseBufferOptions.
const (
	// KeyBufferMaxSize bounds the disk buffer of one container and
	// destination: a size in json-file's syntax (decimal units: 64m is
	// 64 000 000 bytes).
	KeyBufferMaxSize = "buffer-max-size"
	// KeyBufferFull is what happens to an entry that does not fit:
	// drop-oldest (default), drop-newest or block.
	KeyBufferFull = "buffer-full"
)

// BufferKeys lists the keys of ParseBufferOptions, sorted.
var BufferKeys = []string{KeyBufferFull, KeyBufferMaxSize}

// Defaults and limits of BufferConfig.
const (
	// DefaultBufferMaxSize is the default BufferConfig.MaxSize, "64m".
	DefaultBufferMaxSize = 64_000_000
	// MinBufferMaxSize is the smallest buffer-max-size accepted, "1m".
	MinBufferMaxSize = 1_000_000
	// DefaultBlockTimeout is the default BufferConfig.BlockTimeout.
	DefaultBlockTimeout = time.Second
)

// FullPolicy says what a buffer does with an entry that does not fit.
type FullPolicy int

const (
	// DropOldest makes room by dropping the oldest entries (the default).
	// A disk buffer drops a whole segment, about a sixteenth of its
	// maximum size, at a time.
	DropOldest FullPolicy = iota
	// DropNewest drops the entry that does not fit.
	DropNewest
	// Block makes the producer wait for room, at most BlockTimeout each
	// time the buffer fills up; see BufferConfig.BlockTimeout.
	Block
)

var fullPolicyNames = [...]string{DropOldest: "drop-oldest", DropNewest: "drop-newest", Block: "block"}

func (p FullPolicy) String() string {
	if p < 0 || int(p) >= len(fullPolicyNames) {
		return fmt.Sprintf("FullPolicy(%d)", int(p))
	}
	return fullPolicyNames[p]
}

// BufferConfig configures the buffer of one destination of one container.
// The zero value means the defaults. ParseBufferOptions fills MaxSize and
// Full from --log-opt values; BlockTimeout and Budget are for the driver
// and for tests.
type BufferConfig struct {
	// MaxSize bounds the bytes a disk buffer holds (segment files and the
	// entries waiting to be written to them); default
	// DefaultBufferMaxSize (64 MB). It does not apply to in-memory
	// queues, which have their own bounds.
	MaxSize int64
	// Full is the overflow policy; default DropOldest. It applies to the
	// in-memory queue too when there is no disk buffer.
	Full FullPolicy
	// BlockTimeout bounds a wait of the Block policy; default
	// DefaultBlockTimeout (1s). A producer that has waited this long
	// without room freeing up drops its entry, and later entries are
	// dropped without waiting until room frees up: the producer (the
	// container's FIFO reader) waits at most BlockTimeout each time the
	// buffer fills up, never indefinitely.
	BlockTimeout time.Duration
	// Budget, when set, is a byte limit shared with other buffers, such
	// as one for every container and destination of the plugin; nil for
	// none. A buffer over the shared limit applies its Full policy to its
	// own entries only.
	Budget *Budget
}

// ParseBufferOptions validates buffer-max-size and buffer-full among a
// container's --log-opt values; absent options leave their field zero
// (the default). Other keys are ignored. Errors come from OptionError.
func ParseBufferOptions(opts map[string]string) (BufferConfig, error) {
	var cfg BufferConfig
	if v, ok := opts[KeyBufferMaxSize]; ok {
		n, err := units.FromHumanSize(v)
		if err != nil || n < MinBufferMaxSize {
			return BufferConfig{}, OptionError(KeyBufferMaxSize, v, "must be a size of 1m or more, such as 64m or 1g")
		}
		cfg.MaxSize = n
	}
	if v, ok := opts[KeyBufferFull]; ok {
		found := false
		for p, name := range fullPolicyNames {
			if v == name {
				cfg.Full, found = FullPolicy(p), true
			}
		}
		if !found {
			return BufferConfig{}, OptionError(KeyBufferFull, v, "must be drop-oldest, drop-newest or block")
		}
	}
	return cfg, nil
}

// ErrInvalidOption is wrapped by every error about a --log-opt value.
var ErrInvalidOption = errors.New("invalid log-opt")

// OptionError returns an error about option key that names its value and
// what is accepted, wrapping ErrInvalidOption.
func OptionError(key, value, accepted string) error {
	return fmt.Errorf("%w %s=%q: %s", ErrInvalidOption, key, value, accepted)
}
