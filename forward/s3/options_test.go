package s3

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	base := Config{Bucket: "logs", Key: DefaultKey, ObjectSize: DefaultObjectSize, FlushInterval: DefaultFlushInterval}
	with := func(f func(*Config)) Config {
		c := base
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		opts    map[string]string
		enabled bool
		want    Config
	}{
		{"off", map[string]string{"max-size": "10m"}, false, Config{}},
		{"defaults", map[string]string{KeyBucket: "logs"}, true, base},
		{"every option", map[string]string{
			KeyBucket: "logs", KeyEndpoint: "http://127.0.0.1:7070", KeyRegion: "eu-west-1", KeyPathStyle: "true",
			KeyKey: "archive/{container_id}/%Y-%m-%d/{position}.gz", KeyObjectSize: "2m", KeyFlushInterval: "30s",
			KeySSEKMSKeyID: "alias/logs", KeyStorageClass: "STANDARD_IA", forward.KeyLogFormat: "json",
		}, true, with(func(c *Config) {
			c.Endpoint, c.Insecure, c.Region, c.PathStyle = "127.0.0.1:7070", true, "eu-west-1", true
			c.Key, c.ObjectSize, c.FlushInterval = "archive/{container_id}/%Y-%m-%d/{position}.gz", 2_000_000, 30*time.Second
			c.SSE, c.SSEKMSKeyID, c.StorageClass = SSEKMS, "alias/logs", "STANDARD_IA"
			c.JSONFields = true
		})},
		{"https host", map[string]string{KeyBucket: "logs", KeyEndpoint: "storage.googleapis.com", KeySSE: "AES256"}, true,
			with(func(c *Config) { c.Endpoint, c.SSE = "storage.googleapis.com", SSES3 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, enabled, err := ParseConfig(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if enabled != tt.enabled || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseConfig = %+v, %v; want %+v, %v", got, enabled, tt.want, tt.enabled)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    map[string]string
		key     string
		accepts string
	}{
		{"option without bucket", map[string]string{KeyRegion: "eu-west-1"}, KeyRegion, "needs s3-bucket"},
		{"bad bucket", map[string]string{KeyBucket: "Logs_Bucket"}, KeyBucket, "lowercase"},
		{"ip bucket", map[string]string{KeyBucket: "10.0.0.1"}, KeyBucket, "bucket name"},
		{"endpoint with path", map[string]string{KeyBucket: "logs", KeyEndpoint: "https://s3/x"}, KeyEndpoint, "https://host[:port]"},
		{"endpoint scheme", map[string]string{KeyBucket: "logs", KeyEndpoint: "ftp://s3"}, KeyEndpoint, "https://host[:port]"},
		{"path style", map[string]string{KeyBucket: "logs", KeyPathStyle: "yes"}, KeyPathStyle, "true or false"},
		{"key without id", map[string]string{KeyBucket: "logs", KeyKey: "x/{position}"}, KeyKey, "{container_id}"},
		{"key without position", map[string]string{KeyBucket: "logs", KeyKey: "x/{container_id}"}, KeyKey, "{position}"},
		{"key field", map[string]string{KeyBucket: "logs", KeyKey: "{container_id}/{host}/{position}"}, KeyKey, "unknown field {host}"},
		{"key directive", map[string]string{KeyBucket: "logs", KeyKey: "%Q/{container_id}/{position}"}, KeyKey, "unknown directive %Q"},
		{"key slash", map[string]string{KeyBucket: "logs", KeyKey: "/{container_id}/{position}"}, KeyKey, "must not start with /"},
		{"object size", map[string]string{KeyBucket: "logs", KeyObjectSize: "10"}, KeyObjectSize, "1k to 1g"},
		{"flush interval", map[string]string{KeyBucket: "logs", KeyFlushInterval: "10ms"}, KeyFlushInterval, "1s to 24h"},
		{"sse", map[string]string{KeyBucket: "logs", KeySSE: "yes"}, KeySSE, "AES256"},
		{"kms with sse-s3", map[string]string{KeyBucket: "logs", KeySSE: "AES256", KeySSEKMSKeyID: "k"}, KeySSEKMSKeyID, "aws:kms"},
		{"storage class", map[string]string{KeyBucket: "logs", KeyStorageClass: "cold storage"}, KeyStorageClass, "STANDARD_IA"},
		{"shared option", map[string]string{KeyBucket: "logs", forward.KeyLogFormat: "xml"}, forward.KeyLogFormat, "json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := ParseConfig(tt.opts)
			if err == nil || !errors.Is(err, forward.ErrInvalidOption) || !strings.Contains(err.Error(), tt.key+"=") || !strings.Contains(err.Error(), tt.accepts) {
				t.Errorf("error %v; want one naming %s and saying %q", err, tt.key, tt.accepts)
			}
		})
	}
}

func TestEndpointCredentialsNotEchoed(t *testing.T) {
	t.Parallel()
	_, _, err := ParseConfig(map[string]string{KeyBucket: "logs", KeyEndpoint: "https://AKIA:hunter2@s3"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v", err)
	}
}

func TestKeysArePrefixed(t *testing.T) {
	t.Parallel()
	for _, k := range Keys {
		if !strings.HasPrefix(k, Name+"-") {
			t.Errorf("%s lacks the %s- prefix", k, Name)
		}
	}
}

func TestKeyTemplate(t *testing.T) {
	t.Parallel()
	c := forward.Container{ID: "abc123", Name: "/web", Tag: "app.web"}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	tests := []struct {
		tmpl string
		want string
	}{
		{DefaultKey, "logs/2026/01/02/02/web_abc123/20260102T020405.000000006Z-7.ndjson.gz"},
		{"%%/%M/{tag}/{container_id}/{position}", "%/04/app.web/abc123/20260102T020405.000000006Z-7"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			k, err := parseKeyTemplate(tt.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			if got := k.expand(&c, at, 7); got != tt.want {
				t.Errorf("expand = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestLongKey: a key S3 would refuse (a container name of 2000 bytes)
// falls back to one without the name.
func TestLongKey(t *testing.T) {
	t.Parallel()
	k, err := parseKeyTemplate(DefaultKey)
	if err != nil {
		t.Fatal(err)
	}
	c := forward.Container{ID: "abc123", Name: strings.Repeat("n", 2000)}
	got := k.key(&c, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), 0)
	if want := "logs/2026/01/02/03/abc123/20260102T030405.000000006Z-0.ndjson.gz"; got != want {
		t.Errorf("key %s, want %s", got, want)
	}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	c := Credentials{AccessKeyID: "AKIA", SecretAccessKey: "hunter2", SessionToken: "tok"}
	for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v", c, c, c)} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "tok") {
			t.Errorf("%q shows a secret", s)
		}
	}
	if err := (Credentials{AccessKeyID: "AKIA"}).validate(); err == nil {
		t.Error("an access key without its secret validated")
	}
	if err := (Credentials{SessionToken: "t"}).validate(); err == nil {
		t.Error("a session token alone validated")
	}
}
