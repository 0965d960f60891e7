//go:build bench

package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// bulkReceiver is an Elasticsearch stand-in on 127.0.0.1 that only counts:
// it answers the health check (HEAD and GET /) and POST or PUT /_bulk and
// /{index}/_bulk, counting two NDJSON lines per document (logferry sends
// only create actions, each with its source) and answering 200 with one
// "201 created" item per document, shaped as Elasticsearch 7 shapes them
// (filtered, as Elasticsearch filters it, when the request has a
// filter_path), so that the sender decodes a realistic answer. It keeps
// the _bulk contract of forward/elasticsearch/estest for the requests
// logferry makes, but stores and checks nothing: its cost is reading the
// body and writing the answer.
//
// Its goroutine is started by startBulkReceiver and stopped and waited for
// by close.
type bulkReceiver struct {
	*localServer

	docs, requests, bad atomic.Int64
	bufs                sync.Pool // *bytes.Buffer
}

// bulkItem is one item of the answer, as Elasticsearch 7 writes it for a
// create (the _index and _id are not echoed: the sender ignores them), and
// filteredItem the same with filter_path=errors,items.*.status,items.*.error
// (or any filter_path: the receiver does not parse it), as logferry asks.
const (
	bulkItem = `{"create":{"_index":"docker-bench","_type":"_doc","_id":"bench","_version":1,"result":"created",` +
		`"_shards":{"total":1,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}}`
	filteredItem = `{"create":{"status":201}}`
)

func startBulkReceiver() (*bulkReceiver, error) {
	r := &bulkReceiver{}
	r.bufs.New = func() any { return new(bytes.Buffer) }
	var err error
	r.localServer, err = serveLocal("elasticsearch", r)
	return r, err
}

// url is the receiver's base URL, as elasticsearch-url takes it.
func (r *bulkReceiver) url() string { return r.base() }

// count returns the documents received so far.
func (r *bulkReceiver) count() int64 { return r.docs.Load() }

// failures returns the number of requests it refused.
func (r *bulkReceiver) failures() int64 { return r.bad.Load() }

func (r *bulkReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	path := strings.Trim(req.URL.Path, "/")
	switch {
	case path == "" && (req.Method == http.MethodHead || req.Method == http.MethodGet):
		w.Header().Set("Content-Type", "application/json")
		if req.Method == http.MethodGet {
			io.WriteString(w, `{"name":"bench","cluster_name":"bench","version":{"number":"7.17.0","build_flavor":"default"},"tagline":"You Know, for Search"}`)
		}
	case (path == "_bulk" || strings.HasSuffix(path, "/_bulk") && strings.Count(path, "/") == 1) &&
		(req.Method == http.MethodPost || req.Method == http.MethodPut):
		r.bulk(w, req)
	default:
		r.bad.Add(1)
		http.Error(w, `{"error":"not served by the benchmark"}`, http.StatusNotFound)
	}
}

func (r *bulkReceiver) bulk(w http.ResponseWriter, req *http.Request) {
	buf := r.bufs.Get().(*bytes.Buffer)
	defer r.bufs.Put(buf)
	buf.Reset()
	body := io.Reader(req.Body)
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			r.refuse(w, err)
			return
		}
		defer zr.Close()
		body = zr
	}
	if _, err := buf.ReadFrom(body); err != nil {
		r.refuse(w, err)
		return
	}
	b := buf.Bytes()
	lines := bytes.Count(b, []byte{'\n'})
	if len(b) == 0 || b[len(b)-1] != '\n' || lines%2 != 0 {
		r.refuse(w, errors.New("want create actions, each with its source, ending with a newline"))
		return
	}
	n := lines / 2
	head, it := `{"took":1,"errors":false,"items":[`, bulkItem
	if req.URL.Query().Get("filter_path") != "" {
		head, it = `{"errors":false,"items":[`, filteredItem
	}
	// The answer replaces the body in the buffer.
	buf.Reset()
	buf.Grow(64 + n*(len(it)+1))
	buf.WriteString(head)
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(it)
	}
	buf.WriteString("]}")
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(buf.Bytes()); err != nil {
		return
	}
	r.requests.Add(1)
	r.docs.Add(int64(n))
}

func (r *bulkReceiver) refuse(w http.ResponseWriter, err error) {
	r.bad.Add(1)
	http.Error(w, fmt.Sprintf(`{"error":%q}`, err.Error()), http.StatusBadRequest)
}
