package fluentd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"

	"github.com/logferry/logferry/forward"
)

// Option keys. The first group are those of Docker's fluentd driver, with
// its meaning; the rest are logferry's own. The tag, labels, labels-regex,
// env and env-regex options are the driver's: their result arrives in
// forward.Container.
const (
	// KeyAddress is the Fluentd server, or a comma-separated list of them
	// in order of preference: host[:port], tcp://host[:port],
	// tls://host[:port] or unix:///path, each optionally followed by
	// ?weight=N or ?standby with fluentd-balance=weighted. Forwarding is on
	// when it is set.
	KeyAddress = "fluentd-address"
	// KeyAsync is accepted for compatibility: logferry always connects and
	// sends in the background.
	KeyAsync = "fluentd-async"
	// KeyAsyncConnect is the deprecated spelling of KeyAsync (Docker 20.10).
	KeyAsyncConnect = "fluentd-async-connect"
	// KeyAsyncReconnectInterval re-establishes connections this often
	// (0 or 100ms..10s), and resolves host names again, to follow a DNS
	// name that moves.
	KeyAsyncReconnectInterval = "fluentd-async-reconnect-interval"
	// KeyBufferLimit is the most events waiting to be sent.
	KeyBufferLimit = "fluentd-buffer-limit"
	// KeyRetryWait is the first wait between reconnection attempts; it grows
	// 1.5 times per attempt up to a minute.
	KeyRetryWait = "fluentd-retry-wait"
	// KeyMaxRetries is how many attempts a batch gets before it is dropped.
	KeyMaxRetries = "fluentd-max-retries"
	// KeySubSecondPrecision chooses EventTime (true) or integer seconds
	// (false) for event times.
	KeySubSecondPrecision = "fluentd-sub-second-precision"
	// KeyRequestAck asks Fluentd to acknowledge every chunk.
	KeyRequestAck = "fluentd-request-ack"
	// KeyWriteTimeout bounds a write to Fluentd.
	KeyWriteTimeout = "fluentd-write-timeout"
	// KeyReadTimeout bounds the wait for an acknowledgement.
	KeyReadTimeout = "fluentd-read-timeout"

	// KeyMode is the Forward protocol carrier mode: packedforward, forward
	// or message.
	KeyMode = "fluentd-mode"
	// KeyCompress is "gzip" for CompressedPackedForward, or "none".
	KeyCompress = "fluentd-compress"
	// KeyBatchSize is the size (bytes, such as 512k or 1m) at which a batch
	// is sent without waiting for the flush interval.
	KeyBatchSize = "fluentd-batch-size"
	// KeyFlushInterval is the longest an event waits for its batch to fill.
	KeyFlushInterval = "fluentd-flush-interval"
	// KeyBufferBytes is the most bytes of events waiting to be sent.
	KeyBufferBytes = "fluentd-buffer-bytes"
	// KeyHealthCheckInterval is how often servers that are down, or not
	// in use, are probed.
	KeyHealthCheckInterval = "fluentd-health-check-interval"
	// KeyBalance is how batches are spread over the servers: failover
	// (the first healthy server takes them all) or weighted.
	KeyBalance = "fluentd-balance"
	// KeyTLSCA is a PEM file of the CAs that sign the server certificate,
	// replacing the system roots.
	KeyTLSCA = "fluentd-tls-ca"
	// KeyTLSCert is a PEM client certificate file (with KeyTLSKey).
	KeyTLSCert = "fluentd-tls-cert"
	// KeyTLSKey is the PEM private key file of KeyTLSCert.
	KeyTLSKey = "fluentd-tls-key"
	// KeyTLSServerName is the name the server certificate must carry,
	// default the host of the address.
	KeyTLSServerName = "fluentd-tls-server-name"
	// KeyTLSInsecureSkipVerify turns off server certificate verification.
	KeyTLSInsecureSkipVerify = "fluentd-tls-insecure-skip-verify"
	// KeyLogFormat, KeyPartialMerge and KeyPartialMergeTimeout are shared
	// by every destination (see forward.SharedKeys): "json" merges the
	// fields of lines that are JSON objects into the record; partial-merge
	// reassembles lines dockerd split at 16 KiB.
	KeyLogFormat           = forward.KeyLogFormat
	KeyPartialMerge        = forward.KeyPartialMerge
	KeyPartialMergeTimeout = forward.KeyPartialMergeTimeout
)

