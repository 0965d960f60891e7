package elasticsearch

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/logferry/logferry/forward/document"
	"github.com/olivere/elastic/v7"
)

// bulkClient is what the sink needs from an Elasticsearch client. The
// library behind it (olivere/elastic, unmaintained) stays in this file, so
// that it can be replaced without touching the sink; tests fake it.
type bulkClient interface {
	// Bulk sends b as one _bulk request of create actions, b.body() as
	// its body, and returns one result per action, in order. An error
	// means the whole request failed; it is a *requestError unless ctx
	// ended. It sets b.held when the body may still be read after it
	// returned.
	Bulk(ctx context.Context, b *batch) ([]itemResult, error)
	// PutIndexTemplate installs a composable index template, unless the
	// same one was installed through this client (or one it shares)
	// already.
	PutIndexTemplate(ctx context.Context, name, body string) error
	// PutRetention installs the lifecycle policy name, which deletes the
	// indices matching pattern once they are older than retention (such
	// as 30d): an ILM policy on Elasticsearch, an ISM policy that attaches
	// itself to new indices on OpenSearch, as GET / tells them apart. It
	// returns the index settings the template must carry to attach the
	// policy (`"index.lifecycle.name":…`), empty on OpenSearch. Like
	// PutIndexTemplate, once per client for the same policy.
	PutRetention(ctx context.Context, name, pattern, retention string) (settings string, err error)
}

// itemResult is Elasticsearch's answer for one action.
type itemResult struct {
	status  int
	errType string
	reason  string
}

// requestError is a failed request as a whole: status is its HTTP status,
// 0 when there was no answer (connection refused, timeout, no node).
type requestError struct {
	status int
	err    error
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// dialFunc connects to Elasticsearch; it may block on the network.
type dialFunc func(ctx context.Context) (bulkClient, error)

// olivereClient is a bulkClient on github.com/olivere/elastic/v7: a
// sink's view of a client shared with other sinks (see clients).
type olivereClient struct {
	es       *elastic.Client
	shared   *sharedClient
	pipeline string
	// compress gzips _bulk bodies (the library's own gzip is off: it
	// would compress them again).
	compress bool
}

// dialOlivere returns a dialFunc for cfg over shared, which it dials
// unless another sink did already.
func dialOlivere(cfg Config, shared *sharedClient) dialFunc {
	return func(ctx context.Context) (bulkClient, error) {
		es, err := shared.dial(ctx)
		if err != nil {
			return nil, err
		}
		return &olivereClient{es: es, shared: shared, pipeline: cfg.Pipeline, compress: cfg.Compress}, nil
	}
}

// clients are the process's clients of the library, one per set of
// connection settings: the sinks of every container logging to the same
// cluster with the same settings share one client, so one pool of
// connections and one health checker, instead of one of each per
// container.
var clients = clientSet{m: map[clientKey]*sharedClient{}}

// clientKey is the settings a client of the library is made of.
type clientKey struct {
	urls        string // Config.URLs, one per line
	sniff       bool
	healthcheck time.Duration
	startup     time.Duration // how long a dial looks for a live node
	caPEM       string        // the content of Config.TLSCAFile
	insecure    bool
	creds       Credentials
}

// newClientKey returns the key of cfg and creds; it reads the TLS CA file.
func newClientKey(cfg Config, creds Credentials) (clientKey, error) {
	k := clientKey{
		urls:        strings.Join(cfg.URLs, "\n"),
		sniff:       cfg.Sniff,
		healthcheck: cfg.HealthcheckInterval,
		startup:     min(cfg.RequestTimeout, 5*time.Second),
		insecure:    cfg.TLSInsecureSkipVerify,
		creds:       creds,
	}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return k, fmt.Errorf("read %s: %w", KeyTLSCA, err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return k, fmt.Errorf("read %s %q: no PEM certificate in it", KeyTLSCA, cfg.TLSCAFile)
		}
		k.caPEM = string(pem)
	}
	return k, nil
}

// clientSet is the set of shared clients.
type clientSet struct {
	mu sync.Mutex // guards m and the refs of its clients
	m  map[clientKey]*sharedClient
}

