package driver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"testing"
	"testing/iotest"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// entrySchema is LogEntry as dockerd's entry.proto declares it, built at
// test time so that the real protobuf runtime can check our codec.
var entrySchema = sync.OnceValue(func() protoreflect.MessageDescriptor {
	return buildSchema(descriptorpb.FieldDescriptorProto_TYPE_STRING, true)
})

// wireSchema is LogEntry with the same wire format but bytes instead of
// strings and attrs left unparsed: it accepts exactly what our decoder
// accepts (dockerd's gogo decoder never checked UTF-8 and ours skips attrs),
// so the fuzz target can compare the two on arbitrary input.
var wireSchema = sync.OnceValue(func() protoreflect.MessageDescriptor {
	return buildSchema(descriptorpb.FieldDescriptorProto_TYPE_BYTES, false)
})

func buildSchema(text descriptorpb.FieldDescriptorProto_Type, attrMessages bool) protoreflect.MessageDescriptor {
	const (
		optional = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		repeated = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		message  = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	)
	field := func(name string, num int32, label descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{
			Name:     proto.String(name),
			JsonName: proto.String(name),
			Number:   proto.Int32(num),
			Label:    label.Enum(),
			Type:     typ.Enum(),
		}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	attrs := field("attrs", 6, repeated, descriptorpb.FieldDescriptorProto_TYPE_BYTES, "")
	if attrMessages {
		attrs = field("attrs", 6, repeated, message, ".logdriver.LogAttr")
	}
	file := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("entry.proto"),
		Package: proto.String("logdriver"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("LogEntry"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("source", 1, optional, text, ""),
				field("time_nano", 2, optional, descriptorpb.FieldDescriptorProto_TYPE_INT64, ""),
				field("line", 3, optional, descriptorpb.FieldDescriptorProto_TYPE_BYTES, ""),
				field("partial", 4, optional, descriptorpb.FieldDescriptorProto_TYPE_BOOL, ""),
				field("partial_log_metadata", 5, optional, message, ".logdriver.PartialLogEntryMetadata"),
				attrs,
			},
		}, {
			Name: proto.String("PartialLogEntryMetadata"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("last", 1, optional, descriptorpb.FieldDescriptorProto_TYPE_BOOL, ""),
				field("id", 2, optional, text, ""),
				field("ordinal", 3, optional, descriptorpb.FieldDescriptorProto_TYPE_INT32, ""),
			},
		}, {
			Name: proto.String("LogAttr"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("key", 1, optional, descriptorpb.FieldDescriptorProto_TYPE_STRING, ""),
				field("value", 2, optional, descriptorpb.FieldDescriptorProto_TYPE_STRING, ""),
			},
		}},
	}
	fd, err := protodesc.NewFile(file, nil)
	if err != nil {
		panic(fmt.Sprintf("build LogEntry descriptor: %v", err))
	}
	return fd.Messages().ByName("LogEntry")
}

// textValue returns b as the value of a string or bytes field.
func textValue(fd protoreflect.FieldDescriptor, b []byte) protoreflect.Value {
	if fd.Kind() == protoreflect.StringKind {
		return protoreflect.ValueOfString(string(b))
	}
	return protoreflect.ValueOfBytes(b)
}

// textOf returns the value of a string or bytes field as bytes.
func textOf(m protoreflect.Message, fd protoreflect.FieldDescriptor) []byte {
	if fd.Kind() == protoreflect.StringKind {
		return []byte(m.Get(fd).String())
	}
	return m.Get(fd).Bytes()
}

// toProto builds the protobuf message for e, setting only non-default
// fields as a generated proto3 message would hold them.
func toProto(md protoreflect.MessageDescriptor, e *LogEntry) *dynamicpb.Message {
	m := dynamicpb.NewMessage(md)
	f := md.Fields()
	if e.Source != "" {
		m.Set(f.ByNumber(1), textValue(f.ByNumber(1), []byte(e.Source)))
	}
	if e.TimeNano != 0 {
		m.Set(f.ByNumber(2), protoreflect.ValueOfInt64(e.TimeNano))
	}
	if len(e.Line) != 0 {
		m.Set(f.ByNumber(3), protoreflect.ValueOfBytes(e.Line))
	}
	if e.Partial {
		m.Set(f.ByNumber(4), protoreflect.ValueOfBool(true))
	}
	if e.HasPartialMeta {
		meta := m.Mutable(f.ByNumber(5)).Message()
		mf := meta.Descriptor().Fields()
		if e.PartialLast {
			meta.Set(mf.ByNumber(1), protoreflect.ValueOfBool(true))
		}
		if len(e.PartialID) != 0 {
			meta.Set(mf.ByNumber(2), textValue(mf.ByNumber(2), e.PartialID))
		}
		if e.PartialOrdinal != 0 {
			meta.Set(mf.ByNumber(3), protoreflect.ValueOfInt32(e.PartialOrdinal))
		}
	}
	return m
}

