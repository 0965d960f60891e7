package fluentd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

// weighted parses a weighted configuration of addr, with small batches so
// that shares show over a few thousand lines.
func weighted(t *testing.T, addr string, opts ...string) Config {
	t.Helper()
	m := map[string]string{KeyAddress: addr, KeyBalance: "weighted", KeyBatchSize: "2k"}
	for i := 0; i+1 < len(opts); i += 2 {
		m[opts[i]] = opts[i+1]
	}
	cfg, _, err := ParseConfig(m)
	if err != nil {
		t.Fatal(err)
	}
	return fast(cfg)
}

// serverStates returns the state of each server in the Sink's counters.
func serverStates(s *Sink) map[string]string {
	out := map[string]string{}
	for _, c := range s.Counters().Servers {
		out[c.Server] = c.State
	}
	return out
}

func TestWeightedShares(t *testing.T) {
	const n = 20000
	tests := []struct {
		name    string
		suffix  [3]string // of servers a, b and c
		want    [3]float64
		standby bool
	}{
		{name: "equal weights", suffix: [3]string{"", "", "?standby"}, want: [3]float64{0.5, 0.5, 0}},
		{name: "3 to 1", suffix: [3]string{"?weight=60", "?weight=20", "?standby"}, want: [3]float64{0.75, 0.25, 0}},
		{name: "1 to 2 to 1", suffix: [3]string{"?weight=1", "?weight=2", "?weight=1"}, want: [3]float64{0.25, 0.5, 0.25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var srvs [3]*fluentdtest.Server
			var addrs []string
			for i := range srvs {
				srvs[i] = fluentdtest.NewServer(t, fluentdtest.Config{})
				addrs = append(addrs, srvs[i].URL()+tc.suffix[i])
			}
			s := newSink(t, weighted(t, strings.Join(addrs, ","), KeyRequestAck, "true"), testContainer)
			for i := 0; i < n; i += 100 {
				sendLines(s, i, i+100)
				time.Sleep(time.Millisecond) // batches of about the same size
			}
			closeSink(t, s)
			total := 0
			for i, srv := range srvs {
				got := len(srv.Events())
				total += got
				share := float64(got) / n
				if share < tc.want[i]-0.05 || share > tc.want[i]+0.05 {
					t.Errorf("server %d received %d of %d lines (%.3f), want %.2f +/- 0.05", i, got, n, share, tc.want[i])
				}
				c := s.Counters().Servers[i]
				if c.Emitted != uint64(got) || c.Acks != uint64(len(srv.Requests())) || c.Failures != 0 {
					t.Errorf("server %d counters %+v; it received %d events in %d requests", i, c, got, len(srv.Requests()))
				}
			}
			if total != n {
				t.Errorf("received %d lines, sent %d", total, n)
			}
		})
	}
}

func TestSmoothWeightedRoundRobin(t *testing.T) {
	a := &server{Server: Server{Weight: 5}, health: &health{}}
	b := &server{Server: Server{Weight: 1}, health: &health{}}
	c := &server{Server: Server{Weight: 1}, health: &health{}}
	var got []string
	names := map[*server]string{a: "a", b: "b", c: "c"}
	for range 7 {
		got = append(got, names[pickWeighted([]*server{a, b, c})])
	}
	// nginx's example: the heavy server's turns are spread out.
	if strings.Join(got, "") != "aabacaa" {
		t.Errorf("picks %q, want aabacaa", strings.Join(got, ""))
	}
	b.down.Store(true)
	c.down.Store(true)
	a.down.Store(true)
	if p := pickWeighted([]*server{a, b, c}); p != nil {
		t.Errorf("picked %v with every server down", p)
	}
}

// TestWeightedFailover stops one of two servers while lines flow with
// acknowledgements: the other takes everything at once, nothing is lost,
// and the stopped one takes its share again once it is back.
func TestWeightedFailover(t *testing.T) {
	for _, disk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			a := fluentdtest.NewServer(t, fluentdtest.Config{})
			b := fluentdtest.NewServer(t, fluentdtest.Config{})
			cfg := weighted(t, a.URL()+","+b.URL(), KeyRequestAck, "true")
			if disk {
				cfg.BufferDir = t.TempDir()
			}
			s := newSink(t, cfg, testContainer)
			var sent atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i += 10 {
					select {
					case <-stop:
						return
					default:
					}
					sendLines(s, i, i+10)
					sent.Store(int64(i + 10))
					time.Sleep(time.Millisecond)
				}
			})
			waitFor(t, "both servers to receive", func() bool { return len(a.Events()) > 100 && len(b.Events()) > 100 })
			a.Stop()
			atB := len(b.Events())
			waitFor(t, "b to go on", func() bool { return len(b.Events()) > atB+500 })
			waitFor(t, "a to be seen down", func() bool { return serverStates(s)[a.URL()] == StateDown })
			atA := len(a.Events())
			a.Start()
			waitFor(t, "a to receive again", func() bool { return len(a.Events()) > atA+100 })
			waitFor(t, "a to be seen up", func() bool { return serverStates(s)[a.URL()] == StateUp })
			close(stop)
			wg.Wait()
			closeSink(t, s)
			all := unique(append(logs(a.Events()), logs(b.Events())...))
			if int64(len(all)) != sent.Load() {
				t.Errorf("received %d distinct lines of %d", len(all), sent.Load())
			}
			if c := s.Counters().Servers[0]; c.Failures == 0 {
				t.Errorf("a's counters %+v show no failure", c)
			}
		})
	}
}

