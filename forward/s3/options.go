package s3

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"

	"github.com/logferry/logferry/forward"
)

// The log-opts of the S3 destination. s3-bucket turns it on.
const (
	// KeyBucket is the bucket objects are written to.
	KeyBucket = "s3-bucket"
	// KeyEndpoint is the store's address: https://host[:port],
	// http://host:port, or host[:port] (HTTPS). Default Amazon S3.
	KeyEndpoint = "s3-endpoint"
	// KeyRegion is the bucket's region; default: asked of the store.
	KeyRegion = "s3-region"
	// KeyPathStyle addresses the bucket in the path (https://host/bucket)
	// rather than the host name (https://bucket.host), for stores that
	// need it. Default false: virtual-hosted style where the store has it.
	KeyPathStyle = "s3-path-style"
	// KeyKey is the template of object keys; see keyDirectives.
	KeyKey = "s3-key"
	// KeyObjectSize is the size of an object's NDJSON before compression
	// at which it is written.
	KeyObjectSize = "s3-object-size"
	// KeyFlushInterval is how long after its first line an object is
	// written at the latest.
	KeyFlushInterval = "s3-flush-interval"
	// KeySSE asks for server-side encryption: AES256 (SSE-S3) or aws:kms
	// (SSE-KMS).
	KeySSE = "s3-sse"
	// KeySSEKMSKeyID is the KMS key of SSE-KMS (implies s3-sse=aws:kms);
	// default the bucket's or the account's.
	KeySSEKMSKeyID = "s3-sse-kms-key-id"
	// KeyStorageClass is the objects' storage class, such as STANDARD_IA;
	// default the bucket's.
	KeyStorageClass = "s3-storage-class"
)

// Keys lists the options of this destination: those every destination
// shares (forward.SharedKeys) are not among them.
var Keys = []string{
	KeyBucket, KeyEndpoint, KeyRegion, KeyPathStyle, KeyKey, KeyObjectSize, KeyFlushInterval,
	KeySSE, KeySSEKMSKeyID, KeyStorageClass,
}

// Defaults and limits.
const (
	DefaultEndpoint      = "s3.amazonaws.com"
	DefaultKey           = "logs/%Y/%m/%d/%H/{container_name}_{container_id}/{position}.ndjson.gz"
	DefaultObjectSize    = 8_000_000 // "8m", as Docker counts sizes
	DefaultFlushInterval = 5 * time.Minute

	minObjectSize    = 1_000
	maxObjectSize    = 1_000_000_000
	minFlushInterval = time.Second
	maxFlushInterval = 24 * time.Hour
)

// SSE values.
const (
	SSES3  = "AES256"
	SSEKMS = "aws:kms"
)

// Config configures a Sink. ParseConfig fills it from --log-opt values;
// the fields without an option are for the destination and for tests.
type Config struct {
	Bucket string
	// Endpoint is host[:port]; Insecure is set for an http:// endpoint.
	Endpoint  string
	Insecure  bool
	Region    string
	PathStyle bool
	// Key is the key template; default DefaultKey.
	Key           string
	ObjectSize    int
	FlushInterval time.Duration
	SSE           string
	SSEKMSKeyID   string
	StorageClass  string
	// SharedOptions are those every destination shares: the buffer,
	// log-format=json (the fields of a JSON line in its document) and
	// partial-merge.
	forward.SharedOptions

	// BufferDir is the directory of the disk buffer; empty: memory.
	BufferDir string
	// QueueEvents and QueueBytes bound the events waiting in memory
	// without a disk buffer; defaults forward.DefaultQueueEvents and
	// forward.DefaultQueueBytes.
	QueueEvents int
	QueueBytes  int64
	// RetryMin and RetryMax bound the wait between attempts to write an
	// object; defaults 1s and 1m.
	RetryMin, RetryMax time.Duration
	// LateLines is how long after an object's last possible line (its
	// first line's time plus FlushInterval) the sink waits for lines that
	// dockerd read in time but that reach the sink late, before it writes
	// an object that did not fill; default 2s.
	LateLines time.Duration
	// Credentials are the static keys from the plugin's settings; empty:
	// the AWS chain (environment, instance role).
	Credentials Credentials
}

func (c Config) withDefaults() Config {
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	if c.Key == "" {
		c.Key = DefaultKey
	}
	if c.ObjectSize <= 0 {
		c.ObjectSize = DefaultObjectSize
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.QueueEvents <= 0 {
		c.QueueEvents = forward.DefaultQueueEvents
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = forward.DefaultQueueBytes
	}
	if c.RetryMin <= 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Minute
	}
	if c.LateLines <= 0 {
		c.LateLines = 2 * time.Second
	}
	return c
}

