package diskq

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

var testTime = time.Date(2025, 6, 7, 8, 9, 10, 123456789, time.UTC)

// formatCases are events that exercise every field of the payload.
var formatCases = []struct {
	name string
	ev   forward.Event
	seq  uint32
}{
	{"stdout", forward.Event{Time: testTime, Source: "stdout", Line: []byte("hello")}, 0},
	{"stderr with seq", forward.Event{Time: testTime, Source: "stderr", Line: []byte("oops")}, 7},
	{"other source", forward.Event{Time: testTime, Source: "journal", Line: []byte("x")}, 1 << 31},
	{"empty source and line", forward.Event{Time: testTime}, 0},
	{"zero time", forward.Event{Source: "stdout", Line: []byte("no time")}, 0},
	{"before 1970", forward.Event{Time: time.Date(1960, 1, 1, 0, 0, 0, 5, time.UTC), Source: "stdout", Line: []byte("old")}, 0},
	{"partial", forward.Event{Time: testTime, Source: "stdout", Line: bytes.Repeat([]byte("a"), 16<<10),
		Partial: &forward.Partial{ID: "abc", Ordinal: 2}}, 3},
	{"last piece", forward.Event{Time: testTime, Source: "stderr", Line: []byte("end"),
		Partial: &forward.Partial{ID: "abc", Ordinal: 300, Last: true}}, 0},
	{"negative ordinal", forward.Event{Time: testTime, Source: "stdout", Line: []byte("?"),
		Partial: &forward.Partial{ID: "", Ordinal: -1}}, 0},
	{"binary line", forward.Event{Time: testTime, Source: "stdout", Line: []byte{0, 0xff, '\n', 0x80}}, 0},
}

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range formatCases {
		t.Run(tc.name, func(t *testing.T) {
			b := sealedFrame([]byte("prefix"), &tc.ev, tc.seq)
			frame := b[len("prefix"):]
			if len(frame) != frameSize(&tc.ev, tc.seq) {
				t.Errorf("frame is %d bytes, frameSize says %d", len(frame), frameSize(&tc.ev, tc.seq))
			}
			p, end, skipped, err := nextFrame(memSource(frame), 0, int64(len(frame)))
			if err != nil || skipped || end != int64(len(frame)) {
				t.Fatalf("nextFrame: end %d skipped %v err %v", end, skipped, err)
			}
			var it forward.Item
			if err := decodePayload(p, &it); err != nil {
				t.Fatal(err)
			}
			checkEvent(t, &it, &tc.ev, tc.seq)
		})
	}
}

func checkEvent(t *testing.T, got *forward.Item, want *forward.Event, seq uint32) {
	t.Helper()
	if !got.Time.Equal(want.Time) || got.Time.IsZero() != want.Time.IsZero() {
		t.Errorf("time %v, want %v", got.Time, want.Time)
	}
	if got.Source != want.Source || !bytes.Equal(got.Line, want.Line) || got.Seq != seq {
		t.Errorf("got %q %q seq %d, want %q %q seq %d", got.Source, got.Line, got.Seq, want.Source, want.Line, seq)
	}
	if !reflect.DeepEqual(got.Partial, want.Partial) {
		t.Errorf("partial %+v, want %+v", got.Partial, want.Partial)
	}
}

// sealedFrame appends the frame of ev and seq to b as the queue writes
// it: checksums filled in.
func sealedFrame(b []byte, ev *forward.Event, seq uint32) []byte {
	start := len(b)
	b = appendFrame(b, ev, seq)
	sealFrame(b[start:])
	return b
}

func TestAppendFrameDoesNotAllocate(t *testing.T) {
	ev := forward.Event{Time: testTime, Source: "stdout", Line: []byte("a line of a usual length")}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = sealedFrame(buf[:0], &ev, 1) }); n != 0 {
		t.Errorf("appendFrame and sealFrame allocate %v times", n)
	}
}