// sharedClient is a client of the library, and its transport, shared by
// the sinks with the same settings: dialed by the first that needs it,
// stopped once the last is closed.
type sharedClient struct {
	key       clientKey
	transport *http.Transport
	doer      elastic.Doer
	// sema guards es: held to read it or, while it is nil, to dial and
	// set it. A channel rather than a mutex, so that the sinks wait for
	// a dial with their context.
	sema chan struct{}
	es   *elastic.Client
	// putSema guards put, what was installed through es (index
	// templates, lifecycle policies) by kind and name: held to install
	// one, so that the sinks sharing the client install each once rather
	// than once per container.
	putSema chan struct{}
	put     map[string]installed
	refs    int // guarded by clientSet.mu
}

// acquire returns the shared client for cfg and creds, making it if there
// is none; the sink gives it back with release once it stopped using it.
// It reads the TLS CA file but does not touch the network.
func (cs *clientSet) acquire(cfg Config, creds Credentials) (*sharedClient, error) {
	key, err := newClientKey(cfg, creds)
	if err != nil {
		return nil, err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c := cs.m[key]; c != nil {
		c.refs++
		return c, nil
	}
	tr := newTransport(key)
	c := &sharedClient{
		key:       key,
		transport: tr,
		// Credentials are added to each request by the doer, so that the
		// library never holds them (and its sniffer, which forgets
		// custom headers, still authenticates).
		doer:    trackBodies{newAuthDoer(&http.Client{Transport: tr}, creds)},
		sema:    make(chan struct{}, 1),
		putSema: make(chan struct{}, 1),
		put:     map[string]installed{},
		refs:    1,
	}
	cs.m[key] = c
	return c, nil
}

// release gives back a client from acquire; the last release stops its
// health checks and closes its connections.
func (cs *clientSet) release(c *sharedClient) {
	cs.mu.Lock()
	c.refs--
	last := c.refs == 0
	if last {
		delete(cs.m, c.key)
	}
	cs.mu.Unlock()
	if !last {
		return
	}
	c.sema <- struct{}{} // no sink is left to dial: this does not wait
	if c.es != nil {
		c.es.Stop()
	}
	<-c.sema
	c.transport.CloseIdleConnections()
}

// dial returns the library's client, dialing it if no sink did yet (or
// every dial so far failed). It returns ctx.Err() if ctx ends first.
func (c *sharedClient) dial(ctx context.Context) (*elastic.Client, error) {
	select {
	case c.sema <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sema }()
	if c.es != nil {
		return c.es, nil
	}
	urls := strings.Split(c.key.urls, "\n")
	scheme := "http"
	if u, err := url.Parse(urls[0]); err == nil {
		scheme = u.Scheme
	}
	es, err := elastic.DialContext(ctx,
		elastic.SetURL(urls...),
		elastic.SetScheme(scheme),
		elastic.SetHttpClient(c.doer),
		elastic.SetSniff(c.key.sniff),
		elastic.SetHealthcheck(true),
		elastic.SetHealthcheckInterval(c.key.healthcheck),
		// How long one dial looks for a live node before the sink
		// logs and backs off.
		elastic.SetHealthcheckTimeoutStartup(c.key.startup),
		elastic.SetGzip(false), // see olivereClient.compress
		// Retries are the sink's: per item, with backoff.
		elastic.SetRetrier(elastic.NewStopRetrier()),
	)
	if err != nil {
		return nil, toRequestError(ctx, err)
	}
	c.es = es
	return es, nil
}

// Bulk sends the batch's body as it is, as one _bulk request through the
// library's PerformRequest (which picks a live node), and reads the
// answer with parseBulkResponse: the library's BulkService would encode
// every action again and decode every field of the answer. The library
// takes a body only as a string (or a value to marshal), so the body is
// handed to it as a string over the batch's buffer, without a copy: the
// sink neither writes to nor reuses the buffer until Bulk returned, nor
// afterwards while the transport may still read it (b.held, see
// trackBodies), and the string does not outlive the request.
func (c *olivereClient) Bulk(ctx context.Context, b *batch) ([]itemResult, error) {
	body := b.body()
	var zbuf *bytes.Buffer
	if c.compress {
		zbuf = gzipBuffers.Get().(*bytes.Buffer)
		zbuf.Reset()
		gz := gzipWriters.Get().(*gzip.Writer)
		gz.Reset(zbuf)
		_, err := gz.Write(body)
		if err == nil {
			err = gz.Close()
		}
		gzipWriters.Put(gz)
		if err != nil {
			gzipBuffers.Put(zbuf)
			return nil, &requestError{err: fmt.Errorf("compress bulk body: %w", err)}
		}
		body = zbuf.Bytes()
	}
	use := new(bodyUse)
	opts := elastic.PerformRequestOptions{
		Method:      http.MethodPost,
		Path:        "/_bulk",
		Body:        unsafe.String(unsafe.SliceData(body), len(body)),
		ContentType: "application/x-ndjson",
		Params:      url.Values{"filter_path": {bulkFilterPath}},
		// The answer is read here, into a reused buffer.
		Stream: true,
	}
	if c.pipeline != "" {
		opts.Params.Set("pipeline", c.pipeline)
	}
	if c.compress {
		opts.Headers = http.Header{"Content-Encoding": {"gzip"}}
	}
	results, err := c.perform(context.WithValue(ctx, bodyUseKey{}, use), opts, len(b.actions))
	if use.open.Load() > 0 {
		// The transport may still read the body: leave it alone.
		if zbuf == nil {
			b.held = true
		}
	} else if zbuf != nil {
		gzipBuffers.Put(zbuf)
	}
	return results, err
}

// perform sends a _bulk request of n actions and reads its answer.
func (c *olivereClient) perform(ctx context.Context, opts elastic.PerformRequestOptions, n int) ([]itemResult, error) {
	res, err := c.es.PerformRequest(ctx, opts)
	if res != nil && res.BodyReader != nil {
		defer res.BodyReader.Close()
	}
	if err != nil {
		return nil, toRequestError(ctx, err)
	}
	if res.BodyReader == nil {
		return nil, &requestError{status: res.StatusCode, err: errors.New("bulk response has no body")}
	}
	buf := responseBuffers.Get().(*bytes.Buffer)
	defer responseBuffers.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(res.BodyReader); err != nil {
		return nil, toRequestError(ctx, fmt.Errorf("read bulk response: %w", err))
	}
	results := make([]itemResult, n)
	if err := parseBulkResponse(buf.Bytes(), results); err != nil {
		return nil, &requestError{err: err}
	}
	return results, nil
}

// bodyUse counts the request bodies of one Bulk call that the transport
// has not closed yet: net/http may go on reading a body after the request
// returned (when the answer came before the body was sent in full, or the
// request was cancelled), and closes it once it is done with it.
type bodyUse struct{ open atomic.Int32 }

// bodyUseKey is the context key of a request's *bodyUse.
type bodyUseKey struct{}

// trackedBody is a request body counted in a bodyUse until closed.
type trackedBody struct {
	io.ReadCloser
	use    *bodyUse
	closed atomic.Bool
}

func (t *trackedBody) Close() error {
	err := t.ReadCloser.Close()
	if t.closed.CompareAndSwap(false, true) {
		t.use.open.Add(-1)
	}
	return err
}

// trackBodies is an elastic.Doer that counts the bodies of requests whose
// context holds a *bodyUse, so that Bulk knows whether the transport is
// done with the batch's buffer when the request returns.
type trackBodies struct{ next elastic.Doer }

func (d trackBodies) Do(r *http.Request) (*http.Response, error) {
	if use, ok := r.Context().Value(bodyUseKey{}).(*bodyUse); ok && r.Body != nil && r.Body != http.NoBody {
		track := func(rc io.ReadCloser) io.ReadCloser {
			use.open.Add(1)
			return &trackedBody{ReadCloser: rc, use: use}
		}
		r.Body = track(r.Body)
		if get := r.GetBody; get != nil {
			// A body the transport makes to send the request again.
			r.GetBody = func() (io.ReadCloser, error) {
				rc, err := get()
				if err != nil || rc == nil || rc == http.NoBody {
					return rc, err
				}
				return track(rc), nil
			}
		}
	}
	return d.next.Do(r)
}

// bulkFilterPath asks Elasticsearch to answer a _bulk request with only
// what the sink reads (response filtering, as Logstash does): about 30
// bytes an item instead of 200, to send, read and parse. Every item keeps
// its status, so the answer still has one item per action, in order.
// Servers that ignore it answer in full, which parses the same.
const bulkFilterPath = "errors,items.*.status,items.*.error"

// gzipWriters, gzipBuffers and responseBuffers are reused by every
// client: a gzip writer allocates hundreds of KiB, compressed bodies are
// a fraction of the batch memory's, and answers are as long as requests.
var (
	gzipWriters     = sync.Pool{New: func() any { return gzip.NewWriter(io.Discard) }}
	gzipBuffers     = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	responseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// installed is what a sharedClient installed under a key: the
// description it was installed from, and what installing it returned.
type installed struct {
	what, result string
}

// once calls install unless what was installed under key through this
// client (or one it shares) already, and returns install's result, or the
// one it returned then.
func (c *olivereClient) once(ctx context.Context, key, what string, install func() (string, error)) (string, error) {
	select {
	case c.shared.putSema <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-c.shared.putSema }()
	if in, ok := c.shared.put[key]; ok && in.what == what {
		return in.result, nil
	}
	result, err := install()
	if err != nil {
		return "", err
	}
	c.shared.put[key] = installed{what: what, result: result}
	return result, nil
}

func (c *olivereClient) PutIndexTemplate(ctx context.Context, name, body string) error {
	_, err := c.once(ctx, "template "+name, body, func() (string, error) {
		if _, err := c.es.IndexPutIndexTemplate(name).BodyString(body).Do(ctx); err != nil {
			return "", toRequestError(ctx, err)
		}
		return "", nil
	})
	return err
}

func (c *olivereClient) PutRetention(ctx context.Context, name, pattern, retention string) (string, error) {
	return c.once(ctx, "policy "+name, pattern+" "+retention, func() (string, error) {
		return c.putRetention(ctx, name, pattern, retention)
	})
}

// putRetention installs the policy, as PutRetention says.
func (c *olivereClient) putRetention(ctx context.Context, name, pattern, retention string) (string, error) {
	var info struct {
		Version struct {
			Distribution string `json:"distribution"`
		} `json:"version"`
	}
	res, err := c.es.PerformRequest(ctx, elastic.PerformRequestOptions{Method: http.MethodGet, Path: "/"})
	if err != nil {
		return "", toRequestError(ctx, err)
	}
	if err := json.Unmarshal(res.Body, &info); err != nil {
		return "", fmt.Errorf("GET /: %w", err)
	}
	if info.Version.Distribution != "opensearch" {
		_, err := c.es.PerformRequest(ctx, elastic.PerformRequestOptions{
			Method: http.MethodPut, Path: "/_ilm/policy/" + url.PathEscape(name), Body: ilmPolicy(retention),
		})
		if err != nil {
			return "", toRequestError(ctx, err)
		}
		return `"index.lifecycle.name":` + string(document.AppendString(nil, name)), nil
	}
	// OpenSearch refuses to replace a policy without the sequence number
	// and primary term of the one it replaces.
	path := "/_plugins/_ism/policies/" + url.PathEscape(name)
	body := ismPolicy(pattern, retention)
	_, err = c.es.PerformRequest(ctx, elastic.PerformRequestOptions{Method: http.MethodPut, Path: path, Body: body})
	if !elastic.IsConflict(err) {
		if err != nil {
			return "", toRequestError(ctx, err)
		}
		return "", nil
	}
	res, err = c.es.PerformRequest(ctx, elastic.PerformRequestOptions{Method: http.MethodGet, Path: path})
	if err != nil {
		return "", toRequestError(ctx, err)
	}
	var cur struct {
		SeqNo       *int64 `json:"_seq_no"`
		PrimaryTerm *int64 `json:"_primary_term"`
	}
	if err := json.Unmarshal(res.Body, &cur); err != nil || cur.SeqNo == nil || cur.PrimaryTerm == nil {
		return "", fmt.Errorf("GET %s: no _seq_no and _primary_term in the answer", path)
	}
	params := url.Values{"if_seq_no": {strconv.FormatInt(*cur.SeqNo, 10)}, "if_primary_term": {strconv.FormatInt(*cur.PrimaryTerm, 10)}}
	if _, err := c.es.PerformRequest(ctx, elastic.PerformRequestOptions{Method: http.MethodPut, Path: path, Params: params, Body: body}); err != nil {
		return "", toRequestError(ctx, err)
	}
	return "", nil
}

// toRequestError classifies an error of the library.
func toRequestError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *elastic.Error
	if errors.As(err, &ee) {
		msg := fmt.Sprintf("status %d", ee.Status)
		if ee.Details != nil {
			msg += fmt.Sprintf(": %s: %s", ee.Details.Type, ee.Details.Reason)
		}
		return &requestError{status: ee.Status, err: errors.New(msg)}
	}
	return &requestError{err: err}
}

// authDoer adds the Authorization header to every request the library
// makes: bulk requests, health checks and sniffing alike.
type authDoer struct {
	client *http.Client
	// auth is the Authorization header value; empty for none.
	auth string
}

func newAuthDoer(client *http.Client, creds Credentials) *authDoer {
	d := &authDoer{client: client}
	switch {
	case creds.APIKey != "":
		d.auth = "ApiKey " + creds.APIKey
	case creds.Username != "":
		d.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(creds.Username+":"+creds.Password))
	}
	return d
}

