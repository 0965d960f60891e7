package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/logferry/logferry/forward/diskq"
)

// DefaultTidyInterval is how often Maintain looks for leftovers.
const DefaultTidyInterval = time.Minute

// Maintain tidies the root every interval until ctx is done:
//
//   - a container's disk buffers that still hold events while none of its
//     streams is open are delivered again (their destinations retry for
//     Config.Linger), so that nothing waits for the container's next start;
//   - buffer/<id> is removed once it holds nothing and no stream of the
//     container is open;
//   - with Config.DockerContainers, containers/<id> (the log files) is
//     removed once dockerd has removed the container, as its json-file
//     logs go with it.
//
// Maintain must have returned before Close is called.
func (d *Driver) Maintain(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultTidyInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		d.tidy()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tidy makes one pass of Maintain.
func (d *Driver) tidy() {
	replay := d.sweep()
	for _, id := range replay {
		if err := d.replay(id); err != nil {
			d.replayLog.Error(id, "cannot deliver the events buffered for a container without a stream", "container", id[:12], "error", err)
		}
	}
}

// sweep removes what is no longer needed and returns the containers whose
// buffers are to be delivered again. It holds starts off meanwhile, so
// that no stream opens files or buffers that it removes.
func (d *Driver) sweep() (replay []string) {
	d.tidyMu.Lock()
	defer d.tidyMu.Unlock()
	usable := d.dockerContainersUsable()
	removed := func(id string) bool {
		if !usable {
			return false
		}
		_, err := os.Stat(filepath.Join(d.cfg.DockerContainers, id))
		return errors.Is(err, os.ErrNotExist)
	}
	now := time.Now()

	l := layout{d.cfg.Root}
	for _, id := range containerDirs(l.buffers(), d.log) {
		if d.inUse(id) {
			continue
		}
		dir := l.bufferDir(id)
		holds, err := holdsEvents(dir)
		var expired bool
		if err == nil && holds && removed(id) {
			latest, size := dirStat(dir)
			if age := now.Sub(latest); age > OrphanRetention {
				expired = true
				d.log.Warn("dropped the undelivered buffers of a removed container",
					"container", id[:12], "unchanged_for", age.Round(time.Minute).String(), "bytes", size)
			}
		}
		switch {
		case err != nil:
			d.replayLog.Error(id, "tidy buffers", "container", id[:12], "error", err)
			continue
		case expired:
		case holds:
			if now.Before(d.nextReplay[id].at) {
				continue
			}
			replay = append(replay, id)
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			d.replayLog.Error(id, "remove buffers", "container", id[:12], "error", err)
			continue
		}
		delete(d.nextReplay, id)
	}

	if !usable {
		return replay
	}
	for _, id := range containerDirs(l.containers(), d.log) {
		if d.inUse(id) || !removed(id) {
			continue
		}
		if err := os.RemoveAll(l.logDir(id)); err != nil {
			d.replayLog.Error(id, "remove logs of a removed container", "container", id[:12], "error", err)
			continue
		}
		d.log.Info("removed the logs of a removed container", "container", id[:12])
	}
	return replay
}

// replayState is when the buffers of a container without a stream may be
// delivered again, and how often that was tried.
type replayState struct {
	at       time.Time
	attempts int
}

// OrphanRetention is how long Maintain keeps trying to deliver the buffers
// of a removed container after they last changed; then they are dropped.
const OrphanRetention = 24 * time.Hour

// replayBackoff returns how long to wait before the next delivery of the
// buffers of a container without a stream, after attempts of them: one
// minute doubling up to an hour.
func replayBackoff(attempts int) time.Duration {
	return min(time.Minute<<min(attempts, 6), time.Hour)
}

// dirStat returns the time of the latest change to a file in dir and the
// bytes of its files.
func dirStat(dir string) (latest time.Time, size int64) {
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		if info.ModTime().After(latest) {
			latest = info.ModTime()
		}
		if !e.IsDir() {
			size += info.Size()
		}
		return nil
	})
	return latest, size
}

