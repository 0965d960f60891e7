package fluentd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/logferry/logferry/forward"
)

// watch runs beside the sender until ctx is done: it resolves host names
// at once and every ResolveInterval, and probes the servers every
// HealthCheckInterval.
func (s *Sink) watch(ctx context.Context) {
	s.resolve(ctx)
	resolve := time.NewTicker(s.cfg.ResolveInterval)
	defer resolve.Stop()
	health := time.NewTicker(s.cfg.HealthCheckInterval)
	defer health.Stop()
	// The servers seen down at the last check: one back wakes the sender,
	// whichever sink's probe or delivery found it back.
	wasDown := map[*server]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-resolve.C:
			s.resolve(ctx)
		case <-health.C:
			s.probe(ctx)
			list := s.list()
			for _, srv := range list {
				down := srv.down.Load()
				if wasDown[srv] && !down {
					s.wake.Signal()
				}
				wasDown[srv] = down
			}
			maps.DeleteFunc(wasDown, func(srv *server, _ bool) bool { return !slices.Contains(list, srv) })
		}
	}
}

// probe checks, at once, every server that is down or has delivered
// nothing for a health-check interval, unless another sink did within
// the interval: connecting (and authenticating) makes it up, failing
// down. A server coming back wakes a sender waiting to retry. Servers in
// use are proven by their deliveries, and a dead one found by the
// sender's failure.
func (s *Sink) probe(ctx context.Context) {
	var wg sync.WaitGroup
	idle := time.Now().Add(-s.cfg.HealthCheckInterval).UnixNano()
	for _, srv := range s.list() {
		if !srv.down.Load() && srv.lastOK.Load() > idle || !srv.claimProbe(s.cfg.HealthCheckInterval) {
			continue
		}
		wg.Go(func() {
			conn, _, err := s.dial(ctx, srv)
			if err == nil && !s.cfg.Auth.enabled() {
				err = s.noHelo(conn, srv)
			}
			if err != nil {
				if ctx.Err() == nil {
					s.noteFailure(srv, err)
				}
				return
			}
			conn.Close()
			s.markUp(srv)
		})
	}
	wg.Wait()
}

// heloWait is how long a probe without a shared key waits for a HELO: a
// server asking for the handshake sends it as soon as it accepts.
const heloWait = 200 * time.Millisecond

// noHelo checks that a server probed without a shared key does not ask
// for the handshake, and records what it finds; it closes conn on error.
func (s *Sink) noHelo(conn net.Conn, srv *server) error {
	conn.SetReadDeadline(time.Now().Add(min(heloWait, s.cfg.DialTimeout)))
	var b [1]byte
	n, err := conn.Read(b[:])
	var ne net.Error
	switch {
	case n > 0:
		conn.Close()
		srv.wantsAuth.Store(true)
		return fmt.Errorf("probe %q: %w", srv.String(), errWantsAuth)
	case errors.As(err, &ne) && ne.Timeout():
		srv.wantsAuth.Store(false)
		return nil
	default:
		conn.Close()
		return fmt.Errorf("probe %q: the server closed the connection at once: %w", srv.String(), err)
	}
}

// resolve looks up the host names of the configured servers and
// publishes one server per address, keeping the servers (and their
// health, counters and links) whose address did not change. A name that
// does not resolve keeps its last addresses.
func (s *Sink) resolve(ctx context.Context) {
	old := s.list()
	var next []*server
	for _, cfg := range s.cfg.Servers {
		var mine []*server
		for _, srv := range old {
			if srv.Server == cfg {
				mine = append(mine, srv)
			}
		}
		host, port, err := net.SplitHostPort(cfg.Address)
		if cfg.Network == "unix" || err != nil {
			next = append(next, mine...)
			continue
		}
		if _, err := netip.ParseAddr(host); err == nil {
			next = append(next, mine...)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		ips, err := s.cfg.lookup(lctx, host)
		cancel()
		if err != nil || len(ips) == 0 {
			if ctx.Err() == nil {
				s.log.Warn("resolve "+host, "cannot resolve a Fluentd server's host name, keeping its addresses", "server", cfg.String(), "error", err)
			}
			next = append(next, mine...)
			continue
		}
		addrs := make([]string, 0, len(ips))
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip.String(), port))
		}
		slices.Sort(addrs)
		addrs = slices.Compact(addrs)
		for _, a := range addrs {
			i := slices.IndexFunc(mine, func(srv *server) bool { return srv.addr == a })
			if i >= 0 {
				next = append(next, mine[i])
				continue
			}
			tc := mine[0].tls // the same for every address of the name
			h := s.cfg.health.acquire(healthKey(s.cfg, cfg, a))
			next = append(next, &server{Server: cfg, addr: a, tls: tc, health: h})
		}
	}
	if !slices.Equal(old, next) {
		for _, srv := range next {
			if !slices.Contains(old, srv) {
				s.log.Info("resolve "+srv.String(), "Fluentd server address", "server", srv.String())
			}
		}
		s.servers.Store(&next)
		for _, srv := range old {
			if !slices.Contains(next, srv) {
				s.cfg.health.release(srv.health)
			}
		}
	}
}

// State is a Fluentd server's state in the metrics.
const (
	// StateUp is a healthy server taking batches.
	StateUp = "up"
	// StateStandby is a healthy server taking none while another is up.
	StateStandby = "standby"
	// StateDown is a server whose last connection, delivery or probe failed.
	StateDown = "down"
)

// serverCounters returns what went to each server, and its state.
func (s *Sink) serverCounters() []forward.ServerCounters {
	list := s.list()
	weighted := s.cfg.Balance == BalanceWeighted
	active := false // a server that is not a standby is up, or with failover, one before
	out := make([]forward.ServerCounters, 0, len(list))
	for _, srv := range list {
		st := StateUp
		switch {
		case srv.down.Load():
			st = StateDown
		case !weighted && active:
			st = StateStandby
		case weighted && srv.Standby && slices.ContainsFunc(list, func(o *server) bool { return rank(o) == 0 }):
			st = StateStandby
		}
		active = active || st == StateUp
		c := forward.ServerCounters{
			Server: srv.String(), State: st,
			Emitted: srv.events.Load(), Bytes: srv.bytes.Load(),
			Acks: srv.acks.Load(), Failures: srv.failures.Load(),
		}
		if weighted {
			c.Weight = srv.Weight
		}
		out = append(out, c)
	}
	return out
}
