package rotate

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	defaultFileMode os.FileMode = 0o640
	defaultDirMode  os.FileMode = 0o750

	// flushSize is how many buffered bytes make Write flush on its own.
	flushSize = 64 << 10
	// bufSize is the capacity of a Writer's buffer: room for flushSize
	// bytes and the record that goes past them.
	bufSize = 2 * flushSize

	gzExt  = ".gz"
	tmpExt = ".tmp"
)

// ErrClosed is returned by Write and Flush once Close has been called.
var ErrClosed = errors.New("log writer closed")

// Config says when and how a Writer rotates its file. The zero value never
// rotates and uses the default permissions.
type Config struct {
	// MaxSize is the size in bytes at which the current file is rotated:
	// before a record is written, once the file (with the records still
	// buffered) holds MaxSize bytes or more. 0 never rotates.
	MaxSize int64
	// MaxFiles is how many files are kept, the current one included. 0 or 1
	// keeps no rotated file: rotation starts the current file afresh.
	MaxFiles int
	// Compress gzips rotated files as <name>.1.gz … in the background. It
	// takes effect only with MaxFiles >= 2.
	Compress bool
	// FileMode is the permission of the files created; 0 means 0640.
	FileMode os.FileMode
	// DirMode is the permission of the directories created; 0 means 0750.
	DirMode os.FileMode
}

// gzipMeta is the JSON that json-file stores in the Extra field of a rotated
// file's gzip header.
type gzipMeta struct {
	// LastTime is the time of the file's last record.
	LastTime time.Time `json:"lastTime"`
}

// Writer appends json-file records to the log file at its path and rotates
// the file by size as json-file does: <name> → <name>.1 → … → <name>.N-1,
// optionally gzipped. Records are buffered: readers see them once they are
// flushed.
//
// Write, Flush and Close must not be called concurrently with each other;
// any number of Read calls may follow the log at the same time.
type Writer struct {
	path string
	cfg  Config

	// The fields below belong to the caller of Write, Flush and Close.

	f           *os.File   // current file; nil until opened
	buf         []byte     // whole records not yet written to f; nil between bursts (bufPool)
	written     int64      // bytes in f, not counting buf
	midLine     bool       // f ends inside a record (a crash or a failed write cut it)
	shut        bool       // Close has been called
	compressing chan error // outcome of the running compression; nil if none
	compressErr error      // compression failures not yet reported

	// lost counts the records given to Write that are not in the file;
	// Lost reads it at any time.
	lost atomic.Uint64

	// mu guards the fields below: the state of the log that readers follow.
	mu      sync.Mutex
	rot     uint64        // rotations so far
	opened  bool          // the file at path is the current file, and size is valid
	size    int64         // bytes of the current file that readers may read
	closed  bool          // Close has written everything
	wake    chan struct{} // closed and replaced when the state changes
	waiting bool          // a reader holds wake
}

// NewWriter returns a Writer for the log file at path. Nothing is created
// on disk until the first Write of a record: then the parent directory is
// created if need be and path is opened for appending; the size of an
// existing file counts toward cfg.MaxSize.
func NewWriter(path string, cfg Config) *Writer {
	if cfg.FileMode == 0 {
		cfg.FileMode = defaultFileMode
	}
	if cfg.DirMode == 0 {
		cfg.DirMode = defaultDirMode
	}
	return &Writer{path: path, cfg: cfg, wake: make(chan struct{})}
}

// bufPool holds the buffers of Writers that have nothing buffered: a
// Writer takes one for a burst of records and gives it back at Flush, so
// that idle logs hold no buffer.
var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// Write buffers rec, which must be exactly one complete record such as
// AppendJSON makes. When the file has reached cfg.MaxSize, it is rotated
// first. The buffer is flushed once it holds about 64 KiB. rec is copied:
// the caller may reuse it.
func (w *Writer) Write(rec []byte) error {
	if w.shut {
		return ErrClosed
	}
	if len(rec) == 0 {
		return nil
	}
	if err := w.prepare(); err != nil {
		return err
	}
	w.buf = append(w.buf, rec...)
	return w.flushFull()
}

// WriteEntry buffers the record of e as enc.AppendJSON makes it, encoded
// straight into the buffer; otherwise it is Write.
func (w *Writer) WriteEntry(enc *Encoder, e *Entry, attrs []byte) error {
	if w.shut {
		return ErrClosed
	}
	if err := w.prepare(); err != nil {
		return err
	}
	w.buf = enc.AppendJSON(w.buf, e, attrs)
	return w.flushFull()
}

