//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// logsScript writes three phases a second apart, so that the order of stdout
// and stderr records, which --tail counts together, is the same for both
// drivers, and --since/--until have gaps to cut at.
const logsScript = `
i=1; while [ $i -le 5 ]; do echo "out $i"; i=$((i+1)); done
head -c 20000 /dev/zero | tr '\0' L; echo
printf 'tab\tquote" <&> \377\n'
sleep 1
i=1; while [ $i -le 4 ]; do echo "err $i" >&2; i=$((i+1)); done
sleep 1
echo "out 6"; echo "out 7"; echo "out 8"
printf 'no final newline'
`

// stderrStamps returns the timestamps of the first and the last stderr line
// as "docker logs --timestamps" prints them.
func stderrStamps(t testing.TB, c *container) (first, last string) {
	t.Helper()
	_, stderr := c.logs(t, "--timestamps")
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	first, _, _ = strings.Cut(lines[0], " ")
	last, _, _ = strings.Cut(lines[len(lines)-1], " ")
	for _, ts := range []string{first, last} {
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Fatalf("%s: docker logs --timestamps wrote stderr %q", c, clip(stderr))
		}
	}
	return first, last
}

func TestDockerLogsMatchesJSONFile(t *testing.T) {
	t.Parallel()
	cs := runAll(t, pair(spec{script: logsScript})...)
	ref, ours := cs[0], cs[1]

	type stamps struct{ firstErr, lastErr string }
	stamp := make(map[*container]stamps)
	for _, c := range cs {
		first, last := stderrStamps(t, c)
		stamp[c] = stamps{first, last}
	}

	tests := []struct {
		name string
		args func(c *container) []string
		// mustLack is text json-file's output must not contain, which shows
		// the case filters something.
		mustLack string
	}{
		{name: "all"},
		{name: "tail 3", args: fixed("--tail", "3"), mustLack: "err 4"},
		{name: "tail 6 across streams", args: fixed("--tail", "6"), mustLack: "err 2"},
		{name: "tail 0", args: fixed("--tail", "0"), mustLack: "out"},
		{name: "tail -1", args: fixed("--tail", "-1")},
		{name: "tail all", args: fixed("--tail", "all")},
		{
			name:     "since",
			args:     func(c *container) []string { return []string{"--since", stamp[c].firstErr} },
			mustLack: "out 5",
		},
		{
			name:     "until",
			args:     func(c *container) []string { return []string{"--until", stamp[c].lastErr} },
			mustLack: "out 6",
		},
		{
			name: "since and until",
			args: func(c *container) []string {
				return []string{"--since", stamp[c].firstErr, "--until", stamp[c].lastErr}
			},
			mustLack: "out",
		},
		{
			name:     "tail and since",
			args:     func(c *container) []string { return []string{"--since", stamp[c].firstErr, "--tail", "5"} },
			mustLack: "err 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var refArgs, ourArgs []string
			if tt.args != nil {
				refArgs, ourArgs = tt.args(ref), tt.args(ours)
			}
			wantOut, wantErr := ref.logs(t, refArgs...)
			gotOut, gotErr := ours.logs(t, ourArgs...)
			if tt.mustLack != "" && strings.Contains(wantOut+wantErr, tt.mustLack) {
				t.Fatalf("test bug: json-file's output for %q contains %q:\n%s\n%s", refArgs, tt.mustLack, wantOut, wantErr)
			}
			sameOutput(t, fmt.Sprintf("stdout of docker logs %q", ourArgs), wantOut, gotOut)
			sameOutput(t, fmt.Sprintf("stderr of docker logs %q", ourArgs), wantErr, gotErr)
		})
	}

	t.Run("timestamps", func(t *testing.T) {
		// Times differ between the two runs; each must print the times of
		// its own records.
		for _, c := range cs {
			checkTimestamps(t, c, allRecords(t, c.logFiles(t, false)))
		}
	})
	ours.servedByPlugin(t)
}

func fixed(args ...string) func(*container) []string {
	return func(*container) []string { return args }
}

