// Package elasticsearch ships a container's log events straight to
// Elasticsearch, indexed as Docker's fluentd driver, Fluentd and
// fluent-plugin-elasticsearch (logstash_format, logstash_prefix docker,
// logstash_dateformat %Y%m%d, include_tag_key, tag_key @log_name) would index
// them, so that existing Kibana index patterns and dashboards keep working.
//
// # Servers
//
// The sink speaks the Elasticsearch 7 REST API through
// github.com/olivere/elastic/v7 (v7.0.32): _bulk with create actions (the
// NDJSON body encoded by the sink, sent with the library's PerformRequest,
// the answer filtered with filter_path and read by the sink), HEAD /
// for health checks, GET /_nodes/http for sniffing and PUT /_index_template
// for the optional template; with a retention, GET / (to tell OpenSearch
// apart) and PUT /_ilm/policy, or on OpenSearch the ISM API
// (/_plugins/_ism/policies, replaced with if_seq_no and if_primary_term). Elasticsearch 8 accepts that API as it is
// (no mapping types are sent) and OpenSearch 1 and 2 serve it too; the
// template needs composable templates (Elasticsearch 7.8 or later,
// OpenSearch 1.0 or later). The library is no longer maintained, so it is
// kept behind the small bulkClient interface in client.go.
//
// The sinks of every container with the same URLs, TLS settings,
// credentials, sniffing and health check interval share one client of the
// library: one pool of connections (as many as requests were in flight at
// once, up to 32 idle per node) and one health checker, not one of each
// per container.
//
// Tested: only against estest, the stand-in server in the sub-package,
// which keeps the _bulk contract; no real Elasticsearch or OpenSearch can be
// installed where this package is built and tested.
//
// # Options
//
// The sink is on when elasticsearch-url is set (see ParseConfig):
//
//	elasticsearch-url                       comma-separated http:// or https:// node URLs,
//	                                        used round robin while they pass health checks
//	elasticsearch-index                     index name pattern, default docker-%Y%m%d
//	elasticsearch-pipeline                  ingest pipeline, default none
//	elasticsearch-sniff                     discover the other nodes, default false
//	elasticsearch-bulk-actions              documents per request, default 1000
//	elasticsearch-bulk-size                 bytes per request before compression, default 5m
//	elasticsearch-flush-interval            longest wait for a batch to fill, default 5s
//	elasticsearch-compress                  gzip request bodies, default false
//	elasticsearch-workers                   most requests in flight at once, default 4
//	elasticsearch-tls-ca                    PEM file of the CAs to trust, default the host's
//	elasticsearch-tls-insecure-skip-verify  skip certificate verification, default false
//	elasticsearch-template                  install an index template, default false
//	log-format                              text (default) or json: add a JSON line's fields
//	partial-merge, partial-merge-timeout    reassemble split lines, default false and 5s
//	buffer-max-size                         disk buffer bound, default 64m (with Config.BufferDir)
//	buffer-full                             drop-oldest (default), drop-newest or block
//
// The index pattern is evaluated on each entry's own time in UTC, with the
// directives %Y (year), %y (2-digit year), %m (month), %d (day), %H (hour),
// %j (day of the year), %G and %V (ISO 8601 week-based year and week) and
// %% (a literal %). Every name the pattern can produce must be a legal index
// name: lowercase, none of \ / * ? " < > | , # : or white space, not starting
// with -, _ or +, not . or .., at most 255 bytes.
//
// Credentials (Credentials) come from the plugin's settings, never from
// log-opts, which `docker inspect` shows: a URL holding credentials is
// refused without being echoed. Neither errors nor logs ever hold them.
//
// # Documents
//
// Each entry becomes
//
//	{"@timestamp":"2024-03-09T12:00:00.123456789Z","log":"…","source":"stdout",
//	 "container_id":"…","container_name":"…","@log_name":"<tag>", labels and env…}
//
// with partial_message, partial_id, partial_ordinal and partial_last on a
// piece of a split line, as Docker's fluentd driver marks them; with
// partial-merge, the pieces are reassembled first (forward.MergeStage). A
// document is the record of Docker's fluentd driver plus @timestamp and
// @log_name: labels and env named log, source, container_id or
// container_name replace those fields, the partial_* fields of a piece
// replace labels of their names, and @timestamp and @log_name are the
// sink's own. With log-format=json, a line that is one JSON object also
// has its fields added, those the document does not have already.
//
// # Delivery
//
// Send never blocks: events wait in a bounded buffer, on disk when the
// driver gives the sink a BufferDir (package diskq), in memory otherwise;
// when it is full, buffer-full drops the oldest (the default) or the
// newest, or waits for room at most a second each time it fills up. One
// goroutine encodes them in order into batches that cfg.Workers goroutines
// send as _bulk requests. Each document is created with an _id derived
// from the entry (container, time, stream, place among entries of the same
// nanosecond, piece of a split line), so a retry or a replay never indexes
// it twice: 409 counts as delivered. The place among entries of the same
// nanosecond is numbered by Send and stored with the entry in the buffer,
// so that a replay from disk, by a later sink, produces the same _id.
//
// With a disk buffer an entry is removed only once its document is
// settled: created, already there (409), or refused for good and
// dead-lettered. What is left when Close's deadline passes, or when the
// plugin is killed, is sent first by the next sink created on the same
// directory: exactly once into the index.
//
// # Pushback
//
// Documents answered 429 or 5xx, and all those of a request that failed as
// a whole (connection refused, timeout, 503, 401 ...), go again at the
// front of the next request, while the documents queued behind them keep
// flowing: a document the cluster refuses holds back no other. What the
// cluster answers decides when the next request goes, and how many may be
// in flight at once (see pressure): between 1 and elasticsearch-workers,
// halved when the cluster pushes back, one more after a round of answers
// without pushback (AIMD); after an answer that refused part of the
// documents, a pause as long as the cluster would take to index them at
// the rate it took the rest; after one that made no progress, exponential
// backoff with jitter. Pushback is counted by status (Stats.ItemErrors)
// and logged at a limited rate with the share refused.
//
// Documents refused for good (mapping errors and other 4xx) are appended to
// the dead-letter file beside the container's logs, counted, and logged at
// a limited rate; they are never retried.
//
// # Memory
//
// Events wait for their batch where they are queued: on disk, or in the
// memory queue. Only once a batch's worth is there (elasticsearch-bulk-
// actions, or a full buffer), or the flush interval has passed, does the
// batching goroutine take a buffer from the batch memory shared by every
// sink of the plugin (forward.Batches: 2 MiB, at most 256 KiB a batch, 32
// KiB past the limit for a sink that waited 500ms for room) and encode the
// events straight from the queue into it, back to back: the buffer is the
// request's body, handed to the client without a copy. A batch is thus at
// most elasticsearch-bulk-size, and often less. The buffer is kept until
// every document of the batch is settled: the documents to send again are
// moved to its front (their body), and it becomes the next request, topped
// up with newer events. So a sink holds at most cfg.Workers plus one
// batches, whatever the number of events waiting, and a hundred sinks,
// even all retrying while Elasticsearch is down, hold a few MiB of
// batches.
package elasticsearch