// Keys lists the options of this destination, sorted: those every
// destination shares (forward.SharedKeys) are not among them.
var Keys = sorted(
	KeyAddress,
	KeyAsync,
	KeyAsyncConnect,
	KeyAsyncReconnectInterval,
	KeyBalance,
	KeyBatchSize,
	KeyBufferBytes,
	KeyBufferLimit,
	KeyCompress,
	KeyFlushInterval,
	KeyHealthCheckInterval,
	KeyMaxRetries,
	KeyMode,
	KeyReadTimeout,
	KeyRequestAck,
	KeyRetryWait,
	KeySubSecondPrecision,
	KeyTLSCA,
	KeyTLSCert,
	KeyTLSInsecureSkipVerify,
	KeyTLSKey,
	KeyTLSServerName,
	KeyWriteTimeout,
)

func sorted(keys ...string) []string {
	slices.Sort(keys)
	return keys
}

// Defaults, where Config's zero value stands for them.
const (
	DefaultPort                = 24224
	DefaultHost                = "127.0.0.1"
	DefaultBatchSize           = 1 << 20
	DefaultFlushInterval       = time.Second
	DefaultRetryWait           = time.Second
	DefaultMaxRetryWait        = time.Minute
	DefaultMaxRetries          = math.MaxInt32
	DefaultWriteTimeout        = 30 * time.Second
	DefaultAckTimeout          = 30 * time.Second
	DefaultDialTimeout         = 3 * time.Second
	DefaultHealthCheckInterval = 5 * time.Second
	// DefaultWeight is a server's weight when its address gives none, as
	// in Fluentd's out_forward.
	DefaultWeight = 60
	// DefaultResolveInterval is how often host names are resolved again
	// when fluentd-async-reconnect-interval does not say.
	DefaultResolveInterval = 30 * time.Second

	maxWeight = 10000

	maxBatchSize         = 64 << 20
	minReconnectInterval = 100 * time.Millisecond
	maxReconnectInterval = 10 * time.Second
)

// What Docker's driver (through fluent-logger-golang) does with an explicit
// 0, kept so that the same --log-opt behaves the same.
const (
	dockerZeroMaxRetries  = 13
	dockerZeroRetryWait   = 500 * time.Millisecond
	dockerZeroBufferLimit = 8192
)

// Mode is a carrier mode of the Forward protocol.
type Mode int

const (
	// ModePackedForward sends a batch as one msgpack bin of entries
	// (gzip-compressed when Config.Gzip): the default.
	ModePackedForward Mode = iota
	// ModeForward sends a batch as one array of entries.
	ModeForward
	// ModeMessage sends every event as its own request, as Docker's driver
	// does; a batch is still written (and acknowledged) together.
	ModeMessage
)

var modeNames = map[Mode]string{
	ModePackedForward: "packedforward",
	ModeForward:       "forward",
	ModeMessage:       "message",
}

func (m Mode) String() string { return modeNames[m] }

// Balance is how batches are spread over the servers.
type Balance int

const (
	// BalanceFailover sends every batch to the first healthy server in
	// the order of Config.Servers: the default, and Docker's behaviour
	// for a single server.
	BalanceFailover Balance = iota
	// BalanceWeighted spreads batches over every healthy server that is
	// not a standby, in proportion to their weights; standbys take them
	// only while no other server is healthy.
	BalanceWeighted
)

var balanceNames = map[Balance]string{
	BalanceFailover: "failover",
	BalanceWeighted: "weighted",
}

func (b Balance) String() string { return balanceNames[b] }

// Server is one Fluentd endpoint.
type Server struct {
	// Network is "tcp", "tls" or "unix".
	Network string
	// Address is host:port, or a socket path for "unix". A host name
	// that resolves to several addresses stands for all of them.
	Address string
	// Weight is the server's share of the batches with BalanceWeighted,
	// relative to the others'; 0 means DefaultWeight.
	Weight int
	// Standby servers take batches, with BalanceWeighted, only while no
	// other server is healthy.
	Standby bool
}

func (s Server) String() string {
	if s.Network == "unix" {
		return "unix://" + s.Address
	}
	return s.Network + "://" + s.Address
}

// TLSConfig configures connections to tls:// servers.
type TLSConfig struct {
	// CAFile is a PEM file of the CAs that sign the server certificate;
	// default the system roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key;
	// default none.
	CertFile, KeyFile string
	// ServerName is the name the server certificate must carry; default
	// the host of the server address.
	ServerName string
	// InsecureSkipVerify accepts any server certificate; default false.
	InsecureSkipVerify bool
}

