package diskq

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrLocked is returned by FS.Lock when another queue holds the lock.
var ErrLocked = errors.New("locked by another queue")

// FS is what a Queue needs from the file system. The default is the
// operating system's; tests inject failures (a full disk) through it.
type FS interface {
	Mkdir(path string, perm fs.FileMode) error
	MkdirAll(path string, perm fs.FileMode) error
	ReadDir(path string) ([]fs.DirEntry, error)
	OpenFile(path string, flag int, perm fs.FileMode) (File, error)
	Remove(path string) error
	// Rename renames a directory; it fails if newpath is a directory
	// that is not empty.
	Rename(oldpath, newpath string) error
	// Lock takes an exclusive lock on the file at path, creating it, and
	// returns ErrLocked at once if another holder has it (in this
	// process too). Closing the result releases it.
	Lock(path string) (io.Closer, error)
}

// File is an open file of an FS; *os.File is one.
type File interface {
	io.ReaderAt
	io.Writer
	io.WriterAt
	Truncate(size int64) error
	Sync() error
	Stat() (fs.FileInfo, error)
	Close() error
}

// OSFS is the operating system's file system.
type OSFS struct{}

func (OSFS) Mkdir(path string, perm fs.FileMode) error    { return os.Mkdir(path, perm) }
func (OSFS) MkdirAll(path string, perm fs.FileMode) error { return os.MkdirAll(path, perm) }
func (OSFS) ReadDir(path string) ([]fs.DirEntry, error)   { return os.ReadDir(path) }
func (OSFS) Remove(path string) error                     { return os.Remove(path) }
func (OSFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }

func (OSFS) OpenFile(path string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err // a nil *os.File must not become a non-nil File
	}
	return f, nil
}

// Lock uses flock(2), which is held by the open file, so that two queues
// of one process exclude each other as two processes do, and the kernel
// releases it when the process dies.
func (OSFS) Lock(path string) (io.Closer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

const (
	dirPerm  = 0o750
	filePerm = 0o640
)
