//go:build bench

// Command bench is logferry's end-to-end benchmark: it runs the same
// container workload through the real Docker engine with Docker's own
// json-file, local and fluentd drivers, with a plugin that only drains its
// FIFO (bench/drainplugin, the floor of the plugin protocol) and with
// logferry writing files only, files and Fluentd, and files and
// Elasticsearch, then prints a Markdown table of the medians.
//
// The containers of a run are started first and wait for a gate file that
// the harness then creates, so that they all log at once and the time
// measured is logging, not starting containers. For every run it measures
// the time from opening the gate until the last line is delivered (every
// container has exited and every file or receiver holds every line), the CPU time of the process doing the logging
// (the plugin's process; dockerd's for the built-in drivers and, always, as
// a column of its own) per million lines, its peak RSS during the run, and
// lines per second. Runs of the configurations alternate, in a rotated order
// each round, so that a noisy neighbour hurts all of them alike.
//
// The Fluentd and Elasticsearch destinations are receivers in this process
// on 127.0.0.1: a Forward protocol server that counts events (all four
// modes, acks answered) and a _bulk endpoint that counts documents and
// answers 201 created for each. Both are meant to cost the sender nothing
// beyond the protocol.
//
// It needs root, dockerd, the image logferry-busybox:latest and the plugins
// given by -plugin and -drain installed and enabled; "make bench" prepares
// all of them. It is behind the "bench" build tag so that "go test ./..."
// and "go vet ./..." leave it alone:
//
//	go run -tags bench ./bench -runs 3
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	runs       int
	single     workload
	many       workload
	wide       workload
	drivers    []string
	wideOn     []string
	wideRuns   int
	lineSize   int
	plugin     string
	drain      string
	image      string
	socket     string
	timeout    time.Duration
	stall      time.Duration
	settle     time.Duration
	warmup     bool
	raw        bool
	fluentMode string
	serve      bool
	restart    bool
}

// workload is a number of containers that each print a number of lines.
type workload struct {
	containers int
	lines      int
}

func (w workload) total() int { return w.containers * w.lines }

func (w workload) String() string {
	return fmt.Sprintf("%d × %s", w.containers, short(w.lines))
}

// short formats n as 1M, 50k or 123.
func short(n int) string {
	switch {
	case n >= 1e6 && n%1e6 == 0:
		return strconv.Itoa(n/1e6) + "M"
	case n >= 1e3 && n%1e3 == 0:
		return strconv.Itoa(n/1e3) + "k"
	}
	return strconv.Itoa(n)
}