// TestOwnFrame: a segment as the queue writes it reads back through
// ownFrame as through nextFrame, and a frame that runs past the recorded
// size is an error, not a payload.
func TestOwnFrame(t *testing.T) {
	data, starts := segmentBytes("zero", "one", "two")
	var got []string
	pos := int64(headerSize)
	for {
		p, end, err := ownFrame(memSource(data), pos, int64(len(data)))
		if err != nil {
			t.Fatalf("ownFrame at %d: %v", pos, err)
		}
		if p == nil {
			break
		}
		var it forward.Item
		if err := decodePayload(p, &it); err != nil {
			t.Fatal(err)
		}
		got = append(got, string(it.Line))
		pos = end
	}
	if want := []string{"zero", "one", "two"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, _, err := ownFrame(memSource(data), int64(starts[2]), int64(len(data)-1)); err == nil {
		t.Error("a frame past the limit read back")
	}
}

// segmentBytes builds a segment file holding the given lines.
func segmentBytes(lines ...string) (data []byte, starts []int) {
	data = make([]byte, headerSize)
	putFileHeader(data, segMagic, 1, 1)
	for i, l := range lines {
		starts = append(starts, len(data))
		data = sealedFrame(data, &forward.Event{Time: testTime, Source: "stdout", Line: []byte(l)}, uint32(i))
	}
	return data, starts
}

func decodedLines(data []byte) (lines []string, corrupt int) {
	_, corrupt = DecodeSegment(data, func(it *forward.Item) { lines = append(lines, string(it.Line)) })
	return lines, corrupt
}

func TestDecodeSegment(t *testing.T) {
	good, starts := segmentBytes("zero", "one", "two", "three")
	flip := func(off int) []byte {
		b := bytes.Clone(good)
		b[off] ^= 0x40
		return b
	}
	tests := []struct {
		name        string
		data        []byte
		want        []string
		wantCorrupt int
	}{
		{"intact", good, []string{"zero", "one", "two", "three"}, 0},
		{"payload byte flipped", flip(starts[1] + frameHeaderSize + 2), []string{"zero", "two", "three"}, 1},
		{"length flipped", flip(starts[2]), []string{"zero", "one", "three"}, 1},
		{"header checksum flipped", flip(starts[2] + 9), []string{"zero", "one", "three"}, 1},
		{"last line torn", good[:len(good)-2], []string{"zero", "one", "two"}, 1},
		{"garbage after", append(bytes.Clone(good), "garbage"...), []string{"zero", "one", "two", "three"}, 1},
		{"zeros in the middle", append(append(bytes.Clone(good[:starts[2]]), make([]byte, 100)...), good[starts[2]:]...),
			[]string{"zero", "one", "two", "three"}, 1},
		{"bad segment header", flip(3), nil, 1},
		{"header only", good[:headerSize], nil, 0},
		{"empty", nil, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines, corrupt := decodedLines(tc.data)
			if fmt.Sprint(lines) != fmt.Sprint(tc.want) || corrupt != tc.wantCorrupt {
				t.Errorf("got %q with %d corrupt, want %q with %d", lines, corrupt, tc.want, tc.wantCorrupt)
			}
		})
	}
}

// TestDecodeTornAtEveryOffset cuts a segment at every byte of its last
// frame: the earlier entries always come back, the torn one never, and a
// torn frame is one corrupt region.
func TestDecodeTornAtEveryOffset(t *testing.T) {
	good, starts := segmentBytes("first", "second", strings.Repeat("third ", 20))
	last := starts[len(starts)-1]
	for cut := last; cut <= len(good); cut++ {
		lines, corrupt := decodedLines(good[:cut])
		want, wantCorrupt := []string{"first", "second"}, 1
		switch cut {
		case last:
			wantCorrupt = 0
		case len(good):
			want, wantCorrupt = append(want, strings.Repeat("third ", 20)), 0
		}
		if fmt.Sprint(lines) != fmt.Sprint(want) || corrupt != wantCorrupt {
			t.Fatalf("cut at %d: %q with %d corrupt, want %q with %d", cut, lines, corrupt, want, wantCorrupt)
		}
	}
}

func FuzzDecodeSegment(f *testing.F) {
	good, starts := segmentBytes("zero", "one", "two")
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(good[:starts[1]+5])
	b := bytes.Clone(good)
	b[starts[1]+1] ^= 1
	f.Add(b)
	for _, tc := range formatCases {
		seg := make([]byte, headerSize)
		putFileHeader(seg, segMagic, 1, 1)
		f.Add(sealedFrame(seg, &tc.ev, tc.seq))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var items []forward.Item
		entries, corrupt := DecodeSegment(data, func(it *forward.Item) {
			cp := *it
			cp.Line = bytes.Clone(it.Line)
			items = append(items, cp)
		})
		if entries != len(items) || corrupt < 0 || corrupt > len(data)+1 {
			t.Fatalf("%d entries, %d items, %d corrupt", entries, len(items), corrupt)
		}
		// Every entry decoded must encode and decode to itself.
		for _, it := range items {
			frame := sealedFrame(nil, &it.Event, it.Seq)
			if len(frame) != frameSize(&it.Event, it.Seq) {
				t.Fatalf("frameSize %d, frame %d", frameSize(&it.Event, it.Seq), len(frame))
			}
			p, _, skipped, err := nextFrame(memSource(frame), 0, int64(len(frame)))
			if p == nil || skipped || err != nil {
				t.Fatalf("re-encoded entry does not decode")
			}
			var again forward.Item
			if err := decodePayload(p, &again); err != nil {
				t.Fatalf("re-encoded entry: %v", err)
			}
			checkEvent(t, &again, &it.Event, it.Seq)
		}
	})
}
