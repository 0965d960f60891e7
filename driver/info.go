package driver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/template"
	"time"
)

// Info is the container description dockerd sends with StartLogging and
// ReadLogs. Its exported fields and methods are what a log-opt "tag"
// template can use, as with Docker's own drivers.
type Info struct {
	Config              map[string]string
	ContainerID         string
	ContainerName       string
	ContainerEntrypoint string
	ContainerArgs       []string
	ContainerImageID    string
	ContainerImageName  string
	ContainerCreated    time.Time
	ContainerEnv        []string
	ContainerLabels     map[string]string
	LogPath             string
	DaemonName          string
}

// ID returns the container ID shortened to 12 characters.
func (i *Info) ID() string { return shorten(i.ContainerID) }

// FullID returns the full container ID.
func (i *Info) FullID() string { return i.ContainerID }

// Name returns the container name without its leading "/".
func (i *Info) Name() string { return strings.TrimPrefix(i.ContainerName, "/") }

// ImageID returns the image ID shortened to 12 characters (including
// any "sha256:" prefix, as Docker does).
func (i *Info) ImageID() string { return shorten(i.ContainerImageID) }

// ImageFullID returns the full image ID.
func (i *Info) ImageFullID() string { return i.ContainerImageID }

// ImageName returns the image name the container was created from.
func (i *Info) ImageName() string { return i.ContainerImageName }

// Command returns the entrypoint followed by the arguments.
func (i *Info) Command() string {
	return strings.Join(append([]string{i.ContainerEntrypoint}, i.ContainerArgs...), " ")
}

// Hostname returns the host's name.
func (i *Info) Hostname() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("hostname: %w", err)
	}
	return h, nil
}

func shorten(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// templateFuncs are the functions Docker offers in log-tag templates.
var templateFuncs = template.FuncMap{
	"json": func(v any) string {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
		return strings.TrimSpace(buf.String())
	},
	"split": strings.Split,
	"join":  strings.Join,
	// strings.Title is deprecated, but it is what Docker's templates use.
	//lint:ignore SA1019 Docker's templates use strings.Title: same output.
	"title": strings.Title,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"pad": func(s string, prefix, suffix int) string {
		if s == "" {
			return s
		}
		return strings.Repeat(" ", prefix) + s + strings.Repeat(" ", suffix)
	},
	"truncate": func(s string, n int) string {
		if len(s) < n {
			return s
		}
		return s[:n]
	},
}

// expandTag evaluates a Docker log-tag template against info.
func expandTag(tmpl string, info *Info) (string, error) {
	t, err := template.New("log-tag").Funcs(templateFuncs).Parse(tmpl)
	if err != nil {
		return "", err
	}
	var buf strings.Builder
	if err := t.Execute(&buf, info); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// extraAttributes returns the labels and environment variables selected by
// the labels, labels-regex, env and env-regex options, as Docker's drivers
// select them. The regular expressions were validated by parseOptions.
func extraAttributes(opts map[string]string, info *Info) map[string]string {
	extra := make(map[string]string)
	for _, k := range splitList(opts[optLabels]) {
		if v, ok := info.ContainerLabels[k]; ok {
			extra[k] = v
		}
	}
	if expr := opts[optLabelsRegex]; expr != "" {
		re := regexp.MustCompile(expr)
		for k, v := range info.ContainerLabels {
			if re.MatchString(k) {
				extra[k] = v
			}
		}
	}
	env := make(map[string]string, len(info.ContainerEnv))
	for _, kv := range info.ContainerEnv {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for _, k := range splitList(opts[optEnv]) {
		if v, ok := env[k]; ok {
			extra[k] = v
		}
	}
	if expr := opts[optEnvRegex]; expr != "" {
		re := regexp.MustCompile(expr)
		for k, v := range env {
			if re.MatchString(k) {
				extra[k] = v
			}
		}
	}
	return extra
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