// Config configures a Sink. The zero value means the defaults.
type Config struct {
	// Servers take batches as Balance says: with BalanceFailover the
	// first healthy one in order (earlier ones are health-checked and
	// returned to when they come back), with BalanceWeighted every
	// healthy one by weight. Default one server, tcp://127.0.0.1:24224.
	Servers []Server
	// Mode is the carrier mode; default ModePackedForward.
	Mode Mode
	// Gzip compresses batches (CompressedPackedForward); only with
	// ModePackedForward. Default false.
	Gzip bool
	// BatchSize is the encoded size in bytes at which a batch is sent at
	// once; default DefaultBatchSize (1 MiB).
	BatchSize int
	// FlushInterval is the longest an event waits for its batch to fill;
	// default DefaultFlushInterval (1s).
	FlushInterval time.Duration
	// QueueEvents and QueueBytes bound the events waiting in memory to be
	// sent (forward.EventSize bytes) when there is no BufferDir; beyond,
	// Buffer.Full applies (by default the oldest are dropped). Defaults
	// forward.DefaultQueueEvents and forward.DefaultQueueBytes (8 MiB).
	QueueEvents int
	QueueBytes  int64
	// BufferDir, when set, is the directory of this container's disk
	// buffer for this destination (see package diskq), set by the driver:
	// events are written there and removed once Fluentd has them (written,
	// or acknowledged with RequestAck), and what is left when the Sink
	// closes or the plugin dies is sent by the next Sink created on the
	// same directory. Empty (the default): events wait in memory only.
	BufferDir string
	// Batches hands out the slabs batches are built in, bounding their
	// memory across sinks; default forward.DefaultBatches.
	Batches *forward.Batches
	// RetryWait is the first wait after a failed attempt; each further
	// consecutive failure waits 1.5 times longer, up to MaxRetryWait.
	// Defaults DefaultRetryWait (1s) and DefaultMaxRetryWait (1m).
	RetryWait    time.Duration
	MaxRetryWait time.Duration
	// MaxRetries is how many failed attempts a batch may have before it is
	// dropped (and counted); default DefaultMaxRetries (2^31-1, forever
	// in practice).
	MaxRetries int
	// SecondPrecision sends times as integer seconds instead of EventTime
	// (nanoseconds). Default false.
	SecondPrecision bool
	// RequestAck sends a chunk ID with every request and resends it until
	// Fluentd acknowledges it (at-least-once). Default false.
	RequestAck bool
	// WriteTimeout bounds writing one batch; default DefaultWriteTimeout
	// (30s), negative for none.
	WriteTimeout time.Duration
	// AckTimeout bounds the wait for an acknowledgement, after which the
	// connection is dropped and the batch resent; default
	// DefaultAckTimeout (30s), negative for none.
	AckTimeout time.Duration
	// DialTimeout bounds connecting, TLS handshake included; default
	// DefaultDialTimeout (3s).
	DialTimeout time.Duration
	// ReconnectInterval, when positive, replaces a connection older than
	// this before sending the next batch. Default 0: keep it.
	ReconnectInterval time.Duration
	// HealthCheckInterval is how often servers that are down, or have not
	// delivered anything for that long, are probed (connecting, and with
	// Auth the handshake); default DefaultHealthCheckInterval (5s).
	HealthCheckInterval time.Duration
	// ResolveInterval is how often host names in Servers are resolved
	// again; default ReconnectInterval if set, else
	// DefaultResolveInterval (30s).
	ResolveInterval time.Duration
	// Balance is how batches are spread over Servers; default
	// BalanceFailover.
	Balance Balance
	// Auth, when its SharedKey is set, authenticates every connection
	// with the Forward protocol's handshake.
	Auth Auth
	// health, if set, is shared with the other sinks of the process;
	// default one of the Sink's own.
	health *healthMap
	// lookupHost, if set, replaces the resolver's LookupIPAddr for tests.
	lookupHost func(ctx context.Context, host string) ([]net.IPAddr, error)
	// TLS applies to tls:// servers.
	TLS TLSConfig
	// SharedOptions are those every destination shares: the buffer's
	// bounds and policy, log-format=json (JSONFields merges the fields of
	// lines that are JSON objects into their records, see
	// forward.JSONFields) and partial-merge (see forward.MergeStage).
	forward.SharedOptions
}