// prepare readies the file and the buffer for the next record: it takes a
// buffer, opens the file, and rotates it when it has reached cfg.MaxSize.
// A failure loses the record.
func (w *Writer) prepare() error {
	if w.buf == nil {
		w.buf = bufPool.Get().(*[bufSize]byte)[:0]
	}
	if w.f == nil {
		if err := w.open(); err != nil {
			w.lost.Add(1)
			return err
		}
	}
	if w.cfg.MaxSize > 0 && w.written+int64(len(w.buf)) >= w.cfg.MaxSize {
		if err := w.rotate(); err != nil {
			w.lost.Add(1)
			return err
		}
	}
	return nil
}

// flushFull flushes the buffer once it holds flushSize bytes.
func (w *Writer) flushFull() error {
	if len(w.buf) >= flushSize {
		return w.flush()
	}
	return nil
}

// release gives the buffer back to bufPool if it holds nothing, unless it
// grew past bufSize for a huge record: the garbage collector takes that one.
func (w *Writer) release() {
	if w.buf == nil || len(w.buf) > 0 {
		return
	}
	if cap(w.buf) == bufSize {
		bufPool.Put((*[bufSize]byte)(w.buf[:bufSize]))
	}
	w.buf = nil
}

// Lost returns how many records given to Write are not in the file: the
// file could not be opened or rotated, or writing them failed (a full
// disk; a record cut short counts as lost). It is safe to call at any
// time.
func (w *Writer) Lost() uint64 { return w.lost.Load() }

// Flush writes the buffered records to the file and wakes the readers that
// follow it. It also reports, once, the failure of an earlier background
// compression, which leaves that rotated file uncompressed.
func (w *Writer) Flush() error {
	if w.shut {
		return ErrClosed
	}
	w.reap(false)
	err := w.flush()
	w.release()
	return w.report(err)
}

// Close flushes the buffered records, waits for the background compression
// to end, closes the file and lets the readers that follow the log finish.
// Calls after the first return nil.
func (w *Writer) Close() error {
	if w.shut {
		return nil
	}
	w.shut = true
	err := w.flush()
	w.release()
	w.reap(true)
	if w.f != nil {
		if cerr := w.f.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close %q: %w", w.path, cerr))
		}
		w.f = nil
	}
	w.mu.Lock()
	w.closed = true
	w.notifyLocked()
	w.mu.Unlock()
	return w.report(err)
}

// open creates the directory and opens the file at w.path for appending.
// If an existing file ends in the middle of a line (a crash cut a write
// short), a newline is buffered first so that the next record is not glued
// to the broken one.
func (w *Writer) open() error {
	if err := os.MkdirAll(filepath.Dir(w.path), w.cfg.DirMode); err != nil {
		return fmt.Errorf("open %q: %w", w.path, err)
	}
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, w.cfg.FileMode)
	if err != nil {
		return fmt.Errorf("open %q: %w", w.path, err)
	}
	fi, err := f.Stat()
	var last [1]byte
	if err == nil && fi.Size() > 0 {
		_, err = f.ReadAt(last[:], fi.Size()-1)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("open %q: %w", w.path, err)
	}
	w.midLine = fi.Size() > 0 && last[0] != '\n'
	if w.midLine {
		w.buf = append(w.buf, '\n')
	}
	w.f, w.written = f, fi.Size()
	w.mu.Lock()
	w.opened, w.size = true, w.written
	w.notifyLocked()
	w.mu.Unlock()
	return nil
}

// flush writes the buffer to the file and publishes the new size. A failed
// write drops the buffered records; while the file ends inside a record, a
// newline stays buffered to end that broken line, also across writes that
// fail without writing anything (a full disk).
func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	// While the file ends inside a record, buf starts with the newline
	// that ends it, which is not a record.
	repair := w.midLine
	n, err := w.f.Write(w.buf)
	w.written += int64(n)
	if err != nil {
		lost := bytes.Count(w.buf[n:], []byte{'\n'})
		if repair && n == 0 {
			lost--
		}
		w.lost.Add(uint64(lost))
	}
	if n > 0 {
		w.midLine = w.buf[n-1] != '\n'
	}
	w.buf = w.buf[:0]
	if w.midLine {
		w.buf = append(w.buf, '\n')
	}
	w.mu.Lock()
	w.size = w.written
	w.notifyLocked()
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("write %q: %w", w.path, err)
	}
	return nil
}

// rotate moves the current file out of the way, starts compressing it if
// configured, and opens a new current file. It waits for the previous
// compression first, as json-file does, so that no file being compressed is
// ever renamed.
func (w *Writer) rotate() error {
	if err := w.flush(); err != nil {
		return err
	}
	w.reap(true)
	w.mu.Lock()
	err := w.shiftLocked()
	if err == nil {
		w.rot++
		w.opened, w.size = false, 0
		w.notifyLocked()
	}
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("rotate %q: %w", w.path, err)
	}
	err = w.f.Close()
	w.f, w.written = nil, 0
	if w.cfg.Compress && w.cfg.MaxFiles >= 2 {
		done := make(chan error, 1)
		name, mode := slotName(w.path, 1), w.cfg.FileMode
		go func() { done <- compressFile(name, mode) }()
		w.compressing = done
	}
	if err != nil {
		return fmt.Errorf("rotate %q: %w", w.path, err)
	}
	return w.open()
}

