//go:build bench

package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// env is what the configurations need to know of this machine and of the
// harness's receivers; fixed once the harness has started.
type env struct {
	plugin, drain         string // plugin references, as --log-driver takes them
	pluginInfo, drainInfo pluginInfo
	dockerRoot            string
	dockerdPID            int
	dockerVersion         string
	fluentAddr, esURL     string
	fluentAddr2           string // the second Fluentd receiver, for the balanced configurations
	s3Endpoint            string
	fluentMode            string
}

// fileKind says where a configuration's files are, to check that every line
// arrived.
type fileKind int

const (
	noFiles      fileKind = iota
	jsonFile              // Docker's json-file, at the container's LogPath
	localFile             // Docker's local driver, under the container's directory
	logferryFile          // logferry's json-file copy under the plugin's root
)

// remoteKind names the receiver a configuration delivers to, if any.
type remoteKind int

const (
	noRemote remoteKind = iota
	fluentdRemote
	fluentdPairRemote // both Fluentd receivers
	esRemote
	s3Remote
)

// process says which process does a configuration's logging.
type process int

const (
	dockerd        process = iota // one of dockerd's built-in drivers
	logferryPlugin                // the plugin given by -plugin
	drainPlugin                   // the plugin given by -drain
)

// driverSpec is one logging configuration the harness measures.
type driverSpec struct {
	label string
	// builtin is the --log-driver value of a dockerd driver.
	builtin string
	proc    process
	// opts returns the --log-opt values.
	opts   func(e *env) map[string]string
	files  fileKind
	remote remoteKind
}

// logDriver returns the --log-driver value.
func (d *driverSpec) logDriver(e *env) string {
	switch d.proc {
	case logferryPlugin:
		return e.plugin
	case drainPlugin:
		return e.drain
	}
	return d.builtin
}

// pluginID returns the ID of the plugin doing the logging, "" for dockerd.
func (d *driverSpec) pluginID(e *env) string {
	switch d.proc {
	case logferryPlugin:
		return e.pluginInfo.ID
	case drainPlugin:
		return e.drainInfo.ID
	}
	return ""
}

func noOpts(*env) map[string]string { return nil }

// drivers are the configurations -drivers can name.
var drivers = map[string]driverSpec{
	"json-file": {label: "json-file (Docker)", builtin: "json-file", opts: noOpts, files: jsonFile},
	// No rotation, as json-file and logferry by default, so that every line
	// can be counted (local's defaults are 20m × 5, compressed).
	"local": {label: "local (Docker, no rotation)", builtin: "local", files: localFile,
		opts: func(*env) map[string]string {
			return map[string]string{"max-size": "100g", "max-file": "1", "compress": "false"}
		}},
	// With dockerd's default dual-logging cache, a local-format copy that
	// serves docker logs: what a user of the fluentd driver gets.
	"fluentd": {label: "fluentd (Docker) → receiver", builtin: "fluentd", remote: fluentdRemote,
		opts: func(e *env) map[string]string { return map[string]string{"fluentd-address": e.fluentAddr} }},
	"fluentd-nocache": {label: "fluentd (Docker, cache-disabled) → receiver", builtin: "fluentd", remote: fluentdRemote,
		opts: func(e *env) map[string]string {
			return map[string]string{"fluentd-address": e.fluentAddr, "cache-disabled": "true"}
		}},
	// Without ReadLogs the drain plugin would get dockerd's dual-logging
	// cache; the floor is the protocol alone.
	"drain": {label: "drain-only plugin (floor)", proc: drainPlugin,
		opts: func(*env) map[string]string { return map[string]string{"cache-disabled": "true"} }},
	"drain-netpoll": {label: "drain-only plugin, Go netpoller reader", proc: drainPlugin,
		opts: func(*env) map[string]string {
			return map[string]string{"cache-disabled": "true", "drain-reader": "netpoll"}
		}},
	"logferry": {label: "logferry files", proc: logferryPlugin, opts: noOpts, files: logferryFile},
	"logferry-fluentd": {label: "logferry files + Fluentd", proc: logferryPlugin, files: logferryFile, remote: fluentdRemote,
		opts: func(e *env) map[string]string {
			o := map[string]string{"fluentd-address": e.fluentAddr}
			if e.fluentMode != "" {
				o["fluentd-mode"] = e.fluentMode
			}
			return o
		}},
	// Spread over two receivers (fluentd-balance=weighted): the share of
	// each is logged per run.
	"logferry-fluentd-2": {label: "logferry files + 2 Fluentd, equal weights", proc: logferryPlugin, files: logferryFile, remote: fluentdPairRemote,
		opts: func(e *env) map[string]string {
			return map[string]string{"fluentd-address": e.fluentAddr + "," + e.fluentAddr2, "fluentd-balance": "weighted"}
		}},
	"logferry-fluentd-3to1": {label: "logferry files + 2 Fluentd, weights 3:1", proc: logferryPlugin, files: logferryFile, remote: fluentdPairRemote,
		opts: func(e *env) map[string]string {
			return map[string]string{"fluentd-address": e.fluentAddr + "?weight=60," + e.fluentAddr2 + "?weight=20", "fluentd-balance": "weighted"}
		}},
	"logferry-es": {label: "logferry files + Elasticsearch", proc: logferryPlugin, files: logferryFile, remote: esRemote,
		opts: func(e *env) map[string]string { return map[string]string{"elasticsearch-url": e.esURL} }},
	// The plugin needs S3 keys in its settings: make bench sets them.
	"logferry-s3": {label: "logferry files + S3", proc: logferryPlugin, files: logferryFile, remote: s3Remote,
		opts: func(e *env) map[string]string {
			return map[string]string{"s3-bucket": "bench", "s3-endpoint": e.s3Endpoint, "s3-region": "us-east-1", "s3-path-style": "true"}
		}},
}