// fromProto reads a LogEntry back from a protobuf message.
func fromProto(m protoreflect.Message) LogEntry {
	f := m.Descriptor().Fields()
	e := LogEntry{
		Source:   string(textOf(m, f.ByNumber(1))),
		TimeNano: m.Get(f.ByNumber(2)).Int(),
		Line:     m.Get(f.ByNumber(3)).Bytes(),
		Partial:  m.Get(f.ByNumber(4)).Bool(),
	}
	if m.Has(f.ByNumber(5)) {
		meta := m.Get(f.ByNumber(5)).Message()
		mf := meta.Descriptor().Fields()
		e.HasPartialMeta = true
		e.PartialLast = meta.Get(mf.ByNumber(1)).Bool()
		e.PartialID = textOf(meta, mf.ByNumber(2))
		e.PartialOrdinal = int32(meta.Get(mf.ByNumber(3)).Int())
	}
	return e
}

func sameEntry(a, b *LogEntry) bool {
	return a.Source == b.Source && a.TimeNano == b.TimeNano && bytes.Equal(a.Line, b.Line) &&
		a.Partial == b.Partial && a.HasPartialMeta == b.HasPartialMeta && a.PartialLast == b.PartialLast &&
		bytes.Equal(a.PartialID, b.PartialID) && a.PartialOrdinal == b.PartialOrdinal
}

func show(e *LogEntry) string {
	return fmt.Sprintf("{Source:%q TimeNano:%d Line:%q Partial:%t HasPartialMeta:%t PartialLast:%t PartialID:%q PartialOrdinal:%d}",
		e.Source, e.TimeNano, e.Line, e.Partial, e.HasPartialMeta, e.PartialLast, e.PartialID, e.PartialOrdinal)
}

// frameOf prefixes body with its length.
func frameOf(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// Builders of hand-made protobuf fields.

func pbVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func pbBytes(num protowire.Number, v string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func pbFixed32(num protowire.Number, v uint32) []byte {
	return protowire.AppendFixed32(protowire.AppendTag(nil, num, protowire.Fixed32Type), v)
}

func pbFixed64(num protowire.Number, v uint64) []byte {
	return protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), v)
}

func pbGroup(num protowire.Number, body []byte) []byte {
	return protowire.AppendGroup(protowire.AppendTag(nil, num, protowire.StartGroupType), num, body)
}

func pbTag(num protowire.Number, typ protowire.Type) []byte {
	return protowire.AppendTag(nil, num, typ)
}

func cat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

var allBytes = func() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

// sampleEntries are entries whose encoding and decoding must match protobuf.
var sampleEntries = []struct {
	name string
	e    LogEntry
}{
	{"empty", LogEntry{}},
	{"stdout", LogEntry{Source: "stdout", TimeNano: 1700000000123456789, Line: []byte("hello world")}},
	{"stderr", LogEntry{Source: "stderr", TimeNano: 1, Line: []byte("oops")}},
	{"other source", LogEntry{Source: "journald", Line: []byte("x")}},
	{"unicode source", LogEntry{Source: "flüssig ☃", Line: []byte("x")}},
	{"negative time", LogEntry{Source: "stdout", TimeNano: -1}},
	{"min time", LogEntry{TimeNano: math.MinInt64}},
	{"max time", LogEntry{TimeNano: math.MaxInt64}},
	{"binary line", LogEntry{Line: allBytes}},
	{"16 KiB line", LogEntry{Source: "stdout", Line: bytes.Repeat([]byte("0123456789abcdef"), 1024)}},
	{"partial without metadata", LogEntry{Source: "stdout", Line: []byte("piece"), Partial: true}},
	{"partial first", LogEntry{Source: "stdout", Line: []byte("a"), Partial: true,
		HasPartialMeta: true, PartialID: []byte("4b1d0e2c"), PartialOrdinal: 1}},
	{"partial last", LogEntry{Source: "stderr", Line: []byte("z"),
		HasPartialMeta: true, PartialLast: true, PartialID: []byte("4b1d0e2c"), PartialOrdinal: 7}},
	{"empty metadata", LogEntry{HasPartialMeta: true}},
	{"negative ordinal", LogEntry{HasPartialMeta: true, PartialOrdinal: -5}},
	{"max ordinal", LogEntry{HasPartialMeta: true, PartialOrdinal: math.MaxInt32}},
	{"min ordinal", LogEntry{HasPartialMeta: true, PartialOrdinal: math.MinInt32}},
}

func TestDecodeProtoMarshal(t *testing.T) {
	for _, tc := range sampleEntries {
		t.Run(tc.name, func(t *testing.T) {
			body, err := proto.MarshalOptions{Deterministic: true}.Marshal(toProto(entrySchema(), &tc.e))
			if err != nil {
				t.Fatal(err)
			}
			frame := frameOf(body)
			d := NewDecoder(bytes.NewReader(frame), 0)
			var got LogEntry
			if err := d.Decode(&got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !sameEntry(&got, &tc.e) {
				t.Errorf("Decode = %s, want %s", show(&got), show(&tc.e))
			}
			if err := d.Decode(&got); err != io.EOF {
				t.Errorf("second Decode = %v, want io.EOF", err)
			}
			if enc := AppendFrame(nil, &tc.e); !bytes.Equal(enc, frame) {
				t.Errorf("AppendFrame = %x, protobuf frame = %x", enc, frame)
			}
		})
	}
}

func TestAppendFrameProtoUnmarshal(t *testing.T) {
	for _, tc := range sampleEntries {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("prefix")
			frame := AppendFrame(prefix, &tc.e)
			if !bytes.HasPrefix(frame, prefix) {
				t.Fatalf("AppendFrame lost dst: %q", frame)
			}
			frame = frame[len(prefix):]
			if n := binary.BigEndian.Uint32(frame); int(n) != len(frame)-4 {
				t.Fatalf("length prefix %d, body has %d bytes", n, len(frame)-4)
			}
			m := dynamicpb.NewMessage(entrySchema())
			if err := proto.Unmarshal(frame[4:], m); err != nil {
				t.Fatalf("proto.Unmarshal: %v", err)
			}
			if got := fromProto(m); !sameEntry(&got, &tc.e) {
				t.Errorf("proto.Unmarshal = %s, want %s", show(&got), show(&tc.e))
			}
		})
	}
}

