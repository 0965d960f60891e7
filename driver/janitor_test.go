package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logferry/logferry/forward/fluentd"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTidyRemovesLogsOfRemovedContainers(t *testing.T) {
	removed, stopped, running := containerID(1), containerID(2), containerID(3)
	tests := []struct {
		name string
		// docker lists these containers in its containers directory;
		// nil: no DockerContainers.
		docker []string
		// runningStream: the running container has an open stream.
		runningStream bool
		wantRemoved   bool
	}{
		{name: "removed container", docker: []string{stopped, running}, runningStream: true, wantRemoved: true},
		{name: "no docker-containers mount", docker: nil, runningStream: true},
		{name: "mount does not list a running container", docker: []string{stopped}, runningStream: true},
		{name: "no stream open", docker: []string{stopped, running}, wantRemoved: true},
		{name: "no stream open, empty mount", docker: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			cfg := Config{Root: root}
			if tt.docker != nil {
				cfg.DockerContainers = filepath.Join(t.TempDir(), "containers")
				mkdirs(t, cfg.DockerContainers)
				for _, id := range tt.docker {
					mkdirs(t, filepath.Join(cfg.DockerContainers, id))
				}
			}
			d := New(cfg)
			t.Cleanup(func() { closeDriver(t, d) })
			mkdirs(t, filepath.Join(root, "containers", removed), filepath.Join(root, "containers", stopped))
			if tt.runningStream {
				ds := start(t, d, running, nil)
				ds.send(t, LogEntry{Source: "stdout", TimeNano: 1, Line: []byte("x")})
				t.Cleanup(func() { stop(t, d, ds) })
			}

			d.tidy()

			if got := !exists(t, filepath.Join(root, "containers", removed)); got != tt.wantRemoved {
				t.Errorf("logs of the removed container removed: %v, want %v", got, tt.wantRemoved)
			}
			if !exists(t, filepath.Join(root, "containers", stopped)) {
				t.Error("logs of a stopped container were removed")
			}
		})
	}
}

func closeDriver(t *testing.T, d *Driver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Errorf("close driver: %v", err)
	}
}

// TestTidyDeliversBuffersOfStoppedContainers: events buffered for a
// destination that was down until the container's destinations gave up
// are delivered by Maintain once it is back, and the buffers then go.
func TestTidyDeliversBuffersOfStoppedContainers(t *testing.T) {
	fd := fluentdtest.NewServer(t, fluentdtest.Config{})
	fd.Stop()
	root := t.TempDir()
	d := New(Config{Root: root, Destinations: testDestinations, Linger: 50 * time.Millisecond})
	t.Cleanup(func() { closeDriver(t, d) })
	id := containerID(7)
	ds := start(t, d, id, map[string]string{
		"fluentd-address":        fd.Addr(),
		"fluentd-flush-interval": "10ms",
		"fluentd-request-ack":    "true",
	})
	const n = 50
	for i := range n {
		ds.send(t, LogEntry{Source: "stdout", TimeNano: int64(i + 1), Line: fmt.Appendf(nil, "line %d", i)})
	}
	stop(t, d, ds)
	buffer := filepath.Join(root, "buffer", id)
	waitFor(t, "the stopped container's destination to give up", func() bool { return !d.inUse(id) })
	if holds, err := holdsEvents(buffer); err != nil || !holds {
		t.Fatalf("buffer holds events: %v, %v; want true", holds, err)
	}

	fd.Start()
	d.tidy() // delivers
	if got := len(fd.WaitEvents(n, testTimeout)); got != n {
		t.Fatalf("fluentd received %d events, want %d", got, n)
	}
	waitFor(t, "the replayed destination to finish", func() bool { return !d.inUse(id) })
	d.tidy() // removes what was delivered
	if exists(t, buffer) {
		t.Errorf("%s still exists after its events were delivered", buffer)
	}
	if got := len(fd.Events()); got != n {
		t.Errorf("fluentd received %d events after the buffers went, want %d", got, n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTidyOrphanBuffers: the buffers of a removed container are retried
// with backoff, and dropped once they have not changed for
// OrphanRetention.
func TestTidyOrphanBuffers(t *testing.T) {
	tests := []struct {
		name     string
		age      time.Duration
		removed  bool
		wantKept bool
	}{
		{name: "removed, changed recently", age: time.Hour, removed: true, wantKept: true},
		{name: "removed, unchanged too long", age: OrphanRetention + time.Hour, removed: true},
		{name: "stopped, unchanged too long", age: OrphanRetention + time.Hour, wantKept: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			docker := filepath.Join(t.TempDir(), "containers")
			id, other := containerID(8), containerID(9)
			mkdirs(t, filepath.Join(docker, other))
			if !tt.removed {
				mkdirs(t, filepath.Join(docker, id))
			}
			d := New(Config{Root: root, Destinations: testDestinations, DockerContainers: docker})
			t.Cleanup(func() { closeDriver(t, d) })
			gen := filepath.Join(root, "buffer", id, fluentd.Name, "gen-0000000000000001")
			mkdirs(t, gen)
			seg := filepath.Join(gen, "0000000000000001.seg")
			if err := os.WriteFile(seg, []byte("not delivered"), 0o600); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-tt.age)
			for _, p := range []string{seg, gen, filepath.Dir(gen), filepath.Join(root, "buffer", id)} {
				if err := os.Chtimes(p, old, old); err != nil {
					t.Fatal(err)
				}
			}

			d.tidy()
			d.tidy()

			if kept := exists(t, seg); kept != tt.wantKept {
				t.Fatalf("buffer kept: %v, want %v", kept, tt.wantKept)
			}
			if tt.wantKept {
				if st := d.nextReplay[id]; st.attempts != 1 || time.Until(st.at) < 30*time.Second {
					t.Errorf("after two passes: %d attempts, next in %v; want 1 attempt and a wait of a minute", st.attempts, time.Until(st.at))
				}
			}
		})
	}
}
