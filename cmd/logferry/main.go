// Command logferry is the logferry Docker logging plugin: it serves the
// plugin protocol on a unix socket and wires the driver to its files.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/go-plugins-helpers/sdk"

	"github.com/logferry/logferry/driver"
	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/elasticsearch"
	"github.com/logferry/logferry/forward/fluentd"
	"github.com/logferry/logferry/forward/s3"
	"github.com/logferry/logferry/internal/settings"
)

// stopTimeout bounds how long a graceful stop may spend draining streams
// and delivering. dockerd kills a plugin 10 s after its SIGTERM: what the
// stop persists (stream state, buffer positions) must be written by then.
const stopTimeout = 7 * time.Second

// gcPercent is the plugin's GOGC unless its environment sets one: the
// heap grows by half its live size between collections instead of
// doubling. The plugin allocates little per line (its buffers are
// pooled), so collecting more often costs little CPU, and the memory it
// saves is the host's containers'. Unlike a memory limit (GOMEMLIMIT,
// which the environment may still set), it never makes the collector run
// without pause when many containers need a bigger heap.
const gcPercent = 50

// procsShare sets the plugin's GOMAXPROCS unless its environment sets one:
// a quarter (1/procsShare) of the CPUs the runtime would use, at least 1.
// To files the plugin spends about a fifth of the CPU dockerd spends on the
// same lines, to Elasticsearch about as much, and dockerd feeds one
// container from about one core: a quarter of the host keeps up with more
// containers logging at full speed than the host can run. A P more than
// needed costs wake-ups and spinning threads on every FIFO read: on 2 CPUs,
// one P took 23% less CPU per line than two to Elasticsearch, 5% less to
// Fluentd, and 0-7% less to files.
const procsShare = 4

// versionLine is what --version prints, and the plugin logs at start.
func versionLine() string {
	return fmt.Sprintf("logferry %s (%s, %s/%s)", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// version is the release, set at link time by the Makefile
// (-X main.version=…); "dev" for a plain go build.
var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "logferry:", err)
		os.Exit(1)
	}
}

func run() error {
	if os.Getenv("METRICS_ADDR") == "" {
		// Heap profiles are served only with the metrics: without them,
		// sampling allocations would fill a 1.4 MiB table for nothing.
		runtime.MemProfileRate = 0
	}
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(gcPercent)
	}
	n, err := procs(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0))
	if err != nil {
		return err
	}
	runtime.GOMAXPROCS(n)
	socket := flag.String("socket", "/run/docker/plugins/logferry.sock", "unix socket to serve the plugin protocol on")
	root := flag.String("root", envOr("LOGFERRY_ROOT", "/var/lib/logferry"), "directory that holds containers/<id>/<id>-json.log")
	state := flag.String("state-dir", "/var/lib/logferry-state", "directory, inside the plugin, that keeps what a restarted plugin needs to reopen running containers' FIFOs")
	dockerContainers := flag.String("docker-containers", "/var/lib/docker-containers", "dockerd's containers directory as mounted into the plugin (read-only): the logs of containers gone from it are removed; missing: kept")
	level := flag.String("log-level", envOr("LOG_LEVEL", "info"), "plugin log level: debug, info, warn or error")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(versionLine())
		return nil
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("log level %q: must be debug, info, warn or error", *level)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	log.Info("starting", "version", versionLine())
	reportTrust(log, caStore)

	l, err := listen(*socket)
	if err != nil {
		return err
	}
	if _, err := os.Stat(*dockerContainers); err != nil {
		log.Warn("logs of removed containers are kept: dockerd's containers directory is not mounted", "dir", *dockerContainers, "error", err)
		*dockerContainers = ""
	}
	creds, err := credentials()
	if err != nil {
		return err
	}
	d := driver.New(driver.Config{
		Root:             *root,
		StateDir:         *state,
		DockerContainers: *dockerContainers,
		Logger:           log,
		Destinations:     destinations(creds),
	})
	// Before serving: dockerd sends no StartLogging for the containers that
	// were logging when the plugin stopped or crashed.
	resumed, rerr := d.Recover()
	if rerr != nil {
		log.Error("recover streams", "error", rerr)
	}
	tidyCtx, stopTidy := context.WithCancel(context.Background())
	tidied := make(chan struct{})
	go func() {
		defer close(tidied)
		d.Maintain(tidyCtx, driver.DefaultTidyInterval)
	}()
	h := sdk.NewHandler(driver.Manifest)
	d.Register(h)

	served := make(chan error, 1)
	go func() { served <- h.Serve(l) }()

	var monitor *http.Server
	monitorDone := make(chan error, 1)
	if addr := monitorAddr(os.Getenv("METRICS_ADDR")); addr != "" {
		// Logging goes on without metrics: a busy port must not make
		// every container start fail.
		if ml, err := net.Listen("tcp", addr); err != nil {
			log.Error("metrics not served", "addr", addr, "error", err)
		} else {
			monitor = &http.Server{Handler: monitorHandler(d), ReadHeaderTimeout: 10 * time.Second}
			go func() { monitorDone <- monitor.Serve(ml) }()
			log.Info("metrics served", "addr", ml.Addr().String())
		}
	}
	log.Info("logferry started", "socket", *socket, "root", *root, "resumed_streams", resumed)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	var serveErr error
	select {
	case sig := <-sigs:
		log.Info("stopping", "signal", sig.String())
		l.Close()
		serveErr = <-served
	case serveErr = <-served:
	}
	if serveErr != nil && !errors.Is(serveErr, net.ErrClosed) && !errors.Is(serveErr, http.ErrServerClosed) {
		err = fmt.Errorf("serve %q: %w", *socket, serveErr)
	}
	stopTidy()
	<-tidied
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	err = errors.Join(err, d.Close(ctx))
	if monitor != nil {
		err = errors.Join(err, monitor.Shutdown(ctx))
		if merr := <-monitorDone; !errors.Is(merr, http.ErrServerClosed) {
			err = errors.Join(err, merr)
		}
	}
	return err
}

