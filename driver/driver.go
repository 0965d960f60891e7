package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/internal/ratelog"
	"github.com/logferry/logferry/rotate"
)

// Config configures a Driver.
type Config struct {
	// Root is the directory that holds containers/<id>/<id>-json.log*.
	Root string
	// MaxFrame caps the size of one FIFO frame in bytes; 0 means
	// DefaultMaxFrame.
	MaxFrame int
	// Logger receives the plugin's own messages; nil means slog.Default().
	Logger *slog.Logger
	// Destinations are where entries may go besides the files, as a
	// container's log-opts turn them on (see forward.Destination).
	Destinations []forward.Destination
	// StateDir keeps what a restarted plugin needs to reopen the FIFOs of
	// running containers; empty means streams are not recovered.
	StateDir string
	// BufferBudget bounds the disk buffers of all containers and
	// destinations together, in bytes; 0 means DefaultBufferBudget.
	BufferBudget int64
	// Linger is how long a stopped container's destinations keep trying to
	// deliver what they still hold; 0 means DefaultLinger. docker stop does
	// not wait for it.
	Linger time.Duration
	// DockerContainers is dockerd's own containers directory
	// (<data-root>/containers) as the plugin sees it, read-only: Maintain
	// removes the log files of containers that are gone from it. Empty: log
	// files stay until removed by hand.
	DockerContainers string
}

// closeGrace is how long Close lets destinations deliver after the streams
// stopped: one that is down would otherwise hold up a plugin stop (an
// upgrade, docker plugin disable) for its whole deadline, while its disk
// buffer keeps everything for the next process anyway.
const closeGrace = 2 * time.Second

// Defaults of Config.
const (
	DefaultLinger       = time.Minute
	DefaultBufferBudget = 1 << 30
)

// ReadConfig is what "docker logs" asks for.
type ReadConfig struct {
	Since  time.Time
	Until  time.Time
	Tail   int
	Follow bool
}

var (
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("driver closed")
	// ErrUnknownStream is returned by StopLogging for a FIFO it does not know.
	ErrUnknownStream = errors.New("unknown log stream")
	// ErrBadContainerID is returned for a container ID that is not 64
	// lowercase hexadecimal characters.
	ErrBadContainerID = errors.New("container id must be 64 hexadecimal characters")
)

var containerIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Driver implements the logging plugin: one stream per FIFO, one set of
// rotating files per container. Its methods are safe for concurrent use.
type Driver struct {
	cfg Config
	log *slog.Logger

	// wg counts stream goroutines and the goroutines closing their sinks.
	wg sync.WaitGroup
	// quit is closed when Close runs out of time: lingering sinks give up.
	quit chan struct{}
	// budget is shared by the disk buffers of every destination.
	budget *forward.Budget

	// tidyMu is held shared while a stream or a replay opens a container's
	// files and buffers, and exclusively while Maintain removes them.
	tidyMu sync.RWMutex
	// warnOnce reports an unusable Config.DockerContainers once.
	warnOnce sync.Once
	// nextReplay says, by container ID, when Maintain may deliver the
	// buffers of a container without a stream again; only the goroutine
	// running Maintain uses it.
	nextReplay map[string]replayState
	// replayLog rate-limits Maintain's errors per container.
	replayLog *ratelog.Log

	// mu guards streams, files, delivering, poll and closed.
	mu      sync.Mutex
	streams map[string]*stream         // by FIFO path
	files   map[string]*containerFiles // by container ID
	// delivering counts, by container ID, the closing destinations that
	// are still delivering.
	delivering map[string]int
	poll       *poller // started by the first stream
	closed     bool
}