// Do sends r with the credentials. The library builds a new request for
// every attempt, so setting the header on it is safe.
func (d *authDoer) Do(r *http.Request) (*http.Response, error) {
	if d.auth != "" {
		r.Header.Set("Authorization", d.auth)
	}
	return d.client.Do(r)
}

// templateBody is the composable index template installed when
// elasticsearch-template=true, for the index pattern pattern, with the
// index settings settings (JSON members, or empty). Priority 200 puts it
// above Elasticsearch's built-in templates (100) without clashing with
// them.
func templateBody(pattern, settings string) string {
	var set string
	if settings != "" {
		set = `"settings":{` + settings + `},`
	}
	return `{"index_patterns":[` + string(document.AppendString(nil, pattern)) + `],"priority":200,` +
		`"template":{` + set + `"mappings":{"properties":{` +
		`"` + document.FieldTimestamp + `":{"type":"date"},` +
		`"` + document.FieldLog + `":{"type":"text"},` +
		`"` + document.FieldSource + `":{"type":"keyword"},` +
		`"` + document.FieldContainerID + `":{"type":"keyword"},` +
		`"` + document.FieldContainerName + `":{"type":"keyword"},` +
		`"` + document.FieldLogName + `":{"type":"keyword"},` +
		`"` + document.FieldPartialMessage + `":{"type":"keyword"},` +
		`"` + document.FieldPartialID + `":{"type":"keyword"},` +
		`"` + document.FieldPartialOrdinal + `":{"type":"keyword"},` +
		`"` + document.FieldPartialLast + `":{"type":"keyword"}}}},` +
		`"_meta":{"managed_by":"logferry"}}`
}

