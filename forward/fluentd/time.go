package fluentd

import (
	"encoding/binary"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// eventTimeType is the msgpack extension type of EventTime.
const eventTimeType = 0

// eventTime encodes an event's time as EventTime, or as integer seconds
// when seconds is set (Docker's default).
type eventTime struct {
	t       time.Time
	seconds bool
}

// MarshalMsg implements msgp.Marshaler. EventTime is msgpack ext type 0 of
// 8 bytes, 32-bit big-endian seconds then nanoseconds, written as fixext8
// as the specification shows (and without msgp.AppendExtension, which
// would allocate per event). Seconds are unsigned 32-bit: 1970 to 2106.
func (e eventTime) MarshalMsg(b []byte) ([]byte, error) {
	if e.seconds {
		return msgp.AppendInt64(b, e.t.Unix()), nil
	}
	b = append(b, 0xd7, eventTimeType) // fixext8, type 0
	b = binary.BigEndian.AppendUint32(b, uint32(e.t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(e.t.Nanosecond())), nil
}

// Msgsize implements msgp.Sizer.
func (e eventTime) Msgsize() int { return 10 }
