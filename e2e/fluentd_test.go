//go:build e2e

package e2e

// Forwarding to Fluentd through the real engine: the records logferry sends
// are compared with those of Docker's own fluentd driver for the same
// workload, and acknowledgements, failover, TLS and a server that is down at
// start are exercised against fluentdtest's strict receiver, which fails the
// test on any deviation from the Forward Protocol Specification v1.
//
// The plugin runs with host networking and Docker's fluentd driver runs
// inside dockerd, so both reach receivers listening on 127.0.0.1 in the
// test process; containers themselves have no network.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logferry/logferry/driver"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

// fwdCeiling bounds every wait for events to arrive: a ceiling for hangs,
// not a performance expectation.
const fwdCeiling = 2 * time.Minute

// dropInScript is the workload run by both Docker's fluentd driver and
// logferry: plain lines on both streams, text that must survive msgpack
// untouched (tabs, quotes, invalid UTF-8, emoji), an empty line, a 40 000-byte
// line that dockerd splits into 16 KiB pieces, and a final line without
// "\n", which dockerd sends as a piece that is not the last.
const dropInScript = `
printf 'plain stdout line\n'
printf 'plain stderr line\n' >&2
printf 'tab\there "double" back\\slash <a href="x">&amp;</a>\n'
printf 'invalid utf-8 \377 \376 emoji \360\237\230\200 accents \303\251\n' >&2
echo
i=1; while [ $i -le 20 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done
head -c 16384 /dev/zero | tr '\0' a; head -c 16384 /dev/zero | tr '\0' b; head -c 7232 /dev/zero | tr '\0' c; printf '\n'
printf 'after the long line\n'
printf 'stdout without final newline'
`

// dropInLongLine is the length of the line dockerd splits.
const dropInLongLine = 40000

// fluentdShape is a received event reduced to what must be the same for
// Docker's fluentd driver and for logferry: the tag and the whole record,
// with container_id (checked) and partial_id (random per run) replaced by
// placeholders.
type fluentdShape struct {
	tag    string
	record map[string]any
}

func (s fluentdShape) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tag %q {", s.tag)
	for i, k := range slices.Sorted(maps.Keys(s.record)) {
		if i > 0 {
			b.WriteString(", ")
		}
		v := s.record[k]
		if str, ok := v.(string); ok {
			v = clipTo(str, 100)
		}
		fmt.Fprintf(&b, "%q: %#v", k, v)
	}
	b.WriteString("}")
	return b.String()
}

// fluentdShapes groups events by their source, in the order received, and
// reduces them to their shapes. container_id must be containerID; each
// partial_id becomes "<source partial N>", N counting the distinct ids of
// the stream in order of appearance, so that the pieces of one line share
// one placeholder and pieces of different lines do not.
func fluentdShapes(t testing.TB, who string, evs []fluentdtest.Event, containerID string) map[string][]fluentdShape {
	t.Helper()
	out := make(map[string][]fluentdShape)
	partials := make(map[string]string)
	perStream := make(map[string]int)
	for i, ev := range evs {
		rec := maps.Clone(ev.Record)
		source, _ := rec["source"].(string)
		if id := rec["container_id"]; id != containerID {
			t.Errorf("%s: event %d has container_id %#v, want %q", who, i+1, id, containerID)
		} else {
			rec["container_id"] = "<container_id>"
		}
		if id, ok := rec["partial_id"].(string); ok {
			if partials[id] == "" {
				perStream[source]++
				partials[id] = fmt.Sprintf("<%s partial %d>", source, perStream[source])
			}
			rec["partial_id"] = partials[id]
		}
		out[source] = append(out[source], fluentdShape{tag: ev.Tag, record: rec})
	}
	return out
}