// TestStandby sends to a standby only while the other server is down.
func TestStandby(t *testing.T) {
	a := fluentdtest.NewServer(t, fluentdtest.Config{})
	b := fluentdtest.NewServer(t, fluentdtest.Config{})
	s := newSink(t, weighted(t, a.URL()+","+b.URL()+"?standby"), testContainer)
	sendLines(s, 0, 10)
	waitFor(t, "a to receive", func() bool { return len(a.Events()) == 10 })
	waitFor(t, "b to be probed", func() bool { return serverStates(s)[b.URL()] == StateStandby })
	if n := len(b.Events()); n != 0 {
		t.Fatalf("the standby received %d events while a was up", n)
	}
	a.Stop()
	waitFor(t, "a to be seen down", func() bool { return serverStates(s)[a.URL()] == StateDown })
	if st := serverStates(s)[b.URL()]; st != StateUp {
		t.Errorf("standby %s while a is down, want up", st)
	}
	sendLines(s, 10, 20)
	waitFor(t, "b to receive", func() bool { return len(b.Events()) == 10 })
	a.Start()
	waitFor(t, "a to be seen up", func() bool { return serverStates(s)[a.URL()] == StateUp })
	sendLines(s, 20, 30)
	waitFor(t, "a to receive again", func() bool { return len(a.Events()) == 20 })
	if n := len(b.Events()); n != 10 {
		t.Errorf("the standby received %d events, want the 10 sent while a was down", n)
	}
}

// TestFailoverStates shows the first healthy server up, later ones standby.
func TestFailoverStates(t *testing.T) {
	a := fluentdtest.NewServer(t, fluentdtest.Config{})
	b := fluentdtest.NewServer(t, fluentdtest.Config{})
	c := fluentdtest.NewServer(t, fluentdtest.Config{})
	c.Stop()
	s := newSink(t, fast(Config{Servers: append(append(tcp(a.Addr()), tcp(b.Addr())...), tcp(c.Addr())...)}), testContainer)
	want := map[string]string{a.URL(): StateUp, b.URL(): StateStandby, c.URL(): StateDown}
	waitFor(t, fmt.Sprintf("states %v", want), func() bool { return fmt.Sprint(serverStates(s)) == fmt.Sprint(want) })
	for _, c := range s.Counters().Servers {
		if c.Weight != 0 {
			t.Errorf("%s has weight %d with failover", c.Server, c.Weight)
		}
	}
}

// TestEveryAddressOfAName resolves a name to two addresses: both take
// batches; resolved again to one, the other takes no more.
func TestEveryAddressOfAName(t *testing.T) {
	a := fluentdtest.NewServer(t, fluentdtest.Config{})
	_, port, _ := net.SplitHostPort(a.Addr())
	b := fluentdtest.NewServer(t, fluentdtest.Config{Addr: "127.0.0.2:" + port})
	var mu sync.Mutex
	answer := []string{"127.0.0.1", "127.0.0.2"}
	cfg := weighted(t, "fluentd.test:"+port)
	cfg.ResolveInterval = 20 * time.Millisecond
	cfg.lookupHost = func(_ context.Context, host string) ([]net.IPAddr, error) {
		if host != "fluentd.test" {
			return nil, fmt.Errorf("unexpected lookup of %q", host)
		}
		mu.Lock()
		defer mu.Unlock()
		var out []net.IPAddr
		for _, ip := range answer {
			out = append(out, net.IPAddr{IP: net.ParseIP(ip)})
		}
		return out, nil
	}
	s := newSink(t, cfg, testContainer)
	i := 0
	waitFor(t, "both addresses to receive", func() bool {
		sendLines(s, i, i+10)
		i += 10
		time.Sleep(5 * time.Millisecond)
		return len(a.Events()) > 0 && len(b.Events()) > 0
	})
	wantNames := []string{"tcp://fluentd.test:" + port + " (127.0.0.1:" + port + ")", "tcp://fluentd.test:" + port + " (127.0.0.2:" + port + ")"}
	if got := fmt.Sprint(serverNames(s)); got != fmt.Sprint(wantNames) {
		t.Errorf("servers %s, want %s", got, wantNames)
	}
	waitFor(t, fmt.Sprintf("all %d events", i), func() bool { return len(a.Events())+len(b.Events()) == i })
	mu.Lock()
	answer = []string{"127.0.0.2"}
	mu.Unlock()
	waitFor(t, "the name to resolve to one address", func() bool { return len(s.Counters().Servers) == 1 })
	atA := len(a.Events())
	sendLines(s, i, i+100)
	i += 100
	closeSink(t, s)
	waitFor(t, fmt.Sprintf("all %d events", i), func() bool { return len(a.Events())+len(b.Events()) == i })
	if n := len(a.Events()); n != atA {
		t.Errorf("127.0.0.1 received %d events after the name moved away", n-atA)
	}
}

