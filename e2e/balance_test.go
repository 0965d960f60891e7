//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

// seqScript prints "line 1" to "line n" as fast as the container can.
func seqScript(n int) string {
	return fmt.Sprintf(`seq 1 %d | sed 's/^/line /'`, n)
}

// TestFluentdWeightedShares sends 200 000 lines to two receivers with
// fluentd-balance=weighted: each gets its weight's share within 5 points,
// and every line arrives once. (The shares of a million lines are
// measured by make bench, whose receivers keep no events.)
func TestFluentdWeightedShares(t *testing.T) {
	t.Parallel()
	const n = 200000
	tests := []struct {
		name     string
		suffixes [2]string
		wantA    float64
	}{
		{name: "equal weights", wantA: 0.5},
		{name: "3 to 1", suffixes: [2]string{"?weight=60", "?weight=20"}, wantA: 0.75},
	}
	for _, tc := range tests {
		// One at a time: a million events are a lot to hold for the
		// receivers.
		t.Run(tc.name, func(t *testing.T) {
			a := fluentdtest.NewServer(t, fluentdtest.Config{})
			b := fluentdtest.NewServer(t, fluentdtest.Config{})
			c := run(t, spec{
				driver: suite.driver,
				logOpts: []string{
					"fluentd-address=" + a.Addr() + tc.suffixes[0] + "," + b.Addr() + tc.suffixes[1],
					"fluentd-balance=weighted",
					"fluentd-request-ack=true",
				},
				script: seqScript(n),
			})
			start := time.Now()
			fwdWait(t, fwdCeiling, fmt.Sprintf("%d events at A and B", n), func() bool { return a.EventCount()+b.EventCount() >= n })
			elapsed := time.Since(start)
			c.wait(t)
			na, nb := len(a.Events()), len(b.Events())
			share := float64(na) / float64(na+nb)
			t.Logf("A received %d lines (%.1f%%), B %d (%.1f%%), in %d and %d requests; %.0f lines/s; duplicated chunks %d",
				na, 100*share, nb, 100-100*share, len(a.Requests()), len(b.Requests()), float64(n)/elapsed.Seconds(), a.Duplicates()+b.Duplicates())
			if share < tc.wantA-0.05 || share > tc.wantA+0.05 {
				t.Errorf("A received %.1f%% of the lines, want %.0f%% +/- 5", 100*share, 100*tc.wantA)
			}
			fwdCheckLines(t, "A and B", append(a.Events(), b.Events()...), n, a.Duplicates()+b.Duplicates() == 0)
		})
	}
}

// rateScript logs "line N", burst lines every 10 ms or so (plus the time
// to start usleep), until /sync/stop exists, then "done N".
func rateScript(burst int) string {
	return fmt.Sprintf(`awk 'BEGIN { for (i = 1; ; i++) { print "line " i; if (i %% %d == 0) {
	fflush(); system("usleep 10000")
	if ((getline x < "/sync/stop") >= 0) { print "done " i; exit }
	close("/sync/stop") } } }'`, burst)
}

// arrivals returns when each line number first arrived at any of srvs.
func arrivals(srvs ...*fluentdtest.Server) map[int]time.Time {
	first := map[int]time.Time{}
	for _, srv := range srvs {
		for _, r := range srv.Requests() {
			for _, ev := range r.Events {
				n, ok := lineNumber(fluentdLog(ev))
				if !ok {
					continue
				}
				if at, seen := first[n]; !seen || r.At.Before(at) {
					first[n] = r.At
				}
			}
		}
	}
	return first
}

