package fluentd

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// health is what is known of one server address: shared by every sink of
// the plugin that sends to it with the same TLS and authentication
// settings, so that a server one container's sink finds dead is skipped
// by the others at once, and probed once per interval rather than once
// per container.
type health struct {
	// down is set when connecting, authenticating, sending or a probe
	// failed, and cleared when a delivery or a probe succeeds.
	down atomic.Bool
	// lastOK is when (Unix nanoseconds) the server last delivered or
	// passed a probe: a server in use is not probed.
	lastOK atomic.Int64
	// probed is when (Unix nanoseconds) a sink last claimed a probe of
	// the server.
	probed atomic.Int64
	// wantsAuth is set when the server sent HELO to a sink without a
	// shared key: nothing is written to it (it would be lost) until a
	// probe finds it no longer asks.
	wantsAuth atomic.Bool
	key       string
	refs      int // guarded by healthMap.mu
}

// claimProbe reports whether the caller should probe the server now: no
// sink did within interval.
func (h *health) claimProbe(interval time.Duration) bool {
	now := time.Now().UnixNano()
	last := h.probed.Load()
	// A little slack, as the sinks' tickers drift.
	if now-last < int64(interval)*9/10 {
		return false
	}
	return h.probed.CompareAndSwap(last, now)
}

// healthMap holds the health of the servers in use, by key.
type healthMap struct {
	mu sync.Mutex // guards m and every health's refs
	m  map[string]*health
}

func newHealthMap() *healthMap { return &healthMap{m: map[string]*health{}} }

// acquire returns the health of key, shared with the other holders.
func (hm *healthMap) acquire(key string) *health {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	h := hm.m[key]
	if h == nil {
		h = &health{key: key}
		hm.m[key] = h
	}
	h.refs++
	return h
}

// release gives up a health acquire returned.
func (hm *healthMap) release(h *health) {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	if h.refs--; h.refs == 0 {
		delete(hm.m, h.key)
	}
}

// healthKey names a server address with the settings that decide
// whether connecting to it works: the TLS options (the host name is
// verified too) and the credentials, of which only a digest is kept.
func healthKey(cfg Config, srv Server, addr string) string {
	key := fmt.Sprintf("%s|%s|%s", srv.Network, addr, hostOf(srv.Address))
	if srv.Network == "tls" {
		key += fmt.Sprintf("|%+v", cfg.TLS)
	}
	if cfg.Auth.enabled() {
		sum := sha256.Sum256([]byte(cfg.Auth.SharedKey + "\x00" + cfg.Auth.Username + "\x00" + cfg.Auth.Password + "\x00" + cfg.Auth.Hostname))
		key += "|" + hex.EncodeToString(sum[:])
	}
	return key
}