// lookup resolves host to its addresses.
func (cfg Config) lookup(ctx context.Context, host string) ([]net.IPAddr, error) {
	if cfg.lookupHost != nil {
		return cfg.lookupHost(ctx, host)
	}
	return net.DefaultResolver.LookupIPAddr(ctx, host)
}

// withDefaults returns cfg with its zero fields replaced by the defaults.
func (cfg Config) withDefaults() Config {
	if len(cfg.Servers) == 0 {
		cfg.Servers = []Server{{Network: "tcp", Address: net.JoinHostPort(DefaultHost, strconv.Itoa(DefaultPort))}}
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = DefaultRetryWait
	}
	if cfg.MaxRetryWait <= 0 {
		cfg.MaxRetryWait = DefaultMaxRetryWait
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.HealthCheckInterval <= 0 {
		cfg.HealthCheckInterval = DefaultHealthCheckInterval
	}
	if cfg.ResolveInterval <= 0 {
		cfg.ResolveInterval = DefaultResolveInterval
		if cfg.ReconnectInterval > 0 {
			cfg.ResolveInterval = cfg.ReconnectInterval
		}
	}
	cfg.Servers = slices.Clone(cfg.Servers)
	for i := range cfg.Servers {
		if cfg.Servers[i].Weight <= 0 {
			cfg.Servers[i].Weight = DefaultWeight
		}
	}
	return cfg
}

// ParseConfig validates the --log-opt map of a container and returns the
// Sink configuration. enabled reports whether forwarding to Fluentd is on,
// which it is when fluentd-address is present (an empty value means
// 127.0.0.1:24224, as in Docker). Other fluentd-* options without
// fluentd-address are an error, as is any invalid value; errors come from
// forward.OptionError. Keys it does not know are ignored: see Keys.
func ParseConfig(opts map[string]string) (cfg Config, enabled bool, err error) {
	addr, enabled := opts[KeyAddress]
	if !enabled {
		for _, k := range Keys {
			if v, ok := opts[k]; ok {
				return Config{}, false, forward.OptionError(k, v, "needs fluentd-address, which turns forwarding to Fluentd on (Docker's default was fluentd-address=127.0.0.1:24224)")
			}
		}
	}
	p := parser{opts: opts}
	cfg.SharedOptions, p.err = forward.ParseSharedOptions(opts)
	if v, ok := opts[KeyBalance]; ok {
		switch v {
		case "failover":
		case "weighted":
			cfg.Balance = BalanceWeighted
		default:
			p.fail(KeyBalance, "must be failover or weighted")
		}
	}
	if enabled {
		cfg.Servers, err = parseAddresses(addr, cfg.Balance)
		if err != nil {
			return Config{}, false, forward.OptionError(KeyAddress, addr, err.Error()+"; accepted: host[:port], tcp://host[:port], tls://host[:port] or unix:///path, several separated by commas, each followed by ?weight=N (1 to 10000, default 60) or ?standby with fluentd-balance=weighted")
		}
	}
	p.bool(KeyAsync)
	p.bool(KeyAsyncConnect)
	if d, ok := p.duration(KeyAsyncReconnectInterval, "0 or a duration from 100ms to 10s"); ok && d != 0 {
		if d < minReconnectInterval || d > maxReconnectInterval {
			p.fail(KeyAsyncReconnectInterval, "must be 0 or a duration from 100ms to 10s")
		}
		cfg.ReconnectInterval = d
	}
	if n, ok := p.size(KeyBufferLimit, "a number of events such as 8192 or 1m (units count 1024s, as in Docker)"); ok {
		if n == 0 {
			n = dockerZeroBufferLimit
		}
		cfg.QueueEvents = int(min(n, math.MaxInt32))
	}
	if n, ok := p.size(KeyBufferBytes, "a size such as 8m or 512k"); ok {
		if n == 0 {
			p.fail(KeyBufferBytes, "must be a size of 1 byte or more, such as 8m")
		}
		cfg.QueueBytes = n
	}
	if d, ok := p.duration(KeyRetryWait, "a duration such as 1s or 500ms"); ok {
		if d == 0 {
			d = dockerZeroRetryWait
		}
		cfg.RetryWait = d
	}
	if v, ok := opts[KeyMaxRetries]; ok {
		n, err := strconv.ParseUint(v, 10, 32)
		switch {
		case err != nil || n > math.MaxInt32:
			p.fail(KeyMaxRetries, "must be a whole number from 0 to 2147483647")
		case n == 0:
			cfg.MaxRetries = dockerZeroMaxRetries
		default:
			cfg.MaxRetries = int(n)
		}
	}
	if b, ok := p.bool(KeySubSecondPrecision); ok {
		cfg.SecondPrecision = !b
	}
	cfg.RequestAck, _ = p.bool(KeyRequestAck)
	if d, ok := p.duration(KeyWriteTimeout, "a duration such as 10s, 0 for none"); ok {
		cfg.WriteTimeout = noneIfZero(d)
	}
	if d, ok := p.duration(KeyReadTimeout, "a duration such as 30s, 0 for none"); ok {
		cfg.AckTimeout = noneIfZero(d)
	}
	if v, ok := opts[KeyMode]; ok {
		found := false
		for m, name := range modeNames {
			if v == name {
				cfg.Mode, found = m, true
			}
		}
		if !found {
			p.fail(KeyMode, "must be packedforward, forward or message")
		}
	}
	if v, ok := opts[KeyCompress]; ok {
		switch v {
		case "gzip":
			cfg.Gzip = true
			if cfg.Mode != ModePackedForward {
				p.fail(KeyCompress, "gzip needs fluentd-mode=packedforward")
			}
		case "none", "":
		default:
			p.fail(KeyCompress, "must be gzip or none")
		}
	}
	if n, ok := p.size(KeyBatchSize, "a size such as 256k or 1m"); ok {
		if n == 0 || n > maxBatchSize {
			p.fail(KeyBatchSize, "must be a size from 1 byte to 64m, such as 1m")
		}
		cfg.BatchSize = int(n)
	}
	if d, ok := p.duration(KeyFlushInterval, "a positive duration such as 1s or 200ms"); ok {
		if d <= 0 {
			p.fail(KeyFlushInterval, "must be a positive duration such as 1s or 200ms")
		}
		cfg.FlushInterval = d
	}
	if d, ok := p.duration(KeyHealthCheckInterval, "a positive duration such as 5s"); ok {
		if d <= 0 {
			p.fail(KeyHealthCheckInterval, "must be a positive duration such as 5s")
		}
		cfg.HealthCheckInterval = d
	}
	cfg.TLS.CAFile = opts[KeyTLSCA]
	cfg.TLS.CertFile = opts[KeyTLSCert]
	cfg.TLS.KeyFile = opts[KeyTLSKey]
	cfg.TLS.ServerName = opts[KeyTLSServerName]
	cfg.TLS.InsecureSkipVerify, _ = p.bool(KeyTLSInsecureSkipVerify)
	if p.err != nil {
		return Config{}, false, p.err
	}
	if err := checkTLS(cfg, opts); err != nil {
		return Config{}, false, err
	}
	return cfg, enabled, nil
}

// noneIfZero maps Docker's "0 means no timeout" onto Config's negative.
func noneIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// parser collects the first error while parsing options.
type parser struct {
	opts map[string]string
	err  error
}

func (p *parser) fail(key, accepted string) {
	if p.err == nil {
		p.err = forward.OptionError(key, p.opts[key], accepted)
	}
}

func (p *parser) bool(key string) (value, ok bool) {
	v, ok := p.opts[key]
	if !ok {
		return false, false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(key, "must be true or false")
		return false, false
	}
	return b, true
}

// duration parses a non-negative Go duration; accepted describes it.
func (p *parser) duration(key, accepted string) (time.Duration, bool) {
	v, ok := p.opts[key]
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.fail(key, "must be "+accepted)
		return 0, false
	}
	return d, true
}

