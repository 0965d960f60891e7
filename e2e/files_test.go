//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fidelityScript writes what json-file's encoding has to get right: escapes,
// control bytes, invalid UTF-8, U+2028/U+2029, emoji, an empty line, a
// 40 000-byte line that dockerd splits into 16 KiB pieces (with a two-byte
// character cut in half at the first split) and final lines without "\n".
const fidelityScript = `
printf 'plain stdout line\n'
printf 'plain stderr line\n' >&2
printf 'tab\there "double" '"'"'single'"'"' back\\slash <a href="x">&amp;</a>\n'
printf 'controls \001\002\010\013\014\033[31mred\033[0m \177 cr\rend\n'
printf 'invalid utf-8 \377 \376\375 lone lead \303 end\n' >&2
printf 'separators \342\200\250 \342\200\251 emoji \360\237\230\200 accents \303\251\303\274 cjk \344\270\255\n'
echo
printf '\n' >&2
head -c 16383 /dev/zero | tr '\0' a; printf '\303\251'; head -c 23615 /dev/zero | tr '\0' b; printf '\n'
printf '{"json":"inside","n":1}\n' >&2
printf 'stdout without final newline'
printf 'stderr without final newline' >&2
`

// checkFidelityWorkload checks that json-file's records contain what the
// script is meant to exercise, so a broken script cannot pass vacuously.
func checkFidelityWorkload(t *testing.T, recs []record) {
	t.Helper()
	var pieces, unterminated int
	for _, r := range recs {
		if strings.HasSuffix(r.Log, "\n") {
			continue
		}
		unterminated++
		// 16 KiB of the line; the halves of the cut character each read
		// back as U+FFFD, so the decoded text is a little longer.
		if len(r.Log) >= 16*1024 {
			pieces++
		}
	}
	if pieces != 2 || unterminated != 4 {
		t.Fatalf("test bug: json-file wrote %d 16 KiB pieces and %d records without newline, want 2 and 4", pieces, unterminated)
	}
}

func TestFilesMatchJSONFile(t *testing.T) {
	t.Parallel()
	// The container carries labels and environment variables in both cases;
	// only the log options decide whether they become attrs.
	flags := []string{
		"--label", "com.example.team=ops é",
		"--label", `org.example.tier=<web>&"1"`,
		"--label", "unrelated=x",
		"-e", "APP_MODE=prod",
		"-e", "LF_DEBUG=1\t2",
		"-e", "UNRELATED=y",
	}
	tests := []struct {
		name    string
		logOpts []string
		// wantAttrs is the attrs of every record, without "tag", which is the
		// container name when withTag.
		wantAttrs map[string]string
		withTag   bool
	}{
		{name: "without attrs"},
		{
			name: "labels env and tag",
			logOpts: []string{
				"labels=com.example.team,com.example.absent",
				`labels-regex=^org\.example\.`,
				"env=APP_MODE,ABSENT",
				"env-regex=^LF_",
				"tag={{.Name}}",
			},
			wantAttrs: map[string]string{
				"com.example.team": "ops é",
				"org.example.tier": `<web>&"1"`,
				"APP_MODE":         "prod",
				"LF_DEBUG":         "1\t2",
			},
			withTag: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Both runs use the same name, one after the other, so that
			// tag={{.Name}} gives the same attrs.
			name := containerName(t)
			s := spec{name: name, logOpts: tt.logOpts, flags: flags, script: fidelityScript}
			specs := pair(s)
			ref := run(t, specs[0])
			mustDocker(t, "rename", name, name+"-json-file")
			ours := run(t, specs[1])

			want := allRecords(t, ref.logFiles(t, false))
			checkFidelityWorkload(t, want)
			got := allRecords(t, ours.logFiles(t, false))
			sameRecords(t, "records", want, got)

			wantAttrs := maps.Clone(tt.wantAttrs)
			if tt.withTag {
				wantAttrs["tag"] = name
			}
			for who, recs := range map[string][]record{"json-file": want, "logferry": got} {
				for i, r := range recs {
					if !reflect.DeepEqual(r.Attrs, wantAttrs) {
						t.Errorf("%s record %d has attrs %q, want %q", who, i+1, r.Attrs, wantAttrs)
						break
					}
				}
			}
		})
	}
}

