//go:build bench

package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// countLines returns the number of newline-terminated records in a
// json-file log (Docker's or logferry's).
func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("count records: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	n := 0
	for {
		m, err := f.Read(buf)
		n += bytes.Count(buf[:m], []byte{'\n'})
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("count records in %q: %w", path, err)
		}
	}
}

// countFrames returns the number of complete records in a log of Docker's
// local driver: each a big-endian uint32 size, a protobuf entry of that
// size and the size again.
func countFrames(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("count records: %w", err)
	}
	defer f.Close()
	return countFramesIn(bufio.NewReaderSize(f, 1<<20))
}

func countFramesIn(r *bufio.Reader) (int, error) {
	n := 0
	for {
		head, err := r.Peek(4)
		if len(head) < 4 {
			if errors.Is(err, io.EOF) {
				return n, nil // a partial header is a record not yet written
			}
			return n, fmt.Errorf("count records: %w", err)
		}
		size := int(binary.BigEndian.Uint32(head))
		skipped, err := r.Discard(4 + size + 4)
		if skipped < 4+size+4 {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, fmt.Errorf("count records: %w", err)
		}
		n++
	}
}