// TestFluentdFailoverUnderLoad kills one of two weighted receivers while
// about 20 000 lines a second flow with acknowledgements, as a batch
// reaches it (it dies before storing it): that batch's lines are
// delivered by the other within the recovery objective, none is lost,
// and the killed receiver gets lines again within the health-check
// interval of its return.
func TestFluentdFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	const healthCheck = time.Second
	a := fluentdtest.NewServer(t, fluentdtest.Config{})
	b := fluentdtest.NewServer(t, fluentdtest.Config{})
	gate := newFwdSync(t)
	c := create(t, spec{
		driver: suite.driver,
		logOpts: []string{
			"fluentd-address=" + a.Addr() + "," + b.Addr(),
			"fluentd-balance=weighted",
			"fluentd-request-ack=true",
			"fluentd-health-check-interval=" + healthCheck.String(),
		},
		flags:  gate.flag(),
		script: rateScript(400),
	})
	started := time.Now()
	c.start(t)
	fwdWait(t, fwdCeiling, "50000 lines at A and B", func() bool { return a.EventCount() > 25000 && b.EventCount() > 25000 })

	// The next request A gets kills it: the listener and every connection
	// close, as in a crash, and the request is not stored.
	type kill struct {
		at    time.Time
		lines []int
	}
	killed := make(chan kill, 1)
	var armed atomic.Bool
	armed.Store(true)
	a.SetHook(func(req *fluentdtest.Request) fluentdtest.Action {
		if !armed.Swap(false) {
			return fluentdtest.Discard
		}
		k := kill{at: time.Now()}
		for _, ev := range req.Events {
			if n, ok := lineNumber(fluentdLog(ev)); ok {
				k.lines = append(k.lines, n)
			}
		}
		go a.Stop()
		killed <- k
		return fluentdtest.Discard
	})
	var k kill
	select {
	case k = <-killed:
	case <-time.After(fwdCeiling):
		t.Fatal("A got no request to die on")
	}
	t.Logf("%.0f lines/s before the kill; A died with a batch of %d lines", float64(a.EventCount()+b.EventCount())/k.at.Sub(started).Seconds(), len(k.lines))
	rateFrom, linesFrom := time.Now(), a.EventCount()+b.EventCount()
	fwdWait(t, fwdCeiling, "the lost batch's lines at B", func() bool {
		got := arrivals(b)
		for _, n := range k.lines {
			if _, ok := got[n]; !ok {
				return false
			}
		}
		return true
	})
	var recovered time.Time
	got := arrivals(b)
	for _, n := range k.lines {
		if got[n].After(recovered) {
			recovered = got[n]
		}
	}
	rto := recovered.Sub(k.at)
	atB := b.EventCount()
	fwdWait(t, fwdCeiling, "B to go on", func() bool { return b.EventCount() > atB+20000 })
	rate := float64(a.EventCount()+b.EventCount()-linesFrom) / time.Since(rateFrom).Seconds()

	a.SetHook(nil)
	atA := len(a.Requests())
	a.Start()
	back := time.Now()
	fwdWait(t, fwdCeiling, "A to get lines again", func() bool { return len(a.Requests()) > atA })
	rejoin := a.Requests()[atA].At.Sub(back)
	gate.signal(t, "stop")
	c.wait(t)

	n := fwdDoneCount(t, c)
	all := func() []fluentdtest.Event { return append(a.Events(), b.Events()...) }
	fwdWait(t, fwdCeiling, fmt.Sprintf("all %d lines", n), func() bool {
		counts, others := fwdLineNumbers(all())
		return len(counts) >= n && len(others) > 0
	})
	fwdCheckLines(t, "A and B", all(), n, false, fmt.Sprintf("done %d", n))
	t.Logf("RTO %v (the batch A died with, delivered by B), %.0f lines/s after the kill; A back after %v (health checks every %v); %d lines, duplicated chunks: A %d, B %d",
		rto.Round(time.Millisecond), rate, rejoin.Round(time.Millisecond), healthCheck, n, a.Duplicates(), b.Duplicates())
	// Ceilings well above the targets (1 s, and the health-check
	// interval): they catch a failover that waits for a backoff or a
	// timeout, not a slow machine.
	if rto > 5*time.Second {
		t.Errorf("RTO %v: the lines of the batch A died with took that long to reach B", rto)
	}
	if rejoin > healthCheck+5*time.Second {
		t.Errorf("A got lines %v after it came back, with health checks every %v", rejoin, healthCheck)
	}
}

