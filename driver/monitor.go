package driver

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/logferry/logferry/forward"
)

// Counters are what one destination of one container has done.
type Counters = forward.Counters

// DestinationStats are the Counters of one destination of one running
// container.
type DestinationStats struct {
	ContainerID   string
	ContainerName string
	// Destination is "file", "fluentd" or "elasticsearch".
	Destination string
	Counters
}

// Stats returns the counters of every destination of every running
// container, sorted by container and destination.
func (d *Driver) Stats() []DestinationStats {
	d.mu.Lock()
	streams := make([]*stream, 0, len(d.streams))
	for _, s := range d.streams {
		streams = append(streams, s)
	}
	d.mu.Unlock()

	var out []DestinationStats
	for _, s := range streams {
		base := DestinationStats{ContainerID: s.info.ContainerID, ContainerName: s.info.Name()}
		file := base
		file.Destination = destFile
		// lost first: entries count every record lost holds.
		lost := s.lost.Load()
		file.Emitted = s.entries.Load() - lost
		file.Dropped = s.skipped.Load() + lost
		out = append(out, file)
		for _, dest := range s.sinks {
			st := base
			st.Destination = dest.name
			st.Counters = dest.Counters()
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b DestinationStats) int {
		if c := strings.Compare(a.ContainerID, b.ContainerID); c != 0 {
			return c
		}
		return strings.Compare(a.Destination, b.Destination)
	})
	return out
}

