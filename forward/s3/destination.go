package s3

import (
	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/internal/settings"
)

// Name is the destination's name: in metrics, logs and its disk buffer's
// directory.
const Name = "s3"

// The plugin settings of the destination's static keys; each may also be
// given as a file with the _FILE variant.
const (
	SettingAccessKeyID     = "S3_ACCESS_KEY_ID"
	SettingSecretAccessKey = "S3_SECRET_ACCESS_KEY"
	SettingSessionToken    = "S3_SESSION_TOKEN"
)

// Destination returns the S3 destination for the driver: on when a
// container's log-opts have s3-bucket. Its keys come from the plugin's
// settings, read when a container starts (a rotated file is read again).
func Destination() forward.Destination {
	return forward.NewDestination(Name, Keys, ParseConfig, func(cfg Config, env forward.SinkEnv) (*Sink, error) {
		creds, err := settingsCredentials()
		if err != nil {
			return nil, err
		}
		cfg.Credentials = creds
		cfg.BufferDir = env.BufferDir
		cfg.Buffer.Budget = env.Budget
		return New(cfg, env.Container, env.Log)
	})
}

func settingsCredentials() (Credentials, error) {
	var c Credentials
	if err := settings.Read(
		settings.Field{Name: SettingAccessKeyID, Dst: &c.AccessKeyID},
		settings.Field{Name: SettingSecretAccessKey, Dst: &c.SecretAccessKey},
		settings.Field{Name: SettingSessionToken, Dst: &c.SessionToken},
	); err != nil {
		return Credentials{}, err
	}
	return c, c.validate()
}