// size parses a non-negative size with Docker's binary units (1k = 1024).
func (p *parser) size(key, accepted string) (int64, bool) {
	v, ok := p.opts[key]
	if !ok {
		return 0, false
	}
	n, err := units.RAMInBytes(v)
	if err != nil || n < 0 {
		p.fail(key, "must be "+accepted)
		return 0, false
	}
	return n, true
}

// parseAddresses parses a comma-separated fluentd-address the way Docker
// parses one address: no scheme means tcp; tcp and tls take an optional
// host (default 127.0.0.1) and port (default 24224) and no path; unix takes
// an absolute path. udp and unixgram are refused, as by current Docker.
// With BalanceWeighted, each may end with ?weight=N or ?standby.
func parseAddresses(value string, balance Balance) ([]Server, error) {
	var servers []Server
	for a := range strings.SplitSeq(value, ",") {
		a = strings.TrimSpace(a)
		if a == "" && value != "" {
			return nil, fmt.Errorf("empty address in list")
		}
		s, err := parseServer(a, balance)
		if err != nil {
			if a != value {
				return nil, fmt.Errorf("%q: %w", a, err)
			}
			return nil, err
		}
		if slices.ContainsFunc(servers, func(o Server) bool { return o.Network == s.Network && o.Address == s.Address }) {
			return nil, fmt.Errorf("%q is listed twice", a)
		}
		servers = append(servers, s)
	}
	if balance == BalanceWeighted && !slices.ContainsFunc(servers, func(s Server) bool { return !s.Standby }) {
		return nil, fmt.Errorf("every server is a standby")
	}
	return servers, nil
}