// fwdJSONString is s as it reads back from JSON: each byte of invalid UTF-8
// becomes U+FFFD, as encoding/json, json-file and logferry's files and
// Elasticsearch documents write it. Fluentd records carry the bytes as they
// are.
func fwdJSONString(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

// fluentdLog returns the "log" value of an event's record.
func fluentdLog(ev fluentdtest.Event) string {
	s, _ := ev.Record["log"].(string)
	return s
}

// checkDropInWorkload checks that Docker's own driver sent what the script
// is meant to exercise, so that a broken script cannot pass vacuously.
func checkDropInWorkload(t *testing.T, shapes map[string][]fluentdShape) {
	t.Helper()
	var pieces, length int
	var lastFalse bool
	for _, s := range shapes["stdout"] {
		if s.record["partial_message"] != "true" {
			continue
		}
		log, _ := s.record["log"].(string)
		if len(log) >= 16*1024 || s.record["partial_last"] == "true" {
			pieces++
			length += len(log)
		}
		if s.record["partial_last"] == "false" && strings.HasPrefix(log, "stdout without") {
			lastFalse = true
		}
	}
	if pieces != 3 || length != dropInLongLine || !lastFalse || len(shapes["stderr"]) != 22 {
		t.Fatalf("test bug: Docker's fluentd driver sent %d pieces of %d bytes in all, a final piece %v and %d stderr records; want 3, %d, true and 22",
			pieces, length, lastFalse, len(shapes["stderr"]), dropInLongLine)
	}
	// The tag option of TestFluentdDropIn.
	wantTag := "docker." + suite.image + "." + strings.TrimPrefix(shapes["stdout"][0].record["container_name"].(string), "/")
	for _, s := range append(shapes["stdout"], shapes["stderr"]...) {
		if s.tag != wantTag {
			t.Fatalf("test bug: Docker's fluentd driver sent tag %q, want %q", s.tag, wantTag)
		}
	}
}

// TestFluentdDropIn runs the same workload with Docker's own fluentd driver
// and with logferry and the same --log-opt values, each to its own
// receiver, and requires the same records: tag, every key and value, and
// the order of each stream. It also checks that logferry's file and
// "docker logs" keep working alongside. Times differ between the runs; each
// of logferry's must be the time of its entry in the file.
func TestFluentdDropIn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// opts are more options of Docker's driver (20.10). Not
		// fluentd-async, with which Docker's driver loses the last record
		// at close, nor fluentd-request-ack, with which its stdout and
		// stderr goroutines mix up acks on the shared connection and it
		// resends each record many times (fluent-logger-golang).
		opts []string
		// dockerEventTime is whether Docker's driver sends EventTime;
		// logferry always does unless told fluentd-sub-second-precision=false.
		dockerEventTime bool
	}{
		{name: "defaults"},
		{
			name: "other options of Docker's driver",
			opts: []string{
				"fluentd-sub-second-precision=true",
				"fluentd-buffer-limit=8192",
				"fluentd-retry-wait=1s",
				"fluentd-max-retries=30",
			},
			dockerEventTime: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkDropIn(t, dropIn{
				script: dropInScript,
				flags: []string{
					"--label", "com.example.team=ops é",
					"--label", "org.example.tier=web",
					"--label", "unrelated=x",
					"-e", "APP_MODE=prod",
					"-e", "LF_DEBUG=1\t2",
					"-e", "UNRELATED=y",
				},
				opts: append([]string{
					"tag={{.DaemonName}}.{{.ImageName}}.{{.Name}}",
					"labels=com.example.team,com.example.absent",
					`labels-regex=^org\.example\.`,
					"env=APP_MODE,ABSENT",
					"env-regex=^LF_",
				}, tt.opts...),
				dockerEventTime: tt.dockerEventTime,
				check:           checkDropInWorkload,
			})
		})
	}
}

// dropIn is a workload that checkDropIn runs with Docker's fluentd driver
// and with logferry.
type dropIn struct {
	script string
	// flags are more "docker create" flags and opts more --log-opt values
	// (besides fluentd-address), the same for both drivers.
	flags, opts []string
	// dockerEventTime is whether Docker's driver sends EventTime.
	dockerEventTime bool
	// check, when set, checks that Docker's driver sent what the script is
	// meant to exercise.
	check func(t *testing.T, shapes map[string][]fluentdShape)
}

