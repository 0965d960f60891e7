//go:build e2e

package e2e

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestInstalledPlugin checks what make install made: the binary and the
// plugin's description name the same version, and the docker-containers
// mount follows the engine's data root.
func TestInstalledPlugin(t *testing.T) {
	t.Parallel()
	// The binary dockerd runs: build/plugin may have been rebuilt since
	// (the registry test runs make push).
	root := mustDocker(t, "info", "--format", "{{.DockerRootDir}}")
	id := mustDocker(t, "plugin", "inspect", "--format", "{{.Id}}", suite.plugin)
	out, err := exec.Command(filepath.Join(root, "plugins", id, "rootfs", "logferry"), "--version").Output()
	if err != nil {
		t.Fatalf("logferry --version: %v", err)
	}
	m := regexp.MustCompile(`^logferry (\S+) \(go[^,]+, linux/(amd64|arm64)\)\n$`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("logferry --version printed %q", out)
	}
	version, arch := m[1], m[2]
	if version == "dev" {
		t.Errorf("the plugin's binary has no version: %q", out)
	}
	desc := mustDocker(t, "plugin", "inspect", "--format", "{{.Config.Description}}", suite.plugin)
	if want := "logferry " + version + " (" + arch + "): "; !strings.HasPrefix(desc, want) {
		t.Errorf("plugin description %q, want it to begin %q", desc, want)
	}
	src, err := mountOf(t.Context(), suite.plugin, "docker-containers", "{{.Source}}")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "containers"); src != want {
		t.Errorf("docker-containers mount from %q, want the engine's %q", src, want)
	}
}