// parseServer parses one address of fluentd-address with its ?weight or
// ?standby suffix.
func parseServer(a string, balance Balance) (Server, error) {
	addr, query, found := strings.Cut(a, "?")
	s, err := parseAddress(addr)
	if err != nil || !found {
		return s, err
	}
	if balance != BalanceWeighted {
		return Server{}, fmt.Errorf("?%s needs fluentd-balance=weighted", query)
	}
	switch {
	case query == "standby" || query == "standby=true":
		s.Standby = true
	case strings.HasPrefix(query, "weight="):
		n, err := strconv.Atoi(strings.TrimPrefix(query, "weight="))
		if err != nil || n < 1 || n > maxWeight {
			return Server{}, fmt.Errorf("?%s: the weight must be a whole number from 1 to %d", query, maxWeight)
		}
		s.Weight = n
	default:
		return Server{}, fmt.Errorf("unknown suffix ?%s", query)
	}
	return s, nil
}

func parseAddress(address string) (Server, error) {
	if !strings.Contains(address, "://") {
		address = "tcp://" + address
	}
	u, err := url.Parse(address)
	if err != nil {
		return Server{}, err
	}
	switch u.Scheme {
	case "unix":
		if u.Host != "" || strings.TrimLeft(u.Path, "/") == "" {
			return Server{}, fmt.Errorf("unix socket needs an absolute path: unix:///path/to/socket")
		}
		return Server{Network: "unix", Address: u.Path}, nil
	case "tcp", "tls":
	default:
		return Server{}, fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return Server{}, fmt.Errorf("should be only a host and port")
	}
	host, port := DefaultHost, DefaultPort
	if h := u.Hostname(); h != "" {
		host = h
	}
	if ps := u.Port(); ps != "" {
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || n == 0 {
			return Server{}, fmt.Errorf("invalid port %q", ps)
		}
		port = int(n)
	}
	return Server{Network: u.Scheme, Address: net.JoinHostPort(host, strconv.Itoa(port))}, nil
}

// checkTLS validates the TLS options against the addresses and loads the
// files, so that a wrong path fails the container start and not, later,
// every connection.
func checkTLS(cfg Config, opts map[string]string) error {
	anyTLS := slices.ContainsFunc(cfg.Servers, func(s Server) bool { return s.Network == "tls" })
	for _, k := range []string{KeyTLSCA, KeyTLSCert, KeyTLSKey, KeyTLSServerName, KeyTLSInsecureSkipVerify} {
		if v, ok := opts[k]; ok && !anyTLS {
			return forward.OptionError(k, v, "applies only to tls:// addresses in fluentd-address")
		}
	}
	if (cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == "") {
		if cfg.TLS.CertFile == "" {
			return forward.OptionError(KeyTLSKey, cfg.TLS.KeyFile, "needs fluentd-tls-cert too")
		}
		return forward.OptionError(KeyTLSCert, cfg.TLS.CertFile, "needs fluentd-tls-key too")
	}
	if !anyTLS {
		return nil
	}
	_, err := clientTLS(cfg.TLS, "")
	return err
}

// clientTLS builds the client TLS configuration for a server whose host is
// host (the default server name); errors name the option at fault.
func clientTLS(c TLSConfig, host string) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // only when asked for explicitly
	}
	if c.ServerName != "" {
		tc.ServerName = c.ServerName
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, forward.OptionError(KeyTLSCA, c.CAFile, fmt.Sprintf("must be a readable PEM file (%v)", err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, forward.OptionError(KeyTLSCA, c.CAFile, "must hold PEM certificates")
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, forward.OptionError(KeyTLSCert, c.CertFile, fmt.Sprintf("must be a PEM certificate matching fluentd-tls-key (%v)", err))
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