// checkDropIn runs wl with Docker's fluentd driver and with logferry, each
// to its own receiver, requires the same records, and checks logferry's
// file and "docker logs" against what it sent (see TestFluentdDropIn). It
// returns logferry's container.
func checkDropIn(t *testing.T, wl dropIn) *container {
	t.Helper()
	ref := fluentdtest.NewServer(t, fluentdtest.Config{})
	got := fluentdtest.NewServer(t, fluentdtest.Config{})

	name := containerName(t)
	opts := func(addr string) []string {
		return append([]string{"fluentd-address=" + addr}, wl.opts...)
	}
	// One after the other under the same name, so that the tag and
	// container_name are the same.
	theirs := run(t, spec{name: name, driver: "fluentd", logOpts: opts(ref.Addr()), flags: wl.flags, script: wl.script})
	mustDocker(t, "rename", name, name+"-fluentd")
	ours := run(t, spec{name: name, driver: suite.driver, logOpts: opts(got.Addr()), flags: wl.flags, script: wl.script})

	// dockerd wrote every entry to the plugin's FIFO before the container
	// counted as stopped, and the file is written synchronously: it tells
	// how many events to expect.
	recs := allRecords(t, ours.logFiles(t, false))
	wantEvents := ref.WaitEvents(len(recs), fwdCeiling)
	gotEvents := got.WaitEvents(len(recs), fwdCeiling)
	if len(wantEvents) != len(recs) {
		t.Fatalf("test bug: Docker's fluentd driver delivered %d events, logferry's file holds %d records", len(wantEvents), len(recs))
	}
	if wantEvents[0].EventTime != wl.dockerEventTime {
		t.Fatalf("test bug: Docker's fluentd driver sent EventTime %v, want %v", wantEvents[0].EventTime, wl.dockerEventTime)
	}
	want := fluentdShapes(t, "Docker's fluentd driver", wantEvents, theirs.id)
	if wl.check != nil {
		wl.check(t, want)
	}
	have := fluentdShapes(t, "logferry", gotEvents, ours.id)

	for _, stream := range []string{"stdout", "stderr"} {
		w, g := want[stream], have[stream]
		for i := range min(len(w), len(g)) {
			if g[i].tag != w[i].tag || !maps.Equal(g[i].record, w[i].record) {
				t.Errorf("%s event %d differs\nDocker:   %v\nlogferry: %v", stream, i+1, w[i], g[i])
				break
			}
		}
		if len(w) != len(g) {
			t.Errorf("%s: Docker's fluentd driver sent %d events, logferry %d", stream, len(w), len(g))
		}
	}

	// Each event carries the time of its entry, which the file has too.
	var fileOrder []record
	for _, stream := range []string{"stdout", "stderr"} {
		for _, r := range recs {
			if r.Stream == stream {
				fileOrder = append(fileOrder, r)
			}
		}
	}
	var gotOrder []fluentdtest.Event
	for _, stream := range []string{"stdout", "stderr"} {
		for _, ev := range gotEvents {
			if ev.Record["source"] == stream {
				gotOrder = append(gotOrder, ev)
			}
		}
	}
	for i := range min(len(fileOrder), len(gotOrder)) {
		r, ev := fileOrder[i], gotOrder[i]
		if strings.TrimSuffix(r.Log, "\n") != fwdJSONString(fluentdLog(ev)) || !ev.Time.Equal(r.Time) || !ev.EventTime {
			t.Errorf("%s record %d of the file is %s %q; logferry sent %s %q (EventTime %v)",
				r.Stream, i+1, r.Time.Format(time.RFC3339Nano), clipTo(r.Log, 80),
				ev.Time.Format(time.RFC3339Nano), clipTo(fluentdLog(ev), 80), ev.EventTime)
			break
		}
	}

	// docker logs prints what Docker's driver sent, each complete line with
	// its newline, invalid UTF-8 replaced as in json-file.
	var wantOut, wantErr strings.Builder
	for _, stream := range []string{"stdout", "stderr"} {
		b := &wantOut
		if stream == "stderr" {
			b = &wantErr
		}
		for _, s := range want[stream] {
			b.WriteString(fwdJSONString(s.record["log"].(string)))
			if s.record["partial_last"] != "false" {
				b.WriteByte('\n')
			}
		}
	}
	stdout, stderr := ours.logs(t)
	for _, o := range []struct{ stream, want, got string }{
		{"stdout", wantOut.String(), stdout},
		{"stderr", wantErr.String(), stderr},
	} {
		if o.got != o.want {
			t.Errorf("docker logs %s differs from what Docker's fluentd driver sent\nsent:        %s\ndocker logs: %s",
				o.stream, excerpt(o.want, o.got), excerpt(o.got, o.want))
		}
	}
	ours.servedByPlugin(t)

	// Nothing more came meanwhile.
	if n := len(got.Events()); n != len(recs) {
		t.Errorf("logferry delivered %d events in the end, want %d", n, len(recs))
	}
	for who, srv := range map[string]*fluentdtest.Server{"Docker's fluentd driver": ref, "logferry": got} {
		for _, err := range srv.TakeViolations() {
			t.Errorf("%s: protocol violation: %v", who, err)
		}
	}
	return ours
}

// fwdNumberedLines writes "line 1" to "line n" on stdout, and every tenth to
// stderr instead.
func fwdNumberedLines(n int) string {
	return fmt.Sprintf(`i=1; while [ $i -le %d ]; do if [ $((i %% 10)) -eq 0 ]; then echo "line $i" >&2; else echo "line $i"; fi; i=$((i+1)); done`, n)
}

// fwdLineNumbers counts the events "line N", or "line N" followed by a
// space and padding, by N; other events are returned as they are.
func fwdLineNumbers(evs []fluentdtest.Event) (counts map[int]int, others []string) {
	logs := make([]string, len(evs))
	for i, ev := range evs {
		logs[i] = fluentdLog(ev)
	}
	return lineNumbers(logs)
}

// lineNumbers counts the lines "line N" (without "\n"), or "line N" and
// padding, by N; other lines are returned as they are.
func lineNumbers(lines []string) (counts map[int]int, others []string) {
	counts = make(map[int]int)
	for _, log := range lines {
		if n, ok := lineNumber(log); ok {
			counts[n]++
		} else {
			others = append(others, log)
		}
	}
	return counts, others
}

// lineNumber returns N of a line "line N", or "line N" followed by a space
// and padding.
func lineNumber(line string) (int, bool) {
	rest, ok := strings.CutPrefix(line, "line ")
	if !ok {
		return 0, false
	}
	num, _, _ := strings.Cut(rest, " ")
	n, err := strconv.Atoi(num)
	return n, err == nil
}

