package fluentd

import (
	"fmt"
	"os"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/internal/settings"
)

// Name is the destination's name: in metrics, logs and its disk buffer's
// directory.
const Name = "fluentd"

// The plugin settings of the shared-key authentication; the secrets may
// also be given as a file with the _FILE variant.
const (
	// SettingSharedKey turns the Forward protocol's handshake on, for
	// every Fluentd server: the <security> shared_key of the servers.
	SettingSharedKey = "FLUENTD_SHARED_KEY"
	// SettingUsername and SettingPassword are a user of the servers'
	// <security> section, for those that ask for one.
	SettingUsername = "FLUENTD_USERNAME"
	SettingPassword = "FLUENTD_PASSWORD"
	// SettingHostname is the name logferry gives itself in the handshake;
	// default the host name of the system.
	SettingHostname = "FLUENTD_HOSTNAME"
)

// Destination returns the Fluentd destination for the driver: on when a
// container's log-opts have fluentd-address. Its shared key comes from
// the plugin's settings, read when a container starts (a rotated file is
// read again).
func Destination() forward.Destination {
	// What is known of the servers' health is shared by every container.
	health := newHealthMap()
	return forward.NewDestination(Name, Keys, ParseConfig, func(cfg Config, env forward.SinkEnv) (*Sink, error) {
		auth, err := settingsAuth()
		if err != nil {
			return nil, err
		}
		cfg.Auth = auth
		cfg.health = health
		cfg.BufferDir = env.BufferDir
		cfg.Buffer.Budget = env.Budget
		return New(cfg, env.Container, env.Log)
	})
}

// settingsAuth reads the shared key and the user from the settings.
func settingsAuth() (Auth, error) {
	var a Auth
	if err := settings.Read(
		settings.Field{Name: SettingSharedKey, Dst: &a.SharedKey},
		settings.Field{Name: SettingUsername, Dst: &a.Username},
		settings.Field{Name: SettingPassword, Dst: &a.Password},
	); err != nil {
		return Auth{}, err
	}
	if !a.enabled() && (a.Username != "" || a.Password != "") {
		return Auth{}, fmt.Errorf("setting %s: a Fluentd user needs %s too", SettingUsername, SettingSharedKey)
	}
	a.Hostname = os.Getenv(SettingHostname)
	return a, nil
}

// Counters returns the sink's Stats in the shape of the plugin's
// monitoring.
func (s *Sink) Counters() forward.Counters {
	st := s.Stats()
	c := st.Counters(st.Emitted, st.Retries)
	c.Servers = s.serverCounters()
	return c
}