// defaultDrivers is the default of -drivers.
var defaultDrivers = []string{"drain", "logferry", "json-file", "local", "fluentd", "logferry-fluentd", "logferry-es", "logferry-s3"}

func knownDrivers() []string { return slices.Sorted(maps.Keys(drivers)) }

// lineTemplate is repeated and cut to -line-size: a typical access-log line
// with nothing JSON must escape.
const lineTemplate = "2024-03-05T07:08:09.123Z INFO http request handled method=GET path=/api/v1/items status=200 dur=1.2ms user=42 "

// result is one measured run.
type result struct {
	workload workload
	driver   string
	round    int
	// wall is the time from starting the containers to the last line
	// delivered.
	wall                  time.Duration
	pluginCPU, dockerdCPU time.Duration
	// pluginRSS and dockerdRSS are peak resident set sizes during the run
	// (VmHWM, reset before the run unless peakReset is false: then they are
	// the processes' peaks since they started).
	pluginRSS, dockerdRSS int64
	peakReset             bool
	// sent and delivered count lines: a destination that drops some (its
	// queue full) delivers fewer; wall then ends at the last one delivered.
	sent, delivered int64
	err             error
}

// harness owns the Docker client and the receivers.
type harness struct {
	cfg    *config
	env    *env
	docker *dockerClient
	fwd    *forwardReceiver
	fwd2   *forwardReceiver // the second of fluentdPairRemote
	es     *bulkReceiver
	s3     *s3Receiver
	line   string
	seq    int // containers created, for unique names
}