// ParseConfig checks a container's log-opts: enabled when s3-bucket is
// set. Other s3-* options without it are an error, as is any invalid
// value; errors come from forward.OptionError and name the option, the
// value and what is accepted. The shared options are checked even when the
// destination is off; other keys are ignored.
func ParseConfig(opts map[string]string) (cfg Config, enabled bool, err error) {
	if cfg.SharedOptions, err = forward.ParseSharedOptions(opts); err != nil {
		return Config{}, false, err
	}
	bucket, enabled := opts[KeyBucket]
	if !enabled {
		for _, k := range Keys {
			if v, ok := opts[k]; ok {
				return Config{}, false, forward.OptionError(k, v, "needs "+KeyBucket+", which turns archiving to S3 on")
			}
		}
		return Config{}, false, nil
	}
	if !validBucket(bucket) {
		return Config{}, false, forward.OptionError(KeyBucket, bucket, "must be a bucket name: 3 to 63 lowercase letters, digits, dots and hyphens")
	}
	cfg.Bucket = bucket
	if v, ok := opts[KeyEndpoint]; ok {
		if cfg.Endpoint, cfg.Insecure, err = parseEndpoint(v); err != nil {
			if strings.Contains(v, "@") {
				v = "REDACTED" // may hold credentials
			}
			return Config{}, false, forward.OptionError(KeyEndpoint, v, err.Error())
		}
	}
	if v, ok := opts[KeyRegion]; ok {
		if v == "" || strings.ContainsAny(v, "/ \t\r\n") {
			return Config{}, false, forward.OptionError(KeyRegion, v, "must be a region such as eu-west-1")
		}
		cfg.Region = v
	}
	if v, ok := opts[KeyPathStyle]; ok {
		if cfg.PathStyle, err = strconv.ParseBool(v); err != nil {
			return Config{}, false, forward.OptionError(KeyPathStyle, v, "must be true or false")
		}
	}
	cfg.Key = DefaultKey
	if v, ok := opts[KeyKey]; ok {
		if _, err := parseKeyTemplate(v); err != nil {
			return Config{}, false, forward.OptionError(KeyKey, v, err.Error())
		}
		cfg.Key = v
	}
	cfg.ObjectSize = DefaultObjectSize
	if v, ok := opts[KeyObjectSize]; ok {
		n, err := units.FromHumanSize(v)
		if err != nil || n < minObjectSize || n > maxObjectSize {
			return Config{}, false, forward.OptionError(KeyObjectSize, v, "must be a size from 1k to 1g, such as 8m")
		}
		cfg.ObjectSize = int(n)
	}
	cfg.FlushInterval = DefaultFlushInterval
	if v, ok := opts[KeyFlushInterval]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < minFlushInterval || d > maxFlushInterval {
			return Config{}, false, forward.OptionError(KeyFlushInterval, v, "must be a duration from 1s to 24h, such as 5m")
		}
		cfg.FlushInterval = d
	}
	if v, ok := opts[KeySSE]; ok {
		switch v {
		case SSES3, SSEKMS:
			cfg.SSE = v
		default:
			return Config{}, false, forward.OptionError(KeySSE, v, `must be "`+SSES3+`" (SSE-S3) or "`+SSEKMS+`" (SSE-KMS)`)
		}
	}
	if v, ok := opts[KeySSEKMSKeyID]; ok {
		if v == "" || strings.ContainsAny(v, " \t\r\n") {
			return Config{}, false, forward.OptionError(KeySSEKMSKeyID, v, "must be a KMS key id, ARN or alias")
		}
		if cfg.SSE == SSES3 {
			return Config{}, false, forward.OptionError(KeySSEKMSKeyID, v, "needs "+KeySSE+"="+SSEKMS+", not "+SSES3)
		}
		cfg.SSE, cfg.SSEKMSKeyID = SSEKMS, v
	}
	if v, ok := opts[KeyStorageClass]; ok {
		if !validStorageClass(v) {
			return Config{}, false, forward.OptionError(KeyStorageClass, v, "must be a storage class such as STANDARD_IA or GLACIER_IR: capital letters, digits and _")
		}
		cfg.StorageClass = v
	}
	return cfg, true, nil
}

// validBucket checks the rules every S3 store shares for a bucket name.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 || net.ParseIP(b) != nil {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '-') && i > 0 && i < len(b)-1:
		default:
			return false
		}
	}
	return true
}

// validStorageClass accepts the shape of S3's storage classes (STANDARD,
// STANDARD_IA, GLACIER_IR ...) and of other stores' (NEARLINE), without
// a list that would age.
func validStorageClass(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// parseEndpoint returns the host[:port] of an s3-endpoint value, and
// whether it is plain HTTP. A value with "@" is refused without being
// echoed: log-opts are visible in `docker inspect`.
func parseEndpoint(v string) (host string, insecure bool, err error) {
	if strings.Contains(v, "@") {
		return "", false, fmt.Errorf("must not hold credentials; set them with docker plugin set")
	}
	raw := v
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" ||
		(u.Scheme != "https" && u.Scheme != "http") {
		return "", false, fmt.Errorf("must be https://host[:port], http://host:port or host[:port]")
	}
	return u.Host, u.Scheme == "http", nil
}