// New returns a Driver that keeps container logs under cfg.Root.
func New(cfg Config) *Driver {
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.BufferBudget <= 0 {
		cfg.BufferBudget = DefaultBufferBudget
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{
		cfg:        cfg,
		log:        log,
		quit:       make(chan struct{}),
		budget:     forward.NewBudget(cfg.BufferBudget),
		streams:    make(map[string]*stream),
		files:      make(map[string]*containerFiles),
		delivering: make(map[string]int),
		nextReplay: make(map[string]replayState),
		replayLog:  ratelog.New(log, time.Hour),
	}
}

// logPath returns the current log file of a container, refusing IDs that
// could name anything outside the root.
func (d *Driver) logPath(id string) (string, error) {
	if !containerIDPattern.MatchString(id) {
		return "", fmt.Errorf("%w: %q", ErrBadContainerID, id)
	}
	return layout{d.cfg.Root}.logFile(id), nil
}

// StartLogging validates the container's options, opens the FIFO at path
// and starts copying its entries into the container's files. Files are
// created on the first entry, so a stream dockerd opens only to read a
// stopped container's logs changes nothing on disk.
func (d *Driver) StartLogging(path string, info *Info) error {
	return d.start(path, info, resume{})
}

// resume says how a stream reopened after a plugin restart continues.
type resume struct {
	// prefix is stream data read before the FIFO was reopened.
	prefix []byte
	// resync: the stream may start inside a frame.
	resync bool
	// stale: dockerd no longer writes to the FIFO; drain what is there and
	// finish.
	stale bool
	// probe is the FIFO reader kept open while the stream's own is opened,
	// so that dockerd never sees the FIFO without a reader.
	probe *os.File
}

func (d *Driver) start(path string, info *Info, r resume) error {
	if r.probe != nil {
		defer r.probe.Close()
	}
	d.tidyMu.RLock()
	defer d.tidyMu.RUnlock()
	logPath, err := d.logPath(info.ContainerID)
	if err != nil {
		return err
	}
	opts, err := parseOptions(info, d.cfg.Destinations)
	if err != nil {
		return err
	}
	log := d.log.With("container", info.ContainerID[:12], "fifo", path)
	sinks, err := d.newSinks(&opts, filepath.Dir(logPath))
	if err != nil {
		return err
	}
	if len(sinks) > 0 {
		if err := d.saveBufferInfo(info); err != nil {
			discardSinks(sinks)
			return err
		}
	}
	p, err := d.poller()
	if err != nil {
		discardSinks(sinks)
		return err
	}
	f, err := openFIFO(path, p)
	if err != nil {
		discardSinks(sinks)
		return err
	}
	if err := d.saveState(&streamState{File: path, Info: *info}); err != nil {
		f.Close()
		discardSinks(sinks)
		return err
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.streams[path] != nil {
		f.Close()
		discardSinks(sinks)
		if d.closed {
			return ErrClosed
		}
		return fmt.Errorf("start logging %q: stream already open", path)
	}
	cf := d.files[info.ContainerID]
	if cf == nil {
		cf = &containerFiles{id: info.ContainerID, path: logPath, w: rotate.NewWriter(logPath, opts.files)}
		d.files[info.ContainerID] = cf
	}
	cf.refs++
	var src io.Reader = f
	if len(r.prefix) > 0 {
		src = io.MultiReader(bytes.NewReader(r.prefix), f)
	}
	s := &stream{
		path:   path,
		info:   info,
		fifo:   f,
		files:  cf,
		attrs:  opts.attrs,
		sinks:  sinks,
		log:    log,
		errLog: ratelog.New(log, errorLogInterval),
		done:   make(chan struct{}),
		dec:    NewDecoder(src, d.cfg.MaxFrame),
	}
	if r.resync {
		s.dec.Resync()
	}
	// A container has one live stream. After a live-restore, dockerd
	// opens a new FIFO for a running container and never stops the old
	// one, which nothing writes to any more: drain it and let it go.
	for p, old := range d.streams {
		if old.info.ContainerID == info.ContainerID {
			delete(d.streams, p)
			old.log.Info("stream replaced by a new one of the same container")
			old.fifo.stop()
		}
	}
	d.streams[path] = s
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(s.done)
		s.run()
		if err := d.release(s); err != nil {
			s.log.Error("release stream", "error", err)
		}
	}()
	if r.stale {
		delete(d.streams, path)
		f.stop()
	}
	s.log.Debug("start logging", "name", info.Name())
	return nil
}

// poller returns the Driver's FIFO poller, started on first use.
func (d *Driver) poller() (*poller, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	if d.poll == nil {
		p, err := newPoller()
		if err != nil {
			return nil, err
		}
		d.poll = p
	}
	return d.poll, nil
}

// StopLogging drains the FIFO at path, writes what it held and releases the
// stream. It returns once everything dockerd wrote is in the files, or with
// ctx's error if that takes longer (the stream still finishes and is
// released).
func (d *Driver) StopLogging(ctx context.Context, path string) error {
	d.mu.Lock()
	s, ok := d.streams[path]
	delete(d.streams, path)
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("stop logging %q: %w", path, ErrUnknownStream)
	}
	return d.stop(ctx, s)
}

// stop makes s drain its FIFO and waits until it has written everything
// and released its files, or until ctx is done.
func (d *Driver) stop(ctx context.Context, s *stream) error {
	s.fifo.stop()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop logging %q: %w", s.path, ctx.Err())
	}
}

// newSinks creates the destinations opts turns on. Creating one never
// waits for the network. Destinations may keep files in dir, beside the
// container's logs (Elasticsearch's dead letters). Sinks name the
// container and themselves in their log messages.
func (d *Driver) newSinks(opts *options, dir string) ([]destination, error) {
	var dests []destination
	for _, c := range opts.dests {
		s, err := c.start(forward.SinkEnv{
			Container: opts.container,
			// Each destination of a container has a disk buffer under the
			// root, which outlives the plugin process: a restarted plugin,
			// or the next run of the container, delivers what is left in
			// it.
			BufferDir: layout{d.cfg.Root}.destBuffer(opts.container.ID, c.name),
			LogDir:    dir,
			Budget:    d.budget,
			Log:       d.log,
		})
		if err != nil {
			discardSinks(dests)
			return nil, err
		}
		dests = append(dests, destination{name: c.name, Sink: s})
	}
	return dests, nil
}