func newHarness(ctx context.Context, cfg *config) (h *harness, err error) {
	h = &harness{cfg: cfg, docker: newDockerClient(cfg.socket)}
	defer func() {
		if err != nil {
			err = errors.Join(err, h.close())
		}
	}()
	e := &env{plugin: cfg.plugin, drain: cfg.drain, fluentMode: cfg.fluentMode}
	if e.dockerRoot, err = h.docker.dockerRoot(ctx); err != nil {
		return nil, fmt.Errorf("dockerd does not answer on %s (start it with scripts/dockerd.sh): %w", cfg.socket, err)
	}
	var version struct{ Version string }
	if err := h.docker.call(ctx, http.MethodGet, "/version", nil, nil, &version); err != nil {
		return nil, err
	}
	e.dockerVersion = version.Version
	if err := h.docker.imageExists(ctx, cfg.image); err != nil {
		return nil, fmt.Errorf("image %s (build it with scripts/busybox-image.sh): %w", cfg.image, err)
	}
	uses := func(pred func(driverSpec) bool) bool {
		for _, name := range append(slices.Clone(cfg.drivers), cfg.wideOn...) {
			if pred(drivers[name]) {
				return true
			}
		}
		return false
	}
	if uses(func(d driverSpec) bool { return d.proc == logferryPlugin }) {
		if e.pluginInfo, err = h.enabledPlugin(ctx, cfg.plugin); err != nil {
			return nil, err
		}
		if e.pluginInfo.root == "" {
			return nil, fmt.Errorf("plugin %s has no mount named root", cfg.plugin)
		}
	}
	if uses(func(d driverSpec) bool { return d.proc == drainPlugin }) {
		if e.drainInfo, err = h.enabledPlugin(ctx, cfg.drain); err != nil {
			return nil, err
		}
	}
	if e.dockerdPID, err = dockerdPID(cfg.socket); err != nil {
		return nil, err
	}
	if h.fwd, err = startForwardReceiver(); err != nil {
		return nil, err
	}
	e.fluentAddr = h.fwd.addr()
	if h.fwd2, err = startForwardReceiver(); err != nil {
		return nil, err
	}
	e.fluentAddr2 = h.fwd2.addr()
	if h.es, err = startBulkReceiver(); err != nil {
		return nil, err
	}
	e.esURL = h.es.url()
	if h.s3, err = startS3Receiver(); err != nil {
		return nil, err
	}
	e.s3Endpoint = h.s3.endpoint()
	h.env = e
	line := strings.Repeat(lineTemplate, cfg.lineSize/len(lineTemplate)+1)
	h.line = strings.TrimSpace(line[:cfg.lineSize-1]) // yes adds the newline
	h.line += strings.Repeat("x", cfg.lineSize-1-len(h.line))

	left, err := h.docker.leftovers(ctx)
	if err != nil {
		return nil, err
	}
	if len(left) > 0 {
		logf("removing %d containers left by an earlier run", len(left))
		if err := h.removeAll(ctx, left, nil); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *harness) enabledPlugin(ctx context.Context, name string) (pluginInfo, error) {
	p, err := h.docker.plugin(ctx, name)
	if err != nil {
		return p, fmt.Errorf("plugin %s (make bench installs it): %w", name, err)
	}
	if !p.Enabled {
		return p, fmt.Errorf("plugin %s is installed but disabled", name)
	}
	return p, nil
}

// close stops the receivers and reports their protocol errors.
func (h *harness) close() error {
	var errs []error
	for _, r := range []*forwardReceiver{h.fwd, h.fwd2} {
		if r != nil {
			errs = append(errs, r.close())
		}
	}
	if h.es != nil {
		errs = append(errs, h.es.close())
	}
	if h.s3 != nil {
		if n := h.s3.bad.Load(); n > 0 {
			errs = append(errs, fmt.Errorf("s3 receiver: %d requests refused", n))
		}
		errs = append(errs, h.s3.close())
	}
	h.docker.close()
	return errors.Join(errs...)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// runAll runs the warm-up, then every workload's rounds with the
// configurations in a rotated order each round, then the wide workload.
// A failed run is reported in its result and the others go on; the error
// is ctx's, or says how many runs failed.
func (h *harness) runAll(ctx context.Context) ([]result, error) {
	cfg := h.cfg
	all := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(cfg.drivers), cfg.wideOn...))))
	if cfg.warmup {
		for _, name := range all {
			r := h.run(ctx, workload{containers: 2, lines: 20000}, name, 0)
			if r.err != nil {
				return nil, fmt.Errorf("warm-up of %s: %w", name, r.err)
			}
		}
	}
	var results []result
	failed, inARow := 0, 0
	add := func(r result) {
		results = append(results, r)
		if r.err != nil {
			failed++
			inARow++
			logf("%s, %s, round %d: FAILED: %v", r.workload, r.driver, r.round, r.err)
			return
		}
		inARow = 0
		logf("%s, %s, round %d: %.2fs, plugin cpu %.2fs, dockerd cpu %.2fs, plugin peak rss %.1f MiB", r.workload, r.driver, r.round,
			r.wall.Seconds(), r.pluginCPU.Seconds(), r.dockerdCPU.Seconds(), float64(r.pluginRSS)/(1<<20))
	}
	// stuck reports runs failing one after the other, as they do when
	// dockerd no longer starts or stops containers: then the rest would
	// only wait for their timeouts.
	stuck := func() error {
		if inARow >= maxFailuresInARow {
			return fmt.Errorf("%d runs in a row failed; is dockerd healthy? (docker info, its log)", inARow)
		}
		return ctx.Err()
	}
	// rounds runs w runs times with each of names, rotating their order
	// by one each round; nothing if w has no containers.
	rounds := func(w workload, names []string, runs int) error {
		if w.containers == 0 {
			return nil
		}
		for round := 1; round <= runs; round++ {
			for i := range names {
				if err := stuck(); err != nil {
					return err
				}
				add(h.run(ctx, w, names[(i+round-1)%len(names)], round))
			}
		}
		return nil
	}
	for _, w := range []workload{cfg.single, cfg.many} {
		if err := rounds(w, cfg.drivers, cfg.runs); err != nil {
			return results, err
		}
	}
	if err := rounds(cfg.wide, cfg.wideOn, cfg.wideRuns); err != nil {
		return results, err
	}
	if failed > 0 {
		return results, fmt.Errorf("%d of %d runs failed", failed, len(results))
	}
	return results, nil
}

