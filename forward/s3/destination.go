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
	for _, v := range []struct {
		name string
		dst  *string
	}{
		{SettingAccessKeyID, &c.AccessKeyID},
		{SettingSecretAccessKey, &c.SecretAccessKey},
		{SettingSessionToken, &c.SessionToken},
	} {
		val, err := settings.Secret(v.name)
		if err != nil {
			return Credentials{}, err
		}
		*v.dst = val
	}
	return c, c.validate()
}
