package elasticsearch

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// errNoDeadLetter is returned by deadLetter.write when no file is set.
var errNoDeadLetter = errors.New("no dead-letter file")

// errDeadLetterFull is returned by deadLetter.write past its size limit.
var errDeadLetterFull = errors.New("dead-letter file full")

// deadLetter appends the documents Elasticsearch refused for good to a
// file, one JSON object a line:
//
//	{"time":…,"index":…,"_id":…,"status":400,
//	 "error":{"type":…,"reason":…},"document":{…}}
//
// The file is opened on the first write (mode 0640) and kept open.
type deadLetter struct {
	path string
	max  int64

	// mu guards f and size.
	mu   sync.Mutex
	f    *os.File
	size int64
}

type deadLetterRecord struct {
	Time   string          `json:"time"`
	Index  string          `json:"index"`
	ID     string          `json:"_id"`
	Status int             `json:"status"`
	Error  deadLetterError `json:"error"`
	Doc    json.RawMessage `json:"document"`
}

type deadLetterError struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

func (d *deadLetter) write(a *action, r itemResult) error {
	if d.path == "" {
		return errNoDeadLetter
	}
	line, err := json.Marshal(deadLetterRecord{
		Time:   time.Now().UTC().Format(time.RFC3339Nano),
		Index:  a.index,
		ID:     string(a.id()),
		Status: r.status,
		Error:  deadLetterError{Type: r.errType, Reason: r.reason},
		Doc:    json.RawMessage(a.doc()),
	})
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	line = append(line, '\n')

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("open dead-letter file: %w", err)
		}
		// The umask may have taken group read away; the file sits beside
		// the container's logs and is read like them.
		if err := f.Chmod(0o640); err != nil {
			f.Close()
			return fmt.Errorf("chmod dead-letter file: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("stat dead-letter file: %w", err)
		}
		d.f, d.size = f, st.Size()
	}
	if d.size+int64(len(line)) > d.max {
		return errDeadLetterFull
	}
	n, err := d.f.Write(line)
	d.size += int64(n)
	if err != nil {
		return fmt.Errorf("write dead-letter file: %w", err)
	}
	return nil
}

func (d *deadLetter) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	if err != nil {
		return fmt.Errorf("close dead-letter file: %w", err)
	}
	return nil
}
