//go:build e2e

package e2e

// Forwarding under faults: a Fluentd receiver killed while lines flow, and
// a destination down for a minute under load. The container must never
// wait for its destination, the plugin's memory must stay bounded, and
// every line must arrive once the destination is back.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

// faultRSSBound is the most resident memory (VmHWM) the plugin process may
// use while a destination is down under load and while it catches up: the
// bound README documents. The process serves every test running at the
// time, so this bounds them all together. Measured on 2 cores: 30 to 36 MiB
// with the outage test running alone, 55 MiB during the whole e2e suite.
const faultRSSBound = 256 << 20

// faultChunk is how many lines faultFastLines writes between pauses.
const faultChunk = 2000

// faultFastLines defines the shell function "chunks K", which writes the
// next K × faultChunk lines "line NNNNNNNN 000…0" on stdout, 100 bytes each
// with the newline, numbered on from the previous call, pausing 80 ms
// after each chunk: about 20 000 lines a second. A busybox shell loop
// cannot write that many, so awk writes each chunk. It also defines
// "await NAME" (fwdWaitScript).
var faultFastLines = fwdWaitScript + fmt.Sprintf(`n=0
chunks() { k=0; while [ $k -lt $1 ]; do awk -v a=$((n+1)) -v b=$((n+%[1]d)) 'BEGIN { for (i = a; i <= b; i++) printf "line %%08d %%085d\n", i, 0 }'; n=$((n+%[1]d)); k=$((k+1)); usleep 80000; done; }
`, faultChunk)

// faultTimes returns the time of every record of the container's files,
// in order. It reads only the time: allRecords' strict parse of a few
// hundred thousand records takes half a minute under the race detector.
func faultTimes(t testing.TB, c *container) []time.Time {
	t.Helper()
	const key = `,"time":"`
	var times []time.Time
	for _, f := range c.logFiles(t, false) {
		for line := range bytes.Lines(f.data) {
			i := bytes.LastIndex(line, []byte(key))
			end := bytes.LastIndexByte(line, '"')
			if i < 0 || end < i+len(key) {
				t.Fatalf("%s: record without a time: %q", f.path, clipTo(string(line), 200))
			}
			ts, err := time.Parse(time.RFC3339Nano, string(line[i+len(key):end]))
			if err != nil {
				t.Fatalf("%s: %v", f.path, err)
			}
			times = append(times, ts)
		}
	}
	return times
}

// faultRate returns how many of times are in [from, to) and how many a
// second that makes.
func faultRate(times []time.Time, from, to time.Time) (n int, perSecond float64) {
	for _, ts := range times {
		if !ts.Before(from) && ts.Before(to) {
			n++
		}
	}
	return n, float64(n) / to.Sub(from).Seconds()
}

// faultSpanRate returns how many lines a second were written at times,
// from the first to the last.
func faultSpanRate(times []time.Time) float64 {
	if len(times) < 2 {
		return 0
	}
	return float64(len(times)-1) / times[len(times)-1].Sub(times[0]).Seconds()
}

// faultMaxGap returns the longest time between two consecutive times.
func faultMaxGap(times []time.Time) time.Duration {
	var gap time.Duration
	for i := 1; i < len(times); i++ {
		gap = max(gap, times[i].Sub(times[i-1]))
	}
	return gap
}

// faultDuplicates returns how many of lines 1 to n arrived more than once,
// and how many extra copies arrived in all.
func faultDuplicates(evs []fluentdtest.Event, n int) (lines, copies int) {
	counts, _ := fwdLineNumbers(evs)
	for i := 1; i <= n; i++ {
		if c := counts[i]; c > 1 {
			lines++
			copies += c - 1
		}
	}
	return lines, copies
}

// faultExited checks through docker inspect that the container exited by
// itself with status 0: not killed, not OOM-killed, not restarting.
func faultExited(t testing.TB, c *container) {
	t.Helper()
	var st struct {
		Status     string
		Running    bool
		Paused     bool
		Restarting bool
		OOMKilled  bool
		Dead       bool
		ExitCode   int
		Error      string
	}
	out := mustDocker(t, "inspect", "--format", "{{json .State}}", c.id)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%s: docker inspect State %q: %v", c, out, err)
	}
	if st.Status != "exited" || st.Running || st.Paused || st.Restarting || st.OOMKilled || st.Dead || st.ExitCode != 0 || st.Error != "" {
		t.Errorf("%s: State %s, want exited with code 0", c, out)
	}
}

// procStatus returns a "kB" field of /proc/<pid>/status, such as VmRSS or
// VmHWM, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("status of process %d: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s of process %d: %w", field, pid, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("status of process %d has no %s", pid, field)
}