// MonitorHandler serves the plugin's monitoring endpoints:
// /api/plugins.json in the shape of Fluentd's monitor_agent, /metrics in
// Prometheus' text format (with the Go runtime's and the process's
// metrics) and /healthz.
func (d *Driver) MonitorHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d}, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/plugins.json", d.servePlugins)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		closed := d.closed
		d.mu.Unlock()
		if closed {
			http.Error(w, "stopping", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// monitorPlugin is one entry of /api/plugins.json: monitor_agent's keys,
// plus the container and destination it is about.
type monitorPlugin struct {
	PluginID              string `json:"plugin_id"`
	PluginCategory        string `json:"plugin_category"`
	Type                  string `json:"type"`
	OutputPlugin          bool   `json:"output_plugin"`
	BufferQueueLength     int    `json:"buffer_queue_length"`
	BufferTotalQueuedSize int64  `json:"buffer_total_queued_size"`
	RetryCount            uint64 `json:"retry_count"`
	EmitRecords           uint64 `json:"emit_records"`
	DroppedRecords        uint64 `json:"dropped_records"`
	BufferCorruptRegions  uint64 `json:"buffer_corrupt_regions"`
	ContainerID           string `json:"container_id"`
	ContainerName         string `json:"container_name"`
	// Only for destinations that push back per entry (Elasticsearch).
	RejectedItems    *rejectedItems `json:"rejected_items,omitempty"`
	RequestsInFlight *int           `json:"requests_in_flight,omitempty"`
	ConcurrencyLimit *int           `json:"concurrency_limit,omitempty"`
	// Only for destinations with several servers (Fluentd).
	Servers []monitorServer `json:"servers,omitempty"`
}

// monitorServer is one server of a destination in /api/plugins.json, with
// monitor_agent's names for what it shares with a plugin.
type monitorServer struct {
	Server      string `json:"server"`
	State       string `json:"state"`
	Weight      int    `json:"weight,omitempty"`
	EmitRecords uint64 `json:"emit_records"`
	EmitSize    uint64 `json:"emit_size"`
	Acks        uint64 `json:"acks"`
	Failures    uint64 `json:"failures"`
}

// rejectedItems is Pressure's rejected entries, by status, in
// /api/plugins.json.
type rejectedItems struct {
	Status429 uint64 `json:"429"`
	Status5xx uint64 `json:"5xx"`
	Status4xx uint64 `json:"4xx"`
}

func (d *Driver) servePlugins(w http.ResponseWriter, _ *http.Request) {
	stats := d.Stats()
	plugins := make([]monitorPlugin, 0, len(stats))
	for _, st := range stats {
		p := monitorPlugin{
			PluginID:              shorten(st.ContainerID) + "." + st.Destination,
			PluginCategory:        "output",
			Type:                  st.Destination,
			OutputPlugin:          true,
			BufferQueueLength:     st.BufferQueueLength,
			BufferTotalQueuedSize: st.BufferTotalQueuedSize,
			RetryCount:            st.RetryCount,
			EmitRecords:           st.Emitted,
			DroppedRecords:        st.Dropped,
			BufferCorruptRegions:  st.CorruptRegions,
			ContainerID:           st.ContainerID,
			ContainerName:         st.ContainerName,
		}
		if pr := st.Pressure; pr != nil {
			p.RejectedItems = &rejectedItems{Status429: pr.Rejected429, Status5xx: pr.Rejected5xx, Status4xx: pr.Rejected4xx}
			p.RequestsInFlight, p.ConcurrencyLimit = &pr.RequestsInFlight, &pr.ConcurrencyLimit
		}
		for _, sc := range st.Servers {
			p.Servers = append(p.Servers, monitorServer{
				Server: sc.Server, State: sc.State, Weight: sc.Weight,
				EmitRecords: sc.Emitted, EmitSize: sc.Bytes, Acks: sc.Acks, Failures: sc.Failures,
			})
		}
		plugins = append(plugins, p)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"plugins": plugins})
}

// collector turns Stats into Prometheus metrics at each scrape.
type collector struct{ d *Driver }

var (
	metricLabels  = []string{"container_id", "container_name", "destination"}
	metricEmitted = prometheus.NewDesc("logferry_emitted_records_total",
		"Entries delivered to the destination.", metricLabels, nil)
	metricDropped = prometheus.NewDesc("logferry_dropped_records_total",
		"Entries lost on the way to the destination.", metricLabels, nil)
	metricRetries = prometheus.NewDesc("logferry_retries_total",
		"Sends made again after a failure.", metricLabels, nil)
	metricQueueLength = prometheus.NewDesc("logferry_buffer_queue_length",
		"Entries waiting to be delivered.", metricLabels, nil)
	metricQueuedBytes = prometheus.NewDesc("logferry_buffer_total_queued_size_bytes",
		"Bytes waiting to be delivered.", metricLabels, nil)
	metricCorrupt = prometheus.NewDesc("logferry_buffer_corrupt_regions_total",
		"Regions of the disk buffer skipped as corrupt (their entries are lost).", metricLabels, nil)
	metricRejected = prometheus.NewDesc("logferry_rejected_items_total",
		"Entries the destination answered with an error, by status: 429 and 5xx are sent again (and count each time), 4xx are refused for good.",
		append(slices.Clone(metricLabels), "status"), nil)
	metricInFlight = prometheus.NewDesc("logferry_requests_in_flight",
		"Requests to the destination being answered.", metricLabels, nil)
	metricConcurrency = prometheus.NewDesc("logferry_concurrency_limit",
		"Requests to the destination allowed in flight at once now: 1 to its workers, lower while it pushes back.", metricLabels, nil)

	serverLabels   = append(slices.Clone(metricLabels), "server")
	metricServerUp = prometheus.NewDesc("logferry_server_up",
		"1 when the server of the destination is healthy (taking entries or standing by), 0 when it is down.", serverLabels, nil)
	metricServerStandby = prometheus.NewDesc("logferry_server_standby",
		"1 when the healthy server of the destination takes no entries while another is up.", serverLabels, nil)
	metricServerEmitted = prometheus.NewDesc("logferry_server_emitted_records_total",
		"Entries the server of the destination accepted.", serverLabels, nil)
	metricServerBytes = prometheus.NewDesc("logferry_server_sent_bytes_total",
		"Bytes written to the server of the destination.", serverLabels, nil)
	metricServerAcks = prometheus.NewDesc("logferry_server_acks_total",
		"Acknowledgements the server of the destination sent.", serverLabels, nil)
	metricServerFailures = prometheus.NewDesc("logferry_server_failures_total",
		"Failed attempts to connect, authenticate, write to or be acknowledged by the server of the destination.", serverLabels, nil)
)

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, desc := range []*prometheus.Desc{metricEmitted, metricDropped, metricRetries, metricQueueLength, metricQueuedBytes, metricCorrupt,
		metricRejected, metricInFlight, metricConcurrency,
		metricServerUp, metricServerStandby, metricServerEmitted, metricServerBytes, metricServerAcks, metricServerFailures} {
		ch <- desc
	}
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.d.Stats() {
		labels := []string{st.ContainerID, st.ContainerName, st.Destination}
		ch <- prometheus.MustNewConstMetric(metricEmitted, prometheus.CounterValue, float64(st.Emitted), labels...)
		ch <- prometheus.MustNewConstMetric(metricDropped, prometheus.CounterValue, float64(st.Dropped), labels...)
		ch <- prometheus.MustNewConstMetric(metricRetries, prometheus.CounterValue, float64(st.RetryCount), labels...)
		ch <- prometheus.MustNewConstMetric(metricQueueLength, prometheus.GaugeValue, float64(st.BufferQueueLength), labels...)
		ch <- prometheus.MustNewConstMetric(metricQueuedBytes, prometheus.GaugeValue, float64(st.BufferTotalQueuedSize), labels...)
		ch <- prometheus.MustNewConstMetric(metricCorrupt, prometheus.CounterValue, float64(st.CorruptRegions), labels...)
		if pr := st.Pressure; pr != nil {
			for _, r := range []struct {
				status string
				n      uint64
			}{{"429", pr.Rejected429}, {"5xx", pr.Rejected5xx}, {"4xx", pr.Rejected4xx}} {
				ch <- prometheus.MustNewConstMetric(metricRejected, prometheus.CounterValue, float64(r.n), append(slices.Clip(labels), r.status)...)
			}
			ch <- prometheus.MustNewConstMetric(metricInFlight, prometheus.GaugeValue, float64(pr.RequestsInFlight), labels...)
			ch <- prometheus.MustNewConstMetric(metricConcurrency, prometheus.GaugeValue, float64(pr.ConcurrencyLimit), labels...)
		}
		for _, sc := range st.Servers {
			sl := append(slices.Clip(labels), sc.Server)
			up, standby := 0.0, 0.0
			if sc.State != "down" {
				up = 1
			}
			if sc.State == "standby" {
				standby = 1
			}
			ch <- prometheus.MustNewConstMetric(metricServerUp, prometheus.GaugeValue, up, sl...)
			ch <- prometheus.MustNewConstMetric(metricServerStandby, prometheus.GaugeValue, standby, sl...)
			ch <- prometheus.MustNewConstMetric(metricServerEmitted, prometheus.CounterValue, float64(sc.Emitted), sl...)
			ch <- prometheus.MustNewConstMetric(metricServerBytes, prometheus.CounterValue, float64(sc.Bytes), sl...)
			ch <- prometheus.MustNewConstMetric(metricServerAcks, prometheus.CounterValue, float64(sc.Acks), sl...)
			ch <- prometheus.MustNewConstMetric(metricServerFailures, prometheus.CounterValue, float64(sc.Failures), sl...)
		}
	}
}