// run measures one run of workload w with configuration name, from
// creating its containers to removing them and their files.
func (h *harness) run(ctx context.Context, w workload, name string, round int) result {
	res := result{workload: w, driver: name, round: round}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.timeout)
	defer cancel()
	d := drivers[name]
	ids := make([]string, 0, w.containers)
	defer func() {
		// Clean up even when ctx is done, within bounds of its own.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer ccancel()
		if err := h.removeAll(cctx, ids, &d); err != nil && res.err == nil {
			res.err = err
		}
		syscall.Sync()
		time.Sleep(h.cfg.settle)
	}()
	res.err = h.measure(ctx, w, name, d, &ids, &res)
	return res
}

func (h *harness) measure(ctx context.Context, w workload, name string, d driverSpec, ids *[]string, res *result) error {
	e := h.env
	// The containers wait for the gate file, so that they all log at once
	// and the time measured is logging, not starting containers.
	gate, err := os.MkdirTemp("", "lfbench-gate-")
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	defer os.RemoveAll(gate)
	cmd := []string{"sh", "-c", fmt.Sprintf("while [ ! -e /gate/open ]; do usleep %d; done; yes '%s' | head -n %d",
		gatePoll.Microseconds(), h.line, w.lines)}
	h.seq++
	created := make([]string, w.containers)
	err = parallel(w.containers, func(i int) error {
		var err error
		created[i], err = h.docker.create(ctx, containerSpec{
			name:      fmt.Sprintf("lfbench-%d-%s-%d-%d", os.Getpid(), name, h.seq, i),
			image:     h.cfg.image,
			cmd:       cmd,
			logDriver: d.logDriver(e),
			logOpts:   d.opts(e),
			binds:     []string{gate + ":/gate:ro"},
		})
		return err
	})
	for _, id := range created {
		if id != "" {
			*ids = append(*ids, id)
		}
	}
	if err != nil {
		return err
	}
	pluginPid := 0
	if id := d.pluginID(e); id != "" {
		if h.cfg.restart {
			if err := h.docker.restartPlugin(ctx, d.logDriver(e)); err != nil {
				return err
			}
		}
		var err error
		if pluginPid, err = pluginPID(ctx, id); err != nil {
			return err
		}
	}
	var remoteBase, firstBase int64
	switch d.remote {
	case fluentdRemote:
		remoteBase = h.fwd.count()
	case fluentdPairRemote:
		remoteBase, firstBase = h.fwdPair(), h.fwd.count()
	case esRemote:
		remoteBase = h.es.count()
	case s3Remote:
		remoteBase = h.s3.count()
	}

	// Register the waits before starting, so that no exit is missed.
	waiters := make([]*exitWaiter, 0, len(*ids))
	defer func() {
		for _, wt := range waiters {
			if wt != nil {
				wt.abandon()
			}
		}
	}()
	for _, id := range *ids {
		wt, err := h.docker.waitNextExit(ctx, id)
		if err != nil {
			return err
		}
		waiters = append(waiters, wt)
	}

	if err := h.startAll(ctx, *ids); err != nil {
		return err
	}
	res.peakReset = true
	for _, pid := range []int{pluginPid, e.dockerdPID} {
		if pid != 0 && resetPeakRSS(pid) != nil {
			res.peakReset = false
		}
	}
	cpu0, err := h.cpu(pluginPid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := os.WriteFile(filepath.Join(gate, "open"), nil, 0o644); err != nil {
		return fmt.Errorf("open the gate: %w", err)
	}
	for i, wt := range waiters {
		code, err := wt.wait()
		waiters[i] = nil
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("container %.12s exited with %d", (*ids)[i], code)
		}
	}
	end := time.Now()

	want := int64(w.total())
	res.sent, res.delivered = want, want
	switch d.remote {
	case fluentdRemote:
		end, res.delivered, err = waitCount(ctx, h.fwd.count, remoteBase, want, end, h.cfg.stall)
	case fluentdPairRemote:
		end, res.delivered, err = waitCount(ctx, h.fwdPair, remoteBase, want, end, h.cfg.stall)
		if err == nil && res.delivered > 0 {
			first := h.fwd.count() - firstBase
			logf("%s, %s: the first receiver got %d lines (%.1f%%), the second %d (%.1f%%)", w, name,
				first, 100*float64(first)/float64(res.delivered), res.delivered-first, 100-100*float64(first)/float64(res.delivered))
		}
	case esRemote:
		end, res.delivered, err = waitCount(ctx, h.es.count, remoteBase, want, end, h.cfg.stall)
	case s3Remote:
		end, res.delivered, err = waitCount(ctx, h.s3.count, remoteBase, want, end, h.cfg.stall)
	}
	if err != nil {
		return fmt.Errorf("receiver: %w", err)
	}
	if res.delivered < want {
		logf("%s, %s: the receiver got %d of %d lines, then nothing for %s", w, name, res.delivered, want, h.cfg.stall)
	}
	cpu1, err := h.cpu(pluginPid)
	if err != nil {
		return err
	}
	if pluginPid != 0 {
		if res.pluginRSS, err = peakRSS(pluginPid); err != nil {
			return err
		}
	}
	if res.dockerdRSS, err = peakRSS(e.dockerdPID); err != nil {
		return err
	}

	// Files: every line must be there; waiting for one that is not yet
	// counts in the time.
	if d.files != noFiles {
		for _, id := range *ids {
			done, err := h.waitFile(ctx, d.files, id, w.lines)
			if err != nil {
				return err
			}
			if done.After(end) {
				end = done
			}
		}
	}
	if err := h.receiverErrors(); err != nil {
		return err
	}
	res.wall = end.Sub(t0)
	res.pluginCPU = cpu1[0] - cpu0[0]
	res.dockerdCPU = cpu1[1] - cpu0[1]
	return nil
}

