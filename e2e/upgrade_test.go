//go:build e2e

package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

// TestPluginUpgrade upgrades the plugin as the README tells users to, with
// "docker plugin upgrade" from a registry, on a dockerd of its own (the
// engine under test), while one container logs and another's lines wait in
// its disk buffer for a Fluentd receiver that is down, and checks what the
// README says of it:
//
//   - the upgrade resets the mounts' sources to the plugin's defaults (moby
//     replaces .Config, whose mounts are what it mounts), while the other
//     settings (LOG_LEVEL here) are kept; the README's procedure sets the
//     sources again before enabling;
//   - the buffered lines are delivered by the new version, and the files of
//     every container are served again by "docker logs";
//   - the container that was running logs nothing more (the upgrade
//     replaced the plugin's file system, where it kept the container's
//     FIFO) until it is restarted, and then appends to its files.
func TestPluginUpgrade(t *testing.T) {
	t.Parallel()
	const (
		alias    = "logferry-up"
		buffered = 200
	)
	ref := pushedPlugin(t)
	d := startPrivateDaemon(t)
	d.loadImage(t)
	root := d.mkdirs(t, "plugin-root")[0]
	mustDocker(t, d.on(slices.Concat([]string{"plugin", "install", "--grant-all-permissions", "--alias", alias, ref},
		d.mounts(root), []string{"LOG_LEVEL=debug"})...)...)

	// Lines for a receiver that is down: they wait in the disk buffer.
	addr := fwdFreePort(t)
	waiting := run(t, spec{host: d.host, root: root, driver: alias, logOpts: ackedFluentd(addr),
		script: pacedScript(1, buffered, 0)})
	// A container that logs throughout, one line every 20 ms, each run
	// of it starting with a line of its own.
	running := create(t, spec{host: d.host, root: root, driver: alias,
		script: `echo "run $(date +%s%N)"; ` + pacedScript(1, 1000000, 20*time.Millisecond)})
	running.start(t)
	waitForLine(t, running, `"line 50\n"`)

	mustDocker(t, d.on("plugin", "disable", "--force", alias)...)
	mustDocker(t, d.on("plugin", "upgrade", "--grant-all-permissions", alias, ref)...)
	if enabled := mustDocker(t, d.on("plugin", "inspect", "--format", "{{.Enabled}}", alias)...); enabled != "false" {
		t.Errorf("the plugin is enabled=%s after docker plugin upgrade, want false", enabled)
	}
	if got, err := mountOf(t.Context(), alias, "root", "{{.Source}}", d.on()...); err != nil || got == root {
		t.Errorf("after the upgrade the root mount is from %q (%v): the README says the upgrade resets it to the default", got, err)
	} else {
		t.Logf("after the upgrade the root mount is from %q again, not %q", got, root)
	}
	if env := mustDocker(t, d.on("plugin", "inspect", "--format", "{{json .Settings.Env}}", alias)...); !strings.Contains(env, `"LOG_LEVEL=debug"`) {
		t.Errorf("the upgrade did not keep LOG_LEVEL=debug: settings %s", env)
	}
	mustDocker(t, d.on(slices.Concat([]string{"plugin", "set", alias}, d.mounts(root))...)...)
	srv := fluentdtest.NewServer(t, fluentdtest.Config{Addr: addr})
	upgraded := time.Now()
	mustDocker(t, d.on("plugin", "enable", "--timeout", "0", alias)...)
	atEnable := lastLine(t, running)

	// The new version delivers what the old one buffered.
	poll(fwdCeiling, func() bool {
		recv, _ := fwdLineNumbers(srv.Events())
		return len(recv) >= buffered
	})
	recv, others := fwdLineNumbers(srv.Events())
	checkLineCounts(t, "receiver", recv, others, buffered, false)
	t.Logf("the upgraded plugin delivered the %d buffered lines %v after it was enabled", buffered, time.Since(upgraded).Round(time.Millisecond))
	stdout, _ := waiting.logs(t)
	counts, others := lineNumbers(strings.Split(strings.TrimSuffix(stdout, "\n"), "\n"))
	checkLineCounts(t, "docker logs of the container that exited", counts, others, buffered, true)

	// The running container: nothing more in its file, then after a
	// restart, more, appended.
	time.Sleep(2 * time.Second)
	if after := lastLine(t, running); after != atEnable {
		t.Errorf("%s logged up to line %d after the upgrade, from line %d: the README says it logs nothing more until restarted", running, after, atEnable)
	}
	mustDocker(t, d.on("restart", "--time", "1", running.id)...)
	poll(time.Minute, func() bool { return runs(t, running) == 2 })
	if n := runs(t, running); n != 2 {
		t.Errorf("%s: its files hold %d runs after the restart, want 2 (the restart appends)", running, n)
	}
	stdout, _ = running.logs(t)
	if n := strings.Count(stdout, "run "); n != 2 {
		t.Errorf("docker logs of %s shows %d runs after the restart, want 2", running, n)
	}
	t.Logf("%s logged up to line %d before the upgrade, nothing after it, and again once restarted", running, atEnable)
}

// runs counts the "run …" lines in c's files.
func runs(t *testing.T, c *container) int {
	t.Helper()
	n := 0
	for _, r := range allRecords(t, c.logFiles(t, false)) {
		if strings.HasPrefix(r.Log, "run ") {
			n++
		}
	}
	return n
}
