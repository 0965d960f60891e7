package rotate

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"time"
)

// ReadConfig selects the records that Read delivers.
type ReadConfig struct {
	// Tail is how many of the existing records to deliver, counted from the
	// end of the log across all its files: < 0 delivers all of them, 0 none.
	Tail int
	// Since, unless zero, skips the records whose time is before it.
	Since time.Time
	// Until, unless zero, ends reading at the first record whose time is
	// after it.
	Until time.Time
	// Follow keeps delivering the records written after Read was called,
	// until the Writer is closed. It needs the Writer of the log.
	Follow bool
	// Idle, if not nil, is called while following each time every record
	// flushed so far has been delivered and Read is about to wait for
	// more: when to push what the caller of Read buffered to its reader.
	Idle func()
}

// errUntil ends a read at a record after ReadConfig.Until.
var errUntil = errors.New("record after the until time")

// blockSize is the size of the buffers that files are read through.
const blockSize = 32 << 10

// Read calls fn for each record of the log at path, oldest first: from
// path.N or path.N.gz down to path.1 or path.1.gz, then path. Missing files
// hold no records; a record that cannot be parsed is skipped, and so is the
// rest of a damaged compressed file. fn must not keep e after it returns;
// e.Line may be kept.
//
// w, if not nil, is the Writer of the log at path: the files are then opened
// at a moment when no rotation is under way, only the rotated files that w
// keeps are read, and the current file is read up to the last flushed
// record. Without w, rotated files are read from path.1 up to the first
// missing one.
//
// With cfg.Follow and w not nil, Read then waits for the file to exist if it
// does not yet, and delivers each record flushed later, across rotations and
// compression, until w is closed (it returns nil once it has delivered
// everything written before Close), ctx is done (it returns ctx.Err()) or fn
// returns an error (it returns that error). A follower that falls more than
// one file behind reads the rotated files it missed while w keeps them.
//
// Read returns nil when it reaches a record after cfg.Until.
func Read(ctx context.Context, path string, cfg ReadConfig, w *Writer, fn func(e *Entry) error) error {
	r := reader{cfg: cfg, fn: fn}
	err := r.run(ctx, path, w)
	if errors.Is(err, errUntil) {
		return nil
	}
	return err
}

// reader holds the state and the buffers of one Read.
type reader struct {
	cfg   ReadConfig
	fn    func(*Entry) error
	entry Entry
	lines lineReader
	zr    gzip.Reader
	block []byte
}

// source is a file to deliver records from, and which part of it.
type source struct {
	f  *os.File
	gz bool
	// start and end delimit the bytes of an uncompressed file to read.
	start, end int64
	// skip is how many of a compressed file's first lines to leave out.
	skip int
}

// snapshot is the files of a log opened at one moment.
type snapshot struct {
	rotated []source // oldest first
	cur     *os.File // the current file; nil if it does not exist
	end     int64    // how much of cur can be read
	rot     uint64   // the writer's rotation count
}

func (r *reader) run(ctx context.Context, path string, w *Writer) error {
	s, err := takeSnapshot(path, w, r.cfg.Tail != 0)
	if err != nil {
		return err
	}
	if r.cfg.Tail != 0 {
		srcs := s.rotated
		if s.cur != nil {
			srcs = append(srcs, source{f: s.cur, end: s.end})
		}
		err = r.readExisting(ctx, srcs)
	}
	closeSources(s.rotated)
	if err != nil || !r.cfg.Follow || w == nil {
		closeFile(s.cur)
		return err
	}
	return r.follow(ctx, path, w, s.cur, s.rot, s.end)
}

// takeSnapshot opens the current file of the log at path and, with
// withRotated, its rotated files. Holding w.mu keeps the writer from
// renaming files meanwhile.
func takeSnapshot(path string, w *Writer, withRotated bool) (snapshot, error) {
	var s snapshot
	hi := -1
	if w != nil {
		hi = w.maxSlots()
		w.mu.Lock()
		defer w.mu.Unlock()
		s.rot = w.rot
	}
	var err error
	if withRotated {
		if s.rotated, err = openRotated(path, hi); err != nil {
			return snapshot{}, err
		}
	}
	if s.cur, err = openIfExists(path); err != nil {
		closeSources(s.rotated)
		return snapshot{}, err
	}
	switch {
	case s.cur == nil:
	case w != nil && w.opened:
		s.end = w.size
	default:
		fi, err := s.cur.Stat()
		if err != nil {
			closeSources(s.rotated)
			closeFile(s.cur)
			return snapshot{}, fmt.Errorf("read %q: %w", path, err)
		}
		s.end = fi.Size()
	}
	return s, nil
}