// cpu returns the CPU time of the plugin (0 without one) and of dockerd.
func (h *harness) cpu(pluginPid int) ([2]time.Duration, error) {
	var out [2]time.Duration
	var err error
	if pluginPid != 0 {
		if out[0], err = cpuTime(pluginPid); err != nil {
			return out, err
		}
	}
	out[1], err = cpuTime(h.env.dockerdPID)
	return out, err
}

// startAll starts the containers, a few at a time: they wait for the
// gate before they print, and a hundred starts at once (or several
// harnesses' at once) have left dockerd 20.10 stuck for minutes on
// libnetwork's locks.
func (h *harness) startAll(ctx context.Context, ids []string) error {
	return parallel(len(ids), func(i int) error { return h.docker.start(ctx, ids[i]) })
}

// parallel calls f(0) … f(n-1), a few at a time (creating, starting and
// removing containers, which dockerd does not do faster with more at
// once), and returns their errors.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// maxFailuresInARow is how many runs may fail one after the other before
// the harness gives up.
const maxFailuresInARow = 3

// gatePoll is how often a container looks for the gate file: at most this
// is added to every measured time.
const gatePoll = 5 * time.Millisecond

// pollInterval is how often delivery is checked once the containers have
// exited: the resolution of the measured time.
const pollInterval = 2 * time.Millisecond