// monitorHandler serves the driver's monitoring endpoints and, under
// /debug/pprof/, Go's profiles of the plugin process.
func monitorHandler(d *driver.Driver) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", d.MonitorHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// listen creates the plugin socket, replacing a stale one left by a crash.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %q: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", path, err)
	}
	return l, nil
}

// procs returns the GOMAXPROCS the plugin runs with: that of the setting,
// or for none a quarter (1/procsShare) of cpus, at least 1. The runtime
// ignores a setting it cannot parse; the plugin refuses to start instead.
func procs(setting string, cpus int) (int, error) {
	if setting == "" {
		return max(1, cpus/procsShare), nil
	}
	n, err := strconv.Atoi(setting)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("GOMAXPROCS %q: want a whole number of at least 1, or empty for a quarter of the CPUs", setting)
	}
	return n, nil
}

// monitorAddr completes METRICS_ADDR: a port alone, or an address without
// a host, binds the loopback interface.
func monitorAddr(v string) string {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return ""
	case !strings.Contains(v, ":"):
		return net.JoinHostPort("127.0.0.1", v)
	case strings.HasPrefix(v, ":"):
		return "127.0.0.1" + v
	}
	return v
}

// destinations are where entries may go besides the files; each
// container's options turn them on. Secrets come from plugin settings
// (docker plugin set), never from --log-opt, which docker inspect shows to
// anyone.
func destinations(creds elasticsearch.Credentials) []forward.Destination {
	return []forward.Destination{
		fluentd.Destination(),
		elasticsearch.Destination(creds),
		s3.Destination(),
	}
}

// credentials reads the Elasticsearch credentials from the plugin's
// settings: each from its variable, or from the file its _FILE variable
// names (under the root mount, so that the secret stays out of docker
// plugin inspect).
func credentials() (elasticsearch.Credentials, error) {
	var c elasticsearch.Credentials
	err := settings.Read(
		settings.Field{Name: "ELASTICSEARCH_USERNAME", Dst: &c.Username},
		settings.Field{Name: "ELASTICSEARCH_PASSWORD", Dst: &c.Password},
		settings.Field{Name: "ELASTICSEARCH_API_KEY", Dst: &c.APIKey},
	)
	return c, err
}

func envOr(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}
