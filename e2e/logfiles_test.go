//go:build e2e

package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// compressCeiling bounds the wait for background compression after a
// container exits: json-file compresses a rotated file in a goroutine.
const compressCeiling = 30 * time.Second

// logFile is one file of a container's log.
type logFile struct {
	name string // base name, with the container ID replaced by "<id>"
	path string
	gen  int    // 0 for the current file, N for <id>-json.log.N[.gz]
	gz   bool   // whether the file is gzip-compressed
	data []byte // content, decompressed
}

var rotatedSuffix = regexp.MustCompile(`^\.([0-9]+)(\.gz)?$`)

// logFiles returns the container's log files, oldest first. With compressed,
// it first waits until no rotated file is left uncompressed.
func (c *container) logFiles(t testing.TB, compressed bool) []logFile {
	t.Helper()
	dir, base := filepath.Split(c.logPath(t))
	deadline := time.Now().Add(compressCeiling)
	for {
		files, pending := listLogFiles(t, c, dir, base)
		if !compressed || pending == "" {
			for i := range files {
				files[i].data = readLogFile(t, files[i])
			}
			return files
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: rotated file %s still not compressed after %v", c, pending, compressCeiling)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// listLogFiles lists the log files in dir, oldest first; pending names a
// rotated file that is not compressed.
func listLogFiles(t testing.TB, c *container, dir, base string) (files []logFile, pending string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), base)
		if !ok {
			continue
		}
		f := logFile{name: strings.ReplaceAll(e.Name(), c.id, "<id>"), path: filepath.Join(dir, e.Name())}
		if suffix != "" {
			m := rotatedSuffix.FindStringSubmatch(suffix)
			if m == nil {
				t.Errorf("%s: unexpected file %s next to the log", c, f.path)
				continue
			}
			f.gen, _ = strconv.Atoi(m[1])
			f.gz = m[2] != ""
			if !f.gz {
				pending = f.path
			}
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("%s: no log file %s in %s", c, base, dir)
	}
	slices.SortFunc(files, func(a, b logFile) int { return b.gen - a.gen })
	return files, pending
}

func readLogFile(t testing.TB, f logFile) []byte {
	t.Helper()
	data, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if !f.gz {
		return data
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s is not gzip: %v", f.path, err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s does not decompress: %v", f.path, err)
	}
	return plain
}

// fileNames returns the names of files.
func fileNames(files []logFile) []string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}
	return names
}

// record is one json-file record.
type record struct {
	Log    string            `json:"log"`
	Stream string            `json:"stream"`
	Attrs  map[string]string `json:"attrs"`
	Time   time.Time         `json:"time"`

	line string // the record as written, without "\n", its time value normalised
	size int    // bytes the record takes in its file, "\n" included
}

var timeValue = regexp.MustCompile(`"time":"[^"]*"\}$`)

// normalizeTime replaces the value of a record's "time" key, the only part
// in which two runs of the same workload may differ.
func normalizeTime(line string) string {
	return timeValue.ReplaceAllLiteralString(line, `"time":"<time>"}`)
}

// parseRecords parses a file's content strictly: every line must be one
// json-file record with exactly the keys json-file writes.
func parseRecords(t testing.TB, f logFile) []record {
	t.Helper()
	if len(f.data) == 0 {
		return nil
	}
	if f.data[len(f.data)-1] != '\n' {
		t.Errorf("%s does not end with a newline", f.path)
	}
	var recs []record
	for i, line := range strings.Split(strings.TrimSuffix(string(f.data), "\n"), "\n") {
		r, err := parseRecord(line)
		if err != nil {
			t.Errorf("%s line %d is not a json-file record: %v: %q", f.path, i+1, err, clipTo(line, 200))
			continue
		}
		recs = append(recs, r)
	}
	return recs
}

func parseRecord(line string) (record, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return r, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return r, errors.New("data after the object")
	}
	if r.Stream != "stdout" && r.Stream != "stderr" {
		return r, fmt.Errorf("stream %q", r.Stream)
	}
	if r.Time.IsZero() {
		return r, errors.New("no time")
	}
	r.line = normalizeTime(line)
	r.size = len(line) + 1
	return r, nil
}

// allRecords parses all files, oldest first.
func allRecords(t testing.TB, files []logFile) []record {
	t.Helper()
	var recs []record
	for _, f := range files {
		recs = append(recs, parseRecords(t, f)...)
	}
	return recs
}

// ofStream returns the normalised lines of the records of one stream.
func ofStream(recs []record, stream string) []string {
	var lines []string
	for _, r := range recs {
		if r.Stream == stream {
			lines = append(lines, r.line)
		}
	}
	return lines
}

// sameRecords checks that got holds json-file's records, byte for byte but
// for the time value. The order of stdout relative to stderr depends on
// scheduling, so each stream is compared on its own.
func sameRecords(t testing.TB, what string, want, got []record) {
	t.Helper()
	for _, stream := range []string{"stdout", "stderr"} {
		w, g := ofStream(want, stream), ofStream(got, stream)
		for i := range min(len(w), len(g)) {
			if w[i] != g[i] {
				t.Errorf("%s: %s record %d differs\njson-file: %s\nlogferry:  %s",
					what, stream, i+1, excerpt(w[i], g[i]), excerpt(g[i], w[i]))
				break
			}
		}
		if len(w) != len(g) {
			t.Errorf("%s: json-file wrote %d %s records, logferry %d", what, len(w), stream, len(g))
		}
	}
}

// excerpt quotes s around the first byte where it differs from other.
func excerpt(s, other string) string {
	i := 0
	for i < len(s) && i < len(other) && s[i] == other[i] {
		i++
	}
	from, to := max(0, i-60), min(len(s), i+60)
	return fmt.Sprintf("(byte %d of %d) …%q…", i, len(s), s[from:to])
}

// sameOutput compares what "docker logs" wrote for json-file and logferry.
func sameOutput(t testing.TB, what, want, got string) {
	t.Helper()
	if want != got {
		t.Errorf("%s differs from json-file's\njson-file: %s\nlogferry:  %s", what, excerpt(want, got), excerpt(got, want))
	}
}

// fileState is what must not change when nobody writes a file.
type fileState struct {
	mode    os.FileMode
	size    int64
	modTime time.Time
	sum     [sha256.Size]byte
}

// snapshot records the state of every entry in dir.
func snapshot(t testing.TB, dir string) map[string]fileState {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	states := make(map[string]fileState)
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		states[e.Name()] = fileState{mode: info.Mode(), size: info.Size(), modTime: info.ModTime(), sum: sha256.Sum256(data)}
	}
	return states
}
