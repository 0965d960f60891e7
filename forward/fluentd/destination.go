package fluentd

import "github.com/logferry/logferry/forward"

// Name is the destination's name: in metrics, logs and its disk buffer's
// directory.
const Name = "fluentd"

// Destination returns the Fluentd destination for the driver: on when a
// container's log-opts have fluentd-address.
func Destination() forward.Destination {
	return forward.NewDestination(Name, Keys, ParseConfig, func(cfg Config, env forward.SinkEnv) (*Sink, error) {
		cfg.BufferDir = env.BufferDir
		cfg.Buffer.Budget = env.Budget
		return New(cfg, env.Container, env.Log)
	})
}

// Counters returns the sink's Stats in the shape of the plugin's
// monitoring.
func (s *Sink) Counters() forward.Counters {
	st := s.Stats()
	return st.Counters(st.Emitted, st.Retries)
}
