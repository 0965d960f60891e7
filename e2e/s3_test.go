//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The root keys of the S3 servers the tests start: local test servers
// only.
const (
	s3AccessKey = "logferry-e2e"
	s3SecretKey = "logferry-e2e-secret"
	s3Bucket    = "logs"
)

// s3Server is a real S3 server, Versity's gateway (scripts/s3.sh builds
// it; LOGFERRY_E2E_VERSITYGW names the binary), serving a directory of the
// test's on a port of its own, so that a test can stop and restart it.
type s3Server struct {
	t      testing.TB
	addr   string
	dir    string
	client *minio.Client

	mu  sync.Mutex // guards cmd
	cmd *exec.Cmd
}

// newS3Server starts a server with an empty bucket s3Bucket; it is stopped
// when the test ends.
func newS3Server(t testing.TB) *s3Server {
	t.Helper()
	bin := os.Getenv("LOGFERRY_E2E_VERSITYGW")
	if bin == "" {
		t.Fatal("LOGFERRY_E2E_VERSITYGW is not set: run the suite with make e2e, which builds the S3 server (scripts/s3.sh)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &s3Server{t: t, addr: addr, dir: t.TempDir()}
	s.start()
	t.Cleanup(s.stop)
	s.client, err = minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(s3AccessKey, s3SecretKey, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.client.MakeBucket(context.Background(), s3Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	return s
}

// start starts the server process and waits until it accepts connections.
func (s *s3Server) start() {
	s.t.Helper()
	cmd := exec.Command(os.Getenv("LOGFERRY_E2E_VERSITYGW"), "--port", s.addr, "posix", s.dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s3AccessKey, "ROOT_SECRET_ACCESS_KEY="+s3SecretKey)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start versitygw: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	if !poll(30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		s.t.Fatalf("versitygw not listening on %s within 30s: %s", s.addr, out.String())
	}
}

// stop kills the server, as an outage does; its data stays.
func (s *s3Server) stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

// endpoint is the s3-endpoint log-opt of the server.
func (s *s3Server) opts(extra ...string) []string {
	return append([]string{
		"s3-bucket=" + s3Bucket, "s3-endpoint=http://" + s.addr, "s3-region=us-east-1", "s3-path-style=true",
	}, extra...)
}

// s3Object is an object of the bucket, its documents decoded.
type s3Object struct {
	key  string
	docs []map[string]any
}

// objects lists the bucket's objects, in key order, each gunzipped and
// decoded as NDJSON.
func (s *s3Server) objects(t testing.TB) []s3Object {
	t.Helper()
	ctx := context.Background()
	var out []s3Object
	for info := range s.client.ListObjects(ctx, s3Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if info.Err != nil {
			t.Fatalf("list: %v", info.Err)
		}
		obj, err := s.client.GetObject(ctx, s3Bucket, info.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("get %s: %v", info.Key, err)
		}
		zr, err := gzip.NewReader(obj)
		if err != nil {
			t.Fatalf("object %s is not gzip: %v", info.Key, err)
		}
		raw, err := io.ReadAll(zr)
		obj.Close()
		if err != nil {
			t.Fatalf("object %s: %v", info.Key, err)
		}
		o := s3Object{key: info.Key}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var doc map[string]any
			if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
				t.Fatalf("object %s: line %q is not JSON: %v", info.Key, clip(sc.Text()), err)
			}
			o.docs = append(o.docs, doc)
		}
		out = append(out, o)
	}
	return out
}

// logs returns the "log" of every document of objs.
func s3Logs(objs []s3Object) []string {
	var logs []string
	for _, o := range objs {
		for _, d := range o.docs {
			l, _ := d["log"].(string)
			logs = append(logs, l)
		}
	}
	return logs
}

// waitS3Lines waits until the bucket holds n documents whose log is a
// "line N", and returns its objects.
func (s *s3Server) waitLines(t testing.TB, n int, ceiling time.Duration) []s3Object {
	t.Helper()
	var objs []s3Object
	if !poll(ceiling, func() bool {
		objs = s.objects(t)
		counts, _ := lineNumbers(s3Logs(objs))
		return len(counts) >= n
	}) {
		counts, _ := lineNumbers(s3Logs(objs))
		t.Fatalf("%d of %d lines in %d objects after %v", len(counts), n, len(objs), ceiling)
	}
	return objs
}

// s3Plugin installs a plugin of its own whose S3 keys come from its
// settings, the secret from a file under its root mount, and returns its
// --log-driver name.
func s3Plugin(t *testing.T, suffix string, settings ...string) (driver, root string) {
	t.Helper()
	root = t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "s3-secret"), []byte(s3SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	alias := pluginAlias(suffix)
	installPlugin(t, alias, root, append([]string{"S3_ACCESS_KEY_ID=" + s3AccessKey, "S3_SECRET_ACCESS_KEY_FILE=/var/lib/logferry/s3-secret"}, settings...)...)
	if inspect := mustDocker(t, "plugin", "inspect", alias); strings.Contains(inspect, s3SecretKey) {
		t.Error("docker plugin inspect shows the secret key")
	}
	return driverOf(alias), root
}

// TestS3ArchivesEveryLine: every line of a container is in exactly one
// object, as the document Elasticsearch would get (labels, env, tag), in
// objects named as documented and cut at s3-object-size.
func TestS3ArchivesEveryLine(t *testing.T) {
	t.Parallel()
	srv := newS3Server(t)
	driver, root := s3Plugin(t, "s3-every-line")
	const n = 2000
	name := containerName(t)
	c := run(t, spec{
		name:    name,
		driver:  driver,
		root:    root,
		logOpts: srv.opts("s3-object-size=50k", "labels=com.example.team", "env=APP_MODE", "tag=app.{{.Name}}"),
		flags:   []string{"--label", "com.example.team=ops", "-e", "APP_MODE=prod"},
		script:  pacedScript(1, n, 0),
	})
	objs := srv.waitLines(t, n, fwdCeiling)
	counts, others := lineNumbers(s3Logs(objs))
	checkLineCounts(t, "bucket", counts, others, n, true)
	if len(objs) < 5 {
		t.Errorf("%d objects for %d lines of about 250 bytes each with s3-object-size=50k", len(objs), n)
	}
	key := regexp.MustCompile(`^logs/\d{4}/\d{2}/\d{2}/\d{2}/` + regexp.QuoteMeta(name) + "_" + c.id +
		`/(\d{8}T\d{6}\.\d{9}Z)-(\d+)\.ndjson\.gz$`)
	recs := allRecords(t, c.logFiles(t, false))
	byLog := make(map[string]record, len(recs))
	for _, r := range recs {
		byLog[strings.TrimSuffix(r.Log, "\n")] = r
	}
	for _, o := range objs {
		m := key.FindStringSubmatch(o.key)
		if m == nil {
			t.Errorf("key %s does not have the documented shape", o.key)
			continue
		}
		first := o.docs[0]
		r := byLog[first["log"].(string)]
		if want := r.Time.UTC().Format("20060102T150405.000000000Z"); m[1] != want {
			t.Errorf("key %s: position %s, want the first line's time %s", o.key, m[1], want)
		}
		if want := r.Time.UTC().Format("2006/01/02/15"); !strings.Contains(o.key, want) {
			t.Errorf("key %s lacks the first line's hour %s", o.key, want)
		}
		for _, d := range o.docs {
			want := map[string]any{
				"log": d["log"], "source": "stdout", "container_id": c.id, "container_name": "/" + name,
				"@log_name": "app." + name, "com.example.team": "ops", "APP_MODE": "prod",
				"@timestamp": byLog[d["log"].(string)].Time.UTC().Format("2006-01-02T15:04:05.000000000Z"),
			}
			if fmt.Sprint(d) != fmt.Sprint(want) {
				t.Errorf("document %v, want %v", d, want)
				break
			}
		}
	}
}

// TestS3OutageAndPluginKill: the S3 server is down for 30 s while the
// container logs, and the plugin is killed with -9 while objects wait in
// its disk buffer: every line still lands in exactly one object.
func TestS3OutageAndPluginKill(t *testing.T) {
	t.Parallel()
	srv := newS3Server(t)
	driver, root := s3Plugin(t, "s3-outage")
	const n = 3000
	c := create(t, spec{
		driver:  driver,
		root:    root,
		logOpts: srv.opts("s3-object-size=20k", "s3-flush-interval=2s"),
		script:  pacedScript(1, n, 5*time.Millisecond),
	})
	c.start(t)
	srv.waitLines(t, 100, fwdCeiling)

	srv.stop()
	down := time.Now()
	waitForLine(t, c, `"line 1500\n"`)
	pid, killed := killPlugin(t, driver+":latest")
	waitPluginRestarted(t, driver+":latest", pid, killed)
	time.Sleep(time.Until(down.Add(30 * time.Second)))
	srv.start()
	t.Logf("server down for %v; plugin %d killed %v into the outage", time.Since(down).Round(time.Second), pid, killed.Sub(down).Round(time.Millisecond))
	c.wait(t)

	// Lines the killed process had read and not yet handed to its disk
	// buffer are lost with it (at most what one read held): the file is
	// the reference.
	counts, _ := lineNumbers(recordLines(allRecords(t, c.logFiles(t, false))))
	objs := srv.waitLines(t, len(counts), fwdCeiling)
	got, others := lineNumbers(s3Logs(objs))
	for l := range counts {
		if got[l] != 1 {
			t.Errorf("line %d is in %d objects", l, got[l])
		}
	}
	for l := range got {
		if counts[l] == 0 {
			t.Errorf("line %d is in the bucket but not in the file", l)
		}
	}
	if len(others) > 0 {
		t.Errorf("unexpected documents %q", others)
	}
	t.Logf("%d lines in the file, %d in %d objects", len(counts), len(got), len(objs))
}

// TestS3InvalidOptionsFailRun: a bad s3-* option fails docker run with a
// message that names it.
func TestS3InvalidOptionsFailRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []string
		want []string
	}{
		{"option without bucket", []string{"s3-region=eu-west-1"}, []string{"s3-region", "s3-bucket"}},
		{"key without position", []string{"s3-bucket=logs", "s3-key=logs/{container_id}"}, []string{"s3-key", "{position}"}},
		{"sse", []string{"s3-bucket=logs", "s3-sse=on"}, []string{"s3-sse", "AES256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkRunRefused(t, tt.opts, tt.want)
		})
	}
}