// serverEntry is a server of the fluentd entry in /api/plugins.json.
type serverEntry struct {
	Server      string `json:"server"`
	State       string `json:"state"`
	Weight      int    `json:"weight"`
	EmitRecords uint64 `json:"emit_records"`
	Failures    uint64 `json:"failures"`
}

// TestFluentdSharedKey authenticates to receivers with <security> with
// the key and user from the plugin's settings (the key from a file): the
// one that knows them gets every line; the one with another key gets
// none, refuses the handshake, and is down in the plugin's metrics.
func TestFluentdSharedKey(t *testing.T) {
	t.Parallel()
	const key, user, password = "k3y-for-the-tier", "collector", "pa55"
	good := fluentdtest.NewServer(t, fluentdtest.Config{Security: &fluentdtest.Security{
		SharedKey: key, Hostname: "aggregator-1", Users: map[string]string{user: password}}})
	wrong := fluentdtest.NewServer(t, fluentdtest.Config{Security: &fluentdtest.Security{SharedKey: "another key", Hostname: "aggregator-2"}})

	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "fluentd-key"), []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	alias := pluginAlias("fluentd-key")
	metrics := fwdFreePort(t)
	installPlugin(t, alias, root, "FLUENTD_SHARED_KEY_FILE=/var/lib/logferry/fluentd-key",
		"FLUENTD_USERNAME="+user, "FLUENTD_PASSWORD="+password, "METRICS_ADDR="+metrics)
	if inspect := mustDocker(t, "plugin", "inspect", alias); strings.Contains(inspect, key) {
		t.Error("docker plugin inspect shows the shared key")
	}

	const n = 2000
	gate := newFwdSync(t)
	c := create(t, spec{
		driver: driverOf(alias),
		root:   root,
		logOpts: []string{
			"fluentd-address=" + good.Addr() + "," + wrong.Addr(),
			"fluentd-balance=weighted",
			"fluentd-request-ack=true",
			"fluentd-health-check-interval=500ms",
		},
		flags:  gate.flag(),
		script: fwdWaitScript + pacedScript(1, n, time.Millisecond) + `; await stop`,
	})
	c.start(t)
	fwdCheckLines(t, "the receiver with the key", good.WaitEvents(n, fwdCeiling), n, true)
	if len(wrong.Events()) != 0 {
		t.Errorf("the receiver with another key got %d events", len(wrong.Events()))
	}
	if f := wrong.AuthFailures(); len(f) == 0 || f[0] != "shared_key mismatch" {
		t.Errorf("the receiver with another key refused %q, want shared_key mismatch", f)
	}
	if good.Authenticated() == 0 || len(good.AuthFailures()) != 0 {
		t.Errorf("the receiver with the key: %d authenticated, failures %q", good.Authenticated(), good.AuthFailures())
	}

	var servers []serverEntry
	fwdWait(t, fwdCeiling, "the servers' states in /api/plugins.json", func() bool {
		var err error
		servers, err = fluentdServers(metrics, c)
		return err == nil && len(servers) == 2 && servers[0].EmitRecords == n && servers[1].State == "down"
	})
	t.Logf("servers: %+v", servers)
	if s := servers[0]; s.State != "up" || s.Weight != 60 || s.Server != "tcp://"+good.Addr() {
		t.Errorf("the receiver with the key: %+v", s)
	}
	if s := servers[1]; s.Failures == 0 || s.EmitRecords != 0 || s.Server != "tcp://"+wrong.Addr() {
		t.Errorf("the receiver with another key: %+v", s)
	}
	gate.signal(t, "stop")
	c.wait(t)
}

// fluentdServers returns the servers of c's fluentd entry in
// /api/plugins.json at addr.
func fluentdServers(addr string, c *container) ([]serverEntry, error) {
	e, ok, err := destEntry(addr, c, "fluentd")
	if err == nil && !ok {
		err = fmt.Errorf("no fluentd entry for %s", c)
	}
	return e.Servers, err
}
