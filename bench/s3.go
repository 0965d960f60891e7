//go:build bench

package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
	body := io.Reader(req.Body)
	if strings.HasPrefix(req.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
		// Over plain HTTP minio-go signs the body chunk by chunk
		// (aws-chunked), as S3 allows.
		body = &awsChunked{r: bufio.NewReader(req.Body)}
	}
	zr, err := gzip.NewReader(body)
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

// awsChunked reads the payload of an aws-chunked body: chunks of
// "<hex size>;chunk-signature=<sig>\r\n<data>\r\n", the last of size 0,
// then optional trailers. It checks no signature.
type awsChunked struct {
	r    *bufio.Reader
	left int64 // bytes of the current chunk not yet read
	done bool
}

func (c *awsChunked) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("aws-chunked header: %w", err)
		}
		size, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		n, err := strconv.ParseInt(size, 16, 64)
		if err != nil {
			return 0, fmt.Errorf("aws-chunked size %q: %w", size, err)
		}
		if n == 0 {
			c.done = true
			continue
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left == 0 && err == nil {
		_, err = c.r.Discard(2) // the chunk's \r\n
	}
	return n, err
}
