package elasticsearch

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    map[string]string
		enabled bool
		want    Config // compared when enabled
	}{
		{"off", map[string]string{"max-size": "10m"}, false, Config{}},
		{"off, log-format shared with fluentd", map[string]string{KeyLogFormat: "json"}, false, Config{}},
		{"defaults", map[string]string{KeyURL: "http://es:9200"}, true,
			Config{URLs: []string{"http://es:9200"}, Index: DefaultIndex}},
		{"every option", map[string]string{
			KeyURL:                   " https://es1:9200/ , https://es2:9200,https://es1:9200",
			KeyIndex:                 "logs-%G.%V",
			KeyPipeline:              "docker-logs",
			KeySniff:                 "true",
			KeyBulkActions:           "500",
			KeyBulkSize:              "2m",
			KeyFlushInterval:         "250ms",
			KeyCompress:              "1",
			KeyWorkers:               "4",
			KeyTLSCA:                 ca,
			KeyTLSInsecureSkipVerify: "false",
			KeyTemplate:              "true",
			KeyLogFormat:             "json",
		}, true, Config{
			URLs: []string{"https://es1:9200", "https://es2:9200"}, Index: "logs-%G.%V", Pipeline: "docker-logs",
			Sniff: true, BulkActions: 500, BulkSize: 2_000_000, FlushInterval: 250 * time.Millisecond, Compress: true,
			Workers: 4, TLSCAFile: ca, Template: true, SharedOptions: forward.SharedOptions{JSONFields: true},
		}},
		{"path prefix", map[string]string{KeyURL: "https://proxy/es/"}, true,
			Config{URLs: []string{"https://proxy/es"}, Index: DefaultIndex}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, enabled, err := ParseConfig(tt.opts)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if enabled != tt.enabled {
				t.Fatalf("enabled = %v", enabled)
			}
			if enabled && !reflect.DeepEqual(cfg, tt.want) {
				t.Errorf("config\n got %+v\nwant %+v", cfg, tt.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	url := map[string]string{KeyURL: "http://es:9200"}
	with := func(k, v string) map[string]string {
		m := map[string]string{KeyURL: url[KeyURL]}
		m[k] = v
		return m
	}
	tests := []struct {
		name string
		opts map[string]string
		key  string // named in the error
	}{
		{"option without url", map[string]string{KeyIndex: "x"}, KeyIndex},
		{"empty url", map[string]string{KeyURL: ""}, KeyURL},
		{"not http", map[string]string{KeyURL: "ftp://es"}, KeyURL},
		{"no host", map[string]string{KeyURL: "http://"}, KeyURL},
		{"empty node", map[string]string{KeyURL: "http://a:9200,,http://b:9200"}, KeyURL},
		{"query", map[string]string{KeyURL: "http://a:9200/?x=1"}, KeyURL},
		{"bare host", map[string]string{KeyURL: "es:9200"}, KeyURL},
		{"uppercase index", with(KeyIndex, "Docker-%Y"), KeyIndex},
		{"unknown directive", with(KeyIndex, "docker-%Q"), KeyIndex},
		{"lone percent", with(KeyIndex, "docker-%"), KeyIndex},
		{"index with colon", with(KeyIndex, "a:%Y"), KeyIndex},
		{"index with space", with(KeyIndex, "a %Y"), KeyIndex},
		{"index starting with _", with(KeyIndex, "_docker"), KeyIndex},
		{"index dot", with(KeyIndex, "."), KeyIndex},
		{"index too long", with(KeyIndex, strings.Repeat("a", 250)+"%Y%m"), KeyIndex},
		{"empty index", with(KeyIndex, ""), KeyIndex},
		{"pipeline with slash", with(KeyPipeline, "a/b"), KeyPipeline},
		{"sniff", with(KeySniff, "yes"), KeySniff},
		{"compress", with(KeyCompress, "gzip"), KeyCompress},
		{"bulk actions zero", with(KeyBulkActions, "0"), KeyBulkActions},
		{"bulk actions word", with(KeyBulkActions, "many"), KeyBulkActions},
		{"bulk size tiny", with(KeyBulkSize, "10"), KeyBulkSize},
		{"bulk size huge", with(KeyBulkSize, "1g"), KeyBulkSize},
		{"flush interval", with(KeyFlushInterval, "5"), KeyFlushInterval},
		{"flush interval negative", with(KeyFlushInterval, "-1s"), KeyFlushInterval},
		{"workers", with(KeyWorkers, "100"), KeyWorkers},
		{"tls ca missing", with(KeyTLSCA, "/nonexistent/ca.pem"), KeyTLSCA},
		{"skip verify", with(KeyTLSInsecureSkipVerify, "sure"), KeyTLSInsecureSkipVerify},
		{"template", with(KeyTemplate, "maybe"), KeyTemplate},
		{"template without prefix", map[string]string{KeyURL: "http://es", KeyIndex: "%Y-logs", KeyTemplate: "true"}, KeyTemplate},
		{"log format", map[string]string{KeyLogFormat: "xml"}, KeyLogFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseConfig(tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, forward.ErrInvalidOption) {
				t.Errorf("error %v does not wrap ErrInvalidOption", err)
			}
			if !strings.Contains(err.Error(), tt.key+"=") {
				t.Errorf("error %q does not name %s", err, tt.key)
			}
		})
	}
}

func TestParseConfigNeverEchoesCredentials(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"https://elastic:hunter2@es:9200",
		"https://es1:9200,https://elastic:hun,ter2@es:9200",
		"http://elastic:hunter2@",
	} {
		_, _, err := ParseConfig(map[string]string{KeyURL: raw})
		if err == nil {
			t.Fatalf("%s accepted", raw)
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hun") {
			t.Errorf("error echoes the password: %v", err)
		}
	}
}

func TestKeysAreUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, k := range Keys {
		if seen[k] {
			t.Errorf("%s listed twice", k)
		}
		seen[k] = true
		if !strings.HasPrefix(k, "elasticsearch-") {
			t.Errorf("%s lacks the elasticsearch- prefix", k)
		}
	}
}
