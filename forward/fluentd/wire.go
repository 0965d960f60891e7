package fluentd

import "github.com/tinylib/msgp/msgp"

// The Forward protocol's messages (Forward Protocol Specification v1), as
// tinylib/msgp generates their encoders. eventTime and record encode
// themselves (time.go, record.go); entries are encoded once and spliced into
// whichever carrier mode is configured, so requests carry them as msgp.Raw
// or bin.

//go:generate go run github.com/tinylib/msgp@v1.6.5 -file wire.go -o wire_gen.go -tests=false -unexported

//msgp:tuple entry messageRequest forwardRequest packedRequest
//msgp:ignore eventTime record
//msgp:encode ignore entry messageRequest forwardRequest packedRequest options ackResponse
//msgp:decode ignore entry messageRequest forwardRequest packedRequest options
//msgp:unmarshal ignore entry messageRequest forwardRequest packedRequest options ackResponse
//msgp:marshal ignore ackResponse
//msgp:size ignore ackResponse

// entry is an Entry: [time, record].
type entry struct {
	Time   eventTime
	Record *record
}

// messageRequest is the Message mode: [tag, time, record, option], where
// Time and Record are the parts of an encoded entry.
type messageRequest struct {
	Tag    string
	Time   msgp.Raw
	Record msgp.Raw
	Option options
}

// forwardRequest is the Forward mode: [tag, [entry...], option], Entries
// being the encoded array.
type forwardRequest struct {
	Tag     string
	Entries msgp.Raw
	Option  options
}

// packedRequest is the PackedForward and CompressedPackedForward mode:
// [tag, bin(entry...), option].
type packedRequest struct {
	Tag     string
	Entries []byte
	Option  options
}

// options is a request's option map.
type options struct {
	// Size is the number of events in the request.
	Size int `msg:"size,omitempty"`
	// Chunk asks for an acknowledgement: base64 of 128 random bits.
	Chunk string `msg:"chunk,omitempty"`
	// Compressed is "gzip" for CompressedPackedForward.
	Compressed string `msg:"compressed,omitempty"`
}

// ackResponse is the server's answer to a request with a chunk.
type ackResponse struct {
	Ack string `msg:"ack"`
}
