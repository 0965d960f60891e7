// Package estest runs a stand-in for an Elasticsearch node on 127.0.0.1, for
// tests, as net/http/httptest does for HTTP servers. It keeps Elasticsearch's
// _bulk contract (ES 7 and 8 REST API, which OpenSearch serves too):
//
//   - POST or PUT /_bulk and /{index}/_bulk take NDJSON: an action line
//     (index, create, delete; update is refused) and, but for delete, a
//     source line; the body must end with a newline and be sent as
//     Content-Type application/x-ndjson (stricter than Elasticsearch, which
//     also takes application/json), gzip-compressed when Content-Encoding
//     says gzip. A malformed body fails the whole request with 400.
//   - The answer is 200 with "errors" and one "items" entry per action, each
//     with its own "status" and, on failure, "error" {"type","reason"}
//     (filtered as the filter_path parameter says, see filterPath):
//     429 es_rejected_execution_exception for a configurable share of the
//     documents, 409 version_conflict_engine_exception on create of an _id
//     that exists, 400 mapper_parsing_exception when a document does not fit
//     its index's mapping, 400 invalid_index_name_exception.
//   - Mappings are dynamic, as Elasticsearch's: the first value of a field
//     fixes its type (object, long, double, boolean, text), and index
//     templates (PUT /_index_template/{name} and legacy /_template/{name})
//     give the mappings of the indices they match, date fields included.
//   - Whole-request failures: 503 for every request while the server is
//     unavailable, 401 without the configured credentials, connections
//     refused while stopped, and answers lost after the documents were
//     stored.
//   - HEAD and GET / (health checks, version, and Options.Distribution),
//     GET /_nodes/http (sniffing).
//   - Lifecycle policies, checked as their APIs define them (see
//     lifecycle.go): PUT /_ilm/policy/{name} on Elasticsearch; on
//     OpenSearch PUT and GET /_plugins/_ism/policies/{name}, where
//     replacing a policy needs its if_seq_no and if_primary_term (409
//     otherwise). Each distribution answers the other's API 404.
//
// Documents are kept per index for assertions and survive Stop and Start,
// as on a node with persistent storage.
package estest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Server. The zero value serves plain HTTP without
// authentication and accepts every valid document.
type Options struct {
	// RejectRate is the share of bulk items, 0 to 1, answered 429
	// es_rejected_execution_exception; see also Server.SetRejectRate.
	RejectRate float64
	// Seed makes the choice of rejected items repeatable.
	Seed uint64
	// Username and Password, when set, are required as basic auth; APIKey,
	// when set, as "Authorization: ApiKey <APIKey>". Either one is enough
	// when both are configured.
	Username, Password, APIKey string
	// MappingError, when set, is asked about every document that is about
	// to be stored: a non-empty reason rejects it with 400
	// mapper_parsing_exception, on top of the dynamic mapping's own checks.
	MappingError func(index string, doc map[string]any) (reason string)
	// TLS serves HTTPS with a self-signed certificate for 127.0.0.1, ::1
	// and localhost; see Server.CACertPEM.
	TLS bool
	// Version is the version number GET / reports; default "7.17.0", or
	// "2.17.0" for OpenSearch.
	Version string
	// Distribution is Elasticsearch (the default) or OpenSearch, as GET /
	// reports it; it decides which lifecycle API the server has: ILM
	// (PUT _ilm/policy/{name}) or ISM (_plugins/_ism/policies/{name}).
	Distribution string
	// MaxRequests bounds the requests kept for Server.Requests; default
	// 1000.
	MaxRequests int
	// MaxContentLength answers bodies longer than this many bytes (as
	// sent) with 413, as http.max_content_length does; 0 for no limit.
	MaxContentLength int
	// IndexRate, when positive, makes the server a cluster under load: it
	// indexes at most IndexRate documents a second, one after the other,
	// and holds at most QueueDocs documents waiting to be indexed (a
	// write queue); the items of a bulk request that do not fit in the
	// queue are answered 429 es_rejected_execution_exception, and the
	// answer comes once the items admitted are indexed. QueueDocs defaults
	// to a tenth of a second's worth. See also Server.SetIndexRate.
	IndexRate float64
	QueueDocs int
}

// Document is a stored document.
type Document struct {
	Index string
	ID    string
	// Source is the document as it was sent.
	Source json.RawMessage
	// Pipeline is the ingest pipeline the request named, if any.
	Pipeline string
}