// checkTimestamps checks that "docker logs --timestamps" prints each record
// of the container, per stream, preceded by the record's time.
func checkTimestamps(t *testing.T, c *container, recs []record) {
	t.Helper()
	stdout, stderr := c.logs(t, "--timestamps")
	for stream, out := range map[string]string{"stdout": stdout, "stderr": stderr} {
		rest := out
		for i, r := range recs {
			if r.Stream != stream {
				continue
			}
			ts, after, _ := strings.Cut(rest, " ")
			got, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil || !got.Equal(r.Time) || !strings.HasPrefix(after, r.Log) {
				t.Errorf("%s: docker logs --timestamps %s: record %d is %s %q, the output has %q",
					c, stream, i+1, r.Time.Format(time.RFC3339Nano), clipTo(r.Log, 100), clipTo(rest, 150))
				break
			}
			rest = after[len(r.Log):]
		}
		if rest != "" {
			t.Errorf("%s: docker logs --timestamps %s has more than the records: %q", c, stream, clipTo(rest, 150))
		}
	}
}

// followScript writes numbered lines in bursts of 20. Before each burst it
// waits until the follower has acknowledged (in /sync/ack) every line before
// the previous burst, so the writer is never more than 40 lines (about 3.3
// files of 1 kB, of the 4 rotated ones kept) ahead: the follower regularly
// has to catch up across several rotations, yet nothing it has not read is
// rotated away, however slow the machine.
const followScript = `
i=1
while [ $i -le %d ]; do
	if [ $((i %% 20)) -eq 1 ]; then
		while :; do
			read ack </sync/ack || ack=0
			[ "${ack:-0}" -ge $((i - 21)) ] && break
			sleep 0.01
		done
	fi
	echo "follow line $i"
	i=$((i+1))
done
`

func TestFollowAcrossRotation(t *testing.T) {
	t.Parallel()
	const (
		lines   = 2000
		ceiling = 90 * time.Second
	)
	syncDir := t.TempDir()
	ack := func(n int) {
		tmp := filepath.Join(syncDir, "ack.tmp")
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(syncDir, "ack")); err != nil { // atomic for the reader
			t.Fatal(err)
		}
	}
	ack(0)
	c := create(t, spec{
		driver:  suite.driver,
		logOpts: []string{"max-size=1k", "max-file=5", "compress=true"},
		flags:   []string{"--volume", syncDir + ":/sync"},
		script:  fmt.Sprintf(followScript, lines),
	})
	c.start(t)

	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "logs", "--follow", c.id)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	next, received, acked := 1, 0, 0
	var problems []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		received++
		want := fmt.Sprintf("follow line %d", next)
		if sc.Text() != want {
			if len(problems) < 10 {
				problems = append(problems, fmt.Sprintf("got %q where %q was due", sc.Text(), want))
			}
			var n int
			if _, err := fmt.Sscanf(sc.Text(), "follow line %d", &n); err != nil {
				continue
			}
			next = n // resynchronise to report each gap or repeat once
		}
		next++
		if next-1 > acked {
			acked = next - 1
			ack(acked)
		}
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("docker logs --follow did not exit within %v (received %d lines, the last due was %d; container %s)",
			ceiling, received, next-1, mustDocker(t, "inspect", "--format", "{{.State.Status}}", c.id))
	}
	if err != nil {
		t.Fatalf("docker logs --follow: %v\nstderr: %s", err, clip(stderr.String()))
	}
	if received != lines || next != lines+1 || len(problems) > 0 {
		t.Errorf("docker logs --follow printed %d lines ending with line %d, want %d, each once and in order; first problems:\n%s",
			received, next-1, lines, strings.Join(problems, "\n"))
	}
	c.wait(t)
}

// TestFollowOutlivesClientTimeout follows a container for longer than the
// 30 s after which dockerd's client to a plugin enabled with the default
// "docker plugin enable --timeout" gives up.
func TestFollowOutlivesClientTimeout(t *testing.T) {
	t.Parallel()
	c := create(t, spec{driver: suite.driver, script: `echo start; sleep 35; echo done`})
	c.start(t)
	stdout, stderr := c.logs(t, "--follow")
	if stdout != "start\ndone\n" || stderr != "" {
		t.Errorf("docker logs --follow printed stdout %q and stderr %q, want %q and nothing", stdout, stderr, "start\ndone\n")
	}
	c.wait(t)
}