// templateName returns the name of the index template (and lifecycle
// policy) for p, and the index pattern it matches: every name p produces
// (prefix*), or exactly the one of a fixed pattern.
func templateName(p *indexPattern) (name, pattern string) {
	prefix := p.Prefix()
	pattern = prefix + "*"
	if p.Fixed() {
		pattern = prefix
	}
	base := strings.TrimRight(prefix, "-_.+")
	if base == "" {
		base = "index"
	}
	return "logferry-" + base, pattern
}

// ilmPolicy is the ILM policy that deletes indices retention after they
// were created.
func ilmPolicy(retention string) string {
	return `{"policy":{"phases":{"hot":{"min_age":"0ms","actions":{}},` +
		`"delete":{"min_age":"` + retention + `","actions":{"delete":{}}}},` +
		`"_meta":{"managed_by":"logferry"}}}`
}

// ismPolicy is the ISM policy that deletes the indices matching pattern
// retention after they were created, and attaches itself to new ones.
func ismPolicy(pattern, retention string) string {
	return `{"policy":{"description":"Deletes indices older than ` + retention + ` (managed by logferry)",` +
		`"default_state":"hot","states":[` +
		`{"name":"hot","actions":[],"transitions":[{"state_name":"delete","conditions":{"min_index_age":"` + retention + `"}}]},` +
		`{"name":"delete","actions":[{"delete":{}}],"transitions":[]}],` +
		`"ism_template":[{"index_patterns":[` + string(document.AppendString(nil, pattern)) + `],"priority":100}]}}`
}

// maxIdleConns is how many idle connections a shared client keeps to
// each node: as many as requests were in flight at once, up to this.
const maxIdleConns = 32

// newTransport is the HTTP transport under a shared client: TLS
// verification stays on unless k turns it off; whole requests are bounded
// by their contexts, connection set-up by the timeouts here.
func newTransport(k clientKey) *http.Transport {
	tlsCfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: k.insecure, //nolint:gosec // only when elasticsearch-tls-insecure-skip-verify=true
	}
	if k.caPEM != "" {
		tlsCfg.RootCAs = x509.NewCertPool()
		tlsCfg.RootCAs.AppendCertsFromPEM([]byte(k.caPEM)) // checked by newClientKey
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   maxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
