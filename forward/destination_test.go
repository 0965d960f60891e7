package forward

import (
	"context"
	"errors"
	"testing"
)

// fakeSink is a Sink that keeps nothing.
type fakeSink struct{}

func (*fakeSink) Send(*Event)                 {}
func (*fakeSink) Flush()                      {}
func (*fakeSink) Close(context.Context) error { return nil }
func (*fakeSink) Counters() Counters          { return Counters{} }

func TestNewDestination(t *testing.T) {
	t.Parallel()
	errStart := errors.New("start failed")
	parse := func(opts map[string]string) (string, bool, error) {
		if v := opts["fake-bad"]; v != "" {
			return "", false, OptionError("fake-bad", v, "nothing")
		}
		v, on := opts["fake-on"]
		return v, on, nil
	}
	start := func(cfg string, _ SinkEnv) (*fakeSink, error) {
		if cfg == "fail" {
			return nil, errStart
		}
		return &fakeSink{}, nil
	}
	d := NewDestination("fake", []string{"fake-on", "fake-bad"}, parse, start)
	tests := []struct {
		name      string
		opts      map[string]string
		on        bool
		configErr error
		startErr  error
	}{
		{name: "off", opts: map[string]string{"other": "x"}},
		{name: "bad option", opts: map[string]string{"fake-bad": "x"}, configErr: ErrInvalidOption},
		{name: "on", opts: map[string]string{"fake-on": "ok"}, on: true},
		{name: "start fails", opts: map[string]string{"fake-on": "fail"}, on: true, startErr: errStart},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			starter, err := d.Configure(tt.opts)
			if !errors.Is(err, tt.configErr) || (starter != nil) != tt.on {
				t.Fatalf("Configure = starter %v, %v; want on %v, error %v", starter != nil, err, tt.on, tt.configErr)
			}
			if starter == nil {
				return
			}
			s, err := starter(SinkEnv{})
			if !errors.Is(err, tt.startErr) || (s == nil) != (tt.startErr != nil) {
				t.Errorf("start = %#v, %v; want a sink only without error %v", s, err, tt.startErr)
			}
		})
	}
}