// slowDownProxy stands in front of srv and answers every other PUT with
// 503 SlowDown, as S3 does when a prefix takes more requests than it can.
type slowDownProxy struct {
	addr    string
	puts    atomic.Int64
	refused atomic.Int64
}

func newSlowDownProxy(t *testing.T, srv *s3Server) *slowDownProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowDownProxy{addr: l.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: srv.addr})
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && p.puts.Add(1)%2 == 1 {
			p.refused.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return p
}

// TestS3SlowDown: a store that answers half the writes 503 SlowDown gets
// every line exactly once all the same. The proxy keeps the signature
// valid: it forwards the request as it came, Host included.
func TestS3SlowDown(t *testing.T) {
	t.Parallel()
	srv := newS3Server(t)
	proxy := newSlowDownProxy(t, srv)
	driver, root := s3Plugin(t, "s3-slowdown")
	const n = 2000
	run(t, spec{
		driver: driver,
		root:   root,
		logOpts: []string{"s3-bucket=" + s3Bucket, "s3-endpoint=http://" + proxy.addr, "s3-region=us-east-1",
			"s3-path-style=true", "s3-object-size=20k"},
		script: pacedScript(1, n, 0),
	})
	objs := srv.waitLines(t, n, fwdCeiling)
	counts, others := lineNumbers(s3Logs(objs))
	checkLineCounts(t, "bucket", counts, others, n, true)
	if proxy.refused.Load() < 5 {
		t.Errorf("test bug: only %d of %d writes answered SlowDown", proxy.refused.Load(), proxy.puts.Load())
	}
	t.Logf("%d objects; %d of %d writes answered 503 SlowDown", len(objs), proxy.refused.Load(), proxy.puts.Load())
}