// parseWorkload parses "CONTAINERSxLINES"; "0" or "" is no workload.
func parseWorkload(s string) (workload, error) {
	if s == "" || s == "0" {
		return workload{}, nil
	}
	c, l, ok := strings.Cut(s, "x")
	if !ok {
		return workload{}, fmt.Errorf("workload %q: want CONTAINERSxLINES, such as 20x50000", s)
	}
	var w workload
	var err1, err2 error
	w.containers, err1 = strconv.Atoi(c)
	w.lines, err2 = strconv.Atoi(l)
	if err1 != nil || err2 != nil || w.containers < 1 || w.lines < 1 {
		return workload{}, fmt.Errorf("workload %q: want CONTAINERSxLINES with positive numbers", s)
	}
	return w, nil
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var c config
	var single, many, wide, drivers, wideOn string
	fs.IntVar(&c.runs, "runs", 2, "rounds: every configuration runs this many times per workload, alternating")
	fs.StringVar(&single, "single", "1x1000000", "the one-container workload, CONTAINERSxLINES (0: skip)")
	fs.StringVar(&many, "many", "20x50000", "the many-containers workload, run with every driver (0: skip)")
	fs.StringVar(&wide, "wide", "100x10000", "containers logging at once for the memory target, run once with -wide-drivers (0: skip)")
	fs.StringVar(&drivers, "drivers", strings.Join(defaultDrivers, ","), "configurations to run, in this order; known: "+strings.Join(knownDrivers(), ", "))
	fs.StringVar(&wideOn, "wide-drivers", "logferry", "configurations the -wide workload runs with")
	fs.IntVar(&c.wideRuns, "wide-runs", 1, "rounds of the -wide workload, alternating its configurations")
	fs.IntVar(&c.lineSize, "line-size", 100, "bytes per line, newline included")
	fs.StringVar(&c.plugin, "plugin", "logferry-bench:latest", "installed logferry plugin to measure")
	fs.StringVar(&c.drain, "drain", "logferry-drain:latest", "installed drain-only plugin (bench/drainplugin)")
	fs.StringVar(&c.image, "image", "logferry-busybox:latest", "image with sh, yes and head")
	fs.StringVar(&c.socket, "docker", "/var/run/docker.sock", "dockerd's API socket")
	fs.DurationVar(&c.timeout, "timeout", 3*time.Minute, "limit on one run, from creating its containers to removing them")
	fs.DurationVar(&c.stall, "stall", 3*time.Second, "after the containers exit, how long a receiver may get nothing before the lines it lacks count as lost")
	fs.DurationVar(&c.settle, "settle", 500*time.Millisecond, "pause after each run's clean-up (and sync), so that one run's writeback does not land in the next")
	fs.BoolVar(&c.warmup, "warmup", true, "run every configuration once on a small workload first, unmeasured")
	fs.BoolVar(&c.restart, "restart-plugin", true, "disable and enable a plugin before each of its runs, so that every run starts with a fresh plugin process (its peak RSS is then the run's own)")
	fs.BoolVar(&c.raw, "raw", false, "also print every run, not only the medians")
	fs.BoolVar(&c.serve, "serve", false, "only run the Fluentd and Elasticsearch receivers and print their addresses, until interrupted (to profile a plugin by hand)")
	fs.StringVar(&c.fluentMode, "fluentd-mode", "", "logferry's fluentd-mode for the logferry-fluentd configuration (default: logferry's default, packedforward)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.single, err = parseWorkload(single); err != nil {
		return nil, err
	}
	if c.many, err = parseWorkload(many); err != nil {
		return nil, err
	}
	if c.wide, err = parseWorkload(wide); err != nil {
		return nil, err
	}
	if c.wideRuns < 1 {
		return nil, fmt.Errorf("-wide-runs %d: want 1 or more", c.wideRuns)
	}
	if c.runs < 1 {
		return nil, fmt.Errorf("-runs %d: want 1 or more", c.runs)
	}
	if c.lineSize < 2 || c.lineSize > 16<<10 {
		return nil, fmt.Errorf("-line-size %d: want 2 to 16384 (dockerd splits longer lines)", c.lineSize)
	}
	if c.drivers, err = parseDrivers(drivers); err != nil {
		return nil, err
	}
	if c.wideOn, err = parseDrivers(wideOn); err != nil {
		return nil, err
	}
	return &c, nil
}

func parseDrivers(s string) ([]string, error) {
	var out []string
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if _, ok := drivers[name]; !ok {
			return nil, fmt.Errorf("unknown configuration %q; known: %s", name, strings.Join(knownDrivers(), ", "))
		}
		out = append(out, name)
	}
	return out, nil
}

func run() error {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.serve {
		return serve(ctx)
	}

	h, err := newHarness(ctx, cfg)
	if err != nil {
		return err
	}
	results, err := h.runAll(ctx)
	if cerr := h.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if len(results) > 0 {
		report(os.Stdout, cfg, h.env, results)
	}
	return err
}

// serve runs the receivers until ctx is done, then reports their counts.
func serve(ctx context.Context) error {
	fwd, err := startForwardReceiver()
	if err != nil {
		return err
	}
	es, err := startBulkReceiver()
	if err != nil {
		return errors.Join(err, fwd.close())
	}
	fmt.Printf("fluentd-address=%s\nelasticsearch-url=%s\n", fwd.addr(), es.url())
	<-ctx.Done()
	fmt.Printf("fluentd events: %d\nelasticsearch documents: %d\n", fwd.count(), es.count())
	return errors.Join(fwd.close(), es.close())
}
