//go:build e2e

package e2e

// Faults of the host the plugin runs on: a full disk, a damaged disk
// buffer, odd output, and many short-lived containers. Whatever happens,
// the container never waits, the plugin process survives, every loss is
// counted, and what can be delivered is.
//
// TestCorruptBufferSegment and TestManyContainersNoLeak restart the plugin
// under test with METRICS_ADDR set and do not call t.Parallel; TestDiskFull
// installs a plugin of its own.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
	"github.com/logferry/logferry/internal/tally"
)

// mountTmpfs mounts a tmpfs of the given size (mount's syntax, e.g. "8m")
// on a new temporary directory and unmounts it when the test ends, after
// the cleanups registered later (the plugin that uses it, the containers).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0750", "logferry-e2e", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs on %s (the test needs root): %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "--lazy", dir).Run()
		}
	})
	return dir
}

// fillDisk writes zeros to a new file at path until the file system is
// full and returns how many bytes it took.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, err := f.Write(buf)
		total += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			return total
		}
		if err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}

// bufferFrame is one entry of a disk buffer segment file.
type bufferFrame struct {
	off, end int64 // where its frame starts and ends in the file
	line     string
}

// segmentFrames parses a segment file of forward/diskq (format.go): a
// 32-byte header, then frames, each a 12-byte header (u32 little-endian
// payload length, two CRC-32C) and the payload: flags (bits 0-1 the source,
// 1 stdout or 2 stderr; bit 2 a piece of a split line), the time (8 bytes),
// a uvarint and, for a whole line from stdout or stderr, the line. It
// returns the frames and how many bytes at the end are not a whole frame
// (being written).
func segmentFrames(t testing.TB, path string) (frames []bufferFrame, torn int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 32 || string(data[:4]) != "LFQS" {
		t.Fatalf("%s is not a segment file: %q", path, clipTo(string(data), 40))
	}
	off := 32
	for off < len(data) {
		if len(data)-off < 12 {
			break
		}
		end := off + 12 + int(binary.LittleEndian.Uint32(data[off:]))
		if end > len(data) {
			break
		}
		payload := data[off+12 : end]
		if len(payload) < 10 || payload[0]&0x03 == 0 || payload[0]&0x04 != 0 {
			t.Fatalf("%s: the entry at %d is not a whole line from stdout or stderr: %q", path, off, clipTo(string(payload), 40))
		}
		_, n := binary.Uvarint(payload[9:])
		if n <= 0 {
			t.Fatalf("%s: the entry at %d has no sequence number", path, off)
		}
		frames = append(frames, bufferFrame{off: int64(off), end: int64(end), line: string(payload[9+n:])})
		off = end
	}
	return frames, int64(len(data) - off)
}

