//go:build e2e

package e2e

// What the README tells users about their engine's configuration, checked
// on a dockerd of the test's own (so that restarting it or changing its
// daemon.json touches no other test), which is the engine under test
// (LOGFERRY_E2E_ENGINE_BIN).

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// reconfigure stops the daemon, replaces its daemon.json with config and
// starts it again.
func (d *privateDaemon) reconfigure(t *testing.T, config map[string]any) {
	t.Helper()
	b, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "daemon.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	d.start(t)
}

// mkdirs makes directories, named after their base, under d's directory and
// returns their paths.
func (d *privateDaemon) mkdirs(t *testing.T, names ...string) []string {
	t.Helper()
	dirs := make([]string, len(names))
	for i, name := range names {
		dirs[i] = filepath.Join(d.dir, name)
		if err := os.Mkdir(dirs[i], 0o750); err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

// TestPluginSetAfterDaemonRestart moves the plugin's root mount with
// "docker plugin set" after dockerd restarted: the files must go to the new
// source, and .Config.Mounts, which the README and the suite read, must
// name it. .Settings.Mounts is logged: Docker's own documentation reads it,
// and after a restart it keeps showing the source from before (moby's
// Plugin.Set updates it only through pointers it shares with .Config.Mounts
// until the plugin is read back from disk).
func TestPluginSetAfterDaemonRestart(t *testing.T) {
	t.Parallel()
	d := startPrivateDaemon(t)
	d.loadImage(t)
	dirs := d.mkdirs(t, "root-first", "root-moved")
	first, moved := dirs[0], dirs[1]
	d.installPlugin(t, first)

	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	d.start(t)
	mustDocker(t, d.on("plugin", "disable", "--force", suite.plugin)...)
	mustDocker(t, d.on("plugin", "set", suite.plugin, "root.source="+moved)...)
	mustDocker(t, d.on("plugin", "enable", "--timeout", "0", suite.plugin)...)

	c := run(t, spec{host: d.host, root: moved, driver: suite.driver, script: simpleScript})
	checkSimpleLogs(t, c)
	if _, err := os.Stat(filepath.Join(first, "containers", c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: files under the root from before the restart, %s (stat: %v)", c, first, err)
	}
	if got, err := mountOf(t.Context(), suite.plugin, "root", "{{.Source}}", d.on()...); err != nil || got != moved {
		t.Errorf(".Config.Mounts names root %q (%v), want %q, where the files are", got, err, moved)
	}
	settings := mustDocker(t, d.on("plugin", "inspect", "--format",
		`{{range .Settings.Mounts}}{{if eq .Name "root"}}{{.Source}}{{end}}{{end}}`, suite.plugin)...)
	t.Logf("after the restart and the set, .Settings.Mounts names root %q (the set source: %v)", settings, settings == moved)
}

// TestDaemonJSONLogOpts makes the plugin the default driver in daemon.json,
// with log-opts, and checks which containers get those options: those with
// the default driver, also when they name it as daemon.json spells it (their
// own --log-opt wins), not those naming it otherwise or another driver
// (moby's mergeAndVerifyLogConfig). The plugin applies what dockerd merged:
// the container with the default options keeps max-file files.
func TestDaemonJSONLogOpts(t *testing.T) {
	t.Parallel()
	d := startPrivateDaemon(t)
	d.loadImage(t)
	root := d.mkdirs(t, "plugin-root")[0]
	d.installPlugin(t, root)
	defaults := map[string]string{"max-size": "1k", "max-file": "2", "labels": "team"}
	d.reconfigure(t, map[string]any{"log-driver": suite.driver, "log-opts": defaults})

	withSize := maps.Clone(defaults)
	withSize["max-size"] = "4k"
	tests := []struct {
		name       string
		flags      []string // docker create's
		wantDriver string
		want       map[string]string
	}{
		{name: "default driver", wantDriver: suite.driver, want: defaults},
		{name: "named as in daemon.json", flags: []string{"--log-driver", suite.driver}, wantDriver: suite.driver, want: defaults},
		{name: "own option wins", flags: []string{"--log-driver", suite.driver, "--log-opt", "max-size=4k"}, wantDriver: suite.driver, want: withSize},
		{name: "named otherwise", flags: []string{"--log-driver", suite.driver + ":latest"}, wantDriver: suite.driver + ":latest", want: map[string]string{}},
		{name: "another driver", flags: []string{"--log-driver", "json-file"}, wantDriver: "json-file", want: map[string]string{}},
	}
	// 100 lines of 40 bytes: over 1k many times, under 4k*2 files never.
	const script = `i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo "line $i ................................"; done`
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"create", "--network", "none", "--label", "team=e2e"}, tt.flags...)
			id := mustDocker(t, d.on(append(args, suite.image, "sh", "-c", script)...)...)
			var lc struct {
				Type   string
				Config map[string]string
			}
			if err := json.Unmarshal([]byte(mustDocker(t, d.on("inspect", "--format", "{{json .HostConfig.LogConfig}}", id)...)), &lc); err != nil {
				t.Fatal(err)
			}
			if lc.Config == nil {
				lc.Config = map[string]string{}
			}
			if lc.Type != tt.wantDriver || !maps.Equal(lc.Config, tt.want) {
				t.Errorf("log config %s %v, want %s %v", lc.Type, lc.Config, tt.wantDriver, tt.want)
			}
			if tt.name != "named as in daemon.json" {
				return
			}
			mustDocker(t, d.on("start", id)...)
			if code := mustDocker(t, d.on("wait", id)...); code != "0" {
				t.Fatalf("container exited with %s", code)
			}
			names, err := filepath.Glob(filepath.Join(root, "containers", id, id+"-json.log*"))
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 2 {
				t.Errorf("the plugin kept %d files, want max-file=2: %s", len(names), strings.Join(names, " "))
			}
			stdout, _, err := cli(t.Context(), d.on("logs", "--tail", "1", id)...)
			if want := fmt.Sprintf("line %d ", 100); err != nil || !strings.HasPrefix(stdout, want) {
				t.Errorf("docker logs --tail 1: %q (%v), want %q…", stdout, err, want)
			}
		})
	}
}