// Fields decodes Source (numbers as json.Number).
func (d Document) Fields() map[string]any {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(d.Source))
	dec.UseNumber()
	_ = dec.Decode(&m)
	return m
}

// Request is what the server recorded about a request it received.
type Request struct {
	Method string
	Path   string
	Query  string
	Header http.Header
}

// Stats counts what the server answered.
type Stats struct {
	Requests      int // every request
	BulkRequests  int // _bulk requests answered 200
	Items         int // bulk items answered
	Created       int // 201
	Conflicts     int // 409
	Rejected      int // 429 items
	Overloaded    int // of Rejected, those over IndexRate's write queue
	MappingErrors int // 400 mapper_parsing_exception items
	BadRequests   int // whole requests answered 4xx
	Unavailable   int // whole requests answered 503
	Dropped       int // answers dropped by DropResponses
	Handshakes    int // TLS handshakes begun (ClientHellos), refused ones too
}

// Server is a running stand-in for an Elasticsearch node.
type Server struct {
	// URL is the base URL, http://127.0.0.1:port or https://....
	URL string

	opts    Options
	addr    string
	tlsConf *tls.Config
	certPEM []byte

	// mu guards everything below.
	mu sync.Mutex
	// idle is signalled when active drops to 0.
	idle           *sync.Cond
	active         int // requests being served, so that Stop can wait
	srv            *http.Server
	stopped        chan struct{} // closed by Stop: ends delays
	rng            *mrand.Rand
	rejectRate     float64
	indexRate      float64   // documents a second; 0: no limit
	queueDocs      int       // the write queue's capacity, in documents
	busyUntil      time.Time // when the documents admitted are indexed
	unavailable    bool
	unavailableEnd time.Time // zero: until SetUnavailable(false)
	delay          time.Duration
	dropResponses  int
	indices        map[string]*index
	templates      map[string]json.RawMessage
	policies       map[string]Policy
	requests       []Request
	stats          Stats
	seqNo          int64
}

type index struct {
	docs    []*Document
	byID    map[string]*Document
	mapping map[string]string // dotted field path -> type
}

