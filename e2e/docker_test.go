//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// cliCeiling bounds every docker CLI call; it is a ceiling for hangs, not a
// performance expectation.
const cliCeiling = 2 * time.Minute

// cli runs the docker CLI and returns its standard output and standard error
// as they are. The error names the command and quotes both outputs.
func cli(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, cliCeiling)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (ceiling %v)", ctx.Err(), cliCeiling)
		}
		err = fmt.Errorf("docker %s: %w\nstdout: %s\nstderr: %s",
			strings.Join(args, " "), err, clip(out.String()), clip(errOut.String()))
	}
	return out.String(), errOut.String(), err
}

// docker runs a docker command whose output is one value and returns its
// standard output without surrounding white space.
func docker(ctx context.Context, args ...string) (string, error) {
	out, _, err := cli(ctx, args...)
	return strings.TrimSpace(out), err
}

// mustDocker is docker that fails the test on error. It does not use
// t.Context so that cleanups can call it.
func mustDocker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := docker(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// clip shortens s for an error message.
func clip(s string) string { return clipTo(s, 2000) }

// clipTo shortens s to limit bytes for an error message.
func clipTo(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:limit], len(s))
}

// spec describes a container of the test image.
type spec struct {
	name    string   // container name; empty means a generated one
	driver  string   // --log-driver
	logOpts []string // --log-opt values
	flags   []string // more "docker create" flags, e.g. --label
	script  string   // what the container runs, with sh -c
	root    string   // for a logferry container, the plugin's host root; empty means suite.root
	host    string   // docker --host of the daemon to run it on; empty means the shared one
}

// container is a container created by create; it is removed, together with
// the files logferry wrote for it, when the test ends.
type container struct {
	spec
	id      string
	logFile string // cached by logPath
}

var nameSeq atomic.Int64

// containerName returns a unique, recognisable container name for t.
func containerName(t testing.TB) string {
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' {
			return r
		}
		return '-'
	}, t.Name())
	if len(base) > 60 {
		base = base[:60]
	}
	return fmt.Sprintf("lf-e2e-%s-%d-%d", base, os.Getpid(), nameSeq.Add(1))
}

// on returns args prefixed with the --host of the container's daemon.
func (s spec) on(args ...string) []string {
	if s.host == "" {
		return args
	}
	return append([]string{"--host", s.host}, args...)
}

func (s spec) createArgs() []string {
	args := []string{"create", "--name", s.name, "--network", "none", "--log-driver", s.driver}
	for _, o := range s.logOpts {
		args = append(args, "--log-opt", o)
	}
	args = append(args, s.flags...)
	return s.on(append(args, suite.image, "sh", "-c", s.script)...)
}

// create creates a container and registers its removal.
func create(t testing.TB, s spec) *container {
	t.Helper()
	if s.name == "" {
		s.name = containerName(t)
	}
	if s.root == "" {
		s.root = suite.root
	}
	c := &container{spec: s, id: mustDocker(t, s.createArgs()...)}
	t.Cleanup(func() { c.remove(t) })
	return c
}

func (c *container) String() string { return fmt.Sprintf("%s container %s", c.driver, c.name) }

// ours reports whether the container logs through logferry.
func (c *container) ours() bool { return c.driver != "json-file" }

func (c *container) remove(t testing.TB) {
	t.Helper()
	if _, err := docker(context.Background(), c.on("rm", "--force", "--volumes", c.id)...); err != nil {
		t.Errorf("remove %s: %v", c, err)
	}
	if c.ours() {
		// The plugin's janitor removes a removed container's files only
		// within a minute or so.
		if err := os.RemoveAll(c.ourDir()); err != nil {
			t.Errorf("remove %s: %v", c, err)
		}
	}
}

func (c *container) start(t testing.TB) {
	t.Helper()
	mustDocker(t, c.on("start", c.id)...)
}

// wait waits until the container has exited and checks that it exited 0.
func (c *container) wait(t testing.TB) {
	t.Helper()
	if code := mustDocker(t, c.on("wait", c.id)...); code != "0" {
		t.Fatalf("%s exited with %s", c, code)
	}
}

// run creates, starts and waits for one container.
func run(t testing.TB, s spec) *container {
	t.Helper()
	return runAll(t, s)[0]
}

// runAll creates all containers and runs them, see startAll.
func runAll(t testing.TB, specs ...spec) []*container {
	t.Helper()
	cs := make([]*container, len(specs))
	for i, s := range specs {
		cs[i] = create(t, s)
	}
	startAll(t, cs...)
	return cs
}

// startAll starts all containers and then waits for each to exit, so that
// the json-file and the logferry run of a workload overlap.
func startAll(t testing.TB, cs ...*container) {
	t.Helper()
	for _, c := range cs {
		c.start(t)
	}
	for _, c := range cs {
		c.wait(t)
	}
}