func serverNames(s *Sink) []string {
	var out []string
	for _, c := range s.Counters().Servers {
		out = append(out, c.Server)
	}
	return out
}

// TestAuth runs the handshake against the test server: with the right
// key (and user) events arrive; with anything wrong none do, the server
// is down in the counters and an error names it.
func TestAuth(t *testing.T) {
	tests := []struct {
		name     string
		server   *fluentdtest.Security // nil: no <security>
		auth     Auth
		ack      bool
		wantLog  string // "" when events must arrive
		wantPong string // the refusal the server must have answered
	}{
		{name: "shared key", server: &fluentdtest.Security{SharedKey: "k"}, auth: Auth{SharedKey: "k"}},
		{name: "shared key with acks", server: &fluentdtest.Security{SharedKey: "k"}, auth: Auth{SharedKey: "k"}, ack: true},
		{name: "user and password", server: &fluentdtest.Security{SharedKey: "k", Users: map[string]string{"u": "p"}}, auth: Auth{SharedKey: "k", Username: "u", Password: "p"}},
		{name: "Fluent Bit", server: &fluentdtest.Security{SharedKey: "k", FluentBit: true}, auth: Auth{SharedKey: "k"}, ack: true},
		{name: "Fluent Bit with a user", server: &fluentdtest.Security{SharedKey: "k", FluentBit: true, Users: map[string]string{"u": "p"}}, auth: Auth{SharedKey: "k", Username: "u", Password: "p"}},
		{name: "Fluent Bit, wrong key", server: &fluentdtest.Security{SharedKey: "k", FluentBit: true}, auth: Auth{SharedKey: "x"},
			wantLog: "the server closed the connection after PING", wantPong: "shared_key mismatch"},
		{name: "wrong key", server: &fluentdtest.Security{SharedKey: "k"}, auth: Auth{SharedKey: "x"},
			wantLog: `authentication failed: the server says \"shared_key mismatch\"`, wantPong: "shared_key mismatch"},
		{name: "wrong password", server: &fluentdtest.Security{SharedKey: "k", Users: map[string]string{"u": "p"}}, auth: Auth{SharedKey: "k", Username: "u", Password: "x"},
			wantLog: "username/password mismatch", wantPong: "username/password mismatch"},
		{name: "same host name", server: &fluentdtest.Security{SharedKey: "k", Hostname: "twin"}, auth: Auth{SharedKey: "k", Hostname: "twin"},
			wantLog: "logferry's own host name"},
		{name: "server without security", auth: Auth{SharedKey: "k"}, wantLog: "the server did not send HELO"},
		{name: "no key, acks", server: &fluentdtest.Security{SharedKey: "k"}, ack: true,
			wantLog: "asks for shared-key authentication", wantPong: "invalid ping message"},
		{name: "no key, no acks", server: &fluentdtest.Security{SharedKey: "k"},
			wantLog: "asks for shared-key authentication", wantPong: "invalid ping message"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := fluentdtest.NewServer(t, fluentdtest.Config{Security: tc.server})
			cfg := fast(Config{Servers: tcp(srv.Addr()), Auth: tc.auth, RequestAck: tc.ack, DialTimeout: 300 * time.Millisecond})
			// A file takes the sink's goroutines' writes and the test's
			// reads at once.
			logFile, err := os.Create(filepath.Join(t.TempDir(), "log"))
			if err != nil {
				t.Fatal(err)
			}
			defer logFile.Close()
			logged := func() string {
				b, _ := os.ReadFile(logFile.Name())
				return string(b)
			}
			s, err := New(cfg, testContainer, slog.New(slog.NewTextHandler(logFile, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				s.Close(ctx)
			}()
			if tc.wantLog == "" {
				sendLines(s, 0, 5)
				if got := logs(srv.WaitEvents(5, waitLong)); len(got) != 5 {
					t.Fatalf("received %q", got)
				}
				if srv.Authenticated() == 0 || len(srv.AuthFailures()) != 0 {
					t.Errorf("authenticated %d, failures %q", srv.Authenticated(), srv.AuthFailures())
				}
				return
			}
			i := 0
			waitFor(t, "an error naming the server", func() bool {
				sendLines(s, i, i+1)
				i++
				time.Sleep(20 * time.Millisecond)
				return strings.Contains(logged(), tc.wantLog)
			})
			var line string
			for l := range strings.SplitSeq(logged(), "\n") {
				if strings.Contains(l, tc.wantLog) {
					line = l
					break
				}
			}
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, srv.Addr()) {
				t.Errorf("log line %q should be an error naming %s", line, srv.Addr())
			}
			waitFor(t, "the server down", func() bool { return serverStates(s)[srv.URL()] == StateDown })
			if tc.wantPong != "" {
				if got := srv.AuthFailures(); len(got) == 0 || got[0] != tc.wantPong {
					t.Errorf("the server refused with %q, want %q", got, tc.wantPong)
				}
			}
			if tc.ack || tc.auth.enabled() {
				// Never silently lost: nothing was taken as delivered.
				if st := s.Stats(); st.Emitted != 0 {
					t.Errorf("%d events counted as delivered", st.Emitted)
				}
			}
		})
	}
}