// NewServer starts a server on 127.0.0.1 with opts. It panics if it cannot
// listen, as httptest.NewServer does.
func NewServer(opts Options) *Server {
	if opts.Version == "" && opts.Distribution == OpenSearch {
		opts.Version = "2.17.0"
	}
	if opts.Version == "" {
		opts.Version = "7.17.0"
	}
	if opts.MaxRequests <= 0 {
		opts.MaxRequests = 1000
	}
	s := &Server{
		opts:       opts,
		rng:        mrand.New(mrand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		rejectRate: opts.RejectRate,
		indices:    map[string]*index{},
		templates:  map[string]json.RawMessage{},
		policies:   map[string]Policy{},
	}
	s.idle = sync.NewCond(&s.mu)
	s.SetIndexRate(opts.IndexRate, opts.QueueDocs)
	scheme := "http"
	if opts.TLS {
		scheme = "https"
		if err := s.makeCert(); err != nil {
			panic(fmt.Sprintf("estest: make certificate: %v", err))
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("estest: listen: %v", err))
	}
	s.addr = ln.Addr().String()
	s.URL = scheme + "://" + s.addr
	s.serve(ln)
	return s
}

// NewTLSServer is NewServer with opts.TLS set.
func NewTLSServer(opts Options) *Server {
	opts.TLS = true
	return NewServer(opts)
}

func (s *Server) serve(ln net.Listener) {
	if s.tlsConf != nil {
		ln = tls.NewListener(ln, s.tlsConf)
	}
	stopped := make(chan struct{})
	srv := &http.Server{
		BaseContext:       func(net.Listener) context.Context { return stopContext(stopped) },
		Handler:           http.HandlerFunc(s.handle),
		ReadHeaderTimeout: 10 * time.Second,
		// Refused handshakes and dropped connections are what tests
		// provoke: not worth a line on stderr.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	s.mu.Lock()
	s.srv, s.stopped = srv, stopped
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Stop closes the listener and every connection, as a crashed node would:
// clients get connection refused until Start. It waits for the requests
// being served. Documents are kept.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, stopped := s.srv, s.stopped
	s.srv, s.stopped = nil, nil
	s.mu.Unlock()
	if srv != nil {
		close(stopped)
		_ = srv.Close()
	}
	s.mu.Lock()
	for s.active > 0 {
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// Start listens again on the same address after Stop. It panics if the
// address cannot be had back within a few seconds.
func (s *Server) Start() {
	s.mu.Lock()
	running := s.srv != nil
	s.mu.Unlock()
	if running {
		return
	}
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			s.serve(ln)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	panic(fmt.Sprintf("estest: listen again on %s: %v", s.addr, err))
}

// Restart is Stop then Start.
func (s *Server) Restart() {
	s.Stop()
	s.Start()
}

// Close stops the server for good.
func (s *Server) Close() { s.Stop() }

// SetRejectRate changes the share of bulk items answered 429.
func (s *Server) SetRejectRate(rate float64) {
	s.mu.Lock()
	s.rejectRate = rate
	s.mu.Unlock()
}

// SetIndexRate changes the load model (see Options.IndexRate): at most
// rate documents indexed a second, queueDocs waiting (0: a tenth of a
// second's worth); rate 0 ends it.
func (s *Server) SetIndexRate(rate float64, queueDocs int) {
	if queueDocs <= 0 {
		queueDocs = max(1, int(rate/10))
	}
	s.mu.Lock()
	s.indexRate, s.queueDocs = rate, queueDocs
	s.mu.Unlock()
}

// SetUnavailable makes every request fail with 503 until it is called with
// false.
func (s *Server) SetUnavailable(on bool) {
	s.mu.Lock()
	s.unavailable, s.unavailableEnd = on, time.Time{}
	s.mu.Unlock()
}

// UnavailableFor makes every request fail with 503 for d.
func (s *Server) UnavailableFor(d time.Duration) {
	s.mu.Lock()
	s.unavailable, s.unavailableEnd = true, time.Now().Add(d)
	s.mu.Unlock()
}

// SetDelay holds every answer back by d (or until the client gives up).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// DropResponses makes the next n _bulk requests store their documents and
// then close the connection without an answer, as a node that fails after
// indexing: a client that retries gets 409 for what was stored.
func (s *Server) DropResponses(n int) {
	s.mu.Lock()
	s.dropResponses = n
	s.mu.Unlock()
}

// Documents returns the documents of index in the order they were stored.
func (s *Server) Documents(index string) []Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.indices[index]
	if idx == nil {
		return nil
	}
	out := make([]Document, len(idx.docs))
	for i, d := range idx.docs {
		out[i] = *d
	}
	return out
}

// AllDocuments returns the documents of every index, index by index.
func (s *Server) AllDocuments() []Document {
	var out []Document
	for _, name := range s.Indices() {
		out = append(out, s.Documents(name)...)
	}
	return out
}

// Indices returns the names of the indices, sorted.
func (s *Server) Indices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.indices))
	for name := range s.indices {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Count returns the number of stored documents.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, idx := range s.indices {
		n += len(idx.docs)
	}
	return n
}

// Mapping returns the field types of index by dotted path.
func (s *Server) Mapping(index string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.indices[index]
	if idx == nil {
		return nil
	}
	out := make(map[string]string, len(idx.mapping))
	for k, v := range idx.mapping {
		out[k] = v
	}
	return out
}

// Templates returns the index templates by name, as they were put.
func (s *Server) Templates() map[string]json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]json.RawMessage, len(s.templates))
	for k, v := range s.templates {
		out[k] = slices.Clone(v)
	}
	return out
}

// Requests returns the latest requests received, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// CACertPEM returns the certificate of a TLS server in PEM, to trust it;
// nil for a plain HTTP server.
func (s *Server) CACertPEM() []byte { return slices.Clone(s.certPEM) }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client {
	tr := &http.Transport{}
	if s.certPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(s.certPEM)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}
}

func (s *Server) makeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"estest"}, CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	s.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := tls.X509KeyPair(s.certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return err
	}
	s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.tlsConf.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		// A client that does not trust the certificate sends no request:
		// this is how a test sees that it tried.
		s.count(func(st *Stats) { st.Handshakes++ })
		return nil, nil
	}
	return nil
}

