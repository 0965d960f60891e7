//go:build bench

package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// s3Receiver is an S3 stand-in on 127.0.0.1 that only counts: it answers
// PUT /{bucket}/{key} (path style, as s3-path-style=true addresses it) with
// 200 and an ETag, and counts the NDJSON lines of the gzip body, so that
// the plugin's cost is measured, not a store's. It checks no signature:
// end-to-end tests run a real S3 server for that (e2e/s3_test.go).
//
// Its goroutine is started by startS3Receiver and stopped and waited for
// by close.
type s3Receiver struct {
	*localServer

	lines, objects, bad atomic.Int64
	bufs                sync.Pool // *bytes.Buffer
}

func startS3Receiver() (*s3Receiver, error) {
	r := &s3Receiver{}
	r.bufs.New = func() any { return new(bytes.Buffer) }
	var err error
	r.localServer, err = serveLocal("s3", r)
	return r, err
}

// endpoint is the receiver's address, as s3-endpoint takes it.
func (r *s3Receiver) endpoint() string { return r.base() }

// count returns the lines received so far.
func (r *s3Receiver) count() int64 { return r.lines.Load() }

func (r *s3Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPut || strings.Count(strings.Trim(req.URL.Path, "/"), "/") < 1 {
		r.bad.Add(1)
		http.Error(w, "not served by the benchmark", http.StatusNotImplemented)
		return
	}
	buf := r.bufs.Get().(*bytes.Buffer)
	defer r.bufs.Put(buf)
	buf.Reset()
	zr, err := gzip.NewReader(req.Body)
	if err == nil {
		_, err = buf.ReadFrom(zr)
	}
	if err != nil {
		r.bad.Add(1)
		http.Error(w, "want a gzip body: "+err.Error(), http.StatusBadRequest)
		return
	}
	_, _ = io.Copy(io.Discard, req.Body)
	w.Header().Set("ETag", `"bench"`)
	w.WriteHeader(http.StatusOK)
	r.objects.Add(1)
	r.lines.Add(int64(bytes.Count(buf.Bytes(), []byte{'\n'})))
}
