package fluentd

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

func tcp(addr string) []Server { return []Server{{Network: "tcp", Address: addr}} }

var local = tcp("127.0.0.1:24224")

func TestParseConfigValid(t *testing.T) {
	tests := []struct {
		name string
		opts map[string]string
		want Config
	}{
		{"empty address means Docker's default", map[string]string{KeyAddress: ""}, Config{Servers: local}},
		{"host only", map[string]string{KeyAddress: "fluentd"}, Config{Servers: tcp("fluentd:24224")}},
		{"host and port", map[string]string{KeyAddress: "192.168.1.1:123"}, Config{Servers: tcp("192.168.1.1:123")}},
		{"host and empty port", map[string]string{KeyAddress: "example.com:"}, Config{Servers: tcp("example.com:24224")}},
		{"only a colon", map[string]string{KeyAddress: ":"}, Config{Servers: local}},
		{"only a port", map[string]string{KeyAddress: ":65535"}, Config{Servers: tcp("127.0.0.1:65535")}},
		{"IPv6", map[string]string{KeyAddress: "[::1]"}, Config{Servers: tcp("[::1]:24224")}},
		{"tcp scheme", map[string]string{KeyAddress: "tcp://"}, Config{Servers: local}},
		{"tcp URL", map[string]string{KeyAddress: "tcp://example.com:1"}, Config{Servers: tcp("example.com:1")}},
		{"tls URL", map[string]string{KeyAddress: "tls://example.com"}, Config{Servers: []Server{{Network: "tls", Address: "example.com:24224"}}}},
		{"unix", map[string]string{KeyAddress: "unix:///run/f.sock"}, Config{Servers: []Server{{Network: "unix", Address: "/run/f.sock"}}}},
		{"unix with colon", map[string]string{KeyAddress: "unix:///some/socket.sock:80"}, Config{Servers: []Server{{Network: "unix", Address: "/some/socket.sock:80"}}}},
		{"several", map[string]string{KeyAddress: "a:1, tls://b ,unix:///c"}, Config{Servers: []Server{{Network: "tcp", Address: "a:1"}, {Network: "tls", Address: "b:24224"}, {Network: "unix", Address: "/c"}}}},
		{"async options change nothing", map[string]string{KeyAddress: "", KeyAsync: "true", KeyAsyncConnect: "false"}, Config{Servers: local}},
		{"reconnect interval", map[string]string{KeyAddress: "", KeyAsyncReconnectInterval: "100ms"}, Config{Servers: local, ReconnectInterval: 100 * time.Millisecond}},
		{"reconnect interval 10s", map[string]string{KeyAddress: "", KeyAsyncReconnectInterval: "10s"}, Config{Servers: local, ReconnectInterval: 10 * time.Second}},
		{"reconnect interval 0", map[string]string{KeyAddress: "", KeyAsyncReconnectInterval: "0"}, Config{Servers: local}},
		{"buffer limit", map[string]string{KeyAddress: "", KeyBufferLimit: "8k"}, Config{Servers: local, QueueEvents: 8192}},
		{"buffer limit plain", map[string]string{KeyAddress: "", KeyBufferLimit: "100"}, Config{Servers: local, QueueEvents: 100}},
		{"buffer limit 0 as in Docker", map[string]string{KeyAddress: "", KeyBufferLimit: "0"}, Config{Servers: local, QueueEvents: 8192}},
		{"buffer bytes", map[string]string{KeyAddress: "", KeyBufferBytes: "16m"}, Config{Servers: local, QueueBytes: 16 << 20}},
		{"retry wait", map[string]string{KeyAddress: "", KeyRetryWait: "250ms"}, Config{Servers: local, RetryWait: 250 * time.Millisecond}},
		{"retry wait 0 as in Docker", map[string]string{KeyAddress: "", KeyRetryWait: "0s"}, Config{Servers: local, RetryWait: 500 * time.Millisecond}},
		{"max retries", map[string]string{KeyAddress: "", KeyMaxRetries: "5"}, Config{Servers: local, MaxRetries: 5}},
		{"max retries 0 as in Docker", map[string]string{KeyAddress: "", KeyMaxRetries: "0"}, Config{Servers: local, MaxRetries: 13}},
		{"max retries max", map[string]string{KeyAddress: "", KeyMaxRetries: "2147483647"}, Config{Servers: local, MaxRetries: 2147483647}},
		{"sub-second precision true", map[string]string{KeyAddress: "", KeySubSecondPrecision: "true"}, Config{Servers: local}},
		{"sub-second precision false", map[string]string{KeyAddress: "", KeySubSecondPrecision: "false"}, Config{Servers: local, SecondPrecision: true}},
		{"request ack", map[string]string{KeyAddress: "", KeyRequestAck: "1"}, Config{Servers: local, RequestAck: true}},
		{"write timeout", map[string]string{KeyAddress: "", KeyWriteTimeout: "10s"}, Config{Servers: local, WriteTimeout: 10 * time.Second}},
		{"write timeout 0 means none", map[string]string{KeyAddress: "", KeyWriteTimeout: "0"}, Config{Servers: local, WriteTimeout: -1}},
		{"read timeout", map[string]string{KeyAddress: "", KeyReadTimeout: "1m"}, Config{Servers: local, AckTimeout: time.Minute}},
		{"read timeout 0 means none", map[string]string{KeyAddress: "", KeyReadTimeout: "0s"}, Config{Servers: local, AckTimeout: -1}},
		{"mode message", map[string]string{KeyAddress: "", KeyMode: "message"}, Config{Servers: local, Mode: ModeMessage}},
		{"mode forward", map[string]string{KeyAddress: "", KeyMode: "forward"}, Config{Servers: local, Mode: ModeForward}},
		{"mode packedforward", map[string]string{KeyAddress: "", KeyMode: "packedforward"}, Config{Servers: local}},
		{"gzip", map[string]string{KeyAddress: "", KeyCompress: "gzip"}, Config{Servers: local, Gzip: true}},
		{"no compression", map[string]string{KeyAddress: "", KeyCompress: "none", KeyMode: "forward"}, Config{Servers: local, Mode: ModeForward}},
		{"batch size", map[string]string{KeyAddress: "", KeyBatchSize: "256k"}, Config{Servers: local, BatchSize: 256 << 10}},
		{"flush interval", map[string]string{KeyAddress: "", KeyFlushInterval: "200ms"}, Config{Servers: local, FlushInterval: 200 * time.Millisecond}},
		{"health check interval", map[string]string{KeyAddress: "", KeyHealthCheckInterval: "1s"}, Config{Servers: local, HealthCheckInterval: time.Second}},
		{"json", map[string]string{KeyAddress: "", KeyLogFormat: "json"}, Config{Servers: local, SharedOptions: forward.SharedOptions{JSONFields: true}}},
		{"text", map[string]string{KeyAddress: "", KeyLogFormat: "text"}, Config{Servers: local}},
		{"partial merge", map[string]string{KeyAddress: "", KeyPartialMerge: "true", KeyPartialMergeTimeout: "2s"}, Config{Servers: local, SharedOptions: forward.SharedOptions{PartialMerge: true, Merge: forward.MergeConfig{Timeout: 2 * time.Second}}}},
		{"tls server name and insecure", map[string]string{KeyAddress: "tls://x", KeyTLSServerName: "fluentd.example", KeyTLSInsecureSkipVerify: "true"},
			Config{Servers: []Server{{Network: "tls", Address: "x:24224"}}, TLS: TLSConfig{ServerName: "fluentd.example", InsecureSkipVerify: true}}},
		{"failover is the default", map[string]string{KeyAddress: "a,b", KeyBalance: "failover"}, Config{Servers: []Server{{Network: "tcp", Address: "a:24224"}, {Network: "tcp", Address: "b:24224"}}}},
		{"weighted", map[string]string{KeyAddress: "a?weight=60, tls://b:1?weight=20,unix:///c?standby, d", KeyBalance: "weighted"},
			Config{Balance: BalanceWeighted, Servers: []Server{{Network: "tcp", Address: "a:24224", Weight: 60}, {Network: "tls", Address: "b:1", Weight: 20}, {Network: "unix", Address: "/c", Standby: true}, {Network: "tcp", Address: "d:24224"}}}},
		{"standby=true", map[string]string{KeyAddress: "a,b?standby=true", KeyBalance: "weighted"},
			Config{Balance: BalanceWeighted, Servers: []Server{{Network: "tcp", Address: "a:24224"}, {Network: "tcp", Address: "b:24224", Standby: true}}}},
		{"other keys are not ours", map[string]string{KeyAddress: "", "tag": "{{.Name}}", "labels": "a", "max-size": "1m"}, Config{Servers: local}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, enabled, err := ParseConfig(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !enabled {
				t.Error("not enabled")
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseConfigDisabled(t *testing.T) {
	for _, opts := range []map[string]string{nil, {}, {"tag": "x", "max-size": "1m"}, {KeyLogFormat: "json"}} {
		if _, enabled, err := ParseConfig(opts); enabled || err != nil {
			t.Errorf("ParseConfig(%v) = enabled %v, %v; want disabled", opts, enabled, err)
		}
	}
}

func TestParseConfigInvalid(t *testing.T) {
	tests := []struct {
		name    string
		opts    map[string]string
		key     string // the option the error must name
		mention string // and something the error must say
	}{
		{"fluentd option without address", map[string]string{KeyAsync: "true"}, KeyAsync, "needs fluentd-address"},
		{"missing scheme", map[string]string{KeyAddress: "://"}, KeyAddress, "missing protocol scheme"},
		{"unknown scheme", map[string]string{KeyAddress: "something://"}, KeyAddress, `unsupported scheme "something"`},
		{"udp", map[string]string{KeyAddress: "udp://x"}, KeyAddress, "unsupported scheme"},
		{"unixgram", map[string]string{KeyAddress: "unixgram:///x"}, KeyAddress, "unsupported scheme"},
		{"tcp+tls", map[string]string{KeyAddress: "tcp+tls://x"}, KeyAddress, "unsupported scheme"},
		{"bad port", map[string]string{KeyAddress: "corrupted:c"}, KeyAddress, "port"},
		{"named port", map[string]string{KeyAddress: "tcp://example.com:port"}, KeyAddress, "port"},
		{"negative port", map[string]string{KeyAddress: "tcp://example.com:-1"}, KeyAddress, "port"},
		{"port too big", map[string]string{KeyAddress: "tcp://example.com:65536"}, KeyAddress, "port"},
		{"port 0", map[string]string{KeyAddress: "example.com:0"}, KeyAddress, "port"},
		{"path", map[string]string{KeyAddress: "tcp://example.com:1/x"}, KeyAddress, "only a host and port"},
		{"path without scheme", map[string]string{KeyAddress: "example.com/"}, KeyAddress, "only a host and port"},
		{"empty unix", map[string]string{KeyAddress: "unix://"}, KeyAddress, "absolute path"},
		{"relative unix", map[string]string{KeyAddress: "unix://run/f.sock"}, KeyAddress, "absolute path"},
		{"empty list element", map[string]string{KeyAddress: "a,,b"}, KeyAddress, "empty address"},
		{"duplicate", map[string]string{KeyAddress: "a:1,tcp://a:1"}, KeyAddress, "twice"},
		{"balance", map[string]string{KeyAddress: "", KeyBalance: "round-robin"}, KeyBalance, "failover or weighted"},
		{"weight without weighted", map[string]string{KeyAddress: "a?weight=2"}, KeyAddress, "?weight=2 needs fluentd-balance=weighted"},
		{"standby with failover", map[string]string{KeyAddress: "a,b?standby", KeyBalance: "failover"}, KeyAddress, "needs fluentd-balance=weighted"},
		{"weight 0", map[string]string{KeyAddress: "a?weight=0", KeyBalance: "weighted"}, KeyAddress, "from 1 to 10000"},
		{"weight too big", map[string]string{KeyAddress: "a?weight=10001", KeyBalance: "weighted"}, KeyAddress, "from 1 to 10000"},
		{"weight not a number", map[string]string{KeyAddress: "a?weight=half", KeyBalance: "weighted"}, KeyAddress, "whole number"},
		{"unknown suffix", map[string]string{KeyAddress: "a?primary", KeyBalance: "weighted"}, KeyAddress, "unknown suffix ?primary"},
		{"only standbys", map[string]string{KeyAddress: "a?standby,b?standby", KeyBalance: "weighted"}, KeyAddress, "every server is a standby"},
		{"duplicate with weights", map[string]string{KeyAddress: "a?weight=1,a?weight=2", KeyBalance: "weighted"}, KeyAddress, "twice"},
		{"async", map[string]string{KeyAddress: "", KeyAsync: "yes"}, KeyAsync, "true or false"},
		{"async connect", map[string]string{KeyAddress: "", KeyAsyncConnect: "nope"}, KeyAsyncConnect, "true or false"},
		{"reconnect interval too short", map[string]string{KeyAddress: "", KeyAsyncReconnectInterval: "99ms"}, KeyAsyncReconnectInterval, "100ms to 10s"},
		{"reconnect interval too long", map[string]string{KeyAddress: "", KeyAsyncReconnectInterval: "11s"}, KeyAsyncReconnectInterval, "100ms to 10s"},
		{"reconnect interval no unit", map[string]string{KeyAddress: "", KeyAsyncReconnectInterval: "1"}, KeyAsyncReconnectInterval, "duration"},
		{"reconnect interval negative", map[string]string{KeyAddress: "", KeyAsyncReconnectInterval: "-1s"}, KeyAsyncReconnectInterval, "duration"},
		{"buffer limit", map[string]string{KeyAddress: "", KeyBufferLimit: "lots"}, KeyBufferLimit, "number of events"},
		{"buffer bytes", map[string]string{KeyAddress: "", KeyBufferBytes: "-1"}, KeyBufferBytes, "size"},
		{"buffer bytes 0", map[string]string{KeyAddress: "", KeyBufferBytes: "0"}, KeyBufferBytes, "1 byte or more"},
		{"retry wait", map[string]string{KeyAddress: "", KeyRetryWait: "1"}, KeyRetryWait, "duration"},
		{"retry wait negative", map[string]string{KeyAddress: "", KeyRetryWait: "-1s"}, KeyRetryWait, "duration"},
		{"max retries", map[string]string{KeyAddress: "", KeyMaxRetries: "-1"}, KeyMaxRetries, "whole number"},
		{"max retries too big", map[string]string{KeyAddress: "", KeyMaxRetries: "2147483648"}, KeyMaxRetries, "2147483647"},
		{"sub-second precision", map[string]string{KeyAddress: "", KeySubSecondPrecision: "maybe"}, KeySubSecondPrecision, "true or false"},
		{"request ack", map[string]string{KeyAddress: "", KeyRequestAck: "please"}, KeyRequestAck, "true or false"},
		{"write timeout", map[string]string{KeyAddress: "", KeyWriteTimeout: "-1s"}, KeyWriteTimeout, "duration"},
		{"write timeout no unit", map[string]string{KeyAddress: "", KeyWriteTimeout: "1"}, KeyWriteTimeout, "duration"},
		{"read timeout", map[string]string{KeyAddress: "", KeyReadTimeout: "soon"}, KeyReadTimeout, "duration"},
		{"mode", map[string]string{KeyAddress: "", KeyMode: "PackedForward"}, KeyMode, "packedforward, forward or message"},
		{"compress", map[string]string{KeyAddress: "", KeyCompress: "zstd"}, KeyCompress, "gzip or none"},
		{"gzip in message mode", map[string]string{KeyAddress: "", KeyCompress: "gzip", KeyMode: "message"}, KeyCompress, "packedforward"},
		{"batch size", map[string]string{KeyAddress: "", KeyBatchSize: "big"}, KeyBatchSize, "size"},
		{"batch size 0", map[string]string{KeyAddress: "", KeyBatchSize: "0"}, KeyBatchSize, "64m"},
		{"batch size too big", map[string]string{KeyAddress: "", KeyBatchSize: "65m"}, KeyBatchSize, "64m"},
		{"flush interval 0", map[string]string{KeyAddress: "", KeyFlushInterval: "0s"}, KeyFlushInterval, "positive"},
		{"health check interval", map[string]string{KeyAddress: "", KeyHealthCheckInterval: "x"}, KeyHealthCheckInterval, "positive"},
		{"log format", map[string]string{KeyAddress: "", KeyLogFormat: "logfmt"}, KeyLogFormat, `"text" or "json"`},
		{"log format without forwarding", map[string]string{KeyLogFormat: "yaml"}, KeyLogFormat, `"text" or "json"`},
		{"partial merge", map[string]string{KeyAddress: "", KeyPartialMerge: "on"}, KeyPartialMerge, "true or false"},
		{"partial merge timeout", map[string]string{KeyAddress: "", KeyPartialMergeTimeout: "0s"}, KeyPartialMergeTimeout, "positive"},
		{"tls option on tcp", map[string]string{KeyAddress: "tcp://x", KeyTLSServerName: "x"}, KeyTLSServerName, "tls://"},
		{"tls ca on unix", map[string]string{KeyAddress: "unix:///x", KeyTLSCA: "/ca.pem"}, KeyTLSCA, "tls://"},
		{"tls insecure", map[string]string{KeyAddress: "tls://x", KeyTLSInsecureSkipVerify: "si"}, KeyTLSInsecureSkipVerify, "true or false"},
		{"tls ca missing", map[string]string{KeyAddress: "tls://x", KeyTLSCA: "/nonexistent/ca.pem"}, KeyTLSCA, "readable PEM"},
		{"tls cert without key", map[string]string{KeyAddress: "tls://x", KeyTLSCert: "/c.pem"}, KeyTLSCert, "fluentd-tls-key"},
		{"tls key without cert", map[string]string{KeyAddress: "tls://x", KeyTLSKey: "/k.pem"}, KeyTLSKey, "fluentd-tls-cert"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, enabled, err := ParseConfig(tc.opts)
			if err == nil {
				t.Fatalf("no error (enabled %v)", enabled)
			}
			if !errors.Is(err, forward.ErrInvalidOption) {
				t.Errorf("error %v does not wrap forward.ErrInvalidOption", err)
			}
			want := tc.key + "=" + `"` + tc.opts[tc.key] + `"`
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q should name %s and say %q", err, want, tc.mention)
			}
		})
	}
}

func TestParseConfigTLSFiles(t *testing.T) {
	dir := t.TempDir()
	ca := fluentdtest.NewCA(t)
	certPEM, keyPEM := ca.Issue("client")
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile, certFile, keyFile := write("ca.pem", ca.CertPEM), write("cert.pem", certPEM), write("key.pem", keyPEM)
	garbage := write("garbage.pem", []byte("not PEM"))

	cfg, _, err := ParseConfig(map[string]string{KeyAddress: "tls://x", KeyTLSCA: caFile, KeyTLSCert: certFile, KeyTLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS != (TLSConfig{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}) {
		t.Errorf("TLS %+v", cfg.TLS)
	}
	for _, tc := range []struct {
		opts map[string]string
		key  string
	}{
		{map[string]string{KeyAddress: "tls://x", KeyTLSCA: garbage}, KeyTLSCA},
		{map[string]string{KeyAddress: "tls://x", KeyTLSCert: certFile, KeyTLSKey: garbage}, KeyTLSCert},
		{map[string]string{KeyAddress: "tls://x", KeyTLSCert: caFile, KeyTLSKey: keyFile}, KeyTLSCert},
	} {
		_, _, err := ParseConfig(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.key+"=") {
			t.Errorf("ParseConfig(%v) = %v, want an error naming %s", tc.opts, err, tc.key)
		}
	}
}

func TestKeys(t *testing.T) {
	if !slices.IsSorted(Keys) {
		t.Error("Keys not sorted")
	}
	for _, k := range Keys {
		if !strings.HasPrefix(k, "fluentd-") {
			t.Errorf("%s lacks the fluentd- prefix", k)
		}
	}
	// Every option of Docker's fluentd driver (20.10 and current) except
	// the driver's own tag/labels/env.
	docker := []string{
		"fluentd-address", "fluentd-async", "fluentd-async-connect", "fluentd-async-reconnect-interval",
		"fluentd-buffer-limit", "fluentd-max-retries", "fluentd-request-ack", "fluentd-retry-wait",
		"fluentd-sub-second-precision", "fluentd-write-timeout", "fluentd-read-timeout",
	}
	for _, k := range docker {
		if !slices.Contains(Keys, k) {
			t.Errorf("Keys lacks Docker's %s", k)
		}
	}
	for _, k := range []string{"tag", "labels", "labels-regex", "env", "env-regex"} {
		if slices.Contains(Keys, k) {
			t.Errorf("Keys has the driver's %s", k)
		}
	}
	// Every key parses with some valid value.
	valid := map[string]string{
		KeyAddress: "tls://x", KeyAsync: "true", KeyAsyncConnect: "true", KeyAsyncReconnectInterval: "1s",
		KeyBalance: "weighted", KeyBatchSize: "1k", KeyBufferBytes: "1m", KeyBufferLimit: "10", KeyCompress: "gzip", KeyFlushInterval: "1s",
		KeyHealthCheckInterval: "1s", KeyLogFormat: "json", KeyMaxRetries: "1", KeyMode: "packedforward",
		KeyPartialMerge: "true", KeyPartialMergeTimeout: "1s", KeyReadTimeout: "1s", KeyRequestAck: "true",
		KeyRetryWait: "1s", KeySubSecondPrecision: "true", KeyTLSInsecureSkipVerify: "true",
		KeyTLSServerName: "x", KeyWriteTimeout: "1s",
	}
	for _, k := range append(slices.Clone(Keys), forward.SharedKeys...) {
		if _, ok := valid[k]; !ok && !slices.Contains(forward.BufferKeys, k) && k != KeyTLSCA && k != KeyTLSCert && k != KeyTLSKey {
			t.Errorf("no valid value for %s in this test", k)
		}
	}
	if _, _, err := ParseConfig(valid); err != nil {
		t.Error(err)
	}
}
