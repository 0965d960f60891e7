//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
)

func TestInvalidOptionsFailRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []string
		// want are substrings of docker run's error: the option, the value
		// and, for an unknown option, the accepted ones.
		want []string
	}{
		{name: "max-size not a size", opts: []string{"max-size=abc"}, want: []string{"max-size", "abc"}},
		{name: "max-size zero", opts: []string{"max-size=0"}, want: []string{"max-size", "0"}},
		{name: "max-file zero", opts: []string{"max-size=1m", "max-file=0"}, want: []string{"max-file", "0"}},
		{name: "max-file not a number", opts: []string{"max-file=many"}, want: []string{"max-file", "many"}},
		{
			name: "compress not a bool",
			opts: []string{"max-size=1m", "max-file=2", "compress=yes-please"},
			want: []string{"compress", "yes-please"},
		},
		{name: "compress without max-size", opts: []string{"max-file=2", "compress=true"}, want: []string{"compress", "max-size"}},
		{name: "compress with one file", opts: []string{"max-size=1m", "compress=true"}, want: []string{"compress", "max-file"}},
		{name: "labels-regex invalid", opts: []string{"labels-regex=("}, want: []string{"labels-regex", "("}},
		{name: "env-regex invalid", opts: []string{"env-regex=[z-a]"}, want: []string{"env-regex", "[z-a]"}},
		{name: "tag template invalid", opts: []string{"tag={{.Nope}}"}, want: []string{"tag", "Nope"}},
		{
			name: "unknown option",
			opts: []string{"foo=bar"},
			want: []string{"foo", "max-size", "max-file", "compress", "labels", "env", "tag"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// json-file must reject the same options, or the case is wrong.
			if _, err := dockerRunFails(t, "json-file", tt.opts); err == nil {
				t.Fatalf("test bug: json-file accepts %q", tt.opts)
			}
			checkRunRefused(t, tt.opts, tt.want)
		})
	}
}

// checkRunRefused checks that docker run with logferry and the log options
// fails, naming each of want in its error, and returns that error output.
func checkRunRefused(t *testing.T, opts, want []string) (stderr string) {
	t.Helper()
	stderr, err := dockerRunFails(t, suite.driver, opts)
	if err == nil {
		t.Fatalf("docker run --log-opt %q succeeded with logferry", opts)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("docker run --log-opt %q: the error does not name %q:\n%s", opts, w, stderr)
		}
	}
	return stderr
}

// dockerRunFails runs "docker run" with the log options and returns its
// standard error and its error.
func dockerRunFails(t *testing.T, driver string, opts []string) (string, error) {
	t.Helper()
	name := containerName(t)
	t.Cleanup(func() {
		// docker run may have created the container before start failed.
		if _, err := docker(context.Background(), "rm", "--force", name); err != nil &&
			!strings.Contains(err.Error(), "No such container") {
			t.Errorf("remove %s: %v", name, err)
		}
	})
	args := []string{"run", "--detach", "--name", name, "--network", "none", "--log-driver", driver}
	for _, o := range opts {
		args = append(args, "--log-opt", o)
	}
	args = append(args, suite.image, "true")
	_, stderr, err := cli(context.Background(), args...)
	return stderr, err
}

func TestDockerdOptionsAccepted(t *testing.T) {
	t.Parallel()
	// dockerd before 23.0 (moby cf259eb) closes the driver of a
	// non-blocking container without waiting for its ring buffer's
	// goroutine, which may hold the last message: json-file and logferry
	// alike lose it at random. The pause lets every line through before
	// the container exits; an unterminated last line, which dockerd sends
	// only once the container has exited, is tested in blocking mode.
	cs := runAll(t, pair(spec{
		logOpts: []string{"mode=non-blocking", "max-buffer-size=4m"},
		script:  `echo one; echo two >&2; echo three; sleep 1`,
	})...)
	want := allRecords(t, cs[0].logFiles(t, false))
	got := allRecords(t, cs[1].logFiles(t, false))
	sameRecords(t, "records with mode=non-blocking", want, got)
	stdout, stderr := cs[1].logs(t)
	if stdout != "one\nthree\n" || stderr != "two\n" {
		t.Errorf("docker logs: stdout %q, stderr %q; want %q and %q", stdout, stderr, "one\nthree\n", "two\n")
	}
}
