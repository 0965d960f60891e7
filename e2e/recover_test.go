//go:build e2e

package e2e

// These tests stop or kill the plugin process; like the others in
// plugin_test.go they do not call t.Parallel.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pacedScript writes "line 1" … "line n", one every 20 ms.
func pacedScript(n int) string {
	return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); echo "line $i"; sleep 0.02; done`, n)
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
// that docker logs serves them. Lines dockerd wrote while no plugin process
// read the FIFO are lost (dockerd gets EPIPE): they are only counted.
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
	c := create(t, spec{driver: suite.driver, script: pacedScript(n)})
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
	c := create(t, spec{driver: suite.driver, script: pacedScript(n)})
	c.start(t)
	waitForLine(t, c, `"line 20\n"`)

	pid := pluginPID(t, suite.plugin)
	if pid == 0 {
		t.Fatalf("no process of plugin %s", suite.plugin)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill plugin process %d: %v", pid, err)
	}
	// dockerd restarts a plugin whose process died.
	deadline := time.Now().Add(time.Minute)
	for {
		if p := pluginPID(t, suite.plugin); p != 0 && p != pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin %s not restarted within a minute of kill -9", suite.plugin)
		}
		time.Sleep(100 * time.Millisecond)
	}

	c.wait(t)
	checkResumed(t, c, n)
}
