package elasticsearch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/olivere/elastic/v7"
)

// bulkClient is what the sink needs from an Elasticsearch client. The
// library behind it (olivere/elastic, unmaintained) stays in this file, so
// that it can be replaced without touching the sink; tests fake it.
type bulkClient interface {
	// Bulk sends one _bulk request of create actions and returns one
	// result per action, in order. An error means the whole request
	// failed; it is a *requestError unless ctx ended.
	Bulk(ctx context.Context, actions []action) ([]itemResult, error)
	// PutIndexTemplate installs a composable index template.
	PutIndexTemplate(ctx context.Context, name, body string) error
	// Stop ends the client's background health checks and waits for them.
	Stop()
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

// olivereClient is a bulkClient on github.com/olivere/elastic/v7.
type olivereClient struct {
	es       *elastic.Client
	pipeline string
}

// dialOlivere returns a dialFunc for cfg. Credentials are added to each
// request by doer, so that the library never holds them (and its sniffer,
// which forgets custom headers, still authenticates).
func dialOlivere(cfg Config, doer elastic.Doer) dialFunc {
	scheme := "http"
	if u, err := url.Parse(cfg.URLs[0]); err == nil {
		scheme = u.Scheme
	}
	return func(ctx context.Context) (bulkClient, error) {
		es, err := elastic.DialContext(ctx,
			elastic.SetURL(cfg.URLs...),
			elastic.SetScheme(scheme),
			elastic.SetHttpClient(doer),
			elastic.SetSniff(cfg.Sniff),
			elastic.SetHealthcheck(true),
			elastic.SetHealthcheckInterval(cfg.HealthcheckInterval),
			// How long one dial looks for a live node before the sink
			// logs and backs off.
			elastic.SetHealthcheckTimeoutStartup(min(cfg.RequestTimeout, 5*time.Second)),
			elastic.SetGzip(cfg.Compress),
			// Retries are the sink's: per item, with backoff.
			elastic.SetRetrier(elastic.NewStopRetrier()),
		)
		if err != nil {
			return nil, toRequestError(ctx, err)
		}
		return &olivereClient{es: es, pipeline: cfg.Pipeline}, nil
	}
}

func (c *olivereClient) Bulk(ctx context.Context, actions []action) ([]itemResult, error) {
	svc := c.es.Bulk()
	if c.pipeline != "" {
		svc.Pipeline(c.pipeline)
	}
	for i := range actions {
		svc.Add(bulkRequest(&actions[i]))
	}
	res, err := svc.Do(ctx)
	if err != nil {
		return nil, toRequestError(ctx, err)
	}
	if len(res.Items) != len(actions) {
		return nil, &requestError{err: fmt.Errorf("bulk response has %d items for %d actions", len(res.Items), len(actions))}
	}
	results := make([]itemResult, len(actions))
	for i, m := range res.Items {
		for _, it := range m { // one entry, keyed by the action
			if it == nil {
				continue
			}
			results[i].status = it.Status
			if it.Error != nil {
				results[i].errType, results[i].reason = it.Error.Type, it.Error.Reason
			}
		}
	}
	return results, nil
}

// bulkRequest is the library's request for a. The document is passed as a
// string, which the library writes as it is.
func bulkRequest(a *action) *elastic.BulkCreateRequest {
	return elastic.NewBulkCreateRequest().UseEasyJSON(true).Index(a.index).Id(a.id).Doc(a.doc)
}

func (c *olivereClient) PutIndexTemplate(ctx context.Context, name, body string) error {
	_, err := c.es.IndexPutIndexTemplate(name).BodyString(body).Do(ctx)
	if err != nil {
		return toRequestError(ctx, err)
	}
	return nil
}

func (c *olivereClient) Stop() { c.es.Stop() }

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
// elasticsearch-template=true. Priority 200 puts it above Elasticsearch's
// built-in templates (100) without clashing with them.
func templateBody(indexPatterns string) string {
	return `{"index_patterns":[` + indexPatterns + `],"priority":200,` +
		`"template":{"mappings":{"properties":{` +
		`"` + fieldTimestamp + `":{"type":"date"},` +
		`"` + fieldLog + `":{"type":"text"},` +
		`"` + fieldSource + `":{"type":"keyword"},` +
		`"` + fieldContainerID + `":{"type":"keyword"},` +
		`"` + fieldContainerName + `":{"type":"keyword"},` +
		`"` + fieldLogName + `":{"type":"keyword"},` +
		`"` + fieldPartialMessage + `":{"type":"keyword"},` +
		`"` + fieldPartialID + `":{"type":"keyword"},` +
		`"` + fieldPartialOrdinal + `":{"type":"keyword"},` +
		`"` + fieldPartialLast + `":{"type":"keyword"}}}},` +
		`"_meta":{"managed_by":"logferry"}}`
}

// template returns the name and body of the index template for p: it
// matches every name p produces (prefix*), or exactly the one of a fixed
// pattern.
func template(p *indexPattern) (name, body string) {
	prefix := p.Prefix()
	pattern := prefix + "*"
	if p.Fixed() {
		pattern = prefix
	}
	base := strings.TrimRight(prefix, "-_.+")
	if base == "" {
		base = "index"
	}
	return "logferry-" + base, templateBody(string(appendString(nil, pattern)))
}

// newTransport is the HTTP transport under the library: TLS verification
// stays on unless cfg turns it off; whole requests are bounded by their
// contexts, connection set-up by the timeouts here.
func newTransport(cfg Config) (*http.Transport, error) {
	tlsCfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: cfg.TLSInsecureSkipVerify, //nolint:gosec // only when elasticsearch-tls-insecure-skip-verify=true
	}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", KeyTLSCA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read %s %q: no PEM certificate in it", KeyTLSCA, cfg.TLSCAFile)
		}
		tlsCfg.RootCAs = pool
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   cfg.Workers + 1,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}, nil
}
