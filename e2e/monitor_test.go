//go:build e2e

package e2e

// This test reconfigures the plugin; like the others in plugin_test.go it
// does not call t.Parallel.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestMonitoringEndpoints(t *testing.T) {
	addr := fwdFreePort(t)
	t.Cleanup(func() {
		if _, err := docker(context.Background(), "plugin", "disable", "--force", suite.plugin); err != nil {
			t.Log(err)
		}
		mustDocker(t, "plugin", "set", suite.plugin, "METRICS_ADDR=")
		enablePlugin(t, suite.plugin)
	})
	mustDocker(t, "plugin", "disable", "--force", suite.plugin)
	mustDocker(t, "plugin", "set", suite.plugin, "METRICS_ADDR="+addr)
	enablePlugin(t, suite.plugin)

	c := create(t, spec{driver: suite.driver, script: `echo one; echo two; sleep 60`})
	c.start(t)

	get := func(path string) (int, string, error) {
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	type plugin struct {
		PluginID      string `json:"plugin_id"`
		Type          string `json:"type"`
		EmitRecords   uint64 `json:"emit_records"`
		ContainerID   string `json:"container_id"`
		ContainerName string `json:"container_name"`
	}
	var found *plugin
	deadline := time.Now().Add(time.Minute)
	for found == nil && time.Now().Before(deadline) {
		status, body, err := get("/api/plugins.json")
		if err == nil && status == http.StatusOK {
			var doc struct{ Plugins []plugin }
			if err := json.Unmarshal([]byte(body), &doc); err != nil {
				t.Fatalf("/api/plugins.json: %v: %s", err, clip(body))
			}
			for i, p := range doc.Plugins {
				if p.ContainerID == c.id && p.Type == "file" && p.EmitRecords == 2 {
					found = &doc.Plugins[i]
				}
			}
		}
		if found == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if found == nil {
		t.Fatalf("/api/plugins.json on %s never listed %s with 2 records written", addr, c)
	}
	if found.ContainerName != c.name || found.PluginID != c.id[:12]+".file" {
		t.Errorf("/api/plugins.json entry = %+v", *found)
	}

	status, metrics, err := get("/metrics")
	want := `logferry_emitted_records_total{container_id="` + c.id + `",container_name="` + c.name + `",destination="file"} 2`
	if err != nil || status != http.StatusOK || !strings.Contains(metrics, want) {
		t.Errorf("/metrics (%d, %v) lacks %q:\n%s", status, err, want, clip(metrics))
	}
	if status, body, err := get("/healthz"); err != nil || status != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q %v", status, body, err)
	}
}