// pair returns the same spec for json-file and for logferry.
func pair(s spec) []spec {
	ref, ours := s, s
	ref.driver, ours.driver = "json-file", suite.driver
	return []spec{ref, ours}
}

// ourDir is the directory logferry writes the container's files to.
func (c *container) ourDir() string { return filepath.Join(c.root, "containers", c.id) }

// logPath is the container's current log file: json-file's LogPath, or
// logferry's <root>/containers/<id>/<id>-json.log.
func (c *container) logPath(t testing.TB) string {
	t.Helper()
	switch {
	case c.logFile != "":
	case c.ours():
		c.logFile = filepath.Join(c.ourDir(), c.id+"-json.log")
	default:
		c.logFile = mustDocker(t, c.on("inspect", "--format", "{{.LogPath}}", c.id)...)
		if c.logFile == "" {
			t.Fatalf("%s has no LogPath", c)
		}
	}
	return c.logFile
}

// logs returns what "docker logs" writes to stdout and to stderr.
func (c *container) logs(t testing.TB, args ...string) (stdout, stderr string) {
	t.Helper()
	args = append(append([]string{"logs"}, args...), c.id)
	stdout, stderr, err := cli(context.Background(), c.on(args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return stdout, stderr
}

// servedByPlugin checks that dockerd did not fall back to its own cache
// ("dual logging") for the container, so that "docker logs" proves the
// plugin's ReadLogs.
func (c *container) servedByPlugin(t testing.TB) {
	t.Helper()
	cache := filepath.Join(suite.dockerRoot, "containers", c.id, "container-cached.log")
	if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: dockerd keeps its own log cache %s (stat: %v): the plugin does not serve docker logs itself",
			c, cache, err)
	}
}

// enablePlugin enables the plugin as "make install" does: without a timeout
// on dockerd's requests to it, which would cut "docker logs --follow".
func enablePlugin(t testing.TB, plugin string) {
	t.Helper()
	mustDocker(t, "plugin", "enable", "--timeout", "0", plugin)
}

// restorePlugin makes sure the plugin is enabled, as a test cleanup.
func restorePlugin(t testing.TB, plugin string) {
	t.Helper()
	if enabled := mustDocker(t, "plugin", "inspect", "--format", "{{.Enabled}}", plugin); enabled != "true" {
		enablePlugin(t, plugin)
	}
}

// pluginAlias names another instance of the plugin under test, for a test
// that needs one of its own: "logferry:latest" with suffix "full" gives
// "logferryfull:latest".
func pluginAlias(suffix string) string {
	name, tag, ok := strings.Cut(suite.plugin, ":")
	if !ok {
		return name + suffix
	}
	return name + suffix + ":" + tag
}

// driverOf returns the --log-driver value that selects plugin.
func driverOf(plugin string) string { return strings.TrimSuffix(plugin, ":latest") }

// installPlugin creates the plugin alias from the directory "make install"
// assembles (suite.pluginDir), with its root mount on the host directory
// root and the given settings (KEY=value), and enables it as "make install"
// does. The plugin is removed when the test ends.
func installPlugin(t testing.TB, alias, root string, settings ...string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(suite.pluginDir, "config.json")); err != nil {
		t.Fatalf("plugin directory: %v (run \"make install\", or set LOGFERRY_E2E_PLUGIN_DIR)", err)
	}
	// dockerd refuses to create a plugin whose root file system it already
	// stores for another one ("content sha256:… already exists"): a copy
	// with a file naming the alias is a root file system of its own.
	dir := filepath.Join(t.TempDir(), "plugin")
	if out, err := exec.Command("cp", "-a", suite.pluginDir, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v: %s", suite.pluginDir, err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs", ".e2e-alias"), []byte(alias+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	removePlugin(t, alias) // left by an interrupted run
	t.Cleanup(func() { removePlugin(t, alias) })
	mustDocker(t, "plugin", "create", alias, dir)
	mustDocker(t, append([]string{"plugin", "set", alias, "root.source=" + root}, settings...)...)
	enablePlugin(t, alias)
}

// removePlugin force-disables and removes the plugin alias, if it exists.
func removePlugin(t testing.TB, alias string) {
	t.Helper()
	ctx := context.Background()
	if _, err := docker(ctx, "plugin", "inspect", "--format", "{{.Id}}", alias); err != nil {
		return
	}
	if _, err := docker(ctx, "plugin", "disable", "--force", alias); err != nil {
		t.Log(err) // not enabled
	}
	if _, err := docker(ctx, "plugin", "rm", "--force", alias); err != nil {
		t.Error(err)
	}
}