// readExisting delivers the records of srcs (oldest first) that r.cfg.Tail
// and r.cfg.Since select.
func (r *reader) readExisting(ctx context.Context, srcs []source) error {
	srcs, err := r.plan(srcs)
	if err != nil {
		return err
	}
	for _, s := range srcs {
		if err := r.deliverSource(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// plan returns the newest part of srcs to read, with the start of each
// file set for r.cfg.Tail. Going back from the newest file, it stops at a
// compressed file whose header says that its last record is before
// r.cfg.Since: that file and the older ones have nothing to deliver.
// Uncompressed files are searched for their tail backwards; compressed
// ones have their lines counted.
func (r *reader) plan(srcs []source) ([]source, error) {
	need := r.cfg.Tail
	for i := len(srcs) - 1; i >= 0; i-- {
		if need == 0 {
			return srcs[i+1:], nil
		}
		s := &srcs[i]
		if !s.gz {
			if need > 0 {
				start, n, err := tailStart(s.f, s.end, need, r.buffer())
				if err != nil {
					return nil, fmt.Errorf("read %q: %w", s.f.Name(), err)
				}
				s.start = start
				need -= n
			}
			continue
		}
		if need < 0 && r.cfg.Since.IsZero() {
			continue
		}
		rd, last, err := r.gunzip(s.f)
		if err != nil {
			return nil, err
		}
		if !last.IsZero() && last.Before(r.cfg.Since) {
			return srcs[i+1:], nil
		}
		if need > 0 {
			n, err := countLines(rd, r.buffer())
			if err != nil {
				return nil, fmt.Errorf("read %q: %w", s.f.Name(), err)
			}
			s.skip = max(n-need, 0)
			need -= n - s.skip
		}
	}
	return srcs, nil
}

// follow delivers the records written after the snapshot: cur (possibly
// nil) is the current file at rotation count rot, read up to off.
func (r *reader) follow(ctx context.Context, path string, w *Writer, cur *os.File, rot uint64, off int64) error {
	defer func() { closeFile(cur) }()
	for {
		w.mu.Lock()
		newRot, size, opened, closed := w.rot, w.size, w.opened, w.closed
		wake := w.wakeLocked()
		var (
			missed []source
			next   *os.File
			err    error
		)
		rotated := newRot != rot
		if rotated {
			// The file current at rot is now number newRot-rot; the
			// ones after it follow down to number 1.
			n := newRot - rot
			if cur != nil {
				n-- // already open
			}
			missed, err = openRotated(path, int(min(n, uint64(w.maxSlots()))))
		}
		if err == nil && opened && (rotated || cur == nil) {
			next, err = openIfExists(path)
		}
		w.mu.Unlock()
		if err != nil {
			closeSources(missed)
			return err
		}

		if rotated {
			if cur != nil {
				missed = slices.Insert(missed, 0, source{f: cur, start: off, end: math.MaxInt64})
			}
			for _, s := range missed {
				if err == nil {
					err = r.deliverSource(ctx, s)
				}
			}
			closeSources(missed)
			cur, rot, off = next, newRot, 0
			if err != nil {
				return err
			}
		} else if next != nil {
			cur, off = next, 0
		}
		if cur != nil && opened && size > off {
			if err := r.deliver(ctx, cur.Name(), io.NewSectionReader(cur, off, size-off), 0); err != nil {
				return err
			}
			off = size
		}
		if closed {
			return nil
		}
		if r.cfg.Idle != nil {
			r.cfg.Idle()
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// deliverSource delivers the records of s.
func (r *reader) deliverSource(ctx context.Context, s source) error {
	if !s.gz {
		return r.deliver(ctx, s.f.Name(), io.NewSectionReader(s.f, s.start, s.end-s.start), 0)
	}
	rd, _, err := r.gunzip(s.f)
	if err != nil {
		return err
	}
	return r.deliver(ctx, s.f.Name(), rd, s.skip)
}

// deliver parses the lines of rd, leaving out the first skip non-empty
// ones, and calls r.fn for the records that r.cfg selects. It returns
// errUntil at a record after r.cfg.Until.
func (r *reader) deliver(ctx context.Context, name string, rd io.Reader, skip int) error {
	done := ctx.Done()
	r.lines.reset(rd)
	for {
		line, err := r.lines.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %q: %w", name, err)
		}
		if len(line) == 0 {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		select {
		case <-done:
			return ctx.Err()
		default:
		}
		if ParseJSON(line, &r.entry) != nil {
			continue
		}
		if !r.cfg.Since.IsZero() && r.entry.Time.Before(r.cfg.Since) {
			continue
		}
		if !r.cfg.Until.IsZero() && r.entry.Time.After(r.cfg.Until) {
			return errUntil
		}
		if err := r.fn(&r.entry); err != nil {
			return err
		}
	}
}

// gunzip returns the decompressed content of f from its start, and the
// time of its last record that the gzip header gives (zero if unknown). A
// file that is not gzip reads as empty, and decompression stops quietly
// where the data is damaged.
func (r *reader) gunzip(f *os.File) (io.Reader, time.Time, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, time.Time{}, fmt.Errorf("read %q: %w", f.Name(), err)
	}
	if err := r.zr.Reset(f); err != nil {
		if errors.Is(err, io.EOF) || damaged(err) {
			return bytes.NewReader(nil), time.Time{}, nil
		}
		return nil, time.Time{}, fmt.Errorf("read %q: %w", f.Name(), err)
	}
	var meta gzipMeta
	if json.Unmarshal(r.zr.Header.Extra, &meta) != nil {
		meta = gzipMeta{}
	}
	return stopAtDamage{&r.zr}, meta.LastTime, nil
}

// buffer returns the block buffer of r.
func (r *reader) buffer() []byte {
	if r.block == nil {
		r.block = make([]byte, blockSize)
	}
	return r.block
}

// stopAtDamage reads from a decompressor and reports the end of the data
// where it finds the data damaged.
type stopAtDamage struct{ r io.Reader }

func (s stopAtDamage) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && damaged(err) {
		err = io.EOF
	}
	return n, err
}

// damaged tells whether err reports damaged or truncated gzip data.
func damaged(err error) bool {
	var corrupt flate.CorruptInputError
	return errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &corrupt)
}

// openRotated opens the rotated files of the log at path from number hi
// down to number 1, each uncompressed if it exists, else compressed, and
// skips the missing ones. With hi < 0 it opens the files from number 1 up
// to the first missing one. The result is oldest first.
func openRotated(path string, hi int) ([]source, error) {
	var out []source
	for i := 1; hi < 0 || i <= hi; i++ {
		s, err := openSlot(slotName(path, i))
		if err != nil {
			closeSources(out)
			return nil, err
		}
		if s.f == nil {
			if hi < 0 {
				break
			}
			continue
		}
		out = append(out, s)
	}
	slices.Reverse(out)
	return out, nil
}

// openSlot opens name, or else name.gz; its source has no file if neither
// exists.
func openSlot(name string) (source, error) {
	f, err := openIfExists(name)
	if err != nil || f != nil {
		if err != nil {
			return source{}, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return source{}, fmt.Errorf("read %q: %w", name, err)
		}
		return source{f: f, end: fi.Size()}, nil
	}
	f, err = openIfExists(name + gzExt)
	return source{f: f, gz: true}, err
}

// openIfExists opens name for reading, or returns nil if it does not exist.
func openIfExists(name string) (*os.File, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", name, err)
	}
	return f, nil
}

func closeSources(srcs []source) {
	for _, s := range srcs {
		closeFile(s.f)
	}
}

// closeFile closes f, if any. Files are only read: there is nothing to lose.
func closeFile(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// tailStart returns the offset in f of the first of the last n non-empty
// lines before offset end, and how many lines, up to n, follow it. It reads
// f backwards in blocks of len(buf) bytes.
func tailStart(f io.ReaderAt, end int64, n int, buf []byte) (int64, int, error) {
	count := 0
	partial := false // bytes seen after the newline being looked for
	for pos := end; pos > 0; {
		size := min(int64(len(buf)), pos)
		pos -= size
		b := buf[:size]
		if m, err := f.ReadAt(b, pos); m < len(b) {
			return 0, 0, err
		}
		for {
			i := bytes.LastIndexByte(b, '\n')
			if i < 0 {
				partial = partial || len(b) > 0
				break
			}
			if i < len(b)-1 || partial {
				count++
				if count == n {
					return pos + int64(i) + 1, count, nil
				}
			}
			partial = false
			b = b[:i]
		}
	}
	if partial {
		count++
	}
	return 0, count, nil
}

// countLines returns how many non-empty lines rd holds, reading it through
// buf.
func countLines(rd io.Reader, buf []byte) (int, error) {
	count := 0
	partial := false // bytes seen since the last newline
	for {
		m, err := rd.Read(buf)
		for b := buf[:m]; len(b) > 0; {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				partial = true
				break
			}
			if i > 0 || partial {
				count++
			}
			partial = false
			b = b[i+1:]
		}
		if errors.Is(err, io.EOF) {
			if partial {
				count++
			}
			return count, nil
		}
		if err != nil {
			return count, err
		}
	}
}

// lineReader splits a stream into lines, reusing its buffers from one
// stream to the next.
type lineReader struct {
	br   *bufio.Reader
	long []byte // assembles a line longer than br's buffer
}

func (l *lineReader) reset(rd io.Reader) {
	if l.br == nil {
		l.br = bufio.NewReaderSize(rd, blockSize)
		return
	}
	l.br.Reset(rd)
}

// next returns the next line without its "\n"; the last line may lack one.
// The line is valid until the next call. At the end it returns io.EOF.
func (l *lineReader) next() ([]byte, error) {
	line, err := l.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		l.long = append(l.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = l.br.ReadSlice('\n')
			l.long = append(l.long, line...)
		}
		line = l.long
	}
	switch {
	case err == nil:
		return line[:len(line)-1], nil
	case errors.Is(err, io.EOF) && len(line) > 0:
		return line, nil
	default:
		return nil, err
	}
}