// TestAppendFrameMetadataFields checks that metadata set without
// HasPartialMeta is written rather than dropped.
func TestAppendFrameMetadataFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    LogEntry
	}{
		{"last", LogEntry{PartialLast: true}},
		{"id", LogEntry{PartialID: []byte("id")}},
		{"ordinal", LogEntry{PartialOrdinal: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got LogEntry
			if err := NewDecoder(bytes.NewReader(AppendFrame(nil, &tc.e)), 0).Decode(&got); err != nil {
				t.Fatal(err)
			}
			want := tc.e
			want.HasPartialMeta = true
			if !sameEntry(&got, &want) {
				t.Errorf("got %s, want %s", show(&got), show(&want))
			}
		})
	}
}

// bodyCases are hand-made LogEntry message bodies.
var bodyCases = []struct {
	name string
	body []byte
	want LogEntry
	// err is the kind of failure; nil for a valid body.
	err error
	// protoAccepts is set where protobuf-go accepts a body we reject: it
	// keeps a known field with the wrong wire type as an unknown field,
	// while dockerd's gogo decoder (and we) reject the message.
	protoAccepts bool
}{
	{name: "zero length", body: nil},
	{
		name: "unknown fields",
		body: cat(pbVarint(99, 7), pbBytes(3, "x"), pbFixed32(100, 1), pbFixed64(101, 2),
			pbBytes(102, "junk"), pbGroup(103, cat(pbVarint(1, 1), pbGroup(2, pbBytes(3, "in")))),
			pbVarint(protowire.MaxValidNumber, 1)),
		want: LogEntry{Line: []byte("x")},
	},
	{
		name: "unknown fields in metadata",
		body: pbBytes(5, string(cat(pbVarint(9, 1), pbBytes(2, "id"), pbFixed64(10, 0), pbGroup(11, nil)))),
		want: LogEntry{HasPartialMeta: true, PartialID: []byte("id")},
	},
	{
		name: "attrs skipped",
		body: cat(pbBytes(6, string(cat(pbBytes(1, "k"), pbBytes(2, "v")))), pbBytes(3, "line"), pbBytes(6, "")),
		want: LogEntry{Line: []byte("line")},
	},
	{
		name: "last scalar wins",
		body: cat(pbBytes(1, "stdout"), pbVarint(2, 1), pbBytes(3, "first"), pbVarint(4, 1),
			pbBytes(1, "stderr"), pbVarint(2, 2), pbBytes(3, "second"), pbVarint(4, 0)),
		want: LogEntry{Source: "stderr", TimeNano: 2, Line: []byte("second")},
	},
	{
		name: "metadata merged",
		body: cat(pbBytes(5, string(cat(pbVarint(1, 1), pbBytes(2, "a")))), pbBytes(3, "x"),
			pbBytes(5, string(pbVarint(3, 2))), pbBytes(5, string(pbBytes(2, "b")))),
		want: LogEntry{Line: []byte("x"), HasPartialMeta: true, PartialLast: true, PartialID: []byte("b"), PartialOrdinal: 2},
	},
	{
		name: "fields out of order",
		body: cat(pbBytes(5, string(pbVarint(1, 1))), pbVarint(4, 1), pbBytes(3, "l"), pbVarint(2, 5), pbBytes(1, "stdout")),
		want: LogEntry{Source: "stdout", TimeNano: 5, Line: []byte("l"), Partial: true, HasPartialMeta: true, PartialLast: true},
	},
	{
		name: "explicit defaults",
		body: cat(pbBytes(1, ""), pbVarint(2, 0), pbBytes(3, ""), pbVarint(4, 0)),
		want: LogEntry{Line: []byte{}},
	},
	{
		name: "bool from any non-zero varint",
		body: cat(pbVarint(4, 2), pbBytes(5, string(pbVarint(1, 1<<40)))),
		want: LogEntry{Partial: true, HasPartialMeta: true, PartialLast: true},
	},
	{
		name: "int32 truncated from 64-bit varint",
		body: pbBytes(5, string(pbVarint(3, 1<<32+5))),
		want: LogEntry{HasPartialMeta: true, PartialOrdinal: 5},
	},
	{
		name: "overlong varint",
		body: cat([]byte{0x10, 0x81, 0x80, 0x80, 0x00}),
		want: LogEntry{TimeNano: 1},
	},
	{name: "truncated tag", body: []byte{0x80}, err: ErrCorruptFrame},
	{name: "truncated varint", body: []byte{0x10, 0x80}, err: ErrCorruptFrame},
	{name: "varint overflow", body: []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, err: ErrCorruptFrame},
	{name: "bytes past end", body: []byte{0x1a, 0x05, 'a'}, err: ErrCorruptFrame},
	{name: "huge bytes length", body: []byte{0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'}, err: ErrCorruptFrame},
	{name: "truncated fixed64", body: cat(pbTag(9, protowire.Fixed64Type), []byte{1, 2, 3}), err: ErrCorruptFrame},
	{name: "field number zero", body: []byte{0x00, 0x00}, err: ErrCorruptFrame},
	{name: "field number above the maximum", body: pbVarint(protowire.MaxValidNumber+1, 1), err: ErrCorruptFrame},
	{name: "end group without start", body: pbTag(7, protowire.EndGroupType), err: ErrCorruptFrame},
	{name: "unterminated group", body: cat(pbTag(7, protowire.StartGroupType), pbVarint(1, 1)), err: ErrCorruptFrame},
	{name: "mismatched group end", body: cat(pbTag(7, protowire.StartGroupType), pbTag(8, protowire.EndGroupType)), err: ErrCorruptFrame},
	{name: "reserved wire type", body: pbTag(7, 6), err: ErrCorruptFrame},
	{name: "corrupt metadata", body: pbBytes(5, "\x80"), err: ErrCorruptFrame},
	{name: "corrupt after good fields", body: cat(pbBytes(3, "x"), []byte{0x80}), err: ErrCorruptFrame},
	{name: "source as fixed32", body: pbFixed32(1, 0), err: ErrCorruptFrame, protoAccepts: true},
	{name: "time as bytes", body: pbBytes(2, "1"), err: ErrCorruptFrame, protoAccepts: true},
	{name: "line as varint", body: pbVarint(3, 1), err: ErrCorruptFrame, protoAccepts: true},
	{name: "partial as fixed64", body: pbFixed64(4, 1), err: ErrCorruptFrame, protoAccepts: true},
	{name: "metadata as varint", body: pbVarint(5, 1), err: ErrCorruptFrame, protoAccepts: true},
	{name: "attrs as group", body: pbGroup(6, nil), err: ErrCorruptFrame, protoAccepts: true},
	{name: "metadata last as bytes", body: pbBytes(5, string(pbBytes(1, "x"))), err: ErrCorruptFrame, protoAccepts: true},
	{name: "metadata id as varint", body: pbBytes(5, string(pbVarint(2, 1))), err: ErrCorruptFrame, protoAccepts: true},
	{name: "metadata ordinal as fixed32", body: pbBytes(5, string(pbFixed32(3, 1))), err: ErrCorruptFrame, protoAccepts: true},
}

func TestDecodeBodies(t *testing.T) {
	good := LogEntry{Source: "stdout", Line: []byte("next")}
	for _, tc := range bodyCases {
		t.Run(tc.name, func(t *testing.T) {
			// Each body is followed by a good frame, which must decode
			// whatever happened to the first.
			stream := append(frameOf(tc.body), AppendFrame(nil, &good)...)
			d := NewDecoder(bytes.NewReader(stream), 0)
			var got LogEntry
			err := d.Decode(&got)
			switch {
			case tc.err == nil && err != nil:
				t.Fatalf("Decode: %v", err)
			case tc.err == nil && !sameEntry(&got, &tc.want):
				t.Errorf("Decode = %s, want %s", show(&got), show(&tc.want))
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Errorf("Decode error = %v, want %v", err, tc.err)
			case errors.Is(err, io.ErrUnexpectedEOF):
				t.Errorf("Decode error %v reads as the end of the stream", err)
			}
			if err := d.Decode(&got); err != nil || !sameEntry(&got, &good) {
				t.Errorf("next Decode = %s, %v; want %s", show(&got), err, show(&good))
			}
			if err := d.Decode(&got); err != io.EOF {
				t.Errorf("last Decode = %v, want io.EOF", err)
			}

			m := dynamicpb.NewMessage(entrySchema())
			perr := proto.Unmarshal(tc.body, m)
			switch {
			case tc.err == nil && perr != nil:
				t.Errorf("proto.Unmarshal: %v", perr)
			case tc.err == nil:
				if want := fromProto(m); !sameEntry(&want, &tc.want) {
					t.Errorf("proto.Unmarshal = %s, want %s", show(&want), show(&tc.want))
				}
			case tc.protoAccepts && perr != nil:
				t.Errorf("proto.Unmarshal: %v, want it to accept the body", perr)
			case !tc.protoAccepts && perr == nil:
				t.Errorf("proto.Unmarshal accepted the body")
			}
		})
	}
}

// TestDecodeInvalidUTF8 checks that strings are not validated, as dockerd's
// decoder never did, where protobuf-go rejects the message.
func TestDecodeInvalidUTF8(t *testing.T) {
	body := cat(pbBytes(1, "std\xffout"), pbBytes(5, string(pbBytes(2, "\xc3"))))
	var got LogEntry
	if err := NewDecoder(bytes.NewReader(frameOf(body)), 0).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := LogEntry{Source: "std\xffout", HasPartialMeta: true, PartialID: []byte("\xc3")}
	if !sameEntry(&got, &want) {
		t.Errorf("Decode = %s, want %s", show(&got), show(&want))
	}
	if err := proto.Unmarshal(body, dynamicpb.NewMessage(entrySchema())); err == nil {
		t.Error("proto.Unmarshal accepted invalid UTF-8; the test no longer shows a difference")
	}
}

// step is the expected result of one Decode.
type step struct {
	want *LogEntry
	err  error
}

func TestDecodeStream(t *testing.T) {
	stdout := LogEntry{Source: "stdout", TimeNano: 42, Line: []byte("good line")}
	stderr := LogEntry{Source: "stderr", TimeNano: 43, Line: []byte("other line"), Partial: true,
		HasPartialMeta: true, PartialID: []byte("id"), PartialOrdinal: 1}
	big := LogEntry{Source: "stdout", Line: bytes.Repeat([]byte("x"), 100)}
	bigFrame := AppendFrame(nil, &big)
	good := AppendFrame(nil, &stdout)
	ok := func(e *LogEntry) step { return step{want: e} }
	fail := func(err error) step { return step{err: err} }

	// growing lines make the buffer grow and move data in it.
	var growing []byte
	var growSteps []step
	for i := 0; i < 9000; i += 997 {
		e := &LogEntry{Source: "stdout", Line: bytes.Repeat([]byte{'a' + byte(i%26)}, i)}
		growing = AppendFrame(growing, e)
		growSteps = append(growSteps, ok(e))
	}

	for _, tc := range []struct {
		name     string
		stream   []byte
		maxFrame int
		steps    []step
	}{
		{"empty stream", nil, 0, []step{fail(io.EOF), fail(io.EOF)}},
		{"one frame", good, 0, []step{ok(&stdout), fail(io.EOF)}},
		{"two frames", cat(good, AppendFrame(nil, &stderr)), 0, []step{ok(&stdout), ok(&stderr), fail(io.EOF)}},
		{"zero-length frame", cat(frameOf(nil), good, frameOf(nil)), 0,
			[]step{ok(&LogEntry{}), ok(&stdout), ok(&LogEntry{}), fail(io.EOF)}},
		{"corrupt frames then good", cat(frameOf([]byte{0x80}), frameOf(pbVarint(3, 1)), good), 0,
			[]step{fail(ErrCorruptFrame), fail(ErrCorruptFrame), ok(&stdout), fail(io.EOF)}},
		{"oversized then good", cat(bigFrame, good), 64, []step{fail(ErrFrameTooLarge), ok(&stdout), fail(io.EOF)}},
		{"good, oversized, good", cat(good, bigFrame, bigFrame, good), 64,
			[]step{ok(&stdout), fail(ErrFrameTooLarge), fail(ErrFrameTooLarge), ok(&stdout), fail(io.EOF)}},
		{"frame exactly at the limit", bigFrame, len(bigFrame) - 4, []step{ok(&big), fail(io.EOF)}},
		{"frame one byte over the limit", bigFrame, len(bigFrame) - 5, []step{fail(ErrFrameTooLarge), fail(io.EOF)}},
		{"default limit", cat(frameOf(make([]byte, DefaultMaxFrame+1)), good), 0,
			[]step{fail(ErrFrameTooLarge), ok(&stdout), fail(io.EOF)}},
		{"growing frames", growing, 0, append(growSteps, fail(io.EOF))},
		{"growing frames over a small limit", growing, 4096, []step{
			growSteps[0], growSteps[1], growSteps[2], growSteps[3], growSteps[4],
			fail(ErrFrameTooLarge), fail(ErrFrameTooLarge), fail(ErrFrameTooLarge), fail(ErrFrameTooLarge),
			fail(ErrFrameTooLarge), fail(io.EOF)}},
		{"truncated header", []byte{0, 0}, 0, []step{fail(io.ErrUnexpectedEOF)}},
		{"truncated body", good[:len(good)-1], 0, []step{fail(io.ErrUnexpectedEOF)}},
		{"good then truncated header", cat(good, good[:3]), 0, []step{ok(&stdout), fail(io.ErrUnexpectedEOF)}},
		{"good then header only", cat(good, good[:4]), 0, []step{ok(&stdout), fail(io.ErrUnexpectedEOF)}},
		{"ends inside an oversized frame", bigFrame[:50], 10, []step{fail(ErrFrameTooLarge), fail(io.ErrUnexpectedEOF)}},
		{"4 GiB frame length", cat([]byte{0xff, 0xff, 0xff, 0xff}, good), 0,
			[]step{fail(ErrFrameTooLarge), fail(io.ErrUnexpectedEOF)}},
	} {
		for _, rd := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{
			{"whole", func(r io.Reader) io.Reader { return r }},
			{"one byte", iotest.OneByteReader},
			{"half", iotest.HalfReader},
			{"data with EOF", iotest.DataErrReader},
		} {
			for _, release := range []bool{false, true} {
				name := tc.name + "/" + rd.name
				if release {
					name += "/release"
				}
				t.Run(name, func(t *testing.T) {
					testDecodeSteps(t, rd.wrap(bytes.NewReader(tc.stream)), tc.maxFrame, tc.steps, release)
				})
			}
		}
	}
}

// testDecodeSteps decodes r with a Decoder of the given limit and checks the
// outcome of each Decode against steps. With release, each is checked
// before a Release, which must drop the buffer if it holds nothing.
func testDecodeSteps(t *testing.T, r io.Reader, maxFrame int, steps []step, release bool) {
	d := NewDecoder(r, maxFrame)
	limit := maxFrame
	if limit <= 0 {
		limit = DefaultMaxFrame
	}
	for i, s := range steps {
		if release {
			d.Release()
			if empty := d.Buffered() == 0 && d.skip == 0; empty != (d.buf == nil) {
				t.Fatalf("Release before Decode %d: %d bytes buffered, %d to skip, buffer kept %v", i, d.Buffered(), d.skip, d.buf != nil)
			}
		}
		var got LogEntry
		err := d.Decode(&got)
		if cap(d.buf) > 4+limit {
			t.Fatalf("Decode %d: buffer of %d bytes, limit %d", i, cap(d.buf), limit)
		}
		if s.err != nil {
			if !errors.Is(err, s.err) {
				t.Fatalf("Decode %d: error %v, want %v", i, err, s.err)
			}
			if (s.err == io.EOF || s.err == io.ErrUnexpectedEOF) && err != s.err {
				t.Fatalf("Decode %d: error %v, want %v unwrapped", i, err, s.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Decode %d: %v", i, err)
		}
		if !sameEntry(&got, s.want) {
			t.Fatalf("Decode %d = %s, want %s", i, show(&got), show(s.want))
		}
	}
}

func TestDecodeHugeLimit(t *testing.T) {
	e := LogEntry{Source: "stdout", Line: []byte("line")}
	d := NewDecoder(bytes.NewReader(AppendFrame(nil, &e)), math.MaxInt)
	var got LogEntry
	if err := d.Decode(&got); err != nil || !sameEntry(&got, &e) {
		t.Fatalf("Decode = %s, %v", show(&got), err)
	}
	if err := d.Decode(&got); err != io.EOF {
		t.Fatalf("Decode = %v, want io.EOF", err)
	}
}

// TestDecodeLeavesEntryOnError checks that a failed Decode does not touch e.
func TestDecodeLeavesEntryOnError(t *testing.T) {
	stream := cat(frameOf(cat(pbBytes(1, "stderr"), []byte{0x80})), frameOf(make([]byte, 100)), []byte{0, 0})
	d := NewDecoder(bytes.NewReader(stream), 10)
	want := LogEntry{Source: "stdout", Line: []byte("keep")}
	for range 3 {
		got := want
		if err := d.Decode(&got); err == nil {
			t.Fatal("Decode succeeded")
		}
		if !sameEntry(&got, &want) {
			t.Fatalf("Decode changed the entry to %s", show(&got))
		}
	}
}

// errorReader returns its data and err together, then err alone.
type errorReader struct {
	data []byte
	err  error
}

func (r *errorReader) Read(p []byte) (int, error) {
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, r.err
}

// emptyReader never returns data or an error.
type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestDecodeReadErrors(t *testing.T) {
	errBoom := errors.New("boom")
	e := LogEntry{Source: "stdout", Line: []byte("line")}
	good := AppendFrame(nil, &e)

	t.Run("error with data", func(t *testing.T) {
		d := NewDecoder(&errorReader{data: good, err: errBoom}, 0)
		var got LogEntry
		if err := d.Decode(&got); err != nil || !sameEntry(&got, &e) {
			t.Fatalf("Decode = %s, %v", show(&got), err)
		}
		err := d.Decode(&got)
		if !errors.Is(err, errBoom) || err == errBoom {
			t.Fatalf("Decode error %v, want errBoom wrapped", err)
		}
	})
	t.Run("error inside a frame", func(t *testing.T) {
		d := NewDecoder(&errorReader{data: good[:7], err: errBoom}, 0)
		var got LogEntry
		if err := d.Decode(&got); !errors.Is(err, errBoom) {
			t.Fatalf("Decode error %v, want errBoom", err)
		}
	})
	t.Run("decoding resumes after a transient error", func(t *testing.T) {
		d := NewDecoder(iotest.TimeoutReader(iotest.OneByteReader(bytes.NewReader(cat(good, good)))), 0)
		var got LogEntry
		if err := d.Decode(&got); !errors.Is(err, iotest.ErrTimeout) {
			t.Fatalf("first Decode error %v, want ErrTimeout", err)
		}
		for i := range 2 {
			if err := d.Decode(&got); err != nil || !sameEntry(&got, &e) {
				t.Fatalf("Decode %d = %s, %v", i, show(&got), err)
			}
		}
		if err := d.Decode(&got); err != io.EOF {
			t.Fatalf("last Decode = %v, want io.EOF", err)
		}
	})
	t.Run("no progress", func(t *testing.T) {
		var got LogEntry
		if err := NewDecoder(emptyReader{}, 0).Decode(&got); !errors.Is(err, io.ErrNoProgress) {
			t.Fatalf("Decode error %v, want io.ErrNoProgress", err)
		}
	})
}

func TestDecoderBuffered(t *testing.T) {
	e := LogEntry{Source: "stdout", Line: []byte("line")}
	good := AppendFrame(nil, &e)
	var d *Decoder
	check := func(step string, wantErr error, want int) {
		t.Helper()
		var got LogEntry
		if err := d.Decode(&got); !errors.Is(err, wantErr) {
			t.Fatalf("%s: Decode error %v, want %v", step, err, wantErr)
		}
		if n := d.Buffered(); n != want {
			t.Fatalf("%s: Buffered = %d, want %d", step, n, want)
		}
	}

	d = NewDecoder(bytes.NewReader(cat(good, good, good)), 0)
	if n := d.Buffered(); n != 0 {
		t.Fatalf("Buffered before Decode = %d", n)
	}
	check("first", nil, 2*len(good))
	check("second", nil, len(good))
	check("third", nil, 0)
	check("end", io.EOF, 0)

	// With a limit of 20 the buffer holds 24 bytes: the first read takes
	// the good frame and 6 bytes of the oversized one, which Buffered
	// stops counting once Decode has seen the frame's length.
	if len(good) != 18 {
		t.Fatalf("good frame has %d bytes; fix the test", len(good))
	}
	d = NewDecoder(bytes.NewReader(cat(good, frameOf(make([]byte, 40)), good)), 20)
	check("good", nil, 6)
	check("oversized", ErrFrameTooLarge, 0)
	check("after it", nil, 0)
	check("end", io.EOF, 0)
}

// zeroReader reads an endless stream of zero bytes.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestDecodeOversizedMemory checks that skipping a huge frame does not
// allocate it.
func TestDecodeOversizedMemory(t *testing.T) {
	const declared = 256 << 20
	e := LogEntry{Source: "stdout", Line: []byte("after")}
	r := io.MultiReader(bytes.NewReader(binary.BigEndian.AppendUint32(nil, declared)),
		io.LimitReader(zeroReader{}, declared), bytes.NewReader(AppendFrame(nil, &e)))
	d := NewDecoder(r, 0)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var got LogEntry
	if err := d.Decode(&got); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Decode error %v, want ErrFrameTooLarge", err)
	}
	if err := d.Decode(&got); err != nil || !sameEntry(&got, &e) {
		t.Fatalf("Decode = %s, %v", show(&got), err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("skipping a %d-byte frame allocated %d bytes", declared, n)
	}
}

// loopReader reads data over and over.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	if r.off == len(r.data) {
		r.off = 0
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

// loopStream returns frames of the given entries, repeated to fill at least
// 64 KiB, so that a Decoder reads it in many pieces.
func loopStream(entries ...*LogEntry) []byte {
	var one []byte
	for _, e := range entries {
		one = AppendFrame(one, e)
	}
	return bytes.Repeat(one, (64<<10)/len(one)+1)
}

func TestDecodeAllocs(t *testing.T) {
	line := bytes.Repeat([]byte("x"), 100)
	entries := []*LogEntry{
		{Source: "stdout", TimeNano: 1700000000123456789, Line: line},
		{Source: "stderr", TimeNano: 1700000000123456790, Line: line, Partial: true,
			HasPartialMeta: true, PartialID: []byte("0123456789abcdef"), PartialOrdinal: 3},
		{Source: "stdout", TimeNano: 1700000000123456791, Line: bytes.Repeat(line, 160),
			HasPartialMeta: true, PartialLast: true, PartialID: []byte("0123456789abcdef"), PartialOrdinal: 4},
	}
	tests := []struct {
		name    string
		stream  []byte
		release bool
	}{
		{"buffer kept", loopStream(entries...), false},
		// Every read ends with a frame: the buffer goes back to the pool
		// after each entry and is taken again.
		{"buffer released", AppendFrame(nil, entries[0]), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(&loopReader{data: tt.stream}, 0)
			var e LogEntry
			decode := func() {
				if err := d.Decode(&e); err != nil {
					t.Fatal(err)
				}
				if tt.release {
					d.Release()
				}
			}
			for range 1000 {
				decode() // let the buffer reach its size
			}
			if n := testing.AllocsPerRun(10000, decode); n != 0 {
				t.Errorf("Decode: %v allocations, want 0", n)
			}
		})
	}
}

func TestAppendFrameAllocs(t *testing.T) {
	e := LogEntry{Source: "stdout", TimeNano: 1700000000123456789, Line: bytes.Repeat([]byte("x"), 100),
		Partial: true, HasPartialMeta: true, PartialID: []byte("id"), PartialOrdinal: 1}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(1000, func() { buf = AppendFrame(buf[:0], &e) }); n != 0 {
		t.Errorf("AppendFrame: %v allocations, want 0", n)
	}
}

// checkReencode checks that e encodes to a frame that decodes back to e.
func checkReencode(t *testing.T, e *LogEntry) {
	t.Helper()
	d := NewDecoder(bytes.NewReader(AppendFrame(nil, e)), 0)
	var got LogEntry
	if err := d.Decode(&got); err != nil {
		t.Fatalf("decode re-encoded %s: %v", show(e), err)
	}
	if !sameEntry(&got, e) {
		t.Fatalf("re-encoded %s decodes to %s", show(e), show(&got))
	}
	if err := d.Decode(&got); err != io.EOF {
		t.Fatalf("after re-encoded frame: %v, want io.EOF", err)
	}
}

func FuzzDecode(f *testing.F) {
	// Large seeds make the fuzzer spend its time minimizing them.
	var all []byte
	for _, tc := range sampleEntries {
		if frame := AppendFrame(nil, &tc.e); len(frame) <= 128 {
			f.Add(frame, uint16(0))
			all = append(all, frame...)
		}
	}
	f.Add(all, uint16(0))
	f.Add(all, uint16(64))
	for _, tc := range bodyCases {
		f.Add(frameOf(tc.body), uint16(0))
	}
	f.Add(cat(frameOf(make([]byte, 100)), AppendFrame(nil, &sampleEntries[1].e)), uint16(50))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0}, uint16(0))
	f.Add([]byte{0, 0, 0}, uint16(0))
	f.Fuzz(func(t *testing.T, stream []byte, maxFrame uint16) {
		d := NewDecoder(bytes.NewReader(stream), int(maxFrame))
		limit := int(maxFrame)
		if limit == 0 {
			limit = DefaultMaxFrame
		}
		for {
			var e LogEntry
			err := d.Decode(&e)
			if cap(d.buf) > 4+limit {
				t.Fatalf("buffer of %d bytes, limit %d", cap(d.buf), limit)
			}
			switch {
			case err == nil:
				checkReencode(t, &e)
			case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrCorruptFrame):
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				return
			default:
				t.Fatalf("Decode: unexpected error %v", err)
			}
		}
	})
}