// pluginMemory returns the plugin process's current and peak resident set
// size (VmRSS, VmHWM), and fails the test if the process is no longer pid:
// a plugin that died (out of memory, say) and was restarted by dockerd
// would hide its peak.
func pluginMemory(t *testing.T, pid int) (rss, peak int64) {
	t.Helper()
	if now := pluginPID(t, suite.plugin); now != pid {
		t.Fatalf("the plugin process is %d, was %d: it died during the test", now, pid)
	}
	rss, err1 := procStatus(pid, "VmRSS")
	peak, err2 := procStatus(pid, "VmHWM")
	for _, err := range []error{err1, err2} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return rss, peak
}

// mib formats a byte count in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// TestFluentdReceiverKilledMidStream kills the Fluentd receiver (listener
// and connections closed at once, as when its process dies) while a
// container logs a few thousand lines a second and requests are in flight,
// and starts a receiver on the same address 5 s later. The container must
// go on logging at its pace throughout, and every line must arrive at
// least once.
//
// With fluentd-request-ack only: without it delivery is at most once, and
// the batch being written when the connection breaks may be lost without
// anyone knowing (README, Buffering and delivery guarantees), so nothing
// could be required of it but a bound on what is lost.
func TestFluentdReceiverKilledMidStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// inFlight is what the receiver does with the requests it gets
		// from the moment it has received atKill events until it is
		// killed, so that requests are surely in flight when it dies.
		inFlight fluentdtest.Action
		// wantDuplicates is whether lines must arrive twice: requests
		// stored but not acknowledged must be sent again.
		wantDuplicates bool
	}{
		{name: "stored, not acknowledged", inFlight: fluentdtest.NoAck, wantDuplicates: true},
		{name: "lost with the connection", inFlight: fluentdtest.Discard},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkReceiverKilled(t, tt.inFlight, tt.wantDuplicates)
		})
	}
}

// checkReceiverKilled is TestFluentdReceiverKilledMidStream for one way of
// handling the requests in flight.
func checkReceiverKilled(t *testing.T, inFlight fluentdtest.Action, wantDuplicates bool) {
	const (
		lines  = 60_000
		atKill = 10_000 // events received when the receiver is killed
		outage = 5 * time.Second
	)
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	var received atomic.Int64
	dying := make(chan struct{})
	var once sync.Once
	srv.SetHook(func(r *fluentdtest.Request) fluentdtest.Action {
		if received.Add(int64(len(r.Events))) <= atKill {
			return fluentdtest.Accept
		}
		once.Do(func() { close(dying) })
		return inFlight
	})
	c := create(t, spec{
		driver: suite.driver,
		logOpts: []string{
			"fluentd-address=" + srv.Addr(),
			"fluentd-request-ack=true",
			// Small batches, so that requests follow each other closely.
			"fluentd-flush-interval=100ms",
		},
		// 250 lines, then 50 ms of pause: under 5 000 lines a second.
		script: esLinesScript + fmt.Sprintf(`while [ $n -lt %d ]; do burst 250; usleep 50000; done`, lines),
	})
	started := time.Now()
	c.start(t)

	select {
	case <-dying:
	case <-time.After(fwdCeiling):
		t.Fatalf("%d events within %v, want over %d before the receiver is killed", received.Load(), fwdCeiling, atKill)
	}
	srv.Stop()
	killed := time.Now()
	receivedAtKill := len(srv.Events())
	srv.SetHook(nil)
	time.Sleep(outage)
	srv.Start()
	restarted := time.Now()

	c.wait(t)
	ran := time.Since(started)
	faultExited(t, c)
	fwdWait(t, fwdCeiling, fmt.Sprintf("all %d lines at the receiver", lines), func() bool {
		counts, _ := fwdLineNumbers(srv.Events())
		return len(counts) >= lines
	})
	evs := srv.Events()
	fwdCheckLines(t, "receiver", evs, lines, false)
	dupLines, dupCopies := faultDuplicates(evs, lines)
	if wantDuplicates && dupLines == 0 {
		t.Errorf("no line arrived twice: the requests stored but not acknowledged when the receiver died were not sent again")
	}

	// dockerd stamps each line as it reads it from the container: a
	// container held back by the plugin would show a hole while the
	// receiver was down.
	times := faultTimes(t, c)
	if len(times) != lines {
		t.Fatalf("the file holds %d records, want %d", len(times), lines)
	}
	if n, _ := faultRate(times, restarted, time.Now()); n == 0 {
		t.Fatalf("test bug: the container had finished logging before the receiver restarted")
	}
	first := times[0]
	for _, ts := range times {
		if ts.Before(first) {
			first = ts
		}
	}
	nBefore, rateBefore := faultRate(times, first, killed)
	nDown, rateDown := faultRate(times, killed, restarted)
	if rateDown < rateBefore/2 {
		t.Errorf("the container logged %.0f lines/s while the receiver was down, %.0f before: it was held back", rateDown, rateBefore)
	}
	t.Logf("%d lines in %v (%d at %.0f/s before the kill, %d at %.0f/s during the %v outage; longest pause %v)",
		lines, ran.Round(time.Millisecond), nBefore, rateBefore, nDown, rateDown, outage, faultMaxGap(times).Round(time.Millisecond))
	t.Logf("receiver: %d events stored before the kill, %d in all; %d lines arrived more than once (%d extra copies), %d chunks received twice",
		receivedAtKill, len(evs), dupLines, dupCopies, srv.Duplicates())
	for _, err := range srv.TakeViolations() {
		t.Errorf("protocol violation: %v", err)
	}
}