// fwdCheckLines checks that lines 1 to n each arrived at least once, or
// exactly once with exact, and nothing else but the extra lines.
func fwdCheckLines(t testing.TB, who string, evs []fluentdtest.Event, n int, exact bool, extra ...string) {
	t.Helper()
	counts, others := fwdLineNumbers(evs)
	checkLineCounts(t, who, counts, others, n, exact, extra...)
}

// checkLineCounts checks counts and others, as lineNumbers returns them,
// the way fwdCheckLines does, and returns the missing line numbers.
func checkLineCounts(t testing.TB, who string, counts map[int]int, others []string, n int, exact bool, extra ...string) (missing []int) {
	t.Helper()
	counts = maps.Clone(counts)
	var repeated []int
	for i := 1; i <= n; i++ {
		switch c := counts[i]; {
		case c == 0:
			missing = append(missing, i)
		case c > 1 && exact:
			repeated = append(repeated, i)
		}
		delete(counts, i)
	}
	if len(missing) > 0 {
		t.Errorf("%s: %d of %d lines missing: %v", who, len(missing), n, fwdClipInts(missing))
	}
	if len(repeated) > 0 {
		t.Errorf("%s: %d lines arrived more than once: %v", who, len(repeated), fwdClipInts(repeated))
	}
	if len(counts) > 0 {
		t.Errorf("%s: unexpected lines %v", who, slices.Sorted(maps.Keys(counts)))
	}
	others, extra = slices.Clone(others), slices.Clone(extra)
	slices.Sort(others)
	slices.Sort(extra)
	if exact && !slices.Equal(others, extra) || !exact && !slices.Equal(slices.Compact(others), slices.Compact(extra)) {
		t.Errorf("%s: other lines %q, want %q", who, others, extra)
	}
	return missing
}

func fwdClipInts(ns []int) string {
	if len(ns) > 20 {
		return fmt.Sprintf("%v … (%d in all)", ns[:20], len(ns))
	}
	return fmt.Sprint(ns)
}

// fwdWait polls cond until it holds, and fails the test when ceiling passes
// first.
func fwdWait(t testing.TB, ceiling time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(ceiling, cond) {
		t.Fatalf("%s: not within %v", what, ceiling)
	}
}

