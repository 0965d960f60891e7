package driver

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/logferry/logferry/forward/elasticsearch"
	"github.com/logferry/logferry/forward/fluentd"
	"github.com/logferry/logferry/rotate"
)

func testInfo(cfg map[string]string) *Info {
	return &Info{
		Config:           cfg,
		ContainerID:      strings.Repeat("ab", 32),
		ContainerName:    "/web",
		ContainerImageID: "sha256:" + strings.Repeat("cd", 32),
		ContainerLabels:  map[string]string{"app": "shop", "tier": "front", "team": "<ops>"},
		ContainerEnv:     []string{"REGION=eu", "DEBUG=1", "EMPTY=", "NOVALUE"},
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name  string
		cfg   map[string]string
		files rotate.Config
		attrs string
	}{
		{name: "defaults", files: rotate.Config{MaxFiles: 1}},
		{
			name:  "rotation",
			cfg:   map[string]string{"max-size": "10m", "max-file": "3", "compress": "true"},
			files: rotate.Config{MaxSize: 10_000_000, MaxFiles: 3, Compress: true},
		},
		{name: "decimal units as json-file", cfg: map[string]string{"max-size": "1k"}, files: rotate.Config{MaxSize: 1000, MaxFiles: 1}},
		{name: "compress false alone", cfg: map[string]string{"compress": "false"}, files: rotate.Config{MaxFiles: 1}},
		{
			name:  "dockerd options are accepted",
			cfg:   map[string]string{"mode": "non-blocking", "max-buffer-size": "4m", "cache-disabled": "true", "cache-max-size": "20m", "cache-max-file": "5", "cache-compress": "true"},
			files: rotate.Config{MaxFiles: 1},
		},
		{
			name:  "labels and env",
			cfg:   map[string]string{"labels": "app,missing", "env": "REGION,EMPTY,NOVALUE"},
			files: rotate.Config{MaxFiles: 1},
			attrs: `{"EMPTY":"","REGION":"eu","app":"shop"}`,
		},
		{
			name:  "regexes escape like json-file",
			cfg:   map[string]string{"labels-regex": "^t", "env-regex": "^DEB"},
			files: rotate.Config{MaxFiles: 1},
			attrs: `{"DEBUG":"1","team":"\u003cops\u003e","tier":"front"}`,
		},
		{
			name:  "tag",
			cfg:   map[string]string{"tag": "{{.Name}}/{{.ID}}/{{.ImageID}}"},
			files: rotate.Config{MaxFiles: 1},
			attrs: `{"tag":"web/abababababab/sha256:cdcdc"}`,
		},
		{name: "empty tag adds nothing", cfg: map[string]string{"tag": ""}, files: rotate.Config{MaxFiles: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(testInfo(tt.cfg), testDestinations)
			if err != nil {
				t.Fatalf("parseOptions: %v", err)
			}
			if o.files != tt.files {
				t.Errorf("files = %+v, want %+v", o.files, tt.files)
			}
			if string(o.attrs) != tt.attrs {
				t.Errorf("attrs = %s, want %s", o.attrs, tt.attrs)
			}
		})
	}
}

func TestParseOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  map[string]string
		want []string // substrings of the message
	}{
		{"max-size not a size", map[string]string{"max-size": "abc"}, []string{`max-size="abc"`, "positive size"}},
		{"max-size zero", map[string]string{"max-size": "0"}, []string{`max-size="0"`}},
		{"max-size negative", map[string]string{"max-size": "-1"}, []string{`max-size="-1"`}},
		{"max-file zero", map[string]string{"max-file": "0"}, []string{`max-file="0"`, "1 or more"}},
		{"max-file not a number", map[string]string{"max-file": "three"}, []string{`max-file="three"`}},
		{"compress not a bool", map[string]string{"compress": "yes-please"}, []string{`compress="yes-please"`, "true or false"}},
		{"compress without max-size", map[string]string{"compress": "true", "max-file": "3"}, []string{`compress="true"`, "max-size"}},
		{"compress with one file", map[string]string{"compress": "true", "max-size": "1m"}, []string{`compress="true"`, "max-file of 2"}},
		{"bad labels-regex", map[string]string{"labels-regex": "("}, []string{`labels-regex="("`, "regular expression"}},
		{"bad env-regex", map[string]string{"env-regex": "[a"}, []string{`env-regex="[a"`}},
		{"tag does not parse", map[string]string{"tag": "{{.Name"}, []string{`tag="{{.Name"`, "template"}},
		{"tag names no field", map[string]string{"tag": "{{.Nope}}"}, []string{`tag="{{.Nope}}"`, "Nope"}},
		{"unknown option", map[string]string{"foo": "bar"}, []string{`foo="bar"`, "unknown option", "max-size"}},
		{"fluentd option without fluentd-address", map[string]string{"fluentd-async": "true"}, []string{"fluentd-async", "fluentd-address"}},
		{"misspelt fluentd option", map[string]string{"fluentd-adress": "127.0.0.1"}, []string{"fluentd-adress", "unknown option"}},
		{"bad fluentd address", map[string]string{"fluentd-address": "ftp://x"}, []string{"fluentd-address", "ftp://x"}},
		{"bad elasticsearch url", map[string]string{"elasticsearch-url": "ftp://x"}, []string{"elasticsearch-url", "ftp://x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOptions(testInfo(tt.cfg), testDestinations)
			if !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("parseOptions error = %v, want ErrInvalidOption", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestExpandTag(t *testing.T) {
	info := testInfo(nil)
	info.ContainerImageName = "busybox:latest"
	info.ContainerEntrypoint = "sh"
	info.ContainerArgs = []string{"-c", "true"}
	info.DaemonName = "docker"
	tests := []struct{ tmpl, want string }{
		{"{{.ID}}", "abababababab"},
		{"{{.FullID}}", info.ContainerID},
		{"{{.Name}}", "web"},
		{"{{.ImageFullID}}", info.ContainerImageID},
		{"{{.ImageName}}", "busybox:latest"},
		{"{{.DaemonName}}", "docker"},
		{"{{.Command}}", "sh -c true"},
		{"{{upper .Name}}-{{truncate .ImageName 3}}", "WEB-bus"},
		{"{{join (split .ImageName \":\") \"_\"}}", "busybox_latest"},
		{"{{title .Name}}{{pad .Name 1 2}}|", "Web web  |"},
		{"{{json .ContainerArgs}}", `["-c","true"]`},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			got, err := expandTag(tt.tmpl, info)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("expandTag(%q) = %q, want %q", tt.tmpl, got, tt.want)
			}
		})
	}
}

func TestParseOptionsForward(t *testing.T) {
	tests := []struct {
		name             string
		cfg              map[string]string
		fluentd, elastic bool
		tag              string
		extra            map[string]string
	}{
		{name: "files only", tag: "abababababab", extra: map[string]string{}},
		{
			name:    "fluentd with Docker's default tag",
			cfg:     map[string]string{"fluentd-address": "127.0.0.1:24224", "labels": "app"},
			fluentd: true, tag: "abababababab", extra: map[string]string{"app": "shop"},
		},
		{
			name:    "elasticsearch with a tag template",
			cfg:     map[string]string{"elasticsearch-url": "http://127.0.0.1:9200", "tag": "{{.Name}}.{{.ID}}", "env": "REGION"},
			elastic: true, tag: "web.abababababab", extra: map[string]string{"REGION": "eu"},
		},
		{
			name:    "both",
			cfg:     map[string]string{"fluentd-address": "127.0.0.1", "elasticsearch-url": "http://127.0.0.1:9200"},
			fluentd: true, elastic: true, tag: "abababababab", extra: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := testInfo(tt.cfg)
			o, err := parseOptions(info, testDestinations)
			if err != nil {
				t.Fatal(err)
			}
			var on []string
			for _, d := range o.dests {
				on = append(on, d.name)
			}
			if slices.Contains(on, fluentd.Name) != tt.fluentd || slices.Contains(on, elasticsearch.Name) != tt.elastic {
				t.Errorf("destinations on %v; want fluentd %v, elasticsearch %v", on, tt.fluentd, tt.elastic)
			}
			c := o.container
			if c.ID != info.ContainerID || c.Name != "web" || c.Tag != tt.tag || !maps.Equal(c.Extra, tt.extra) {
				t.Errorf("container = %+v, want tag %q extra %v", c, tt.tag, tt.extra)
			}
			if bytes.Contains(o.attrs, []byte(`"tag"`)) != (tt.cfg["tag"] != "") {
				t.Errorf("attrs %s: tag present only when the tag option is set", o.attrs)
			}
		})
	}
}