// bufferSegments returns the segment files of a container's disk buffer
// for a destination, under the plugin root.
func bufferSegments(t testing.TB, root string, c *container, dest string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(root, "buffer", c.id, dest, "gen-*", "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// fileLineNumbers counts the lines "line N …" in a container's log files
// by N, skipping lines that are not json-file records (a write cut short
// by a full disk leaves one), which it returns in broken, shortened.
func fileLineNumbers(t testing.TB, c *container) (counts map[int]int, broken []string) {
	t.Helper()
	counts = make(map[int]int)
	for _, f := range c.logFiles(t, false) {
		for line := range strings.Lines(string(f.data)) {
			r, err := parseRecord(strings.TrimSuffix(line, "\n"))
			if err != nil {
				if len(line) > 120 {
					line = line[:60] + "…" + line[len(line)-60:]
				}
				broken = append(broken, line)
				continue
			}
			if n, ok := lineNumber(strings.TrimSuffix(r.Log, "\n")); ok {
				counts[n]++
			}
		}
	}
	return counts, broken
}

// checkRange checks that lines from to to (inclusive) each appear exactly
// once in counts, and reports those missing and those repeated.
func checkRange(t testing.TB, who string, counts map[int]int, from, to int) {
	t.Helper()
	missing, repeated := tally.Gaps(counts, from, to)
	if len(missing) > 0 {
		t.Errorf("%s: %d of lines %d-%d missing: %s", who, len(missing), from, to, fwdClipInts(missing))
	}
	if len(repeated) > 0 {
		t.Errorf("%s: %d of lines %d-%d more than once: %s", who, len(repeated), from, to, fwdClipInts(repeated))
	}
}

// inRange counts the distinct lines from to to (inclusive) in counts, and
// those that appear more than once.
func inRange(counts map[int]int, from, to int) (distinct, repeated int) {
	for n := from; n <= to; n++ {
		if counts[n] > 0 {
			distinct++
		}
		if counts[n] > 1 {
			repeated++
		}
	}
	return distinct, repeated
}

// TestDiskFull fills the file system of the plugin's root (a tmpfs of its
// own) while a container logs to files and to a Fluentd that is down, so
// that the disk buffer fills it too. Lines logged before the disk filled
// were on disk and must all arrive, in the files and at Fluentd; of the
// lines logged while it was full, every one that is lost must be counted;
// once space returns, writing resumes by itself and every later line
// arrives. The container never waits and the plugin process survives.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	const (
		before = 200 // lines logged before the disk fills
		// Lines logged while it is full: 2.3 MB in the disk buffer, more
		// than the 1 MiB it keeps in memory while it cannot write.
		during = 10000
		after  = 500 // lines logged once space is back
		total  = before + during + after
		pad    = 200 // bytes of padding on each line
	)
	started := time.Now()
	root := mountTmpfs(t, "8m")
	plugin := pluginAlias("full")
	metrics := fwdFreePort(t)
	installPlugin(t, plugin, root, "METRICS_ADDR="+metrics)
	pid := pluginPID(t, plugin)
	if pid == 0 {
		t.Fatalf("no process of plugin %s", plugin)
	}
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	srv.Stop() // down until space is back

	gate := newFwdSync(t)
	c := create(t, spec{
		driver:  driverOf(plugin),
		root:    root,
		logOpts: []string{"fluentd-address=" + srv.Addr()},
		flags:   gate.flag(),
		script: fwdWaitScript + fmt.Sprintf(`pad=$(head -c %d /dev/zero | tr '\0' p)
lines() { i=$1; while [ $i -le $2 ]; do echo "line $i $pad"; i=$((i+1)); done; }
lines 1 %d; touch /sync/logged-before; await full
lines %d %d; touch /sync/logged-during; await freed
lines %d %d; touch /sync/logged-after; await exit`, pad, before, before+1, before+during, before+during+1, total),
	})
	c.start(t)
	gate.wait(t, "logged-before", fwdCeiling)

	// The first lines are in the file and in the buffer's segment files
	// before the disk fills.
	fwdWait(t, fwdCeiling, fmt.Sprintf("%d lines in the file and the disk buffer", before), func() bool {
		if _, err := os.Stat(filepath.Dir(c.logPath(t))); err != nil {
			return false // the plugin creates it with the first line it writes
		}
		counts, _ := fileLineNumbers(t, c)
		frames := 0
		for _, seg := range bufferSegments(t, root, c, "fluentd") {
			fs, _ := segmentFrames(t, seg)
			frames += len(fs)
		}
		return len(counts) == before && frames == before
	})
	filler := filepath.Join(root, "filler")
	filled := fillDisk(t, filler)
	gate.signal(t, "full")

	// The container is not held up by the full disk, and the plugin
	// accounts for every line: written or lost (counted) for the file;
	// held or dropped (counted) for Fluentd.
	gate.wait(t, "logged-during", fwdCeiling)
	var file, fwd pluginEntry
	fwdWait(t, fwdCeiling, "every line read while the disk was full", func() bool {
		var ok1, ok2 bool
		file, ok1, _ = destEntry(metrics, c, "file")
		fwd, ok2, _ = destEntry(metrics, c, "fluentd")
		return ok1 && ok2 && file.EmitRecords+file.DroppedRecords == before+during &&
			fwd.DroppedRecords+uint64(fwd.BufferQueueLength) == before+during
	})
	if file.DroppedRecords == 0 || fwd.DroppedRecords == 0 {
		t.Fatalf("test bug: nothing dropped while the disk was full: file %+v, Fluentd %+v", file, fwd)
	}
	if p := pluginPID(t, plugin); p != pid {
		t.Fatalf("the plugin's process changed from %d to %d while the disk was full", pid, p)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	srv.Start()
	gate.signal(t, "freed")
	gate.wait(t, "logged-after", fwdCeiling)
	fwdWait(t, fwdCeiling, "every line delivered or counted as dropped", func() bool {
		var ok1, ok2 bool
		file, ok1, _ = destEntry(metrics, c, "file")
		fwd, ok2, _ = destEntry(metrics, c, "fluentd")
		return ok1 && ok2 && file.EmitRecords+file.DroppedRecords == total &&
			fwd.EmitRecords+fwd.DroppedRecords == total && fwd.BufferQueueLength == 0 &&
			len(srv.Events()) == int(fwd.EmitRecords)
	})
	gate.signal(t, "exit")
	c.wait(t) // it ends by itself: it was never blocked

	first, last := before+during+1, total
	counts, others := fwdLineNumbers(srv.Events())
	checkRange(t, "Fluentd", counts, 1, before)
	checkRange(t, "Fluentd", counts, first, last)
	fwdDuring, fwdRepeated := inRange(counts, before+1, before+during)
	if fwdRepeated > 0 || len(others) > 0 {
		t.Errorf("Fluentd: %d lines of the full period more than once, other events %q", fwdRepeated, others)
	}
	if fwdDuring+int(fwd.DroppedRecords) != during {
		t.Errorf("Fluentd: of %d lines logged while the disk was full, %d arrived and %d were counted as dropped", during, fwdDuring, fwd.DroppedRecords)
	}

	fileCounts, broken := fileLineNumbers(t, c)
	checkRange(t, "files", fileCounts, 1, before)
	checkRange(t, "files", fileCounts, first, last)
	fileDuring, fileRepeated := inRange(fileCounts, before+1, before+during)
	if fileRepeated > 0 {
		t.Errorf("files: %d lines of the full period more than once", fileRepeated)
	}
	if fileDuring+int(file.DroppedRecords) != during {
		t.Errorf("files: of %d lines logged while the disk was full, %d were written and %d counted as dropped", during, fileDuring, file.DroppedRecords)
	}
	if len(broken) > 1 {
		t.Errorf("files: %d lines that are not records, one (a write cut short) was expected at most: %q", len(broken), broken)
	}
	if p := pluginPID(t, plugin); p != pid {
		t.Errorf("the plugin's process changed from %d to %d", pid, p)
	}
	t.Logf("filler %d bytes; of %d lines logged while the disk was full, %d reached the files (%d counted as dropped, %d broken lines) and %d Fluentd (%d counted as dropped); %v in all",
		filled, during, fileDuring, file.DroppedRecords, len(broken), fwdDuring, fwd.DroppedRecords, time.Since(started).Round(time.Second))
	if len(broken) > 0 {
		t.Logf("broken lines in the files: %q", broken)
	}
}

// TestCorruptBufferSegment damages the middle of a disk buffer segment
// while the plugin is disabled: the next plugin process must skip the
// damaged region, count it, deliver every other entry, and keep running.
//
// The container runs throughout: a stopped container's buffer is read
// again only when the container starts again or its logs are read ("docker
// logs" makes dockerd open a stream for it), not by a restarted plugin.
func TestCorruptBufferSegment(t *testing.T) {
	const (
		lines = 2000 // waiting in the buffer while Fluentd is down
		more  = 100  // logged once the plugin is back
	)
	started := time.Now()
	metrics := withMetrics(t, suite.plugin)
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	srv.Stop()
	gate := newFwdSync(t)
	c := create(t, spec{
		driver:  suite.driver,
		logOpts: []string{"fluentd-address=" + srv.Addr()},
		flags:   gate.flag(),
		script: fwdWaitScript + fwdNumberedLines(lines) + fmt.Sprintf(`
await more; i=%d; while [ $i -le %d ]; do echo "line $i"; i=$((i+1)); done`, lines+1, lines+more),
	})
	c.start(t)
	fwdWait(t, fwdCeiling, fmt.Sprintf("%d entries in the disk buffer", lines), func() bool {
		e, ok, _ := destEntry(metrics, c, "fluentd")
		return ok && e.BufferQueueLength == lines
	})

	// A graceful stop writes what waits in memory to the segment.
	mustDocker(t, "plugin", "disable", "--force", suite.plugin)
	segs := bufferSegments(t, suite.root, c, "fluentd")
	if len(segs) != 1 {
		t.Fatalf("test bug: %d segment files %q, want one", len(segs), segs)
	}
	frames, torn := segmentFrames(t, segs[0])
	if len(frames) != lines || torn != 0 {
		t.Fatalf("test bug: the segment holds %d entries and %d bytes more, want %d entries", len(frames), torn, lines)
	}

	// Invert 64 bytes from the middle of the file: the entries whose
	// frames they touch are lost, and only those.
	const damage = 64
	size := frames[len(frames)-1].end
	from := size / 2
	lost := make(map[int]bool)
	for _, f := range frames {
		if f.off < from+damage && f.end > from {
			n, ok := lineNumber(f.line)
			if !ok {
				t.Fatalf("test bug: entry %q in the segment", f.line)
			}
			lost[n] = true
		}
	}
	seg, err := os.OpenFile(segs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, damage)
	if _, err := seg.ReadAt(buf, from); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	_, err = seg.WriteAt(buf, from)
	if cerr := seg.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inverted bytes %d-%d of %d in %s: lines %v are lost", from, from+damage, size, filepath.Base(segs[0]), slices.Sorted(maps.Keys(lost)))

	enablePlugin(t, suite.plugin)
	pid := pluginPID(t, suite.plugin)
	if pid == 0 {
		t.Fatalf("no process of plugin %s", suite.plugin)
	}
	srv.Start()
	want := lines + more - len(lost)
	fwdWait(t, fwdCeiling, fmt.Sprintf("%d lines at Fluentd", lines-len(lost)), func() bool {
		return len(srv.Events()) >= lines-len(lost)
	})
	var e pluginEntry
	fwdWait(t, fwdCeiling, "the corrupt region counted", func() bool {
		var ok bool
		e, ok, _ = destEntry(metrics, c, "fluentd")
		return ok && e.BufferCorruptRegions > 0
	})
	if e.BufferCorruptRegions != 1 {
		t.Errorf("%d corrupt regions counted, want 1", e.BufferCorruptRegions)
	}
	gate.signal(t, "more")
	c.wait(t)
	fwdWait(t, fwdCeiling, fmt.Sprintf("%d lines at Fluentd", want), func() bool { return len(srv.Events()) >= want })

	counts, others := fwdLineNumbers(srv.Events())
	var missing, repeated, unexpected []int
	for n := 1; n <= lines+more; n++ {
		switch k := counts[n]; {
		case lost[n] && k > 0:
			unexpected = append(unexpected, n)
		case !lost[n] && k == 0:
			missing = append(missing, n)
		case k > 1:
			repeated = append(repeated, n)
		}
	}
	if len(missing) > 0 || len(repeated) > 0 || len(unexpected) > 0 || len(others) > 0 || len(counts) > lines+more {
		t.Errorf("Fluentd: missing %s, more than once %s, from the damaged region %s, other events %q, %d distinct lines",
			fwdClipInts(missing), fwdClipInts(repeated), fwdClipInts(unexpected), others, len(counts))
	}
	// The files never depended on the buffer.
	fileCounts, _ := fileLineNumbers(t, c)
	checkRange(t, "files", fileCounts, 1, lines+more)
	if p := pluginPID(t, suite.plugin); p != pid {
		t.Errorf("the plugin's process changed from %d to %d after reading the damaged buffer", pid, p)
	}
	t.Logf("%d of %d lines delivered, %d lost with the damaged region; %v in all", len(counts), lines+more, len(lost), time.Since(started).Round(time.Second))
}

// procStats are a process's resources, from /proc.
type procStats struct {
	rssKiB, threads, fds int
}

func readProcStats(t testing.TB, pid int) procStats {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var st procStats
	for line := range strings.Lines(string(status)) {
		key, value, _ := strings.Cut(line, ":")
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		switch key {
		case "VmRSS":
			st.rssKiB, _ = strconv.Atoi(fields[0])
		case "Threads":
			st.threads, _ = strconv.Atoi(fields[0])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	st.fds = len(fds)
	return st
}

// TestManyContainersNoLeak runs 200 short-lived containers, in parallel
// batches, that log to files and to Fluentd, and checks that the plugin
// gives back what they took: its open files and goroutines return to what
// they were after a first batch, and its memory stays within a bound.
func TestManyContainersNoLeak(t *testing.T) {
	const (
		containers = 200
		batch      = 20
		lines      = 5
		// Slack for connections dockerd and the test keep to the plugin.
		fdSlack, goroutineSlack = 8, 16
		// Memory the Go runtime frees goes back to the kernel lazily, so
		// VmRSS is bounded, not compared with the baseline; 200 containers
		// that each kept 160 KiB would exceed it.
		rssGrowthKiB = 32 << 10
	)
	started := time.Now()
	metrics := withMetrics(t, suite.plugin)
	pid := pluginPID(t, suite.plugin)
	if pid == 0 {
		t.Fatalf("no process of plugin %s", suite.plugin)
	}
	srv := fluentdtest.NewServer(t, fluentdtest.Config{})
	s := spec{driver: suite.driver, logOpts: []string{"fluentd-address=" + srv.Addr()}, script: fwdNumberedLines(lines)}

	var all []*container
	t.Cleanup(func() {
		if len(all) == 0 {
			return
		}
		args := []string{"rm", "--force", "--volumes"}
		for _, c := range all {
			args = append(args, c.name)
			if c.id == "" {
				continue
			}
			if err := os.RemoveAll(c.ourDir()); err != nil {
				t.Error(err)
			}
		}
		if _, err := docker(context.Background(), args...); err != nil {
			t.Error(err)
		}
	})
	// runBatch runs n containers at once and removes them.
	runBatch := func(n int) {
		t.Helper()
		cs := make([]*container, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range cs {
			c := &container{spec: s}
			c.name, c.root = containerName(t), suite.root
			cs[i] = c
			wg.Add(1)
			go func() {
				defer wg.Done()
				args := append([]string{"run", "--detach"}, c.createArgs()[1:]...)
				c.id, errs[i] = docker(t.Context(), args...)
			}()
		}
		wg.Wait()
		all = append(all, cs...)
		ids := []string{}
		for i, c := range cs {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			ids = append(ids, c.id)
		}
		codes := mustDocker(t, append([]string{"wait"}, ids...)...)
		if strings.Trim(strings.ReplaceAll(codes, "\n", ""), "0") != "" {
			t.Fatalf("exit codes %q", codes)
		}
		// Read the files before docker rm: the plugin's janitor removes
		// the files of removed containers.
		for _, c := range cs {
			counts, broken := fileLineNumbers(t, c)
			if len(broken) > 0 {
				t.Errorf("%s: lines that are not records: %q", c, broken)
			}
			checkRange(t, c.String()+" file", counts, 1, lines)
		}
		mustDocker(t, append([]string{"rm"}, ids...)...)
	}
	// settle waits until Fluentd has every line and the plugin's goroutine
	// count has not changed for a second, and returns it.
	settle := func(events int) float64 {
		t.Helper()
		srv.WaitEvents(events, fwdCeiling)
		last, stable := -1.0, 0
		deadline := time.Now().Add(fwdCeiling)
		for stable < 5 {
			if time.Now().After(deadline) {
				t.Fatalf("the plugin's goroutines did not settle within %v (last %v)", fwdCeiling, last)
			}
			time.Sleep(200 * time.Millisecond)
			samples, err := scrape(metrics)
			if err != nil {
				t.Fatal(err)
			}
			g, ok := samples["go_goroutines"]
			if !ok {
				t.Fatal("/metrics has no go_goroutines")
			}
			if g == last {
				stable++
			} else {
				last, stable = g, 0
			}
		}
		return last
	}

	// A first batch brings the plugin to its working state (connections
	// from dockerd, buffers of the runtime).
	runBatch(batch)
	baseGoroutines := settle(batch * lines)
	base := readProcStats(t, pid)
	warm := time.Now()

	for range containers / batch {
		runBatch(batch)
	}
	loop := time.Since(warm)
	afterGoroutines := settle((containers + batch) * lines)
	after := readProcStats(t, pid)
	t.Logf("%d containers in %v; plugin before/after: %d/%d goroutines, %d/%d fds, %d/%d threads, VmRSS %d/%d KiB",
		containers, loop.Round(time.Second), int(baseGoroutines), int(afterGoroutines), base.fds, after.fds,
		base.threads, after.threads, base.rssKiB, after.rssKiB)

	if p := pluginPID(t, suite.plugin); p != pid {
		t.Fatalf("the plugin's process changed from %d to %d", pid, p)
	}
	if after.fds > base.fds+fdSlack {
		t.Errorf("the plugin has %d open files after %d containers, %d before", after.fds, containers, base.fds)
	}
	if afterGoroutines > baseGoroutines+goroutineSlack {
		t.Errorf("the plugin has %v goroutines after %d containers, %v before", afterGoroutines, containers, baseGoroutines)
	}
	if after.rssKiB > base.rssKiB+rssGrowthKiB {
		t.Errorf("the plugin's VmRSS grew from %d to %d KiB over %d containers", base.rssKiB, after.rssKiB, containers)
	}

	// Every container's lines, in its file and at Fluentd.
	byContainer := make(map[string][]fluentdtest.Event)
	for _, ev := range srv.Events() {
		id, _ := ev.Record["container_id"].(string)
		byContainer[id] = append(byContainer[id], ev)
	}
	for _, c := range all {
		fwdCheckLines(t, fmt.Sprintf("Fluentd, %s", c), byContainer[c.id], lines, true)
		delete(byContainer, c.id)
	}
	if len(byContainer) > 0 {
		t.Errorf("Fluentd received events of %d other containers", len(byContainer))
	}

	// The plugin's janitor removes delivered buffers of removed containers
	// once a minute, so some may still be there.
	var left []string
	for _, c := range all {
		if entries, err := os.ReadDir(filepath.Join(suite.root, "buffer", c.id)); err == nil {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			left = append(left, fmt.Sprintf("%s%v", c.id[:12], names))
		}
	}
	if len(left) > 0 {
		t.Logf("buffer directories not yet removed for %d of %d removed containers, e.g. %s", len(left), len(all), strings.Join(left[:min(3, len(left))], " "))
	}
	t.Logf("%v in all", time.Since(started).Round(time.Second))
}

// oddBytesLine is a printf format that writes every byte but "\n" (NUL,
// control characters, DEL and the bytes 0x80-0xff, none of which is valid
// UTF-8 on its own), then "\n".
var oddBytesLine = func() string {
	var b strings.Builder
	for c := range 256 {
		if c != '\n' {
			fmt.Fprintf(&b, `\%03o`, c)
		}
	}
	return b.String() + `\n`
}()

// unterminated returns the records that do not end with "\n" (pieces of a
// line dockerd split) and their lengths.
func unterminated(recs []record) (lengths []int) {
	for _, r := range recs {
		if !strings.HasSuffix(r.Log, "\n") {
			lengths = append(lengths, len(r.Log))
		}
	}
	return lengths
}

// TestOddLines runs output that is hard to carry through json-file's,
// Docker's fluentd driver's and logferry's paths: logferry's files and
// "docker logs" must match json-file's, and the records logferry sends to
// Fluentd those of Docker's fluentd driver (see checkDropIn). What
// TestFilesMatchJSONFile and TestFluentdDropIn cover (escapes, a 40 000-byte
// line, a two-byte character cut at 16 KiB, output ending without "\n") is
// not repeated. Frames that are malformed or too big cannot be made
// through dockerd: driver's unit and fuzz tests cover them.
func TestOddLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		// check checks json-file's records, so that a broken script
		// cannot pass vacuously.
		check func(recs []record) error
	}{
		{
			name:   "every byte but newline",
			script: `printf '` + oddBytesLine + `'; printf '` + oddBytesLine + `' >&2; printf 'nul\000\000end\n'`,
			check: func(recs []record) error {
				for _, r := range recs {
					if strings.Contains(r.Log, "\x00\x01\x02") && strings.Contains(r.Log, "\x1e\x1f !") &&
						strings.Contains(r.Log, "}~\x7f\ufffd\ufffd") && len(recs) == 3 {
						return nil
					}
				}
				return fmt.Errorf("%d records, none with every byte", len(recs))
			},
		},
		{
			// dockerd splits at 16 KiB: a line of 16 384 bytes is one piece
			// of 16 KiB and an empty last piece.
			name: "lines around 16 KiB",
			script: `for n in 16383 16384 16385; do head -c $n /dev/zero | tr '\0' x; echo; done
head -c 16384 /dev/zero | tr '\0' y >&2; echo >&2; echo after`,
			check: func(recs []record) error {
				if got := unterminated(recs); !slices.Equal(got, []int{16384, 16384, 16384}) {
					return fmt.Errorf("pieces of %v bytes, want 3 of 16384", got)
				}
				return nil
			},
		},
		{
			name:   "1 MiB without newline then lines",
			script: `head -c 1048576 /dev/zero | tr '\0' m; printf 'end of the long line\n'; echo "line 1"; echo "line 2" >&2`,
			check: func(recs []record) error {
				if got := unterminated(recs); len(got) != 64 || slices.Max(got) != 16384 || slices.Min(got) != 16384 {
					return fmt.Errorf("pieces of %v bytes, want 64 of 16384", got)
				}
				return nil
			},
		},
		{
			name:   "empty lines and carriage returns",
			script: `echo; echo; printf '\n\n\n' >&2; printf '\r\n\r\r\n'; printf 'cr only\r'; echo end; printf '\n' >&2`,
			check: func(recs []record) error {
				empty := 0
				for _, r := range recs {
					if r.Log == "\n" {
						empty++
					}
				}
				if empty != 6 {
					return fmt.Errorf("%d empty records, want 6", empty)
				}
				return nil
			},
		},
		{
			// A four-byte and a three-byte character cut by the split.
			name: "UTF-8 cut at 16 KiB",
			script: `head -c 16382 /dev/zero | tr '\0' a; printf '\360\237\230\200 after\n'
head -c 16383 /dev/zero | tr '\0' b >&2; printf '\344\270\255 after\n' >&2`,
			check: func(recs []record) error {
				if got := unterminated(recs); len(got) != 2 {
					return fmt.Errorf("pieces of %v bytes, want 2", got)
				}
				return nil
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Fluentd's default tag, the container ID, differs between the
			// runs; the image is the same. The files get it as attrs.
			opts := []string{"tag={{.ImageName}}"}
			ours := checkDropIn(t, dropIn{script: tt.script, opts: opts})
			ref := run(t, spec{driver: "json-file", logOpts: opts, script: tt.script})
			want := allRecords(t, ref.logFiles(t, false))
			if err := tt.check(want); err != nil {
				t.Fatalf("test bug: json-file wrote %v", err)
			}
			sameRecords(t, "records", want, allRecords(t, ours.logFiles(t, false)))
			wantOut, wantErr := ref.logs(t)
			gotOut, gotErr := ours.logs(t)
			sameOutput(t, "stdout of docker logs", wantOut, gotOut)
			sameOutput(t, "stderr of docker logs", wantErr, gotErr)
		})
	}
}