// shiftLocked renames the files of the log for a rotation. With MaxFiles < 2
// it removes the current file. Otherwise it removes the oldest kept rotated
// file, renames <name>.i to <name>.i+1 (whether compressed or not: a file
// left uncompressed by a crash is kept), then the current file to
// <name>.1. w.mu is held so that readers never see a half-renamed set.
func (w *Writer) shiftLocked() error {
	if w.cfg.MaxFiles < 2 {
		return ignoreNotExist(os.Remove(w.path))
	}
	top := slotName(w.path, w.cfg.MaxFiles-1)
	if err := errors.Join(ignoreNotExist(os.Remove(top)), ignoreNotExist(os.Remove(top+gzExt))); err != nil {
		return err
	}
	for i := w.cfg.MaxFiles - 1; i > 1; i-- {
		from, to := slotName(w.path, i-1), slotName(w.path, i)
		if err := errors.Join(ignoreNotExist(os.Rename(from, to)), ignoreNotExist(os.Rename(from+gzExt, to+gzExt))); err != nil {
			return err
		}
	}
	return ignoreNotExist(os.Rename(w.path, slotName(w.path, 1)))
}

// reap collects the outcome of the background compression, waiting for it
// to end if wait is set, and keeps a failure for Flush or Close to report.
func (w *Writer) reap(wait bool) {
	if w.compressing == nil {
		return
	}
	var err error
	if wait {
		err = <-w.compressing
	} else {
		select {
		case err = <-w.compressing:
		default:
			return
		}
	}
	w.compressing = nil
	w.compressErr = errors.Join(w.compressErr, err)
}

// report adds the compression failures not yet reported to err.
func (w *Writer) report(err error) error {
	err = errors.Join(err, w.compressErr)
	w.compressErr = nil
	return err
}

// wakeLocked returns a channel that is closed at the next change of the
// log's state. w.mu must be held.
func (w *Writer) wakeLocked() <-chan struct{} {
	w.waiting = true
	return w.wake
}

// notifyLocked wakes the readers waiting for a change of the log's state.
// w.mu must be held.
func (w *Writer) notifyLocked() {
	if w.waiting {
		close(w.wake)
		w.wake = make(chan struct{})
		w.waiting = false
	}
}

// maxSlots is the highest number of a rotated file the writer keeps.
func (w *Writer) maxSlots() int {
	return max(w.cfg.MaxFiles-1, 0)
}

// slotName is the name of the rotated file number i, without ".gz".
func slotName(path string, i int) string {
	return path + "." + strconv.Itoa(i)
}

// ignoreNotExist returns err unless it says that a file does not exist.
func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// compressFile replaces the file name with name.gz, whose gzip header
// carries the time of the last record as json-file writes it. The
// compressed data goes to a temporary file that is synced and renamed into
// place before name is removed, so a crash never loses the records: at
// worst both files remain, and readers prefer the uncompressed one.
func compressFile(name string, mode os.FileMode) error {
	src, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("compress %q: %w", name, err)
	}
	defer src.Close()
	tmp := name + gzExt + tmpExt
	if err := writeGzip(tmp, src, mode); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compress %q: %w", name, err)
	}
	if err := os.Rename(tmp, name+gzExt); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compress %q: %w", name, err)
	}
	if err := ignoreNotExist(os.Remove(name)); err != nil {
		return fmt.Errorf("compress %q: %w", name, err)
	}
	return nil
}

// writeGzip writes src gzipped to a new file named dst and syncs it.
func writeGzip(dst string, src *os.File, mode os.FileMode) error {
	last, err := lastTime(src)
	if err != nil {
		return err
	}
	meta, err := json.Marshal(gzipMeta{LastTime: last})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	zw.Extra = meta
	_, err = io.Copy(zw, src)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// lastTime returns the time of the last record in f, or the zero time if
// that record cannot be parsed.
func lastTime(f *os.File) (time.Time, error) {
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, err
	}
	start, n, err := tailStart(f, fi.Size(), 1, make([]byte, 4<<10))
	if err != nil || n == 0 {
		return time.Time{}, err
	}
	line := make([]byte, fi.Size()-start)
	if _, err := f.ReadAt(line, start); err != nil {
		return time.Time{}, err
	}
	var e Entry
	if ParseJSON(line, &e) != nil {
		return time.Time{}, nil
	}
	return e.Time, nil
}
