package driver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// restartDriver closes d as a stopping plugin does and starts a new Driver
// on the same root and state, recovering the streams d left.
func restartDriver(t *testing.T, d *Driver, root, state string) (*Driver, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	next := New(Config{Root: root, Destinations: testDestinations, StateDir: state})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		next.Close(ctx)
	})
	n, err := next.Recover()
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	return next, n
}

func lines(t *testing.T, root, id string) []string {
	t.Helper()
	var out []string
	b, err := os.ReadFile(logFile(root, id))
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range bytes.SplitAfter(b, []byte("\n")) {
		if len(rec) > 0 {
			out = append(out, string(rec))
		}
	}
	return out
}

func TestRecoverAfterGracefulStop(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	d := New(Config{Root: root, Destinations: testDestinations, StateDir: state})
	id := containerID(41)
	ds := start(t, d, id, nil)
	ds.send(t, LogEntry{Source: "stdout", TimeNano: 1, Line: []byte("before restart")})
	// Half a frame is in the pipe when the plugin stops.
	frame := AppendFrame(nil, &LogEntry{Source: "stdout", TimeNano: 2, Line: []byte("across the restart")})
	if _, err := ds.f.Write(frame[:7]); err != nil {
		t.Fatal(err)
	}
	// Hold a reader, as the next process's probe does, so that the
	// writer's pipe stays open while no Driver reads it.
	hold, err := os.OpenFile(ds.path, os.O_RDONLY|syscallNonblock, 0)
	if err != nil {
		t.Fatal(err)
	}
	next, n := restartDriver(t, d, root, state)
	hold.Close()
	if n != 1 {
		t.Fatalf("resumed %d streams, want 1", n)
	}
	if _, err := ds.f.Write(frame[7:]); err != nil {
		t.Fatal(err)
	}
	ds.send(t, LogEntry{Source: "stdout", TimeNano: 3, Line: []byte("after restart")})
	stop(t, next, ds)
	want := []string{
		jsonRecord("before restart\n", "stdout", 1, ""),
		jsonRecord("across the restart\n", "stdout", 2, ""),
		jsonRecord("after restart\n", "stdout", 3, ""),
	}
	if got := lines(t, root, id); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records =\n%q\nwant\n%q", got, want)
	}
	if left, _ := filepath.Glob(filepath.Join(state, "*")); len(left) != 0 {
		t.Errorf("state left after StopLogging: %v", left)
	}
}

func TestRecoverAfterCrashResyncs(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	d := New(Config{Root: root, Destinations: testDestinations})
	t.Cleanup(func() { d.Close(context.Background()) })
	id := containerID(42)
	path := newFIFO(t)
	info := testInfo(nil)
	info.ContainerID = id
	// What a crashed process leaves: its state without Clean, and a pipe
	// whose reader took part of a frame with it.
	crashed := New(Config{Root: root, Destinations: testDestinations, StateDir: state})
	if err := crashed.saveState(&streamState{File: path, Info: *info}); err != nil {
		t.Fatal(err)
	}
	hold, err := os.OpenFile(path, os.O_RDONLY|syscallNonblock, 0)
	if err != nil {
		t.Fatal(err)
	}
	ds := openWriter(t, path)
	torn := AppendFrame(nil, &LogEntry{Source: "stdout", TimeNano: 1, Line: []byte("read by the dead process")})
	if _, err := ds.f.Write(torn[9:]); err != nil {
		t.Fatal(err)
	}
	ds.send(t, LogEntry{Source: "stderr", TimeNano: 2, Line: []byte("still in the pipe")})

	next := New(Config{Root: root, Destinations: testDestinations, StateDir: state})
	t.Cleanup(func() { next.Close(context.Background()) })
	n, err := next.Recover()
	hold.Close()
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want 1 stream", n, err)
	}
	ds.send(t, LogEntry{Source: "stdout", TimeNano: 3, Line: []byte("after the crash")})
	stop(t, next, ds)
	want := []string{jsonRecord("still in the pipe\n", "stderr", 2, ""), jsonRecord("after the crash\n", "stdout", 3, "")}
	if got := lines(t, root, id); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records =\n%q\nwant\n%q", got, want)
	}
}

func TestRecoverForgetsGoneStreams(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	writer := New(Config{Root: root, Destinations: testDestinations, StateDir: state})
	info := testInfo(nil)
	gone := &streamState{File: filepath.Join(t.TempDir(), "gone"), Info: *info}
	noWriter := &streamState{File: newFIFO(t), Info: *info}
	for _, st := range []*streamState{gone, noWriter} {
		if err := writer.saveState(st); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(state, "junk.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := New(Config{Root: root, Destinations: testDestinations, StateDir: state})
	t.Cleanup(func() { d.Close(context.Background()) })
	n, err := d.Recover()
	if n != 0 {
		t.Errorf("resumed %d streams, want 0", n)
	}
	if err == nil {
		t.Error("a corrupt state file was not reported")
	}
	if left, _ := filepath.Glob(filepath.Join(state, "*")); len(left) != 0 {
		t.Errorf("state left: %v", left)
	}
	if _, err := os.Stat(filepath.Join(root, "containers")); !os.IsNotExist(err) {
		t.Errorf("files created for streams that were gone: %v", err)
	}
}
