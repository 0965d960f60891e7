package driver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward/elasticsearch/estest"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

func TestMonitorEndpoints(t *testing.T) {
	fd := fluentdtest.NewServer(t, fluentdtest.Config{})
	// Elasticsearch rejects half the items at first: pushback to count.
	es := estest.NewServer(estest.Options{RejectRate: 0.5, Seed: 5})
	t.Cleanup(es.Close)
	d, _ := newTestDriver(t)
	id := containerID(51)
	ds := start(t, d, id, map[string]string{"fluentd-address": fd.Addr(), "fluentd-flush-interval": "10ms",
		"elasticsearch-url": es.URL, "elasticsearch-flush-interval": "10ms", "elasticsearch-workers": "1"})
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
		if len(plugins.Plugins) == 3 && plugins.Plugins[0].EmitRecords == 5 && plugins.Plugins[1].EmitRecords == 5 &&
			plugins.Plugins[1].DroppedRecords == 1 && plugins.Plugins[2].EmitRecords == 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rejected := es.Stats().Rejected
	if rejected == 0 {
		t.Fatal("the test server rejected nothing")
	}
	one := 1
	want := []monitorPlugin{
		{PluginID: "000000000000.elasticsearch", PluginCategory: "output", Type: "elasticsearch", OutputPlugin: true,
			EmitRecords: 5, ContainerID: id, ContainerName: "web", RetryCount: plugins.Plugins[0].RetryCount,
			RejectedItems: &rejectedItems{Status429: uint64(rejected)}, RequestsInFlight: new(int), ConcurrencyLimit: &one},
		{PluginID: "000000000000.file", PluginCategory: "output", Type: "file", OutputPlugin: true,
			EmitRecords: 5, DroppedRecords: 1, ContainerID: id, ContainerName: "web"},
		{PluginID: "000000000000.fluentd", PluginCategory: "output", Type: "fluentd", OutputPlugin: true,
			EmitRecords: 5, ContainerID: id, ContainerName: "web",
			Servers: []monitorServer{{Server: fd.URL(), State: "up", EmitRecords: 5}}},
	}
	if srvs := plugins.Plugins[2].Servers; len(srvs) == 1 {
		if srvs[0].EmitSize < 5 {
			t.Errorf("fluentd server emit_size %d for 5 records", srvs[0].EmitSize)
		}
		want[2].Servers[0].EmitSize = srvs[0].EmitSize
	}
	if len(plugins.Plugins) != len(want) {
		t.Fatalf("plugins = %+v, want %+v", plugins.Plugins, want)
	}
	for i := range want {
		// On disk, the buffer's size counts its files, not only entries.
		plugins.Plugins[i].BufferTotalQueuedSize = 0
		got, _ := json.Marshal(plugins.Plugins[i])
		if w, _ := json.Marshal(want[i]); string(got) != string(w) {
			t.Errorf("plugin %d = %s, want %s", i, got, w)
		}
	}

	status, metrics := get("/metrics")
	for _, line := range []string{
		`logferry_emitted_records_total{container_id="` + id + `",container_name="web",destination="fluentd"} 5`,
		`logferry_dropped_records_total{container_id="` + id + `",container_name="web",destination="file"} 1`,
		`logferry_buffer_queue_length{container_id="` + id + `",container_name="web",destination="fluentd"} 0`,
		`logferry_buffer_corrupt_regions_total{container_id="` + id + `",container_name="web",destination="fluentd"} 0`,
		`logferry_rejected_items_total{container_id="` + id + `",container_name="web",destination="elasticsearch",status="429"} ` + strconv.Itoa(rejected),
		`logferry_rejected_items_total{container_id="` + id + `",container_name="web",destination="elasticsearch",status="4xx"} 0`,
		`logferry_requests_in_flight{container_id="` + id + `",container_name="web",destination="elasticsearch"} 0`,
		`logferry_concurrency_limit{container_id="` + id + `",container_name="web",destination="elasticsearch"} 1`,
		`logferry_server_up{container_id="` + id + `",container_name="web",destination="fluentd",server="` + fd.URL() + `"} 1`,
		`logferry_server_emitted_records_total{container_id="` + id + `",container_name="web",destination="fluentd",server="` + fd.URL() + `"} 5`,
		`logferry_server_failures_total{container_id="` + id + `",container_name="web",destination="fluentd",server="` + fd.URL() + `"} 0`,
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
