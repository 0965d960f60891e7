package driver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

func TestMonitorEndpoints(t *testing.T) {
	fd := fluentdtest.NewServer(t, fluentdtest.Config{})
	d, _ := newTestDriver(t)
	id := containerID(51)
	ds := start(t, d, id, map[string]string{"fluentd-address": fd.Addr(), "fluentd-flush-interval": "10ms"})
	t.Cleanup(func() { stop(t, d, ds) })
	for i := range 5 {
		ds.send(t, LogEntry{Source: "stdout", TimeNano: int64(i + 1), Line: []byte("x")})
	}
	// A frame that is not a LogEntry counts as dropped for the file.
	if _, err := ds.f.Write([]byte{0, 0, 0, 2, 0x18, 0x01}); err != nil {
		t.Fatal(err)
	}
	fd.WaitEvents(5, testTimeout)

	srv := httptest.NewServer(d.MonitorHandler())
	t.Cleanup(srv.Close)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}

	// The counters settle once the stream has read everything.
	var plugins struct{ Plugins []monitorPlugin }
	deadline := time.Now().Add(testTimeout)
	for {
		status, body := get("/api/plugins.json")
		if status != 200 {
			t.Fatalf("/api/plugins.json: %d %s", status, body)
		}
		if err := json.Unmarshal([]byte(body), &plugins); err != nil {
			t.Fatalf("/api/plugins.json: %v: %s", err, body)
		}
		if len(plugins.Plugins) == 2 && plugins.Plugins[0].EmitRecords == 5 && plugins.Plugins[0].DroppedRecords == 1 &&
			plugins.Plugins[1].EmitRecords == 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []monitorPlugin{
		{PluginID: "000000000000.file", PluginCategory: "output", Type: "file", OutputPlugin: true,
			EmitRecords: 5, DroppedRecords: 1, ContainerID: id, ContainerName: "web"},
		{PluginID: "000000000000.fluentd", PluginCategory: "output", Type: "fluentd", OutputPlugin: true,
			EmitRecords: 5, ContainerID: id, ContainerName: "web"},
	}
	if len(plugins.Plugins) != len(want) {
		t.Fatalf("plugins = %+v, want %+v", plugins.Plugins, want)
	}
	for i := range want {
		// On disk, the buffer's size counts its files, not only entries.
		plugins.Plugins[i].BufferTotalQueuedSize = 0
		if plugins.Plugins[i] != want[i] {
			t.Errorf("plugin %d = %+v, want %+v", i, plugins.Plugins[i], want[i])
		}
	}

	status, metrics := get("/metrics")
	for _, line := range []string{
		`logferry_emitted_records_total{container_id="` + id + `",container_name="web",destination="fluentd"} 5`,
		`logferry_dropped_records_total{container_id="` + id + `",container_name="web",destination="file"} 1`,
		`logferry_buffer_queue_length{container_id="` + id + `",container_name="web",destination="fluentd"} 0`,
		`logferry_buffer_corrupt_regions_total{container_id="` + id + `",container_name="web",destination="fluentd"} 0`,
		"# TYPE logferry_retries_total counter",
		"# TYPE logferry_buffer_total_queued_size_bytes gauge",
		// The Go runtime's and the process's own metrics.
		"# TYPE go_goroutines gauge",
		"# TYPE process_open_fds gauge",
		"# TYPE process_resident_memory_bytes gauge",
	} {
		if status != 200 || !strings.Contains(metrics, line) {
			t.Errorf("/metrics (%d) lacks %q:\n%s", status, line, metrics)
		}
	}
	if status, body := get("/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", status, body)
	}
}