// TestHealthShared: what one sink learns of a server, the other sinks
// of the plugin know at once.
func TestHealthShared(t *testing.T) {
	a := fluentdtest.NewServer(t, fluentdtest.Config{})
	b := fluentdtest.NewServer(t, fluentdtest.Config{})
	hm := newHealthMap()
	var sinks []*Sink
	for range 2 {
		cfg := weighted(t, a.URL()+","+b.URL(), KeyRequestAck, "true")
		cfg.HealthCheckInterval = time.Hour // no probes: only deliveries tell
		cfg.health = hm
		s, err := New(cfg, testContainer, nil)
		if err != nil {
			t.Fatal(err)
		}
		sinks = append(sinks, s)
	}
	t.Cleanup(func() {
		for _, s := range sinks {
			closeSink(t, s)
		}
		if len(hm.m) != 0 {
			t.Errorf("health of %d servers left after every sink closed", len(hm.m))
		}
		checkNoGoroutines(t)
	})
	s1, s2 := sinks[0], sinks[1]
	sendLines(s1, 0, 10)
	sendLines(s2, 0, 10)
	waitFor(t, "20 events", func() bool { return len(a.Events())+len(b.Events()) == 20 })
	a.Stop()
	i := 10
	waitFor(t, "s1 to find a down", func() bool {
		sendLines(s1, i, i+1)
		i++
		time.Sleep(5 * time.Millisecond)
		return serverStates(s1)[a.URL()] == StateDown
	})
	if st := serverStates(s2)[a.URL()]; st != StateDown {
		t.Errorf("s2 sees a %s", st)
	}
	sendLines(s2, 10, 20)
	waitFor(t, "every event at b since a stopped", func() bool { return len(b.Events()) >= 20-len(a.Events())+i-10+10 })
	if c := s2.Counters().Servers[0]; c.Failures != 0 {
		t.Errorf("s2 tried a, down already: %+v", c)
	}
}

func TestHealthKey(t *testing.T) {
	srv := Server{Network: "tls", Address: "fluentd.example:24224"}
	base := Config{Auth: Auth{SharedKey: "secret", Hostname: "h"}}
	key := healthKey(base, srv, "10.0.0.1:24224")
	if strings.Contains(key, "secret") {
		t.Errorf("key %q holds the shared key", key)
	}
	for name, other := range map[string]string{
		"another address": healthKey(base, srv, "10.0.0.2:24224"),
		"another key":     healthKey(Config{Auth: Auth{SharedKey: "other", Hostname: "h"}}, srv, "10.0.0.1:24224"),
		"no key":          healthKey(Config{}, srv, "10.0.0.1:24224"),
		"another CA":      healthKey(Config{Auth: base.Auth, TLS: TLSConfig{CAFile: "/ca.pem"}}, srv, "10.0.0.1:24224"),
		"another name":    healthKey(base, Server{Network: "tls", Address: "other.example:24224"}, "10.0.0.1:24224"),
		"tcp":             healthKey(base, Server{Network: "tcp", Address: "fluentd.example:24224"}, "10.0.0.1:24224"),
	} {
		if other == key {
			t.Errorf("%s: the same key %q", name, key)
		}
	}
	if again := healthKey(base, srv, "10.0.0.1:24224"); again != key {
		t.Errorf("keys differ: %q, %q", key, again)
	}
}