// stopContext is a context that ends when stopped is closed: the base of
// every request's context, so that Stop ends the requests being delayed
// even when a client that went away left its body unread (net/http only
// notices a closed connection once the body has been read).
func stopContext(stopped <-chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stopped
		cancel()
	}()
	return ctx
}

// handle serves every request.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.active--; s.active == 0 {
			s.idle.Broadcast()
		}
		s.mu.Unlock()
	}()

	s.mu.Lock()
	s.stats.Requests++
	if len(s.requests) >= s.opts.MaxRequests {
		s.requests = s.requests[1:]
	}
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone()})
	delay := s.delay
	s.mu.Unlock()

	// Read the body first: then net/http cancels the request's context
	// as soon as the client goes away, which ends a delay.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	s.mu.Lock()
	if s.unavailable && !s.unavailableEnd.IsZero() && time.Now().After(s.unavailableEnd) {
		s.unavailable = false
	}
	unavailable := s.unavailable
	if unavailable {
		s.stats.Unavailable++
	}
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	if unavailable {
		writeError(w, http.StatusServiceUnavailable, "cluster_block_exception",
			"blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];")
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="security" charset="UTF-8", ApiKey`)
		s.refuse(w, http.StatusUnauthorized, "security_exception",
			fmt.Sprintf("missing authentication credentials for REST request [%s]", r.URL.Path))
		return
	}

	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.URL.Path == "/" && (r.Method == http.MethodHead || r.Method == http.MethodGet):
		s.info(w, r)
	case r.URL.Path == "/_nodes/http" && r.Method == http.MethodGet:
		s.nodes(w)
	case parts[len(parts)-1] == "_bulk" && len(parts) <= 2 && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		defaultIndex := ""
		if len(parts) == 2 {
			defaultIndex = parts[0]
		}
		s.bulk(w, r, defaultIndex)
	case len(parts) == 2 && (parts[0] == "_index_template" || parts[0] == "_template") &&
		(r.Method == http.MethodPut || r.Method == http.MethodPost):
		s.putTemplate(w, r, parts[1])
	case len(parts) == 3 && parts[0] == "_ilm" && parts[1] == "policy" && r.Method == http.MethodPut && s.opts.Distribution != OpenSearch:
		s.putILMPolicy(w, r, parts[2])
	case len(parts) == 4 && parts[0] == "_plugins" && parts[1] == "_ism" && parts[2] == "policies" && s.opts.Distribution == OpenSearch:
		switch r.Method {
		case http.MethodPut:
			s.putISMPolicy(w, r, parts[3])
		case http.MethodGet:
			s.getISMPolicy(w, parts[3])
		default:
			s.refuse(w, http.StatusMethodNotAllowed, "estest_unsupported", "method not allowed")
		}
	default:
		s.refuse(w, http.StatusNotFound, "estest_unsupported", fmt.Sprintf("estest does not serve %s %s", r.Method, r.URL.Path))
	}
}

func (s *Server) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

func (s *Server) authorized(r *http.Request) bool {
	o := s.opts
	if o.Username == "" && o.APIKey == "" {
		return true
	}
	got := r.Header.Get("Authorization")
	if o.APIKey != "" && got == "ApiKey "+o.APIKey {
		return true
	}
	if o.Username != "" {
		user, pass, ok := r.BasicAuth()
		return ok && user == o.Username && pass == o.Password
	}
	return false
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	version := map[string]any{
		"number":                              s.opts.Version,
		"build_flavor":                        "default",
		"minimum_wire_compatibility_version":  "6.8.0",
		"minimum_index_compatibility_version": "6.0.0-beta1",
	}
	tagline := "You Know, for Search"
	if s.opts.Distribution == OpenSearch {
		version["distribution"] = OpenSearch
		tagline = "The OpenSearch Project: https://opensearch.org/"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":         "estest",
		"cluster_name": "estest",
		"cluster_uuid": "estest",
		"version":      version,
		"tagline":      tagline,
	})
}

func (s *Server) nodes(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, map[string]any{
		"_nodes":       map[string]int{"total": 1, "successful": 1, "failed": 0},
		"cluster_name": "estest",
		"nodes": map[string]any{
			"estest-node": map[string]any{
				"name":  "estest",
				"roles": []string{"data", "ingest", "master"},
				"http":  map[string]any{"publish_address": s.addr, "bound_address": []string{s.addr}},
			},
		},
	})
}

func (s *Server) putTemplate(w http.ResponseWriter, r *http.Request, name string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var tmpl struct {
		IndexPatterns []string `json:"index_patterns"`
	}
	if err := json.Unmarshal(body, &tmpl); err != nil || len(tmpl.IndexPatterns) == 0 {
		s.refuse(w, http.StatusBadRequest, "action_request_validation_exception", "Validation Failed: 1: index patterns are missing;")
		return
	}
	s.mu.Lock()
	s.templates[name] = body
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]bool{"acknowledged": true})
}

// bulkItem is one parsed action of a _bulk body.
type bulkItem struct {
	op     string
	index  string
	id     string
	source []byte
}

func (s *Server) bulk(w http.ResponseWriter, r *http.Request, defaultIndex string) {
	// Under IndexRate the cluster works from the request's arrival: the
	// time this server takes to parse and store it is its own, not the
	// cluster's it models.
	arrived := time.Now()
	bad := func(typ, reason string) {
		s.refuse(w, http.StatusBadRequest, typ, reason)
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/x-ndjson" {
		s.count(func(st *Stats) { st.BadRequests++ })
		writeJSON(w, http.StatusNotAcceptable, map[string]any{
			"error":  fmt.Sprintf("Content-Type header [%s] is not supported", r.Header.Get("Content-Type")),
			"status": http.StatusNotAcceptable,
		})
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		bad("parse_exception", fmt.Sprintf("cannot read request body: %v", err))
		return
	}
	if max := s.opts.MaxContentLength; max > 0 && len(raw) > max {
		s.refuse(w, http.StatusRequestEntityTooLarge, "content_too_long_exception",
			fmt.Sprintf("request body is too large: %d > %d bytes", len(raw), max))
		return
	}
	var body io.Reader = bytes.NewReader(raw)
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			bad("parse_exception", "request body is not valid gzip")
			return
		}
		defer zr.Close()
		body = zr
	default:
		bad("illegal_argument_exception", fmt.Sprintf("unsupported Content-Encoding [%s]", enc))
		return
	}
	data, err := io.ReadAll(body)
	if err != nil {
		bad("parse_exception", fmt.Sprintf("cannot read request body: %v", err))
		return
	}
	items, err := parseBulk(data, defaultIndex)
	if err != nil {
		bad("illegal_argument_exception", err.Error())
		return
	}
	pipeline := r.URL.Query().Get("pipeline")

	s.mu.Lock()
	results := make([]map[string]any, len(items))
	errorsSeen := false
	room := s.admitLocked(arrived)
	for i, it := range items {
		var res map[string]any
		if room--; room < 0 {
			res = s.overloadLocked(it)
		} else {
			res = s.applyLocked(it, pipeline)
		}
		if _, failed := res["error"]; failed {
			errorsSeen = true
		}
		results[i] = map[string]any{it.op: res}
	}
	var indexed time.Time // when the items admitted are, under IndexRate
	if s.indexRate > 0 {
		n := len(items) - max(0, -room)
		s.busyUntil = s.busyUntil.Add(time.Duration(float64(n) / s.indexRate * float64(time.Second)))
		indexed = s.busyUntil
	}
	s.stats.Items += len(items)
	drop := s.dropResponses > 0
	if drop {
		s.dropResponses--
		s.stats.Dropped++
	} else {
		s.stats.BulkRequests++
	}
	stopped := s.stopped
	s.mu.Unlock()

	if wait := time.Until(indexed); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.Context().Done():
		case <-stopped:
		}
		t.Stop()
	}
	if drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	answer := map[string]any{"took": 1, "errors": errorsSeen, "items": results}
	writeJSON(w, http.StatusOK, filterPath(answer, r.URL.Query().Get("filter_path")))
}

// filterPath keeps the parts of an answer that the filter_path parameter
// selects, as Elasticsearch's response filtering does: comma-separated
// paths of dot-separated keys, "*" matching any one key, arrays traversed
// (their elements that keep nothing are left out). Without a filter, v is
// kept whole; when nothing is selected, the answer is {}. Error answers
// are never filtered, as in Elasticsearch.
func filterPath(v any, filter string) any {
	if filter == "" {
		return v
	}
	var paths [][]string
	for p := range strings.SplitSeq(filter, ",") {
		paths = append(paths, strings.Split(strings.TrimSpace(p), "."))
	}
	if out := filterValue(v, paths); out != nil {
		return out
	}
	return map[string]any{}
}

// filterValue keeps what paths select in v, nil for nothing; a path that
// has no keys left selects v whole.
func filterValue(v any, paths [][]string) any {
	for _, p := range paths {
		if len(p) == 0 {
			return v
		}
	}
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			var sub [][]string
			for _, p := range paths {
				if p[0] == "*" || p[0] == k {
					sub = append(sub, p[1:])
				}
			}
			if len(sub) > 0 {
				if y := filterValue(x, sub); y != nil {
					out[k] = y
				}
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []map[string]any:
		var out []any
		for _, x := range v {
			if y := filterValue(x, paths); y != nil {
				out = append(out, y)
			}
		}
		if out == nil {
			return nil
		}
		return out
	}
	return nil // a value the paths go past
}

// parseBulk checks and splits a _bulk body as Elasticsearch does.
func parseBulk(data []byte, defaultIndex string) ([]bulkItem, error) {
	if len(data) == 0 {
		return nil, errors.New("request body is required")
	}
	if data[len(data)-1] != '\n' {
		return nil, errors.New("The bulk request must be terminated by a newline [\\n]")
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), len(data)+1)
	var items []bulkItem
	line := 0
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var action map[string]map[string]any
		if err := json.Unmarshal(raw, &action); err != nil || len(action) != 1 {
			return nil, fmt.Errorf("Malformed action/metadata line [%d], expected START_OBJECT or END_OBJECT but found [%s]", line, truncate(raw))
		}
		var it bulkItem
		var meta map[string]any
		for op, m := range action {
			it.op, meta = op, m
		}
		switch it.op {
		case "index", "create", "delete":
		case "update":
			return nil, fmt.Errorf("estest does not support the update action (line [%d])", line)
		default:
			return nil, fmt.Errorf("Malformed action/metadata line [%d], expected one of [create, delete, index, update] but found [%s]", line, it.op)
		}
		for k, v := range meta {
			str, _ := v.(string)
			switch k {
			case "_index":
				it.index = str
			case "_id":
				it.id = str
			case "routing", "pipeline", "require_alias", "if_seq_no", "if_primary_term", "version", "version_type", "dynamic_templates", "retry_on_conflict":
			default:
				return nil, fmt.Errorf("Action/metadata line [%d] contains an unknown parameter [%s]", line, k)
			}
		}
		if it.index == "" {
			it.index = defaultIndex
		}
		if it.index == "" {
			return nil, fmt.Errorf("Validation Failed: 1: index is missing for the action on line [%d];", line)
		}
		if it.op == "delete" {
			if it.id == "" {
				return nil, fmt.Errorf("Validation Failed: 1: id is missing for the delete on line [%d];", line)
			}
			items = append(items, it)
			continue
		}
		if !sc.Scan() {
			return nil, fmt.Errorf("Validation Failed: 1: source is missing for the action on line [%d];", line)
		}
		line++
		it.source = slices.Clone(bytes.TrimSpace(sc.Bytes()))
		items = append(items, it)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, errors.New("Validation Failed: 1: no requests added;")
	}
	return items, nil
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// admitLocked returns how many items of a bulk request that arrived at
// now the write queue admits under IndexRate (all when there is no
// limit).
func (s *Server) admitLocked(now time.Time) (room int) {
	if s.indexRate <= 0 {
		return math.MaxInt
	}
	if s.busyUntil.Before(now) {
		s.busyUntil = now
	}
	backlog := s.busyUntil.Sub(now).Seconds() * s.indexRate
	return max(0, s.queueDocs-int(math.Ceil(backlog)))
}

// overloadLocked answers an item the write queue has no room for.
func (s *Server) overloadLocked(it bulkItem) map[string]any {
	s.stats.Rejected++
	s.stats.Overloaded++
	return map[string]any{"_index": it.index, "_type": "_doc", "_id": it.id, "status": http.StatusTooManyRequests,
		"error": map[string]any{"type": "es_rejected_execution_exception", "index": it.index,
			"reason": fmt.Sprintf("rejected execution of primary operation [coordinating_and_primary_bytes=%d, max_coordinating_and_primary_bytes=%d]", s.queueDocs, s.queueDocs)}}
}

// applyLocked applies one action and returns its item answer.
func (s *Server) applyLocked(it bulkItem, pipeline string) map[string]any {
	res := map[string]any{"_index": it.index, "_type": "_doc", "_id": it.id}
	fail := func(status int, typ, reason string) map[string]any {
		res["status"] = status
		res["error"] = map[string]any{"type": typ, "reason": reason, "index": it.index}
		return res
	}
	if s.rejectRate > 0 && s.rng.Float64() < s.rejectRate {
		s.stats.Rejected++
		return fail(http.StatusTooManyRequests, "es_rejected_execution_exception",
			"rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]")
	}
	if reason := indexNameError(it.index); reason != "" {
		return fail(http.StatusBadRequest, "invalid_index_name_exception", fmt.Sprintf("Invalid index name [%s], %s", it.index, reason))
	}
	idx := s.indices[it.index]
	if it.op == "delete" {
		if idx == nil || idx.byID[it.id] == nil {
			res["status"], res["result"] = http.StatusNotFound, "not_found"
			return res
		}
		delete(idx.byID, it.id)
		idx.docs = slices.DeleteFunc(idx.docs, func(d *Document) bool { return d.ID == it.id })
		res["status"], res["result"] = http.StatusOK, "deleted"
		return res
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(it.source))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil || dec.More() {
		s.stats.MappingErrors++
		return fail(http.StatusBadRequest, "mapper_parsing_exception", "failed to parse")
	}
	if it.op == "create" && it.id != "" && idx != nil && idx.byID[it.id] != nil {
		s.stats.Conflicts++
		return fail(http.StatusConflict, "version_conflict_engine_exception",
			fmt.Sprintf("[%s]: version conflict, document already exists (current version [1])", it.id))
	}
	if idx == nil {
		idx = &index{byID: map[string]*Document{}, mapping: s.templateMappingLocked(it.index)}
	}
	mapping := maps(idx.mapping)
	if reason := mapFields(mapping, "", doc); reason != "" {
		s.stats.MappingErrors++
		return fail(http.StatusBadRequest, "mapper_parsing_exception", reason)
	}
	if f := s.opts.MappingError; f != nil {
		if reason := f(it.index, doc); reason != "" {
			s.stats.MappingErrors++
			return fail(http.StatusBadRequest, "mapper_parsing_exception", reason)
		}
	}
	if it.id == "" {
		it.id = randomID()
		res["_id"] = it.id
	}
	s.indices[it.index] = idx
	idx.mapping = mapping
	status, result := http.StatusCreated, "created"
	if old := idx.byID[it.id]; old != nil { // index over an existing _id
		old.Source, old.Pipeline = it.source, pipeline
		status, result = http.StatusOK, "updated"
	} else {
		d := &Document{Index: it.index, ID: it.id, Source: it.source, Pipeline: pipeline}
		idx.docs = append(idx.docs, d)
		idx.byID[it.id] = d
	}
	s.seqNo++
	if status == http.StatusCreated {
		s.stats.Created++
	}
	res["_version"], res["result"], res["status"] = 1, result, status
	res["_shards"] = map[string]int{"total": 2, "successful": 1, "failed": 0}
	res["_seq_no"], res["_primary_term"] = s.seqNo, 1
	return res
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// templateMappingLocked returns the field types that the templates
// matching a new index give it; of several, the longest pattern wins.
func (s *Server) templateMappingLocked(name string) map[string]string {
	mapping := map[string]string{}
	best := -1
	for _, raw := range s.templates {
		var t struct {
			IndexPatterns []string `json:"index_patterns"`
			Mappings      struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"mappings"`
			Template struct {
				Mappings struct {
					Properties map[string]json.RawMessage `json:"properties"`
				} `json:"mappings"`
			} `json:"template"`
		}
		if json.Unmarshal(raw, &t) != nil {
			continue
		}
		props := t.Template.Mappings.Properties
		if props == nil {
			props = t.Mappings.Properties
		}
		for _, p := range t.IndexPatterns {
			if !globMatch(p, name) || len(p) <= best {
				continue
			}
			best = len(p)
			mapping = map[string]string{}
			addProperties(mapping, "", props)
		}
	}
	return mapping
}

