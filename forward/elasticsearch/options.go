package elasticsearch

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"

	"github.com/logferry/logferry/forward"
)

// Option keys accepted in --log-opt.
const (
	// KeyURL turns the sink on: comma-separated node URLs.
	KeyURL = "elasticsearch-url"
	// KeyIndex is the index name pattern, see [Config.Index].
	KeyIndex = "elasticsearch-index"
	// KeyPipeline names an ingest pipeline every document goes through.
	KeyPipeline = "elasticsearch-pipeline"
	// KeySniff discovers the cluster's other nodes from the given ones.
	KeySniff = "elasticsearch-sniff"
	// KeyBulkActions is the most documents in one _bulk request.
	KeyBulkActions = "elasticsearch-bulk-actions"
	// KeyBulkSize is the largest _bulk body, before compression.
	KeyBulkSize = "elasticsearch-bulk-size"
	// KeyFlushInterval is the longest a document waits for its batch to fill.
	KeyFlushInterval = "elasticsearch-flush-interval"
	// KeyCompress gzips request bodies.
	KeyCompress = "elasticsearch-compress"
	// KeyWorkers is the most _bulk requests in flight at once.
	KeyWorkers = "elasticsearch-workers"
	// KeyTLSCA is a PEM file of CA certificates trusted for https nodes.
	KeyTLSCA = "elasticsearch-tls-ca"
	// KeyTLSInsecureSkipVerify turns certificate verification off.
	KeyTLSInsecureSkipVerify = "elasticsearch-tls-insecure-skip-verify"
	// KeyTemplate installs an index template for the index pattern.
	KeyTemplate = "elasticsearch-template"
	// KeyRetention, with KeyTemplate, also installs a lifecycle policy
	// that deletes indices older than it (ILM, or ISM on OpenSearch).
	KeyRetention = "elasticsearch-retention"
	// KeyLogFormat, KeyPartialMerge and KeyPartialMergeTimeout are shared
	// by every destination (see forward.SharedKeys): "json" parses each
	// line that is one JSON object into fields of the record;
	// partial-merge reassembles the lines dockerd split at 16 KiB.
	KeyLogFormat           = forward.KeyLogFormat
	KeyPartialMerge        = forward.KeyPartialMerge
	KeyPartialMergeTimeout = forward.KeyPartialMergeTimeout
)

// Keys lists the options of this destination: those every destination
// shares (forward.SharedKeys) are not among them.
var Keys = []string{
	KeyURL, KeyIndex, KeyPipeline, KeySniff, KeyBulkActions, KeyBulkSize, KeyFlushInterval,
	KeyCompress, KeyWorkers, KeyTLSCA, KeyTLSInsecureSkipVerify, KeyTemplate, KeyRetention,
}

// Defaults and limits of the options.
const (
	DefaultIndex         = "docker-%Y%m%d"
	DefaultBulkActions   = 1000
	DefaultBulkSize      = 5_000_000 // "5m", as Docker counts sizes
	DefaultFlushInterval = 5 * time.Second
	DefaultWorkers       = 4

	maxBulkActions = 100_000
	minBulkSize    = 1_000
	maxBulkSize    = 100_000_000 // Elasticsearch's default http.max_content_length
	maxWorkers     = 32
)