// poll polls cond until it holds or ceiling passes, and reports whether it
// held.
func poll(ceiling time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(ceiling)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// fwdSync is a host directory mounted at /sync in a container, through
// which the test tells the container's script when to go on (the script
// waits for a file, the test creates it) and the script tells the test
// how far it got (it creates a file, the test checks that it exists).
type fwdSync struct{ dir string }

func newFwdSync(t testing.TB) *fwdSync { return &fwdSync{dir: t.TempDir()} }

// flag is the "docker create" flag that mounts the directory.
func (s *fwdSync) flag() []string { return []string{"--volume", s.dir + ":/sync"} }

// signal creates the file name that the script waits for.
func (s *fwdSync) signal(t testing.TB, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// exists reports whether the container's script created the file name.
func (s *fwdSync) exists(name string) bool {
	_, err := os.Stat(filepath.Join(s.dir, name))
	return err == nil
}

// wait waits until the container's script creates the file name, which
// tells that it got that far; it fails the test when ceiling passes first.
func (s *fwdSync) wait(t testing.TB, name string, ceiling time.Duration) {
	t.Helper()
	fwdWait(t, ceiling, "the container to create /sync/"+name, func() bool { return s.exists(name) })
}

// fwdWaitScript defines the shell function "await NAME", which waits until
// the test signals NAME.
const fwdWaitScript = `await() { while [ ! -e /sync/$1 ]; do sleep 0.02; done; }
`

func TestFluentdAcks(t *testing.T) {
	t.Parallel()
	const lines = 300
	// The lines come in bursts, so that several batches are sent.
	script := fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "line $i"; [ $((i %% 60)) -eq 0 ] && sleep 0.3; i=$((i+1)); done`, lines)
	tests := []struct {
		name string
		opts []string
		mode fluentdtest.Mode
	}{
		{name: "packedforward", mode: fluentdtest.PackedForward},
		{name: "packedforward gzip", opts: []string{"fluentd-compress=gzip"}, mode: fluentdtest.CompressedPackedForward},
		{name: "forward", opts: []string{"fluentd-mode=forward"}, mode: fluentdtest.Forward},
		{name: "message", opts: []string{"fluentd-mode=message"}, mode: fluentdtest.Message},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fluentdtest.NewServer(t, fluentdtest.Config{})
			var seen atomic.Int32
			// The first request is stored but its ack withheld, so the sink
			// must time out and send it again; the next is stored and its
			// connection closed; the next is lost with its connection.
			srv.SetHook(func(*fluentdtest.Request) fluentdtest.Action {
				switch seen.Add(1) {
				case 1:
					return fluentdtest.NoAck
				case 2:
					return fluentdtest.CloseNoAck
				case 3:
					return fluentdtest.Discard
				}
				return fluentdtest.Accept
			})
			opts := append([]string{
				"fluentd-address=" + srv.Addr(),
				"fluentd-request-ack=true",
				"fluentd-read-timeout=2s",
				"fluentd-flush-interval=100ms",
			}, tt.opts...)
			run(t, spec{driver: suite.driver, logOpts: opts, script: script})

			fwdWait(t, fwdCeiling, "every line acknowledged", func() bool {
				counts, _ := fwdLineNumbers(srv.Events())
				return len(counts) >= lines
			})
			fwdCheckLines(t, "receiver", srv.Events(), lines, false)
			if n := seen.Load(); n < 4 {
				t.Errorf("the receiver saw %d requests, want at least 4 (withheld ack, closed, lost, accepted)", n)
			}
			if srv.Duplicates() == 0 {
				t.Errorf("no chunk was received twice: the request whose ack was withheld was not sent again")
			}
			for i, r := range srv.Requests() {
				if r.Chunk == "" || r.Mode != tt.mode {
					t.Errorf("request %d: chunk %q, mode %v; want a chunk and %v", i+1, r.Chunk, r.Mode, tt.mode)
					break
				}
			}
			for _, err := range srv.TakeViolations() {
				t.Errorf("protocol violation: %v", err)
			}
		})
	}
}

// TestFluentdFailover logs to two receivers, A preferred and B standby,
// stops A while the container logs, and starts it again: every line must
// arrive at B, or at A once it is back, and logferry must return to A.
func TestFluentdFailover(t *testing.T) {
	t.Parallel()
	common := []string{
		"fluentd-flush-interval=100ms",
		"fluentd-retry-wait=100ms",
		"fluentd-health-check-interval=200ms",
	}

	// With acknowledgements, A is stopped while lines flow, batches in
	// flight included: at least once, none missing.
	t.Run("acks while logging", func(t *testing.T) {
		t.Parallel()
		a := fluentdtest.NewServer(t, fluentdtest.Config{})
		b := fluentdtest.NewServer(t, fluentdtest.Config{})
		gate := newFwdSync(t)
		c := create(t, spec{
			driver: suite.driver,
			logOpts: append([]string{
				"fluentd-address=" + a.Addr() + "," + b.Addr(),
				"fluentd-request-ack=true",
				"fluentd-read-timeout=5s",
			}, common...),
			flags:  gate.flag(),
			script: `n=0; while [ ! -e /sync/stop ]; do n=$((n+1)); echo "line $n"; sleep 0.01; done; echo "done $n"`,
		})
		c.start(t)

		fwdWait(t, fwdCeiling, "30 events at A", func() bool { return len(a.Events()) >= 30 })
		// Counted before A stops: the sink may fail over while Stop
		// returns.
		if n := len(b.Events()); n != 0 {
			t.Errorf("B received %d events while A was up", n)
		}
		a.Stop()
		atB := len(b.Events())
		fwdWait(t, fwdCeiling, "30 events at B after A stopped", func() bool { return len(b.Events()) >= atB+30 })
		atA := len(a.Events())
		a.Start()
		fwdWait(t, fwdCeiling, "events at A again after it restarted", func() bool { return len(a.Events()) > atA })
		gate.signal(t, "stop")
		c.wait(t)

		n := fwdDoneCount(t, c)
		all := func() []fluentdtest.Event { return append(a.Events(), b.Events()...) }
		fwdWait(t, fwdCeiling, fmt.Sprintf("all %d lines at A or B", n), func() bool {
			counts, others := fwdLineNumbers(all())
			return len(counts) >= n && len(others) > 0
		})
		fwdCheckLines(t, "A and B", all(), n, false, fmt.Sprintf("done %d", n))
		t.Logf("%d lines; A received %d events, B %d; duplicated chunks: A %d, B %d",
			n, len(a.Events()), len(b.Events()), a.Duplicates(), b.Duplicates())
		for who, srv := range map[string]*fluentdtest.Server{"A": a, "B": b} {
			for _, err := range srv.TakeViolations() {
				t.Errorf("%s: protocol violation: %v", who, err)
			}
		}
	})

	// Without acknowledgements delivery is at most once, so A is stopped
	// between bursts, after it received everything: then exactly once.
	t.Run("no acks between bursts", func(t *testing.T) {
		t.Parallel()
		a := fluentdtest.NewServer(t, fluentdtest.Config{})
		b := fluentdtest.NewServer(t, fluentdtest.Config{})
		gate := newFwdSync(t)
		c := create(t, spec{
			driver:  suite.driver,
			logOpts: append([]string{"fluentd-address=" + a.Addr() + "," + b.Addr()}, common...),
			flags:   gate.flag(),
			script: fwdWaitScript + `n=0
burst() { i=1; while [ $i -le $1 ]; do n=$((n+1)); echo "line $n"; i=$((i+1)); done; }
burst 50; await a-stopped
burst 50; await a-started
while [ ! -e /sync/stop ]; do n=$((n+1)); echo "line $n"; sleep 0.02; done
echo "done $n"`,
		})
		c.start(t)

		a.WaitEvents(50, fwdCeiling)
		fwdCheckLines(t, "A before it stopped", a.Events(), 50, true)
		a.Stop()
		gate.signal(t, "a-stopped")
		b.WaitEvents(50, fwdCeiling)
		a.Start()
		gate.signal(t, "a-started")
		fwdWait(t, fwdCeiling, "events at A again after it restarted", func() bool { return len(a.Events()) > 50 })
		gate.signal(t, "stop")
		c.wait(t)

		n := fwdDoneCount(t, c)
		all := func() []fluentdtest.Event { return append(a.Events(), b.Events()...) }
		fwdWait(t, fwdCeiling, fmt.Sprintf("all %d lines at A or B", n), func() bool { return len(all()) >= n+1 })
		fwdCheckLines(t, "A and B", all(), n, true, fmt.Sprintf("done %d", n))
		counts, _ := fwdLineNumbers(b.Events())
		for i := 51; i <= 100; i++ {
			if counts[i] != 1 {
				t.Errorf("line %d, logged while A was stopped, arrived %d times at B", i, counts[i])
				break
			}
		}
		for who, srv := range map[string]*fluentdtest.Server{"A": a, "B": b} {
			for _, err := range srv.TakeViolations() {
				t.Errorf("%s: protocol violation: %v", who, err)
			}
		}
	})
}

// fwdDoneCount returns N from the "done N" line that ends a container's
// stdout, as "docker logs" prints it.
func fwdDoneCount(t testing.TB, c *container) int {
	t.Helper()
	stdout, _ := c.logs(t)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	var n int
	if _, err := fmt.Sscanf(lines[len(lines)-1], "done %d", &n); err != nil || n == 0 {
		t.Fatalf("%s: docker logs ends with %q, want \"done N\"", c, lines[len(lines)-1])
	}
	return n
}

var (
	fwdPluginRootOnce sync.Once
	fwdPluginRootDest string
	fwdPluginRootErr  error
)

// fwdPluginDir makes a directory under the plugin's root on the host and
// returns its host path and the path under which the plugin process sees
// it: the plugin runs in its own root file system, where only the "root"
// mount (host suite.root, plugin /var/lib/logferry by default) is shared
// with the host. The directory is removed when the test ends.
func fwdPluginDir(t testing.TB) (hostDir, pluginDir string) {
	t.Helper()
	fwdPluginRootOnce.Do(func() {
		fwdPluginRootDest, fwdPluginRootErr = mountOf(context.Background(), suite.plugin, "root", "{{.Destination}}")
	})
	if fwdPluginRootErr != nil {
		t.Fatal(fwdPluginRootErr)
	}
	rel := filepath.Join("e2e-files", containerName(t))
	hostDir = filepath.Join(suite.root, rel)
	if err := os.MkdirAll(hostDir, 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(hostDir); err != nil {
			t.Error(err)
		}
		// The parent is shared by the tests; remove it once empty.
		_ = os.Remove(filepath.Dir(hostDir))
	})
	return hostDir, filepath.Join(fwdPluginRootDest, rel)
}

// fwdPluginFile writes data to a file in a new fwdPluginDir and returns the
// path under which the plugin sees it.
func fwdPluginFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	hostDir, pluginDir := fwdPluginDir(t)
	if err := os.WriteFile(filepath.Join(hostDir, name), data, 0o640); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(pluginDir, name)
}

// TestFluentdUnixSocket forwards to a receiver on a unix socket, which the
// plugin reaches through its root mount.
func TestFluentdUnixSocket(t *testing.T) {
	t.Parallel()
	const lines = 50
	hostDir, pluginDir := fwdPluginDir(t)
	srv := fluentdtest.NewServer(t, fluentdtest.Config{Network: "unix", Addr: filepath.Join(hostDir, "fluentd.sock")})
	run(t, spec{
		driver:  suite.driver,
		logOpts: []string{"fluentd-address=unix://" + filepath.Join(pluginDir, "fluentd.sock")},
		script:  fwdNumberedLines(lines),
	})
	fwdCheckLines(t, "receiver", srv.WaitEvents(lines, fwdCeiling), lines, true)
}

func TestFluentdTLS(t *testing.T) {
	t.Parallel()
	const lines = 50

	t.Run("right CA", func(t *testing.T) {
		t.Parallel()
		ca := fluentdtest.NewCA(t)
		srv := fluentdtest.NewServer(t, fluentdtest.Config{TLS: ca.ServerTLS(false)})
		run(t, spec{
			driver:  suite.driver,
			logOpts: []string{"fluentd-address=" + srv.URL(), "fluentd-tls-ca=" + fwdPluginFile(t, "ca.pem", ca.CertPEM)},
			script:  fwdNumberedLines(lines),
		})
		fwdCheckLines(t, "receiver", srv.WaitEvents(lines, fwdCeiling), lines, true)
	})

	t.Run("client certificate", func(t *testing.T) {
		t.Parallel()
		ca := fluentdtest.NewCA(t)
		srv := fluentdtest.NewServer(t, fluentdtest.Config{TLS: ca.ServerTLS(true)})
		cert, key := ca.Issue("logferry e2e client")
		run(t, spec{
			driver: suite.driver,
			logOpts: []string{
				"fluentd-address=" + srv.URL(),
				"fluentd-tls-ca=" + fwdPluginFile(t, "ca.pem", ca.CertPEM),
				"fluentd-tls-cert=" + fwdPluginFile(t, "client.pem", cert),
				"fluentd-tls-key=" + fwdPluginFile(t, "client-key.pem", key),
			},
			script: fwdNumberedLines(lines),
		})
		fwdCheckLines(t, "receiver", srv.WaitEvents(lines, fwdCeiling), lines, true)
		if n := srv.FailedHandshakes(); n != 0 {
			t.Errorf("%d TLS handshakes failed", n)
		}
	})

	t.Run("wrong CA", func(t *testing.T) {
		t.Parallel()
		srv := fluentdtest.NewServer(t, fluentdtest.Config{TLS: fluentdtest.NewCA(t).ServerTLS(false)})
		other := fluentdtest.NewCA(t)
		// docker run succeeds: the server is not contacted while the
		// container starts.
		run(t, spec{
			driver:  suite.driver,
			logOpts: []string{"fluentd-address=" + srv.URL(), "fluentd-tls-ca=" + fwdPluginFile(t, "ca.pem", other.CertPEM)},
			script:  fwdNumberedLines(lines),
		})
		fwdWait(t, fwdCeiling, "a TLS handshake attempt", func() bool {
			return srv.FailedHandshakes() >= 2 || len(srv.Events()) > 0
		})
		if evs := srv.Events(); len(evs) > 0 {
			t.Errorf("the receiver got %d events over TLS with a certificate the configured CA did not sign", len(evs))
		}
	})

	// The plugin opens the CA file in its own root file system: a host
	// path outside the plugin's root mount does not exist there, and
	// docker run fails naming the option.
	t.Run("CA outside the plugin root", func(t *testing.T) {
		t.Parallel()
		ca := fluentdtest.NewCA(t)
		srv := fluentdtest.NewServer(t, fluentdtest.Config{TLS: ca.ServerTLS(false)})
		hostPath := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(hostPath, ca.CertPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		stderr, err := dockerRunFails(t, suite.driver, []string{"fluentd-address=" + srv.URL(), "fluentd-tls-ca=" + hostPath})
		if err == nil {
			t.Fatalf("docker run with fluentd-tls-ca=%s, a host path the plugin cannot see, succeeded", hostPath)
		}
		for _, w := range []string{"fluentd-tls-ca", hostPath} {
			if !strings.Contains(stderr, w) {
				t.Errorf("the error does not name %q:\n%s", w, stderr)
			}
		}
	})
}

// fwdFreePort returns a loopback address nobody listens on (for now).
func fwdFreePort(t testing.TB) string {
	t.Helper()
	fwdPorts.mu.Lock()
	defer fwdPorts.mu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		// The kernel may hand a port it just freed to the next caller:
		// two parallel tests must not wait for their lines on one port.
		if !fwdPorts.given[addr] {
			fwdPorts.given[addr] = true
			return addr
		}
	}
}

// fwdPorts are the ports fwdFreePort handed out.
var fwdPorts = struct {
	mu    sync.Mutex // guards given
	given map[string]bool
}{given: map[string]bool{}}

// TestFluentdUnreachableAtStart starts containers while no Fluentd listens:
// docker run must succeed, and the lines must arrive once it listens.
func TestFluentdUnreachableAtStart(t *testing.T) {
	t.Parallel()
	const lines = 40

	// The container has exited before the receiver starts: its lines
	// wait in the sink, which keeps trying for driver.DefaultLinger.
	t.Run("stopped container", func(t *testing.T) {
		t.Parallel()
		addr := fwdFreePort(t)
		run(t, spec{driver: suite.driver, logOpts: []string{"fluentd-address=" + addr}, script: fwdNumberedLines(lines)})
		srv := fluentdtest.NewServer(t, fluentdtest.Config{Addr: addr})
		fwdCheckLines(t, "receiver", srv.WaitEvents(lines, driver.DefaultLinger), lines, true)
	})

	// The receiver comes up only in the last seconds of the linger: a
	// sink that keeps trying for driver.DefaultLinger must still deliver.
	// This is the one test here whose outcome depends on time: the margin
	// is several seconds, a poll interval for a sink that is still trying.
	t.Run("receiver starts late in the linger", func(t *testing.T) {
		t.Parallel()
		const margin = 8 * time.Second
		addr := fwdFreePort(t)
		run(t, spec{driver: suite.driver, logOpts: []string{"fluentd-address=" + addr}, script: fwdNumberedLines(lines)})
		// The plugin starts lingering when dockerd stops the stream,
		// before "docker wait" returns.
		time.Sleep(driver.DefaultLinger - margin)
		srv := fluentdtest.NewServer(t, fluentdtest.Config{Addr: addr})
		evs := srv.WaitEvents(lines, margin+30*time.Second)
		if len(evs) == 0 {
			t.Fatalf("nothing arrived although the receiver listened during the last %v of the %v linger", margin, driver.DefaultLinger)
		}
		fwdCheckLines(t, "receiver", evs, lines, true)
	})

	t.Run("running container", func(t *testing.T) {
		t.Parallel()
		addr := fwdFreePort(t)
		gate := newFwdSync(t)
		c := create(t, spec{
			driver:  suite.driver,
			logOpts: []string{"fluentd-address=" + addr},
			flags:   gate.flag(),
			script:  fwdWaitScript + fwdNumberedLines(lines) + "\nawait stop; echo done",
		})
		c.start(t)
		fwdWait(t, fwdCeiling, "the lines in docker logs", func() bool {
			stdout, stderr := c.logs(t)
			return strings.Count(stdout+stderr, "\n") >= lines
		})
		srv := fluentdtest.NewServer(t, fluentdtest.Config{Addr: addr})
		srv.WaitEvents(lines, fwdCeiling)
		gate.signal(t, "stop")
		c.wait(t)
		fwdCheckLines(t, "receiver", srv.WaitEvents(lines+1, fwdCeiling), lines, true, "done")
	})

	// Far more lines than the queue holds: the container is never blocked
	// and its file gets every line, while the sink keeps the batch it
	// could not send and the newest events, dropping the oldest queued.
	t.Run("buffer full", func(t *testing.T) {
		t.Parallel()
		// 60 000 short lines take over 2 MB in the disk buffer, bounded
		// to 1 MB: the oldest are dropped, the newest delivered.
		const many = 60000
		addr := fwdFreePort(t)
		c := run(t, spec{
			driver:  suite.driver,
			logOpts: []string{"fluentd-address=" + addr, "buffer-max-size=1m", "fluentd-batch-size=16k"},
			// Only stdout: dockerd copies the two streams in separate
			// goroutines, so the last stderr line may reach the plugin
			// hundreds of lines before the last stdout one, and be
			// rightly dropped as one of the oldest.
			script: fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "line $i"; i=$((i+1)); done`, many),
		})
		if n := len(allRecords(t, c.logFiles(t, false))); n != many {
			t.Errorf("the file holds %d records, want %d", n, many)
		}
		srv := fluentdtest.NewServer(t, fluentdtest.Config{Addr: addr})
		fwdWait(t, driver.DefaultLinger, "the last line", func() bool {
			counts, _ := fwdLineNumbers(srv.Events())
			return counts[many] > 0
		})
		counts, others := fwdLineNumbers(srv.Events())
		if len(counts) >= many*3/4 || len(others) > 0 {
			t.Errorf("the receiver got %d distinct lines and %d others after %d lines with buffer-max-size=1m: the buffer is not bounded",
				len(counts), len(others), many)
		}
		for n, k := range counts {
			if k > 1 {
				t.Errorf("line %d arrived %d times", n, k)
			}
		}
	})
}

func TestFluentdInvalidOptionsFailRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []string
		// want are substrings of docker run's error.
		want []string
	}{
		{name: "address scheme", opts: []string{"fluentd-address=ftp://x"}, want: []string{"fluentd-address", "ftp://x"}},
		{
			name: "compress",
			opts: []string{"fluentd-address=127.0.0.1:24224", "fluentd-compress=zip"},
			want: []string{"fluentd-compress", "zip", "gzip"},
		},
		{
			name: "address listed twice",
			opts: []string{"fluentd-address=127.0.0.1:24224,tcp://127.0.0.1:24224"},
			want: []string{"fluentd-address", "twice"},
		},
		{
			name: "TLS option without tls address",
			opts: []string{"fluentd-address=127.0.0.1:24224", "fluentd-tls-server-name=x"},
			want: []string{"fluentd-tls-server-name", "tls://"},
		},
		{name: "option without address", opts: []string{"fluentd-request-ack=true"}, want: []string{"fluentd-request-ack", "fluentd-address"}},
		{
			name: "balance",
			opts: []string{"fluentd-address=127.0.0.1:24224", "fluentd-balance=round-robin"},
			want: []string{"fluentd-balance", "round-robin", "failover or weighted"},
		},
		{
			name: "weight without weighted balance",
			opts: []string{"fluentd-address=127.0.0.1:24224?weight=3,127.0.0.1:24225"},
			want: []string{"fluentd-address", "?weight=3 needs fluentd-balance=weighted"},
		},
		{
			name: "weight out of range",
			opts: []string{"fluentd-address=127.0.0.1:24224?weight=0", "fluentd-balance=weighted"},
			want: []string{"fluentd-address", "from 1 to 10000"},
		},
		{
			name: "request-ack not a bool",
			opts: []string{"fluentd-address=127.0.0.1:24224", "fluentd-request-ack=sure"},
			want: []string{"fluentd-request-ack", "sure"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkRunRefused(t, tt.opts, tt.want)
		})
	}
}
