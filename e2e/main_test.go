//go:build e2e

// Package e2e proves logferry's features through the real Docker engine and
// the docker CLI. Wherever json-file has the same feature, a test runs the
// same workload once with --log-driver json-file and once with logferry and
// compares the files and what "docker logs" returns.
//
// The suite needs root, a running dockerd, the plugin installed and
// enabled, the busybox test image, for the registry test a registry on
// loopback, and for the tests that install a second instance of the plugin
// (TestDiskFull, whose root mount is a small tmpfs the test mounts) the
// plugin directory that "make install" assembles (build/plugin); "make e2e"
// prepares all of them. Tests that disable or reconfigure the plugin do not
// call t.Parallel, so they run before the parallel ones start.
//
// Environment (all optional): LOGFERRY_E2E_PLUGIN (default logferry:latest),
// LOGFERRY_E2E_IMAGE (default logferry-busybox:latest), LOGFERRY_E2E_REGISTRY
// (default 127.0.0.1:5000), LOGFERRY_E2E_REPO (repository root, default ".."),
// LOGFERRY_E2E_PLUGIN_DIR (the plugin's config.json and rootfs, default
// build/plugin in the repository root), LOGFERRY_E2E_ENGINE_BIN (the
// directory of the engine's binaries, dockerd first, for the tests that start
// a dockerd of their own, so that they run the same engine as the rest;
// default: those on PATH).
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// suite is what every test reads; TestMain sets it before any test runs.
var suite struct {
	plugin     string // installed plugin name, e.g. "logferry:latest"
	driver     string // --log-driver value for the plugin, e.g. "logferry"
	image      string // image the containers run
	registry   string // host:port of the registry for the install test
	repo       string // repository root, where "make push" runs
	root       string // host directory behind the plugin's "root" mount
	pluginDir  string // plugin directory "make install" creates the plugin from
	dockerRoot string // dockerd's data root, e.g. /var/lib/docker
	// engineBin is the directory of the engine under test's dockerd,
	// containerd, shim and runc, for the tests that start a daemon of their
	// own; empty means those on PATH.
	engineBin string
}

func TestMain(m *testing.M) {
	if err := setup(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n"+
			"The suite needs dockerd, the plugin installed and enabled and the test image: run \"make e2e\".\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setup(ctx context.Context) error {
	suite.plugin = getenv("LOGFERRY_E2E_PLUGIN", "logferry:latest")
	suite.driver = strings.TrimSuffix(suite.plugin, ":latest")
	suite.image = getenv("LOGFERRY_E2E_IMAGE", "logferry-busybox:latest")
	suite.registry = getenv("LOGFERRY_E2E_REGISTRY", "127.0.0.1:5000")
	repo, err := filepath.Abs(getenv("LOGFERRY_E2E_REPO", ".."))
	if err != nil {
		return err
	}
	suite.repo = repo
	suite.engineBin = os.Getenv("LOGFERRY_E2E_ENGINE_BIN")
	if suite.pluginDir, err = filepath.Abs(getenv("LOGFERRY_E2E_PLUGIN_DIR", filepath.Join(repo, "build", "plugin"))); err != nil {
		return err
	}

	if suite.dockerRoot, err = docker(ctx, "info", "--format", "{{.DockerRootDir}}"); err != nil {
		return err
	}
	enabled, err := docker(ctx, "plugin", "inspect", "--format", "{{.Enabled}}", suite.plugin)
	if err != nil {
		return err
	}
	if enabled != "true" {
		return fmt.Errorf("plugin %s is installed but not enabled", suite.plugin)
	}
	if suite.root, err = pluginRoot(ctx, suite.plugin); err != nil {
		return err
	}
	if _, err := docker(ctx, "image", "inspect", "--format", "{{.Id}}", suite.image); err != nil {
		return err
	}
	return nil
}

func getenv(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

// pluginRoot returns the host source of the plugin's "root" mount.
func pluginRoot(ctx context.Context, plugin string) (string, error) {
	return mountOf(ctx, plugin, "root", "{{.Source}}")
}

// mountOf returns what format, a template over one mount such as
// "{{.Source}}", prints of the plugin's mount called name, on the daemon
// on names ("--host", addr), or the shared one.
//
// It reads .Config.Mounts, which is what dockerd mounts. .Settings.Mounts
// is a copy whose sources "docker plugin set" keeps up to date only until
// dockerd restarts (moby's Plugin.Set writes through the source pointers of
// .Config.Mounts, which the copy shares until the plugin is read back from
// disk); TestPluginSetAfterDaemonRestart shows it.
func mountOf(ctx context.Context, plugin, name, format string, on ...string) (string, error) {
	args := append(slices.Clip(on), "plugin", "inspect", "--format",
		`{{range .Config.Mounts}}{{if eq .Name "`+name+`"}}`+format+`{{end}}{{end}}`, plugin)
	got, err := docker(ctx, args...)
	if err != nil {
		return "", err
	}
	if got == "" {
		return "", fmt.Errorf("plugin %s has no mount named %s", plugin, name)
	}
	return got, nil
}
