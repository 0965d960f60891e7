package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// streamState is what a restarted plugin needs to reopen a stream: dockerd
// never calls StartLogging again after the plugin restarts, and keeps
// writing into the same FIFOs.
type streamState struct {
	File string
	Info Info
	// Clean is set when the plugin stopped gracefully: it read the FIFO up
	// to a frame boundary, or up to Pending, the start of the next frame.
	// Otherwise the next process resynchronises on the first whole frame.
	Clean   bool   `json:",omitempty"`
	Pending []byte `json:",omitempty"`
}

const stateSuffix = ".json"

func (d *Driver) statePath(fifo string) string {
	return filepath.Join(d.cfg.StateDir, filepath.Base(fifo)+stateSuffix)
}

// saveState records st, replacing the file atomically.
func (d *Driver) saveState(st *streamState) error {
	if d.cfg.StateDir == "" {
		return nil
	}
	if err := os.MkdirAll(d.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("save stream state: %w", err)
	}
	if err := writeJSON(d.statePath(st.File), st); err != nil {
		return fmt.Errorf("save stream state: %w", err)
	}
	return nil
}

// writeJSON writes v as JSON to path, replacing the file atomically.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// dropState forgets the stream of fifo.
func (d *Driver) dropState(fifo string) {
	if d.cfg.StateDir == "" {
		return
	}
	if err := os.Remove(d.statePath(fifo)); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Error("remove stream state", "fifo", fifo, "error", err)
	}
}

// Recover reopens the FIFOs that an earlier process of the plugin was
// reading when it stopped or crashed, so that running containers keep
// logging to their files and destinations. A FIFO that dockerd no longer
// writes to is drained and forgotten. It returns how many streams it
// resumed; call it before serving requests.
func (d *Driver) Recover() (int, error) {
	if d.cfg.StateDir == "" {
		return 0, nil
	}
	entries, err := os.ReadDir(d.cfg.StateDir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("recover streams: %w", err)
	}
	resumed := 0
	var errs []error
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), stateSuffix) {
			continue
		}
		path := filepath.Join(d.cfg.StateDir, e.Name())
		ok, err := d.recoverOne(path)
		if err != nil {
			errs = append(errs, err)
			if rerr := os.Remove(path); rerr != nil {
				errs = append(errs, rerr)
			}
			continue
		}
		if ok {
			resumed++
		}
	}
	return resumed, errors.Join(errs...)
}

// recoverOne resumes the stream recorded at path; ok is false when there
// was nothing to resume.
func (d *Driver) recoverOne(path string) (ok bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("recover stream: %w", err)
	}
	var st streamState
	if err := json.Unmarshal(b, &st); err != nil {
		return false, fmt.Errorf("recover stream %q: %w", path, err)
	}
	if filepath.Base(st.File)+stateSuffix != filepath.Base(path) {
		return false, fmt.Errorf("recover stream %q: names fifo %q", path, st.File)
	}
	probe, data, live, err := probeFIFO(st.File)
	if errors.Is(err, os.ErrNotExist) {
		d.dropState(st.File)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r := resume{
		prefix: append(st.Pending, data...),
		resync: !st.Clean,
		stale:  !live,
		probe:  probe,
	}
	if r.stale && len(r.prefix) == 0 {
		probe.Close()
		d.dropState(st.File)
		return false, nil
	}
	if err := d.start(st.File, &st.Info, r); err != nil {
		return false, fmt.Errorf("recover stream %q: %w", st.File, err)
	}
	d.log.Info("resumed stream after restart", "container", st.Info.ContainerID[:12], "fifo", st.File, "stale", r.stale)
	return true, nil
}

// maxProbe bounds what probeFIFO reads while dockerd keeps writing.
const maxProbe = 4 << 20

// probeFIFO opens the FIFO at path for reading, without blocking, and tells
// whether a writer still holds it open: with no writer, reading it returns
// end-of-file once it is empty; with one, it reports that it would block.
// What it reads on the way is returned in data. The returned file must stay
// open until the stream's own reader is open, so that dockerd never finds
// the FIFO without a reader.
func probeFIFO(path string) (probe *os.File, data []byte, live bool, err error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, false, fmt.Errorf("probe fifo %q: %w", path, err)
	}
	probe = os.NewFile(uintptr(fd), path)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		probe.Close()
		return nil, nil, false, fmt.Errorf("probe fifo %q: %w", path, errNotFIFO)
	}
	buf := make([]byte, 64<<10)
	for len(data) < maxProbe {
		n, err := syscall.Read(fd, buf)
		switch {
		case n > 0:
			data = append(data, buf[:n]...)
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			return probe, data, true, nil
		case err != nil:
			probe.Close()
			return nil, nil, false, fmt.Errorf("probe fifo %q: %w", path, err)
		default:
			return probe, data, false, nil
		}
	}
	return probe, data, true, nil
}
