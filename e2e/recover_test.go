//go:build e2e

package e2e

// These tests stop or kill the plugin process; like the others in
// plugin_test.go they do not call t.Parallel.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pacedScript writes "line first" … "line last" on stdout, one every
// interval (plus the time the shell takes, which matters below a few
// milliseconds).
func pacedScript(first, last int, interval time.Duration) string {
	return fmt.Sprintf(`i=%d; while [ $i -lt %d ]; do i=$((i+1)); echo "line $i"; usleep %d; done`,
		first-1, last, interval.Microseconds())
}

// pluginPID returns the pid of the plugin's process, the one named logferry
// in the cgroup dockerd made for the plugin, or 0 if it has none.
func pluginPID(t testing.TB, plugin string) int {
	t.Helper()
	id := mustDocker(t, "plugin", "inspect", "--format", "{{.Id}}", plugin)
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "logferry" {
			continue
		}
		cgroup, err := os.ReadFile(filepath.Join(dir, "cgroup"))
		if err != nil || !strings.Contains(string(cgroup), id) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	return 0
}

// killPlugin kills the plugin's process with SIGKILL, waits until it is
// gone and returns its pid and the time just before the kill.
func killPlugin(t *testing.T, plugin string) (pid int, at time.Time) {
	t.Helper()
	pid = pluginPID(t, plugin)
	if pid == 0 {
		t.Fatalf("no process of plugin %s", plugin)
	}
	at = time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill plugin process %d: %v", pid, err)
	}
	waitProcessGone(t, fmt.Sprintf("plugin process %d", pid), pid)
	return pid, at
}

// waitProcessGone waits until the process pid has exited and been reaped.
func waitProcessGone(t *testing.T, what string, pid int) {
	t.Helper()
	fwdWait(t, fwdCeiling, what+" exits", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return errors.Is(err, os.ErrNotExist)
	})
}

// waitPluginRestarted waits until dockerd has restarted the plugin whose
// process old was killed at killed, and has found the new process
// listening. dockerd dials a plugin's socket 0.5 s after starting it and
// then every 3 s, up to 4 times; if the process dies before one dial
// succeeds, dockerd disables the plugin for good instead of restarting it
// again. It saves the plugin's config.json once a dial succeeded, which is
// what this waits for.
func waitPluginRestarted(t *testing.T, plugin string, old int, killed time.Time) {
	t.Helper()
	id := mustDocker(t, "plugin", "inspect", "--format", "{{.Id}}", plugin)
	config := filepath.Join(suite.dockerRoot, "plugins", id, "config.json")
	deadline := time.Now().Add(time.Minute)
	for {
		if p := pluginPID(t, plugin); p != 0 && p != old {
			fi, err := os.Stat(config)
			if err != nil {
				t.Fatalf("plugin %s: %v", plugin, err)
			}
			if fi.ModTime().After(killed) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin %s not restarted (or not found listening by dockerd) within a minute of kill -9", plugin)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitForLine waits until the container's file holds want.
func waitForLine(t *testing.T, c *container, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(c.logPath(t)); err == nil && strings.Contains(string(b), want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %q not in %s after a minute", c, want, c.logPath(t))
}

// checkResumed checks that a container that logged n paced lines across a
// plugin restart has its last line, no line twice and lines in order, and
// that docker logs serves them. dockerd keeps what it writes while no
// plugin process reads in the FIFO (it opens it read-write); lines a killed
// process had read but not yet written are lost: they are only counted.
func checkResumed(t *testing.T, c *container, n int) {
	t.Helper()
	recs := allRecords(t, c.logFiles(t, false))
	seen := make(map[int]bool)
	last := 0
	for _, r := range recs {
		var i int
		if _, err := fmt.Sscanf(r.Log, "line %d\n", &i); err != nil {
			t.Fatalf("%s: unexpected record %q", c, r.Log)
		}
		if seen[i] || i <= last {
			t.Fatalf("%s: line %d out of order or twice (after %d)", c, i, last)
		}
		seen[i], last = true, i
	}
	if last != n {
		t.Fatalf("%s: last line in the file is %d, want %d: logging did not resume", c, last, n)
	}
	t.Logf("%s: %d of %d lines kept across the restart", c, len(recs), n)
	stdout, _ := c.logs(t, "--tail", "1")
	if stdout != fmt.Sprintf("line %d\n", n) {
		t.Errorf("%s: docker logs --tail 1 = %q", c, stdout)
	}
}

func TestRunningContainerSurvivesPluginDisable(t *testing.T) {
	const n = 300
	c := create(t, spec{driver: suite.driver, script: pacedScript(1, n, 20*time.Millisecond)})
	c.start(t)
	waitForLine(t, c, `"line 20\n"`)

	t.Cleanup(func() { restorePlugin(t, suite.plugin) })
	mustDocker(t, "plugin", "disable", "--force", suite.plugin)
	enablePlugin(t, suite.plugin)

	c.wait(t)
	checkResumed(t, c, n)
}

func TestRunningContainerSurvivesPluginCrash(t *testing.T) {
	const n = 300
	c := create(t, spec{driver: suite.driver, script: pacedScript(1, n, 20*time.Millisecond)})
	c.start(t)
	waitForLine(t, c, `"line 20\n"`)

	pid, killed := killPlugin(t, suite.plugin)
	waitPluginRestarted(t, suite.plugin, pid, killed)

	c.wait(t)
	checkResumed(t, c, n)
}