// inUse tells whether a stream of container id is open or its destinations
// are still delivering.
func (d *Driver) inUse(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.files[id] != nil || d.delivering[id] > 0
}

// dockerContainersUsable tells whether Config.DockerContainers can be
// trusted to say which containers exist: it must list at least one
// container, and the container of every open stream. A wrong mount (an
// empty directory, another daemon's) would otherwise make every log look
// orphaned.
func (d *Driver) dockerContainersUsable() bool {
	if d.cfg.DockerContainers == "" {
		return false
	}
	d.mu.Lock()
	ids := make([]string, 0, len(d.files))
	for id := range d.files {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	if len(ids) == 0 {
		ids = containerDirs(d.cfg.DockerContainers, d.log)
		if len(ids) == 0 {
			return false
		}
	}
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(d.cfg.DockerContainers, id)); err != nil {
			d.warnOnce.Do(func() {
				d.log.Warn("logs of removed containers are kept: the docker-containers mount does not list running containers",
					"dir", d.cfg.DockerContainers, "container", id[:12], "error", err)
			})
			return false
		}
	}
	return true
}

// containerDirs lists the subdirectories of dir named as container IDs.
func containerDirs(dir string, log *slog.Logger) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Error("tidy", "dir", dir, "error", err)
		}
		return nil
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && containerIDPattern.MatchString(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// holdsEvents tells whether any destination's buffer in the container's
// buffer directory holds events: any of its subdirectories, so that the
// buffer of a destination the plugin no longer has counts too.
func holdsEvents(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("read buffer directory: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		holds, err := diskq.Holds(filepath.Join(dir, e.Name()))
		if holds || err != nil {
			return holds, err
		}
	}
	return false, nil
}

// saveBufferInfo records info in the container's buffer directory.
func (d *Driver) saveBufferInfo(info *Info) error {
	l := layout{d.cfg.Root}
	if err := os.MkdirAll(l.bufferDir(info.ContainerID), 0o700); err != nil {
		return fmt.Errorf("save container info: %w", err)
	}
	if err := writeJSON(l.bufferInfo(info.ContainerID), info); err != nil {
		return fmt.Errorf("save container info: %w", err)
	}
	return nil
}

// replay opens the destinations of container id on its buffers and lets
// them deliver, as a stopped stream's destinations do; the next attempt, if
// they hold events after that, waits longer each time.
func (d *Driver) replay(id string) error {
	d.tidyMu.RLock()
	defer d.tidyMu.RUnlock()
	if d.inUse(id) {
		return nil // started meanwhile: its own destinations deliver
	}
	next := d.nextReplay[id]
	next.at = time.Now().Add(replayBackoff(next.attempts))
	next.attempts++
	d.nextReplay[id] = next

	b, err := os.ReadFile(layout{d.cfg.Root}.bufferInfo(id))
	if errors.Is(err, os.ErrNotExist) {
		// Left by a version that did not record it: the container's
		// next start delivers them.
		d.log.Debug("buffered events wait for their container's next start", "container", id[:12])
		return nil
	}
	if err != nil {
		return err
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return fmt.Errorf("read container info: %w", err)
	}
	if info.ContainerID != id {
		return fmt.Errorf("read container info: names container %q", info.ContainerID)
	}
	opts, err := parseOptions(&info, d.cfg.Destinations)
	if err != nil {
		return err
	}
	logPath, err := d.logPath(id)
	if err != nil {
		return err
	}
	sinks, err := d.newSinks(&opts, filepath.Dir(logPath))
	if err != nil {
		return err
	}
	d.log.Info("delivering events buffered for a container without a stream", "container", id[:12], "destinations", len(sinks), "attempt", next.attempts)
	d.closeSinks(id, sinks)
	return nil
}