// closeSinks lets the sinks of container id deliver what they hold for up
// to Config.Linger in the background, or until Close runs out of time;
// Close waits for them.
func (d *Driver) closeSinks(id string, sinks []destination) {
	for _, sk := range sinks {
		d.wg.Add(1)
		d.mu.Lock()
		d.delivering[id]++
		d.mu.Unlock()
		go func() {
			defer d.wg.Done()
			defer func() {
				d.mu.Lock()
				if d.delivering[id]--; d.delivering[id] == 0 {
					delete(d.delivering, id)
				}
				d.mu.Unlock()
			}()
			ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Linger)
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				select {
				case <-d.quit:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := sk.Close(ctx)
			cancel()
			<-watched
			if err != nil {
				d.log.Warn("close destination", "error", err)
			}
		}()
	}
}

// discardSinks closes sinks that were never sent anything, without waiting.
func discardSinks(sinks []destination) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, sk := range sinks {
		_ = sk.Close(ctx)
	}
}

// release closes the FIFO of a finished stream and, for the last stream of
// a container, its files.
func (d *Driver) release(s *stream) error {
	d.closeSinks(s.info.ContainerID, s.sinks)
	if s.keepState.Load() {
		// The plugin is stopping while dockerd keeps writing: leave what
		// the next process needs to carry on where this one stopped.
		pending, aligned := s.dec.Pending()
		if err := d.saveState(&streamState{File: s.path, Info: *s.info, Clean: aligned, Pending: pending}); err != nil {
			s.log.Error("save stream state", "error", err)
		}
	} else {
		d.dropState(s.path)
	}
	s.log.Debug("stop logging", "entries", s.entries.Load(), "skipped_frames", s.skipped.Load(), "write_errors", s.writeErrors.Load(), "lost_records", s.lost.Load())
	err := s.fifo.Close()
	d.mu.Lock()
	cf := s.files
	cf.refs--
	last := cf.refs == 0
	if last && d.files[cf.id] == cf {
		delete(d.files, cf.id)
	}
	d.mu.Unlock()
	if last {
		if cerr := cf.w.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close %q: %w", cf.path, cerr))
		}
	}
	return err
}

// ReadLogs writes the container's records that cfg selects to w as frames.
// With cfg.Follow it keeps writing new records until the container's stream
// ends or ctx is done, calling flush whenever it has written all there is.
// It reads the files on disk, so it works for containers logged before a
// plugin restart.
func (d *Driver) ReadLogs(ctx context.Context, info *Info, cfg ReadConfig, w io.Writer, flush func()) error {
	path, err := d.logPath(info.ContainerID)
	if err != nil {
		return err
	}
	// The live writer, when there is one, lets the reader take a consistent
	// view of the files while they rotate, and follow them.
	var writer *rotate.Writer
	d.mu.Lock()
	if cf := d.files[info.ContainerID]; cf != nil {
		writer = cf.w
	}
	d.mu.Unlock()
	// A follower is flushed once it has caught up, not after each record:
	// a busy container's burst goes out in a few writes, not one each.
	rcfg := rotate.ReadConfig{Tail: cfg.Tail, Since: cfg.Since, Until: cfg.Until, Follow: cfg.Follow && writer != nil, Idle: flush}
	var frame []byte
	return rotate.Read(ctx, path, rcfg, writer, func(e *rotate.Entry) error {
		frame = AppendFrame(frame[:0], &LogEntry{Source: e.Stream, TimeNano: e.Time.UnixNano(), Line: e.Line})
		if _, err := w.Write(frame); err != nil {
			return fmt.Errorf("send log entry: %w", err)
		}
		return nil
	})
}

// Close stops every stream after draining it, within ctx's deadline, then
// gives the destinations up to two seconds to deliver; what they still
// hold stays in their disk buffers for the next process. Calls after the
// first return nil.
func (d *Driver) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	streams := make([]*stream, 0, len(d.streams))
	for p, s := range d.streams {
		s.keepState.Store(true)
		streams = append(streams, s)
		delete(d.streams, p)
	}
	d.mu.Unlock()

	var errs []error
	for _, s := range streams {
		if err := d.stop(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	grace := time.NewTimer(closeGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		// Destinations that are still trying (one is down) keep what
		// they hold in their disk buffers for the next process.
		close(d.quit)
		<-done
	case <-ctx.Done():
		close(d.quit)
		<-done
		errs = append(errs, fmt.Errorf("close driver: %w", ctx.Err()))
	}
	// Every stream is done: nothing waits on the poller any more.
	d.mu.Lock()
	p := d.poll
	d.mu.Unlock()
	if p != nil {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}