// TestS3FullBuffer: while the store is down, a container logs more than
// its buffer holds (buffer-max-size=1m): the oldest lines are dropped and
// counted, and every line not dropped lands exactly once once the store
// is back; the file keeps every line.
func TestS3FullBuffer(t *testing.T) {
	t.Parallel()
	srv := newS3Server(t)
	addr := fwdFreePort(t)
	driver, root := s3Plugin(t, "s3-full", "METRICS_ADDR="+addr)
	srv.stop()
	const n = 20000
	c := create(t, spec{
		driver:  driver,
		root:    root,
		logOpts: srv.opts("buffer-max-size=1m", "s3-object-size=100k", "s3-flush-interval=2s"),
		// About 130 bytes a line on disk: 20 000 lines are 2.5 MiB. The
		// container stays up, so that its counters are served.
		script: fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); echo "line $i padding padding padding padding padding padding padding padding padding"; done; sleep 600`, n),
	})
	c.start(t)
	waitForLine(t, c, fmt.Sprintf(`"line %d padding`, n))
	var dropped uint64
	if !poll(fwdCeiling, func() bool {
		e, ok, _ := destEntry(addr, c, "s3")
		dropped = e.DroppedRecords
		return ok && dropped > 0
	}) {
		entries, err := pluginEntries(addr)
		t.Fatalf("no drops counted within %v: /api/plugins.json %+v, %v", fwdCeiling, entries, err)
	}
	srv.start()
	counts, _ := lineNumbers(recordLines(allRecords(t, c.logFiles(t, false))))
	if len(counts) != n {
		t.Fatalf("the file holds %d of %d lines", len(counts), n)
	}
	var got map[int]int
	fwdWait(t, fwdCeiling, "every line not dropped in the bucket", func() bool {
		got, _ = lineNumbers(s3Logs(srv.objects(t)))
		return len(got)+int(dropped) >= n
	})
	for l, k := range got {
		if k != 1 {
			t.Errorf("line %d is in %d objects", l, k)
		}
	}
	// Drop-oldest drops whole segments of the oldest lines, but not the
	// one the sink is reading: the newest lines are kept.
	if got[n] != 1 {
		t.Errorf("line %d in %d objects: want the newest kept", n, got[n])
	}
	if len(got)+int(dropped) != n {
		t.Errorf("%d lines in the bucket and %d dropped, want %d in all", len(got), dropped, n)
	}
	t.Logf("%d lines: %d in the bucket, %d dropped with the buffer full", n, len(got), dropped)
}
