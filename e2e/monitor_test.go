//go:build e2e

package e2e

// This test reconfigures the plugin; like the others in plugin_test.go it
// does not call t.Parallel.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// withMetrics restarts plugin with METRICS_ADDR set to a free loopback
// address, and the settings given ("NAME=value"), and returns that address;
// they are cleared again when the test ends. The plugin must not be shared
// with parallel tests.
func withMetrics(t testing.TB, plugin string, settings ...string) string {
	t.Helper()
	addr := fwdFreePort(t)
	settings = append([]string{"METRICS_ADDR=" + addr}, settings...)
	t.Cleanup(func() {
		if _, err := docker(context.Background(), "plugin", "disable", "--force", plugin); err != nil {
			t.Log(err)
		}
		args := []string{"plugin", "set", plugin}
		for _, s := range settings {
			name, _, _ := strings.Cut(s, "=")
			args = append(args, name+"=")
		}
		mustDocker(t, args...)
		enablePlugin(t, plugin)
	})
	mustDocker(t, "plugin", "disable", "--force", plugin)
	mustDocker(t, append([]string{"plugin", "set", plugin}, settings...)...)
	enablePlugin(t, plugin)
	return addr
}

// metricsGet fetches path from the monitoring endpoints at addr, on a
// connection of its own that it closes, so that the plugin holds no
// connection of the test between calls.
func metricsGet(addr, path string) (status int, body string, err error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// pluginEntry is one entry of /api/plugins.json: one destination of one
// running container.
type pluginEntry struct {
	PluginID             string `json:"plugin_id"`
	Type                 string `json:"type"`
	BufferQueueLength    int    `json:"buffer_queue_length"`
	EmitRecords          uint64 `json:"emit_records"`
	DroppedRecords       uint64 `json:"dropped_records"`
	BufferCorruptRegions uint64 `json:"buffer_corrupt_regions"`
	ContainerID          string `json:"container_id"`
	ContainerName        string `json:"container_name"`
	// Elasticsearch only: items rejected by status ("429", "5xx", "4xx").
	RejectedItems map[string]uint64 `json:"rejected_items"`
	// Fluentd only: each server's state and counters.
	Servers []serverEntry `json:"servers"`
}

// pluginEntries returns the entries of /api/plugins.json at addr.
func pluginEntries(addr string) ([]pluginEntry, error) {
	status, body, err := metricsGet(addr, "/api/plugins.json")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("/api/plugins.json: status %d: %s", status, clip(body))
	}
	var doc struct{ Plugins []pluginEntry }
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return nil, fmt.Errorf("/api/plugins.json: %w: %s", err, clip(body))
	}
	return doc.Plugins, nil
}

// destEntry returns the entry of /api/plugins.json at addr for destination
// dest ("file", "fluentd", …) of container c; ok is false while there is
// none.
func destEntry(addr string, c *container, dest string) (e pluginEntry, ok bool, err error) {
	entries, err := pluginEntries(addr)
	for _, e := range entries {
		if e.ContainerID == c.id && e.Type == dest {
			return e, true, nil
		}
	}
	return pluginEntry{}, false, err
}

// scrape returns the samples of /metrics at addr by name and labels as
// written, e.g. "go_goroutines" or
// `logferry_emitted_records_total{container_id="…",…}`.
func scrape(addr string) (map[string]float64, error) {
	status, body, err := metricsGet(addr, "/metrics")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("/metrics: status %d: %s", status, clip(body))
	}
	samples := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("/metrics: line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("/metrics: line %q: %w", line, err)
		}
		samples[line[:i]] = v
	}
	return samples, sc.Err()
}

func TestMonitoringEndpoints(t *testing.T) {
	addr := withMetrics(t, suite.plugin)

	c := create(t, spec{driver: suite.driver, script: `echo one; echo two; sleep 60`})
	c.start(t)

	var found pluginEntry
	fwdWait(t, time.Minute, fmt.Sprintf("/api/plugins.json on %s listing %s with 2 records written", addr, c), func() bool {
		e, ok, _ := destEntry(addr, c, "file")
		found = e
		return ok && e.EmitRecords == 2
	})
	if found.ContainerName != c.name || found.PluginID != c.id[:12]+".file" {
		t.Errorf("/api/plugins.json entry = %+v", found)
	}

	status, metrics, err := metricsGet(addr, "/metrics")
	for _, want := range []string{
		`logferry_emitted_records_total{container_id="` + c.id + `",container_name="` + c.name + `",destination="file"} 2`,
		"# TYPE go_goroutines gauge",
		"# TYPE process_open_fds gauge",
	} {
		if err != nil || status != http.StatusOK || !strings.Contains(metrics, want) {
			t.Errorf("/metrics (%d, %v) lacks %q:\n%s", status, err, want, clip(metrics))
		}
	}
	if status, body, err := metricsGet(addr, "/healthz"); err != nil || status != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q %v", status, body, err)
	}
}

// TestGOMAXPROCS: the plugin runs Go code on a quarter of the CPUs unless
// the GOMAXPROCS setting says otherwise.
func TestGOMAXPROCS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings []string
		want     int
	}{
		{name: "default", want: max(1, runtime.NumCPU()/4)},
		{name: "set", settings: []string{"GOMAXPROCS=3"}, want: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := withMetrics(t, suite.plugin, tc.settings...)
			samples, err := scrape(addr)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := samples["go_sched_gomaxprocs_threads"]; !ok || got != float64(tc.want) {
				t.Errorf("go_sched_gomaxprocs_threads = %v (present: %v), want %d", got, ok, tc.want)
			}
		})
	}
}