func addProperties(mapping map[string]string, prefix string, props map[string]json.RawMessage) {
	for name, raw := range props {
		var p struct {
			Type       string                     `json:"type"`
			Properties map[string]json.RawMessage `json:"properties"`
		}
		if json.Unmarshal(raw, &p) != nil {
			continue
		}
		path := prefix + name
		if p.Properties != nil {
			mapping[path] = "object"
			addProperties(mapping, path+".", p.Properties)
			continue
		}
		mapping[path] = p.Type
	}
}

// globMatch matches name against an index pattern with * wildcards.
func globMatch(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(name, p)
		if i < 0 {
			return false
		}
		name = name[i+len(p):]
	}
	return strings.HasSuffix(name, parts[len(parts)-1])
}

// mapFields checks the fields of doc against mapping and adds the new ones,
// as Elasticsearch's dynamic mapping does; it returns the reason of the
// first conflict.
func mapFields(mapping map[string]string, prefix string, doc map[string]any) string {
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		path := prefix + k
		if reason := mapValue(mapping, path, doc[k]); reason != "" {
			return reason
		}
	}
	return ""
}

func mapValue(mapping map[string]string, path string, v any) string {
	if arr, ok := v.([]any); ok {
		for _, x := range arr {
			if reason := mapValue(mapping, path, x); reason != "" {
				return reason
			}
		}
		return ""
	}
	if v == nil {
		return ""
	}
	have, known := mapping[path]
	if obj, ok := v.(map[string]any); ok {
		if known && have != "object" {
			return fmt.Sprintf("failed to parse field [%s] of type [%s]. Preview of field's value: '%v'", path, have, obj)
		}
		mapping[path] = "object"
		return mapFields(mapping, path+".", obj)
	}
	if known && have == "object" {
		return fmt.Sprintf("object mapping for [%s] tried to parse field [%s] as object, but found a concrete value", path, path)
	}
	kind := "text"
	switch x := v.(type) {
	case bool:
		kind = "boolean"
	case json.Number:
		kind = "long"
		if _, err := x.Int64(); err != nil {
			kind = "double"
		}
	}
	if !known {
		mapping[path] = kind
		return ""
	}
	str := fmt.Sprint(v)
	bad := func() string {
		return fmt.Sprintf("failed to parse field [%s] of type [%s] in document. Preview of field's value: '%s'", path, have, truncate([]byte(str)))
	}
	switch have {
	case "long", "integer", "short", "byte":
		if _, err := strconv.ParseInt(str, 10, 64); err != nil {
			if f, ferr := strconv.ParseFloat(str, 64); ferr != nil || f != float64(int64(f)) {
				return bad()
			}
		}
	case "double", "float", "half_float", "scaled_float":
		if _, err := strconv.ParseFloat(str, 64); err != nil {
			return bad()
		}
	case "boolean":
		if str != "true" && str != "false" {
			return bad()
		}
	case "date", "date_nanos":
		if _, ok := v.(string); !ok {
			if _, err := strconv.ParseInt(str, 10, 64); err != nil { // epoch_millis
				return bad()
			}
			return ""
		}
		if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
			if _, err := time.Parse("2006-01-02", str); err != nil {
				return bad()
			}
		}
	}
	return ""
}

// indexNameError returns why name is not a legal index name, or "".
func indexNameError(name string) string {
	switch {
	case name == "." || name == "..":
		return `must not be '.' or '..'`
	case strings.ToLower(name) != name:
		return "must be lowercase"
	case strings.ContainsAny(name, "\\/*?\"<>| ,#:"):
		return `must not contain the following characters [ , ", *, \, <, |, ,, >, /, ?, #, :]`
	case strings.IndexAny(name, "-_+") == 0:
		return "must not start with '_', '-', or '+'"
	case len(name) > 255:
		return "index name is too long, (" + strconv.Itoa(len(name)) + " > 255)"
	}
	return ""
}

func randomID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// refuse answers a request the server does not take as writeError does,
// and counts it in Stats.BadRequests.
func (s *Server) refuse(w http.ResponseWriter, status int, typ, reason string) {
	s.count(func(st *Stats) { st.BadRequests++ })
	writeError(w, status, typ, reason)
}

func writeError(w http.ResponseWriter, status int, typ, reason string) {
	cause := map[string]any{"type": typ, "reason": reason}
	writeJSON(w, status, map[string]any{
		"error":  map[string]any{"root_cause": []any{cause}, "type": typ, "reason": reason},
		"status": status,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
