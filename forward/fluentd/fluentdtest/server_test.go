package fluentdtest

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"net"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/tinylib/msgp/msgp"
)

const chunkID = "p8n9gmxTQVC8/nh2wlKKeQ==" // the specification's example

// Builders of raw msgpack, to write valid and invalid requests by hand.

func str(s string) []byte { return msgp.AppendString(nil, s) }

func arr(elems ...[]byte) []byte {
	b := msgp.AppendArrayHeader(nil, uint32(len(elems)))
	for _, e := range elems {
		b = append(b, e...)
	}
	return b
}

// kv builds a map from alternating encoded keys and values.
func kv(pairs ...[]byte) []byte {
	b := msgp.AppendMapHeader(nil, uint32(len(pairs)/2))
	for _, p := range pairs {
		b = append(b, p...)
	}
	return b
}

func integer(n int64) []byte { return msgp.AppendInt64(nil, n) }

func eventTime(sec, nsec uint32) []byte {
	return []byte{0xd7, 0x00, byte(sec >> 24), byte(sec >> 16), byte(sec >> 8), byte(sec), byte(nsec >> 24), byte(nsec >> 16), byte(nsec >> 8), byte(nsec)}
}

func bin(b []byte) []byte { return msgp.AppendBytes(nil, b) }

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParse(t *testing.T) {
	rec := kv(str("log"), str("hello"))
	entry := arr(integer(1441588984), rec)
	entryExt := arr(eventTime(1441588984, 5), rec)
	ext8 := []byte{0xc7, 0x08, 0x00, 0x55, 0xee, 0xc4, 0xf8, 0, 0, 0, 7}
	tests := []struct {
		name   string
		raw    []byte
		mode   Mode
		events int
		errs   []string // substrings of the expected violations, in order
	}{
		{"message with integer time", arr(str("tag.a"), integer(1441588984), rec), Message, 1, nil},
		{"message with option", arr(str("tag.a"), integer(1441588984), rec, kv(str("chunk"), str(chunkID))), Message, 1, nil},
		{"message with fixext8 EventTime", arr(str("tag.a"), eventTime(1441588984, 999999999), rec), Message, 1, nil},
		{"message with ext8 EventTime", arr(str("tag.a"), ext8, rec), Message, 1, nil},
		{"forward", arr(str("t"), arr(entry, entryExt), kv(str("size"), integer(2))), Forward, 2, nil},
		{"forward without option", arr(str("t"), arr(entry)), Forward, 1, nil},
		{"packed bin", arr(str("t"), bin(cat(entry, entryExt, entry)), kv(str("size"), integer(3), str("chunk"), str(chunkID))), PackedForward, 3, nil},
		{"packed str, as out_forward sends", arr(str("t"), str(string(cat(entry, entry)))), PackedForward, 2, nil},
		{"compressed", arr(str("t"), bin(gz(t, cat(entry, entryExt))), kv(str("compressed"), str("gzip"), str("size"), integer(2))), CompressedPackedForward, 2, nil},
		{"compressed of concatenated gzip members", arr(str("t"), bin(cat(gz(t, entry), gz(t, entryExt))), kv(str("compressed"), str("gzip"))), CompressedPackedForward, 2, nil},
		{"unknown option keys are allowed", arr(str("t"), arr(entry), kv(str("fluent_signal"), integer(0), str("x"), str("y"))), Forward, 1, nil},
		{"empty packed stream", arr(str("t"), bin(nil)), PackedForward, 0, nil},

		{"not an array", kv(str("a"), str("b")), 0, 0, []string{"not an array"}},
		{"array of 1", arr(str("t")), 0, 0, []string{"1 elements"}},
		{"array of 5", arr(str("t"), integer(1), rec, kv(), kv()), 0, 0, []string{"5 elements"}},
		{"bin tag", arr(bin([]byte("t")), integer(1), rec), 0, 0, []string{"tag is a msgpack bin"}},
		{"integer tag", arr(integer(1), integer(1), rec), 0, 0, []string{"tag is a msgpack int"}},
		{"message of 2 elements", arr(str("t"), integer(1)), 0, 0, []string{"Message request has 2 elements"}},
		{"forward of 4 elements", arr(str("t"), arr(entry), kv(), kv()), 0, 0, []string{"Forward request has 4 elements"}},
		{"packed of 4 elements", arr(str("t"), bin(entry), kv(), kv()), 0, 0, []string{"PackedForward request has 4 elements"}},
		{"float time", arr(str("t"), msgp.AppendFloat64(nil, 1.5), rec), 0, 0, []string{"second element is a msgpack float64"}},
		{"EventTime of 4 bytes", arr(str("t"), []byte{0xd6, 0x00, 1, 2, 3, 4}, rec), 0, 0, []string{"neither an integer nor EventTime"}},
		{"ext type 1", arr(str("t"), []byte{0xd7, 0x01, 0, 0, 0, 1, 0, 0, 0, 0}, rec), 0, 0, []string{"neither an integer nor EventTime"}},
		{"nanoseconds out of range", arr(str("t"), eventTime(1, 1e9), rec), Message, 1, []string{"nanoseconds 1000000000"}},
		{"negative time", arr(str("t"), integer(-5), rec), Message, 1, []string{"before the epoch"}},
		{"record not a map", arr(str("t"), integer(1), arr(str("x"))), 0, 0, []string{"record is a msgpack array"}},
		{"record key not a str", arr(str("t"), integer(1), kv(integer(1), str("x"))), 0, 0, []string{"key that is a msgpack int"}},
		{"record key twice", arr(str("t"), integer(1), kv(str("a"), str("x"), str("a"), str("y"))), Message, 1, []string{`key "a" twice`}},
		{"option not a map", arr(str("t"), integer(1), rec, arr()), 0, 0, []string{"option is a msgpack array"}},
		{"size mismatch", arr(str("t"), arr(entry, entry), kv(str("size"), integer(3))), Forward, 2, []string{"option size is 3, but the request has 2 events"}},
		{"size not an integer", arr(str("t"), arr(entry), kv(str("size"), str("1"))), Forward, 1, []string{"option size is a string"}},
		{"chunk not base64 of 128 bits", arr(str("t"), arr(entry), kv(str("chunk"), str("abc"))), Forward, 1, []string{"not the base64 of 128 bits"}},
		{"chunk not a str", arr(str("t"), arr(entry), kv(str("chunk"), integer(1))), Forward, 1, []string{"option chunk is a int64"}},
		{"entry of 3 elements", arr(str("t"), arr(arr(integer(1), rec, rec))), Forward, 0, []string{"entry 0 has 3 elements"}},
		{"garbage after packed entries", arr(str("t"), bin(cat(entry, []byte{0x01}))), PackedForward, 1, []string{"entry 1 is a msgpack int"}},
		{"compressed entries not gzip", arr(str("t"), bin(entry), kv(str("compressed"), str("gzip"))), CompressedPackedForward, 0, []string{"gzip: invalid header"}},
		{"compressed entries as str", arr(str("t"), str(string(gz(t, entry))), kv(str("compressed"), str("gzip"))), CompressedPackedForward, 1, []string{"must be bin"}},
		{"gzip option on forward", arr(str("t"), arr(entry), kv(str("compressed"), str("gzip"))), Forward, 1, []string{"compressed \"gzip\" on a Forward"}},
		{"gzip entries without the option", arr(str("t"), bin(gz(t, entry))), PackedForward, 0, []string{"entry 0 is a msgpack"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, errs := Parse(tc.raw)
			if len(errs) != len(tc.errs) {
				t.Fatalf("violations %v, want %d matching %q", errs, len(tc.errs), tc.errs)
			}
			for i, err := range errs {
				if !strings.Contains(err.Error(), tc.errs[i]) {
					t.Errorf("violation %q does not contain %q", err, tc.errs[i])
				}
			}
			if tc.mode == 0 {
				if req != nil {
					t.Errorf("request %+v, want none", req)
				}
				return
			}
			if req == nil {
				t.Fatal("no request")
			}
			if req.Mode != tc.mode || len(req.Events) != tc.events {
				t.Errorf("mode %v with %d events, want %v with %d", req.Mode, len(req.Events), tc.mode, tc.events)
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	rec := kv(str("s"), str("x"), str("b"), bin([]byte{1}), str("i"), integer(-3), str("u"), msgp.AppendUint64(nil, 1<<63),
		str("f"), msgp.AppendFloat64(nil, 0.5), str("t"), msgp.AppendBool(nil, true), str("n"), msgp.AppendNil(nil),
		str("a"), arr(integer(1), str("y")), str("m"), kv(str("k"), str("v")))
	req, errs := Parse(arr(str("tag"), eventTime(1441588984, 123), rec, kv(str("chunk"), str(chunkID), str("size"), integer(1))))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := map[string]any{
		"s": "x", "b": []byte{1}, "i": int64(-3), "u": uint64(1 << 63), "f": 0.5, "t": true, "n": nil,
		"a": []any{int64(1), "y"}, "m": map[string]any{"k": "v"},
	}
	ev := req.Events[0]
	if !reflect.DeepEqual(ev.Record, want) {
		t.Errorf("record %#v, want %#v", ev.Record, want)
	}
	if !ev.EventTime || !ev.Time.Equal(time.Unix(1441588984, 123)) || ev.Tag != "tag" {
		t.Errorf("event %+v", ev)
	}
	if req.Chunk != chunkID || req.Size != 1 {
		t.Errorf("chunk %q size %d", req.Chunk, req.Size)
	}
}

// send writes raw requests on a new connection to s and returns it.
func send(t *testing.T, s *Server, raws ...[]byte) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for _, raw := range raws {
		if _, err := conn.Write(raw); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

// readAck reads one ack from conn.
func readAck(t *testing.T, conn net.Conn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := msgp.NewReader(conn)
	m := map[string]any{}
	if err := r.ReadMapStrIntf(m); err != nil {
		t.Fatalf("read ack: %v", err)
	}
	s, _ := m["ack"].(string)
	return s
}

func TestServerAcksChunks(t *testing.T) {
	s := NewServer(t, Config{})
	rec := kv(str("log"), str("x"))
	conn := send(t, s,
		msgp.AppendNil(nil), // heartbeat
		arr(str("t"), integer(1), rec),
		arr(str("t"), integer(1), rec, kv(str("chunk"), str(chunkID))),
	)
	if got := readAck(t, conn); got != chunkID {
		t.Errorf("ack %q, want %q", got, chunkID)
	}
	if evs := s.WaitEvents(2, 5*time.Second); len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	if s.Heartbeats() != 1 {
		t.Errorf("%d heartbeats, want 1", s.Heartbeats())
	}
}

func TestServerRecordsViolations(t *testing.T) {
	s := NewServer(t, Config{})
	send(t, s, arr(integer(1), integer(1), kv()))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if v := s.TakeViolations(); len(v) > 0 {
			if !strings.Contains(v[0].Error(), "tag is a msgpack int") {
				t.Errorf("violation %v", v[0])
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no violation recorded")
}

func TestServerMalformedMsgpack(t *testing.T) {
	s := NewServer(t, Config{})
	send(t, s, []byte{0xc1}) // never used in msgpack
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if v := s.TakeViolations(); len(v) > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no violation recorded")
}

func TestServerHooks(t *testing.T) {
	rec := kv(str("log"), str("x"))
	withChunk := arr(str("t"), integer(1), rec, kv(str("chunk"), str(chunkID)))
	tests := []struct {
		action   Action
		recorded int
		acked    bool
		open     bool
	}{
		{Accept, 1, true, true},
		{NoAck, 1, false, true},
		{CloseNoAck, 1, false, false},
		{Discard, 0, false, false},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(int(tc.action)), func(t *testing.T) {
			s := NewServer(t, Config{})
			s.SetHook(func(*Request) Action { return tc.action })
			conn := send(t, s, withChunk)
			conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			var b [64]byte
			n, err := conn.Read(b[:])
			switch {
			case tc.acked && n == 0:
				t.Errorf("no ack: %v", err)
			case !tc.acked && n > 0:
				t.Errorf("unexpected answer % x", b[:n])
			case tc.open && n == 0 && !isTimeout(err):
				t.Errorf("connection closed: %v", err)
			case !tc.open && isTimeout(err):
				t.Errorf("connection still open")
			}
			if got := len(s.Requests()); got != tc.recorded {
				t.Errorf("%d requests recorded, want %d", got, tc.recorded)
			}
		})
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestServerCutAfter(t *testing.T) {
	s := NewServer(t, Config{})
	s.CutAfter(10)
	rec := kv(str("log"), str(strings.Repeat("x", 100)))
	conn := send(t, s, arr(str("t"), integer(1), rec))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := conn.Read(b[:]); err == nil || isTimeout(err) {
		t.Fatalf("connection not closed: %v", err)
	}
	if n := len(s.Requests()); n != 0 {
		t.Errorf("%d requests recorded from a cut connection", n)
	}
	if s.Truncated() != 0 {
		t.Errorf("a cut counted as truncated")
	}
}

func TestServerStopStart(t *testing.T) {
	s := NewServer(t, Config{})
	addr := s.Addr()
	s.Stop()
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("stopped server accepts connections")
	}
	s.Start()
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr(), addr)
	}
	send(t, s, arr(str("t"), integer(1), kv()))
	if evs := s.WaitEvents(1, 5*time.Second); len(evs) != 1 {
		t.Fatalf("%d events after restart", len(evs))
	}
}

func TestServerUnixTLS(t *testing.T) {
	ca := NewCA(t)
	s := NewServer(t, Config{Network: "unix", Addr: filepath.Join(t.TempDir(), "f.sock"), TLS: ca.ServerTLS(false)})
	if !strings.HasPrefix(s.URL(), "unix:///") {
		t.Errorf("URL %s", s.URL())
	}
	conn, err := tls.Dial("unix", s.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(arr(str("t"), integer(1), kv()))
	if evs := s.WaitEvents(1, 5*time.Second); len(evs) != 1 {
		t.Fatalf("%d events over TLS", len(evs))
	}
	// A client that does not trust the CA fails its handshake.
	if c, err := tls.Dial("unix", s.Addr(), &tls.Config{ServerName: "localhost"}); err == nil {
		c.Close()
		t.Fatal("handshake succeeded without trusting the CA")
	}
}

// TestServerAcceptsDockerDriver checks the receiver against
// fluent-logger-golang configured as Docker's fluentd driver configures it:
// Message mode, integer seconds or EventTime, with or without acks.
func TestServerAcceptsDockerDriver(t *testing.T) {
	for _, tc := range []struct {
		name      string
		subSecond bool
		ack       bool
	}{
		{"defaults", false, false},
		{"sub-second precision", true, false},
		{"request ack", false, true},
		{"both", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(t, Config{})
			host, port, _ := net.SplitHostPort(s.Addr())
			p, _ := strconv.Atoi(port)
			f, err := fluent.New(fluent.Config{FluentHost: host, FluentPort: p, SubSecondPrecision: tc.subSecond, RequestAck: tc.ack})
			if err != nil {
				t.Fatal(err)
			}
			ts := time.Unix(1700000000, 123456789)
			rec := map[string]string{"container_id": "abc", "container_name": "/web", "source": "stdout", "log": "hello"}
			if err := f.PostWithTime("docker.abc", ts, rec); err != nil {
				t.Fatal(err)
			}
			f.Close()
			evs := s.WaitEvents(1, 5*time.Second)
			if len(evs) != 1 {
				t.Fatalf("%d events", len(evs))
			}
			req := s.Requests()[0]
			if req.Mode != Message || (req.Chunk != "") != tc.ack {
				t.Errorf("mode %v chunk %q", req.Mode, req.Chunk)
			}
			ev := evs[0]
			wantTime := ts.Truncate(time.Second)
			if tc.subSecond {
				wantTime = ts
			}
			if ev.EventTime != tc.subSecond || !ev.Time.Equal(wantTime) || ev.Tag != "docker.abc" {
				t.Errorf("event %+v", ev)
			}
			if ev.Record["log"] != "hello" || ev.Record["container_name"] != "/web" {
				t.Errorf("record %v", ev.Record)
			}
		})
	}
}

// FuzzParse checks that no input makes the receiver panic.
func FuzzParse(f *testing.F) {
	rec := kv(str("log"), str("x"))
	f.Add(arr(str("t"), integer(1), rec))
	f.Add(arr(str("t"), bin(cat(arr(eventTime(1, 2), rec))), kv(str("size"), integer(1))))
	f.Add(arr(str("t"), arr(arr(integer(1), rec)), kv(str("chunk"), str(chunkID))))
	f.Fuzz(func(t *testing.T, raw []byte) {
		Parse(raw)
	})
}