// numberedScript writes lines "record 1 …" to "record n …" on stdout.
func numberedScript(n int) string {
	return fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "record $i of a workload that rotates its log"; i=$((i+1)); done`, n)
}

// recordNumber returns the number of a record written by numberedScript.
func recordNumber(t testing.TB, r record) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(r.Log, "record %d ", &n); err != nil {
		t.Fatalf("record %q is not from numberedScript", r.Log)
	}
	return n
}

// checkRotation checks rotated files the way json-file writes them: the
// records of the retained files are in order, none missing or repeated,
// ending with the last one written; a file is rotated before a write once it
// holds maxSize bytes or more, so a rotated file holds at least maxSize bytes
// and less than maxSize before its last record; rotated files are gzip
// exactly when compressed.
func checkRotation(t *testing.T, who string, files []logFile, last, maxSize int, compressed bool) {
	t.Helper()
	prev := 0
	for _, f := range files {
		recs := parseRecords(t, f)
		if len(recs) == 0 {
			t.Errorf("%s: %s is empty", who, f.name)
			continue
		}
		before := len(f.data) - recs[len(recs)-1].size
		if before >= maxSize || f.gen > 0 && len(f.data) < maxSize {
			t.Errorf("%s: %s holds %d bytes, %d before its last record; max-size is %d", who, f.name, len(f.data), before, maxSize)
		}
		if f.gz != (compressed && f.gen > 0) {
			t.Errorf("%s: %s compressed=%v, want %v", who, f.name, f.gz, compressed && f.gen > 0)
		}
		for _, r := range recs {
			n := recordNumber(t, r)
			if prev != 0 && n != prev+1 {
				t.Errorf("%s: %s: record %d follows record %d", who, f.name, n, prev)
			}
			prev = n
		}
	}
	if prev != last {
		t.Errorf("%s: last record is %d, want %d", who, prev, last)
	}
}

func TestRotationMatchesJSONFile(t *testing.T) {
	t.Parallel()
	const (
		lines   = 300
		maxSize = 2000 // "2k" in json-file's decimal units
	)
	for _, compressed := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compressed), func(t *testing.T) {
			t.Parallel()
			opts := []string{"max-size=2k", "max-file=3"}
			if compressed {
				opts = append(opts, "compress=true")
			}
			cs := runAll(t, pair(spec{logOpts: opts, script: numberedScript(lines)})...)
			ref, ours := cs[0].logFiles(t, compressed), cs[1].logFiles(t, compressed)

			if want, got := fileNames(ref), fileNames(ours); !reflect.DeepEqual(want, got) {
				t.Errorf("files differ\njson-file: %q\nlogferry:  %q", want, got)
			}
			if len(ref) != 3 {
				t.Fatalf("test bug: json-file kept %q, want 3 files", fileNames(ref))
			}
			checkRotation(t, "json-file", ref, lines, maxSize, compressed)
			checkRotation(t, "logferry", ours, lines, maxSize, compressed)

			// Where rotation boundaries fall may differ by a record (times
			// have different lengths), but records both kept are identical.
			kept := make(map[int]string)
			for _, r := range allRecords(t, ref) {
				kept[recordNumber(t, r)] = r.line
			}
			for _, r := range allRecords(t, ours) {
				if want, ok := kept[recordNumber(t, r)]; ok && want != r.line {
					t.Errorf("record differs\njson-file: %s\nlogferry:  %s", excerpt(want, r.line), excerpt(r.line, want))
					break
				}
			}
		})
	}
}

func TestFilePermissions(t *testing.T) {
	t.Parallel()
	c := run(t, spec{
		driver:  suite.driver,
		logOpts: []string{"max-size=1k", "max-file=3", "compress=true"},
		script:  numberedScript(100),
	})
	files := c.logFiles(t, true)
	if len(files) != 3 {
		t.Errorf("files %q, want 3", fileNames(files))
	}
	for _, dir := range []string{filepath.Dir(c.ourDir()), c.ourDir()} {
		info, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !info.IsDir() || info.Mode().Perm() != 0o750 {
			t.Errorf("%s has mode %v, want a directory with 0750", dir, info.Mode())
		}
	}
	for _, f := range files {
		info, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !info.Mode().IsRegular() || info.Mode().Perm() != 0o640 {
			t.Errorf("%s has mode %v, want a regular file with 0640", f.name, info.Mode())
		}
	}
}

func TestRestartAppends(t *testing.T) {
	t.Parallel()
	cs := runAll(t, pair(spec{script: `echo "run"; echo "on stderr" >&2; printf 'no newline'`})...)
	firstRun := make([][]byte, len(cs))
	for i, c := range cs {
		firstRun[i] = c.logFiles(t, false)[0].data
	}
	startAll(t, cs...)
	var recs [2][]record
	for i, c := range cs {
		files := c.logFiles(t, false)
		if len(files) != 1 {
			t.Fatalf("%s: files %q, want one", c, fileNames(files))
		}
		if !bytes.HasPrefix(files[0].data, firstRun[i]) {
			t.Errorf("%s: the second run changed what the first one wrote\nbefore: %q\nafter:  %q", c, firstRun[i], files[0].data)
		}
		recs[i] = allRecords(t, files)
	}
	if len(recs[0]) != 6 {
		t.Fatalf("test bug: json-file wrote %d records in two runs, want 6", len(recs[0]))
	}
	sameRecords(t, "records after a restart", recs[0], recs[1])
}

func TestReadingStoppedContainerLeavesFilesUntouched(t *testing.T) {
	t.Parallel()
	c := run(t, spec{
		driver:  suite.driver,
		logOpts: []string{"max-size=1k", "max-file=3", "compress=true"},
		script:  numberedScript(60) + `; echo "on stderr" >&2; printf 'no newline'`,
	})
	files := c.logFiles(t, true) // also waits for compression to finish
	before := snapshot(t, c.ourDir())

	// Where the stderr record lands among the stdout ones depends on
	// scheduling, so it may have been rotated away: expect what the files
	// hold.
	want := make(map[string]string)
	for _, r := range allRecords(t, files) {
		want[r.Stream] += r.Log
	}
	stdout, stderr := c.logs(t)
	if stdout != want["stdout"] || stderr != want["stderr"] {
		t.Errorf("docker logs printed stdout %q and stderr %q; the files hold %q and %q",
			clipTo(stdout, 300), stderr, clipTo(want["stdout"], 300), want["stderr"])
	}
	if !strings.HasSuffix(stdout, "record 60 of a workload that rotates its log\nno newline") {
		t.Errorf("docker logs printed stdout ending %q", stdout[max(0, len(stdout)-80):])
	}
	c.logs(t, "--tail", "2", "--timestamps")
	c.logs(t, "--follow") // returns at once: the container is not running
	c.logs(t, "--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z")

	after := snapshot(t, c.ourDir())
	if !reflect.DeepEqual(before, after) {
		t.Errorf("reading logs changed the files in %s (files %q)\nbefore: %+v\nafter:  %+v", c.ourDir(), fileNames(files), before, after)
	}
	c.servedByPlugin(t)
}

// TestRemovedContainersLogsGo: like json-file's, logferry's files of a
// container go when the container is removed (the plugin's janitor looks
// every minute), and not before.
func TestRemovedContainersLogsGo(t *testing.T) {
	t.Parallel()
	c := run(t, spec{driver: suite.driver, script: simpleScript})
	kept := run(t, spec{driver: suite.driver, script: simpleScript})
	if _, err := os.Stat(c.logPath(t)); err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	mustDocker(t, "rm", c.id)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		_, err := os.Stat(c.ourDir())
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s still there 3 minutes after docker rm (stat: %v)", c, c.ourDir(), err)
		}
		time.Sleep(time.Second)
	}
	checkSimpleLogs(t, kept)
}