// Config configures a Sink. Its zero value, with URLs set, means defaults:
// ParseConfig fills it from --log-opt values; the fields without an option
// are for the driver and for tests.
type Config struct {
	// URLs are the nodes' base URLs (scheme, host, port and an optional
	// path prefix), used round robin while they pass health checks.
	URLs []string
	// Sniff discovers the cluster's nodes from URLs; off by default because
	// most clusters sit behind a load balancer.
	Sniff bool
	// Index is the index name pattern, evaluated on each entry's own time
	// in UTC. Default DefaultIndex. See indexDirectives for the directives.
	Index string
	// Pipeline is the ingest pipeline of every document; empty for none.
	Pipeline string
	// BulkActions is the most documents per _bulk request. Default 1000.
	BulkActions int
	// BulkSize is the largest _bulk body in bytes before compression (a
	// single larger document is sent alone). Default 5 MB.
	BulkSize int
	// FlushInterval is the longest the first document of a batch waits
	// for the batch to fill. Default 5s.
	FlushInterval time.Duration
	// Compress gzips request bodies.
	Compress bool
	// Workers is the most _bulk requests in flight at once: the ceiling of
	// the adaptive limit (see pressure). Default 4.
	Workers int
	// TLSCAFile is a PEM file of the CA certificates to trust; empty for
	// the system's roots.
	TLSCAFile string
	// TLSInsecureSkipVerify turns certificate verification off.
	TLSInsecureSkipVerify bool
	// Template installs an index template for the index pattern's prefix
	// before the first document is sent.
	Template bool
	// Retention, with Template, installs a lifecycle policy that deletes
	// the pattern's indices once they are older than it: a number of
	// days or hours such as 30d; empty for none.
	Retention string
	// SharedOptions are those every destination shares: the buffer's
	// bounds and overflow policy (Buffer, also for the memory queue),
	// log-format=json (JSONFields adds the fields of a line that is one
	// JSON object to its document) and partial-merge (PartialMerge
	// reassembles the lines dockerd split at 16 KiB into one document
	// each, as Merge says; without it each piece is a document with the
	// partial_* fields).
	forward.SharedOptions

	// DeadLetterPath is the file that documents Elasticsearch refuses for
	// good are appended to (NDJSON, mode 0640), set by the driver beside
	// the container's logs; empty to only count and log them.
	DeadLetterPath string
	// DeadLetterMaxSize is the size in bytes past which rejected documents
	// are counted but no longer written. Default 64 MiB.
	DeadLetterMaxSize int64
	// QueueEvents and QueueBytes bound the events (and the bytes of their
	// lines) waiting in memory to be sent when there is no BufferDir; past
	// either, Buffer.Full applies (by default the oldest are dropped).
	// Defaults 10000 events and 8 MiB.
	QueueEvents int
	QueueBytes  int
	// BufferDir, when set, is the directory of this container's disk
	// buffer for this destination (see package diskq), set by the driver:
	// events are written there and removed once Elasticsearch has them
	// (created, already there, or refused for good and dead-lettered);
	// what is left when the sink closes or the plugin dies is sent by the
	// next sink created on the same directory, with the same _id. Empty
	// (the default): events wait in memory only.
	BufferDir string
	// RequestTimeout bounds one _bulk request. Default 30s.
	RequestTimeout time.Duration
	// RetryMin and RetryMax bound the exponential backoff (with jitter)
	// between retries. Defaults 100ms and 30s.
	RetryMin, RetryMax time.Duration
	// HealthcheckInterval is how often every node is checked. Default 60s.
	HealthcheckInterval time.Duration
	// ErrorLogInterval is the least time between two error logs of one
	// kind; the ones in between are counted in the next. Default 10s.
	ErrorLogInterval time.Duration
	// Batches hands out the slabs batches are encoded in, bounding their
	// memory across sinks; default forward.DefaultBatches.
	Batches *forward.Batches
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Index == "" {
		c.Index = DefaultIndex
	}
	defInt(&c.BulkActions, DefaultBulkActions)
	defInt(&c.BulkSize, DefaultBulkSize)
	defInt(&c.Workers, DefaultWorkers)
	defInt(&c.QueueEvents, 10_000)
	defInt(&c.QueueBytes, 8<<20)
	if c.DeadLetterMaxSize <= 0 {
		c.DeadLetterMaxSize = 64 << 20
	}
	def(&c.FlushInterval, DefaultFlushInterval)
	def(&c.RequestTimeout, 30*time.Second)
	def(&c.RetryMin, 100*time.Millisecond)
	def(&c.RetryMax, 30*time.Second)
	def(&c.HealthcheckInterval, 60*time.Second)
	def(&c.ErrorLogInterval, 10*time.Second)
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.Batches == nil {
		c.Batches = forward.DefaultBatches
	}
	return c
}