// TestDestinationOutageUnderLoad takes the Fluentd receiver down for a
// minute while a container logs about 20 000 100-byte lines a second. The
// container must log as fast as before, the plugin must stay within
// faultRSSBound, and once the receiver is back every line must arrive,
// exactly once.
//
// The receiver is taken down between two bursts, once it has received the
// first: no batch is in flight, so nothing is at risk even without
// fluentd-request-ack, and the default options are used. The lines logged
// while it is down take about 36 MB in the disk buffer (a 12-byte frame
// header, a 10-byte entry header and the 99-byte line each), well within
// buffer-max-size's default of 64m: nothing may be dropped.
func TestDestinationOutageUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		outage = time.Minute
		before = 40_000  // lines logged while the receiver is up
		during = 300_000 // lines logged while it is down
		total  = before + during
	)
	pid := pluginPID(t, suite.plugin)
	if pid == 0 {
		t.Fatalf("no process of plugin %s", suite.plugin)
	}
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	gate := newFwdSync(t)
	c := create(t, spec{
		driver:  suite.driver,
		logOpts: []string{"fluentd-address=" + srv.Addr()},
		flags:   gate.flag(),
		script: faultFastLines + fmt.Sprintf(`chunks %d; await outage
chunks %d; touch /sync/finished; await stop`, before/faultChunk, during/faultChunk),
	})
	started := time.Now()
	c.start(t)

	if evs := srv.WaitEvents(before, fwdCeiling); len(evs) < before {
		t.Fatalf("%d events within %v, want the %d logged before the outage", len(evs), fwdCeiling, before)
	}
	srv.Stop()
	down := time.Now()
	// Peak memory from now on.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak RSS of the plugin process: %v", err)
	}
	rssDown, _ := pluginMemory(t, pid)
	gate.signal(t, "outage")

	fwdWait(t, outage, fmt.Sprintf("the container writing its %d lines while the receiver is down", during), func() bool {
		return gate.exists("finished")
	})
	logged := time.Since(down)
	time.Sleep(time.Until(down.Add(outage)))
	rssOutage, peakOutage := pluginMemory(t, pid)
	if n := len(srv.Events()); n != before {
		t.Fatalf("test bug: %d events received while the receiver was down, want %d", n, before)
	}

	// The sink's health check (every 5 s by default) finds the server
	// back; the retry backoff alone would take until about 15 s after the
	// restart after this outage, and up to a minute after longer ones.
	srv.Start()
	up := time.Now()
	srv.WaitEvents(before+1, fwdCeiling)
	reconnected := time.Since(up)
	if reconnected > 30*time.Second {
		t.Errorf("first delivery %v after the receiver came back; the health check should find it within about 5 s", reconnected.Round(time.Second))
	}
	evs := srv.WaitEvents(total, fwdCeiling)
	caughtUp := time.Since(up)
	rssEnd, peak := pluginMemory(t, pid)
	gate.signal(t, "stop")
	c.wait(t)
	faultExited(t, c)
	fwdCheckLines(t, "receiver", evs, total, true)

	times := faultTimes(t, c)
	if len(times) != total {
		t.Fatalf("the file holds %d records, want %d", len(times), total)
	}
	rateBefore, rateDown := faultSpanRate(times[:before]), faultSpanRate(times[before:])
	if rateDown < rateBefore/2 {
		t.Errorf("the container logged %.0f lines/s while the receiver was down, %.0f before: it was held back", rateDown, rateBefore)
	}
	if peak > faultRSSBound {
		t.Errorf("the plugin process peaked at %s resident, over the bound of %s", mib(peak), mib(faultRSSBound))
	}
	t.Logf("%d lines at %.0f/s before the outage, %d at %.0f/s during it (logged in %v, longest pause %v); first delivered %v and all %v after the receiver came back; test %v",
		before, rateBefore, during, rateDown, logged.Round(time.Millisecond), faultMaxGap(times[before:]).Round(time.Millisecond),
		reconnected.Round(time.Millisecond), caughtUp.Round(time.Millisecond), time.Since(started).Round(time.Second))
	t.Logf("plugin RSS: %s when the receiver went down, %s at the end of the outage (peak %s), %s once caught up (peak %s); bound %s",
		mib(rssDown), mib(rssOutage), mib(peakOutage), mib(rssEnd), mib(peak), mib(faultRSSBound))
	for _, err := range srv.TakeViolations() {
		t.Errorf("protocol violation: %v", err)
	}
}