// FuzzUnmarshalEntry compares our message decoding with protobuf's on
// arbitrary bodies, and AppendFrame with protobuf's encoding of what both
// decoded.
func FuzzUnmarshalEntry(f *testing.F) {
	for _, tc := range bodyCases {
		f.Add(tc.body)
	}
	for _, tc := range sampleEntries {
		if frame := AppendFrame(nil, &tc.e); len(frame) <= 128 {
			f.Add(frame[4:])
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var e LogEntry
		err := unmarshalEntry(body, &e)
		m := dynamicpb.NewMessage(wireSchema())
		perr := proto.Unmarshal(body, m)
		switch {
		case err == nil && perr == nil:
			if want := fromProto(m); !sameEntry(&e, &want) {
				t.Fatalf("decoded %s, protobuf decoded %s", show(&e), show(&want))
			}
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(toProto(wireSchema(), &e))
			if err != nil {
				t.Fatal(err)
			}
			if got := AppendFrame(nil, &e)[4:]; !bytes.Equal(got, want) {
				t.Fatalf("AppendFrame(%s) = %x, protobuf = %x", show(&e), got, want)
			}
		case err != nil && perr != nil:
		case errors.Is(err, errWireType) && perr == nil:
			// protobuf-go keeps a mistyped known field as unknown.
		default:
			t.Fatalf("decode error %v, protobuf error %v", err, perr)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	e := LogEntry{Source: "stdout", TimeNano: 1700000000123456789, Line: bytes.Repeat([]byte("x"), 100)}
	stream := loopStream(&e)
	d := NewDecoder(&loopReader{data: stream}, 0)
	b.SetBytes(int64(len(AppendFrame(nil, &e))))
	b.ReportAllocs()
	var got LogEntry
	for b.Loop() {
		if err := d.Decode(&got); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	e := LogEntry{Source: "stdout", TimeNano: 1700000000123456789, Line: bytes.Repeat([]byte("x"), 100)}
	buf := AppendFrame(nil, &e)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFrame(buf[:0], &e)
	}
}

func TestDecoderResync(t *testing.T) {
	var frames []byte
	want := []LogEntry{
		{Source: "stdout", TimeNano: 1, Line: []byte("one")},
		{Source: "stderr", TimeNano: 2, Line: []byte("two"), Partial: true, HasPartialMeta: true, PartialID: []byte("p"), PartialOrdinal: 1},
		{Source: "stdout", TimeNano: 3, Line: bytes.Repeat([]byte("x"), 5000)},
	}
	for i := range want {
		frames = AppendFrame(frames, &want[i])
	}
	first := len(AppendFrame(nil, &want[0]))
	tests := []struct {
		name    string
		stream  []byte
		skipped bool
		entries []LogEntry
	}{
		{"aligned", frames, false, want},
		{"tail of a frame first", frames[first-2:], true, want[1:]},
		{"inside the header", frames[2:], true, want[1:]},
		{"garbage with a huge length first", append([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}, frames...), true, want},
		{"nothing", nil, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := NewDecoder(bytes.NewReader(tt.stream), 0)
			dec.Resync()
			var got []LogEntry
			skips := 0
			for {
				var e LogEntry
				err := dec.Decode(&e)
				if errors.Is(err, io.EOF) {
					break
				}
				if errors.Is(err, ErrCorruptFrame) {
					skips++
					continue
				}
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				e.Line, e.PartialID = bytes.Clone(e.Line), bytes.Clone(e.PartialID)
				got = append(got, e)
			}
			if (skips > 0) != tt.skipped || skips > 1 {
				t.Errorf("%d skip errors, want skipped=%v reported once", skips, tt.skipped)
			}
			if len(got) != len(tt.entries) {
				t.Fatalf("decoded %d entries, want %d", len(got), len(tt.entries))
			}
			for i := range got {
				if !sameEntry(&got[i], &tt.entries[i]) {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], tt.entries[i])
				}
			}
		})
	}
}

func TestDecoderPendingContinues(t *testing.T) {
	var stream []byte
	for i := range 5 {
		stream = AppendFrame(stream, &LogEntry{Source: "stdout", TimeNano: int64(i + 1), Line: fmt.Appendf(nil, "line %d", i)})
	}
	cut := len(stream) - 7 // inside the last frame
	dec := NewDecoder(bytes.NewReader(stream[:cut]), 0)
	n := 0
	for {
		var e LogEntry
		if err := dec.Decode(&e); err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Decode: %v", err)
			}
			break
		}
		n++
	}
	pending, aligned := dec.Pending()
	if n != 4 || !aligned {
		t.Fatalf("decoded %d entries before the cut (want 4), aligned %v", n, aligned)
	}
	next := NewDecoder(io.MultiReader(bytes.NewReader(pending), bytes.NewReader(stream[cut:])), 0)
	var e LogEntry
	if err := next.Decode(&e); err != nil || string(e.Line) != "line 4" {
		t.Fatalf("continued decoder: %q, %v", e.Line, err)
	}
}