// waitCount waits until count has grown by want from base, or has not
// grown for stall (a sender that dropped lines), and returns when it last
// grew (not before since) and by how much. More than want is an error:
// lines were duplicated.
func waitCount(ctx context.Context, count func() int64, base, want int64, since time.Time, stall time.Duration) (time.Time, int64, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	n := count() - base
	last, grew := n, since
	for {
		switch {
		case n == want:
			return grew, n, nil
		case n > want:
			return time.Time{}, n, fmt.Errorf("%d lines more than sent", n-want)
		case time.Since(grew) >= stall:
			return grew, n, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, n, fmt.Errorf("%d of %d lines delivered: %w", n, want, ctx.Err())
		case <-t.C:
		}
		if n = count() - base; n != last {
			last, grew = n, time.Now()
		}
	}
}

// waitFile waits until the container's file holds every line, and returns
// when it first did as far as the harness saw (the zero time if it did at
// the first look).
func (h *harness) waitFile(ctx context.Context, kind fileKind, id string, want int) (time.Time, error) {
	var path string
	switch kind {
	case jsonFile:
		p, err := h.docker.logPath(ctx, id)
		if err != nil {
			return time.Time{}, err
		}
		path = p
	case localFile:
		path = filepath.Join(h.env.dockerRoot, "containers", id, "local-logs", "container.log")
	case logferryFile:
		path = filepath.Join(h.env.pluginInfo.root, "containers", id, id+"-json.log")
	}
	for first := true; ; first = false {
		var n int
		var err error
		if kind == localFile {
			n, err = countFrames(path)
		} else {
			n, err = countLines(path)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return time.Time{}, err
		}
		switch {
		case n == want && first:
			return time.Time{}, nil
		case n == want:
			return time.Now(), nil
		case n > want:
			return time.Time{}, fmt.Errorf("%s has %d records, %d more than sent", path, n, n-want)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s has %d of %d records: %w", path, n, want, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// fwdPair returns the events both Fluentd receivers received.
func (h *harness) fwdPair() int64 { return h.fwd.count() + h.fwd2.count() }

// receiverErrors reports requests the receivers could not take.
func (h *harness) receiverErrors() error {
	for _, r := range []*forwardReceiver{h.fwd, h.fwd2} {
		if n, err := r.failures(); n > 0 {
			return fmt.Errorf("fluentd receiver: %d malformed requests, the last: %w", n, err)
		}
	}
	if n := h.es.failures(); n > 0 {
		return fmt.Errorf("elasticsearch receiver: %d refused requests", n)
	}
	return nil
}

// removeAll removes the containers and, for logferry (d nil: perhaps),
// their files.
func (h *harness) removeAll(ctx context.Context, ids []string, d *driverSpec) error {
	return parallel(len(ids), func(i int) error {
		id := ids[i]
		var errs []error
		if err := h.docker.remove(ctx, id); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusNotFound {
				errs = append(errs, err)
			}
		}
		if h.env != nil && h.env.pluginInfo.root != "" && (d == nil || d.proc == logferryPlugin) {
			// The container's files, and what its destinations left in
			// their disk buffers (delivered by the next plugin process
			// otherwise, into the next run's counts).
			for _, dir := range []string{"containers", "buffer"} {
				errs = append(errs, os.RemoveAll(filepath.Join(h.env.pluginInfo.root, dir, id)))
			}
		}
		return errors.Join(errs...)
	})
}