// ParseConfig validates the elasticsearch options among a container's
// --log-opt values. enabled is false when elasticsearch-url is not set;
// other elasticsearch-* options are then refused. The options shared
// with the other destinations (forward.BufferKeys into cfg.Buffer,
// log-format, partial-merge and partial-merge-timeout) are checked even
// when the sink is off; other keys are ignored. Errors wrap forward.ErrInvalidOption and name the option, its
// value and what is accepted.
func ParseConfig(opts map[string]string) (cfg Config, enabled bool, err error) {
	if cfg.SharedOptions, err = forward.ParseSharedOptions(opts); err != nil {
		return Config{}, false, err
	}
	rawURL, ok := opts[KeyURL]
	if !ok {
		for _, k := range Keys {
			if v, set := opts[k]; set {
				return Config{}, false, forward.OptionError(k, v, "needs "+KeyURL)
			}
		}
		return cfg, false, nil
	}
	if cfg.URLs, err = parseURLs(rawURL); err != nil {
		return Config{}, false, err
	}

	cfg.Index = DefaultIndex
	if v, ok := opts[KeyIndex]; ok {
		if _, err := parseIndexPattern(v); err != nil {
			return Config{}, false, forward.OptionError(KeyIndex, v, err.Error())
		}
		cfg.Index = v
	}
	cfg.Pipeline = opts[KeyPipeline]
	if v, ok := opts[KeyPipeline]; ok && (v == "" || strings.ContainsAny(v, "/?#&% \t\r\n")) {
		return Config{}, false, forward.OptionError(KeyPipeline, v, "must be an ingest pipeline id")
	}

	bools := []struct {
		key string
		dst *bool
	}{
		{KeySniff, &cfg.Sniff},
		{KeyCompress, &cfg.Compress},
		{KeyTLSInsecureSkipVerify, &cfg.TLSInsecureSkipVerify},
		{KeyTemplate, &cfg.Template},
	}
	for _, b := range bools {
		v, ok := opts[b.key]
		if !ok {
			continue
		}
		if *b.dst, err = strconv.ParseBool(v); err != nil {
			return Config{}, false, forward.OptionError(b.key, v, "must be true or false")
		}
	}

	ints := []struct {
		key      string
		dst      *int
		min, max int
	}{
		{KeyBulkActions, &cfg.BulkActions, 1, maxBulkActions},
		{KeyWorkers, &cfg.Workers, 1, maxWorkers},
	}
	for _, n := range ints {
		v, ok := opts[n.key]
		if !ok {
			continue
		}
		i, err := strconv.Atoi(v)
		if err != nil || i < n.min || i > n.max {
			return Config{}, false, forward.OptionError(n.key, v, fmt.Sprintf("must be a whole number from %d to %d", n.min, n.max))
		}
		*n.dst = i
	}

	if v, ok := opts[KeyBulkSize]; ok {
		n, err := units.FromHumanSize(v)
		if err != nil || n < minBulkSize || n > maxBulkSize {
			return Config{}, false, forward.OptionError(KeyBulkSize, v, "must be a size from 1k to 100m, such as 5m")
		}
		cfg.BulkSize = int(n)
	}
	if v, ok := opts[KeyFlushInterval]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond || d > time.Hour {
			return Config{}, false, forward.OptionError(KeyFlushInterval, v, "must be a duration from 1ms to 1h, such as 5s")
		}
		cfg.FlushInterval = d
	}

	if v, ok := opts[KeyTLSCA]; ok {
		// The file is read by New; refusing a missing one here fails
		// `docker run` with the option's name in the message.
		if v == "" {
			return Config{}, false, forward.OptionError(KeyTLSCA, v, "must be the path of a PEM file")
		}
		if _, err := os.Stat(v); err != nil {
			return Config{}, false, forward.OptionError(KeyTLSCA, v, "must be the path of a readable PEM file in the plugin")
		}
		cfg.TLSCAFile = v
	}
	if v, ok := opts[KeyRetention]; ok {
		if !validRetention(v) {
			return Config{}, false, forward.OptionError(KeyRetention, v, "must be a number of days or hours such as 30d or 12h")
		}
		if !cfg.Template {
			return Config{}, false, forward.OptionError(KeyRetention, v, "needs "+KeyTemplate+"=true, whose template attaches the policy to new indices")
		}
		cfg.Retention = v
	}
	if cfg.Template {
		p, _ := parseIndexPattern(cfg.Index)
		if p.Prefix() == "" {
			return Config{}, false, forward.OptionError(KeyTemplate, opts[KeyTemplate],
				fmt.Sprintf("needs %s to start with a fixed prefix such as docker- (it is %q)", KeyIndex, cfg.Index))
		}
	}
	return cfg, true, nil
}

// parseURLs splits and checks elasticsearch-url. A value with "@" in it is
// refused without being echoed: it may hold credentials, and log-opts are
// visible in `docker inspect`.
func parseURLs(raw string) ([]string, error) {
	if strings.Contains(raw, "@") {
		return nil, forward.OptionError(KeyURL, "REDACTED",
			"must not hold credentials: set them in the plugin's settings with `docker plugin set`")
	}
	var urls []string
	for _, part := range strings.Split(raw, ",") {
		part = strings.TrimSpace(part)
		u, err := url.Parse(part)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
			u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
			return nil, forward.OptionError(KeyURL, raw,
				"must be comma-separated http:// or https:// node URLs such as https://es1:9200,https://es2:9200")
		}
		s := strings.TrimRight(u.String(), "/")
		if !slices.Contains(urls, s) {
			urls = append(urls, s)
		}
	}
	return urls, nil
}

// validRetention accepts a whole number of days or hours, at least 1: the
// units that ILM and ISM both read, and that a log retention needs.
func validRetention(v string) bool {
	if len(v) < 2 || (v[len(v)-1] != 'd' && v[len(v)-1] != 'h') || v[0] == '0' {
		return false
	}
	for _, c := range v[:len(v)-1] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(v) <= 7
}
