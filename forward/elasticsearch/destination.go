package elasticsearch

import (
	"path/filepath"

	"github.com/logferry/logferry/forward"
)

// Name is the destination's name: in metrics, logs and its disk buffer's
// directory.
const Name = "elasticsearch"

// Destination returns the Elasticsearch destination for the driver: on
// when a container's log-opts have elasticsearch-url. creds come from the
// plugin's settings, never from log-opts.
func Destination(creds Credentials) forward.Destination {
	return forward.NewDestination(Name, Keys, ParseConfig, func(cfg Config, env forward.SinkEnv) (*Sink, error) {
		cfg.BufferDir = env.BufferDir
		cfg.Buffer.Budget = env.Budget
		if env.LogDir != "" {
			cfg.DeadLetterPath = filepath.Join(env.LogDir, env.Container.ID+"-elasticsearch-rejected.ndjson")
		}
		return New(cfg, creds, env.Container, env.Log)
	})
}

// Counters returns the sink's Stats in the shape of the plugin's
// monitoring.
func (s *Sink) Counters() forward.Counters {
	st := s.Stats()
	c := st.Counters(st.Indexed+st.Duplicates, st.RetryCount)
	c.Pressure = &forward.Pressure{
		Rejected429: st.ItemErrors.Status429, Rejected5xx: st.ItemErrors.Status5xx, Rejected4xx: st.ItemErrors.Status4xx,
		RequestsInFlight: st.InFlight, ConcurrencyLimit: st.Concurrency,
	}
	return c
}
