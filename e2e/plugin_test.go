//go:build e2e

package e2e

// The tests in this file disable or reconfigure a plugin. They do not call
// t.Parallel, so they run one after another before any parallel test starts.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logferry/logferry/forward/elasticsearch/estest"
)

// simpleScript writes one line to each stream.
const simpleScript = `echo "to stdout"; echo "to stderr" >&2`

// checkSimpleLogs checks the file and "docker logs" of a container that ran
// simpleScript.
func checkSimpleLogs(t *testing.T, c *container) {
	t.Helper()
	recs := allRecords(t, c.logFiles(t, false))
	if len(recs) != 2 {
		t.Errorf("%s: %d records in %s, want 2", c, len(recs), c.logPath(t))
	}
	stdout, stderr := c.logs(t)
	if stdout != "to stdout\n" || stderr != "to stderr\n" {
		t.Errorf("%s: docker logs printed stdout %q and stderr %q", c, stdout, stderr)
	}
}

func TestLogsServedAfterPluginRestart(t *testing.T) {
	c := run(t, spec{driver: suite.driver, script: simpleScript})
	checkSimpleLogs(t, c)

	t.Cleanup(func() { restorePlugin(t, suite.plugin) })
	mustDocker(t, "plugin", "disable", "--force", suite.plugin)
	enablePlugin(t, suite.plugin)

	checkSimpleLogs(t, c)
	c.servedByPlugin(t)
}

func TestRootSourceMovesFiles(t *testing.T) {
	moved := t.TempDir()
	original := suite.root
	t.Cleanup(func() {
		if _, err := docker(context.Background(), "plugin", "disable", "--force", suite.plugin); err != nil {
			t.Log(err) // already disabled if enabling failed below
		}
		mustDocker(t, "plugin", "set", suite.plugin, "root.source="+original)
		enablePlugin(t, suite.plugin)
	})
	mustDocker(t, "plugin", "disable", "--force", suite.plugin)
	mustDocker(t, "plugin", "set", suite.plugin, "root.source="+moved)
	enablePlugin(t, suite.plugin)
	if got, err := pluginRoot(context.Background(), suite.plugin); err != nil || got != moved {
		t.Fatalf("root.source is %q (%v) after setting it to %q", got, err, moved)
	}

	c := run(t, spec{driver: suite.driver, root: moved, script: simpleScript})
	checkSimpleLogs(t, c)
	if _, err := os.Stat(filepath.Join(original, "containers", c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: files also under the old root %s (stat: %v)", c, original, err)
	}
}

// pushed is the plugin "make push" put in the registry for this run.
var pushed struct {
	once sync.Once
	ref  string
	err  error
}

// pushedPlugin pushes the plugin to the suite's registry once per run, as a
// release is pushed, and returns its reference. It builds in a directory of
// its own: rebuilding suite.pluginDir would pull it from under the tests
// that create plugins from it.
func pushedPlugin(t *testing.T) string {
	t.Helper()
	pushed.once.Do(func() {
		const repoName = "logferry"
		// A tag of this run only: two checkouts may run the suite on one
		// dockerd and registry at once.
		tag := fmt.Sprintf("e2e-%d", os.Getpid())
		dir, err := os.MkdirTemp("", "lf-push")
		if err != nil {
			pushed.err = err
			return
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		push := exec.CommandContext(ctx, "make", "-C", suite.repo, "push",
			"REGISTRY="+suite.registry, "PLUGIN_REPO="+repoName, "TAG="+tag,
			"BUILD_DIR="+dir, "BIN="+filepath.Join(dir, "logferry"))
		var out bytes.Buffer
		push.Stdout, push.Stderr = &out, &out
		if err := push.Run(); err != nil {
			pushed.err = fmt.Errorf("%s: %w\n%s", strings.Join(push.Args, " "), err, clip(out.String()))
			return
		}
		pushed.ref = suite.registry + "/" + repoName + ":" + tag
	})
	if pushed.err != nil {
		t.Fatal(pushed.err)
	}
	return pushed.ref
}

func TestInstallFromRegistry(t *testing.T) {
	ref := pushedPlugin(t)
	alias := fmt.Sprintf("logferry-reg-%d", os.Getpid())

	// Its own root keeps this instance from sharing files with the plugin
	// under test.
	root := t.TempDir()
	t.Cleanup(func() { removePlugin(t, alias) })
	mustDocker(t, "plugin", "install", "--grant-all-permissions", "--alias", alias, ref, "root.source="+root)
	if enabled := mustDocker(t, "plugin", "inspect", "--format", "{{.Enabled}}", alias); enabled != "true" {
		t.Fatalf("plugin %s installed from %s is not enabled", alias, ref)
	}

	c := run(t, spec{driver: alias, root: root, script: simpleScript})
	checkSimpleLogs(t, c)
	c.servedByPlugin(t)
}

// TestElasticsearchCredentialsFromFile: a password in a file under the root
// mount, named by ELASTICSEARCH_PASSWORD_FILE, authenticates the plugin,
// and never shows in docker plugin inspect.
func TestElasticsearchCredentialsFromFile(t *testing.T) {
	const password = "pa55-from-file"
	srv := esServer(t, estest.Options{Username: "elastic", Password: password})
	secret := filepath.Join(suite.root, "e2e-es-password")
	if err := os.WriteFile(secret, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustDocker(t, "plugin", "disable", "--force", suite.plugin)
		mustDocker(t, "plugin", "set", suite.plugin, "ELASTICSEARCH_USERNAME=", "ELASTICSEARCH_PASSWORD_FILE=")
		enablePlugin(t, suite.plugin)
		os.Remove(secret)
	})
	mustDocker(t, "plugin", "disable", "--force", suite.plugin)
	// The plugin sees its root mount at /var/lib/logferry.
	mustDocker(t, "plugin", "set", suite.plugin, "ELASTICSEARCH_USERNAME=elastic",
		"ELASTICSEARCH_PASSWORD_FILE=/var/lib/logferry/"+filepath.Base(secret))
	enablePlugin(t, suite.plugin)

	run(t, spec{
		driver:  suite.driver,
		logOpts: []string{"elasticsearch-url=" + srv.URL, "elasticsearch-flush-interval=200ms"},
		script:  simpleScript,
	})
	esDocs(t, srv, 2, fwdCeiling)
	if st := srv.Stats(); st.BadRequests != 0 {
		t.Errorf("server refused %d requests (401 without the right credentials)", st.BadRequests)
	}
	if inspect := mustDocker(t, "plugin", "inspect", suite.plugin); strings.Contains(inspect, password) {
		t.Error("docker plugin inspect shows the password")
	}
}
