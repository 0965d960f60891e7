package s3

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestPutRequest checks the request the store sends for an object, as S3
// defines it: path or virtual-hosted style, one signed PUT with the body's
// SHA-256 and MD5, the content type, and the SSE and storage-class
// headers the options ask for. A real S3 server is in the end-to-end
// tests; this one shows what they cannot (versitygw's posix backend has no
// KMS).
func TestPutRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		path    string
		headers map[string]string
	}{
		{"path style, defaults", Config{PathStyle: true}, "/logs/a/b.ndjson.gz",
			map[string]string{"Content-Type": "application/gzip", "X-Amz-Server-Side-Encryption": "", "X-Amz-Storage-Class": ""}},
		{"sse-s3 and storage class", Config{PathStyle: true, SSE: SSES3, StorageClass: "STANDARD_IA"}, "/logs/a/b.ndjson.gz",
			map[string]string{"X-Amz-Server-Side-Encryption": "AES256", "X-Amz-Storage-Class": "STANDARD_IA"}},
		{"sse-kms with a key", Config{PathStyle: true, SSE: SSEKMS, SSEKMSKeyID: "alias/logs"}, "/logs/a/b.ndjson.gz",
			map[string]string{"X-Amz-Server-Side-Encryption": "aws:kms", "X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id": "alias/logs"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var got []*http.Request
			var bodies [][]byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got, bodies = append(got, r), append(bodies, b)
				mu.Unlock()
				w.Header().Set("ETag", `"x"`)
			}))
			defer srv.Close()
			cfg := tc.cfg
			cfg.Bucket, cfg.Endpoint, cfg.Insecure, cfg.Region = "logs", strings.TrimPrefix(srv.URL, "http://"), true, "us-east-1"
			cfg.Credentials = Credentials{AccessKeyID: "AKIA", SecretAccessKey: "secret"}
			st, err := newMinio(cfg.withDefaults())
			if err != nil {
				t.Fatal(err)
			}
			defer st.close()
			body := []byte("\x1f\x8bgzip")
			if err := st.put(context.Background(), "a/b.ndjson.gz", body); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d requests, want one PUT", len(got))
			}
			r := got[0]
			// Over plain HTTP the payload is signed chunk by chunk
			// (aws-chunked); over HTTPS it goes as it is.
			payload := bodies[0]
			if r.Header.Get("X-Amz-Content-Sha256") == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" {
				payload = unchunk(t, payload)
			}
			if r.Method != http.MethodPut || r.URL.Path != tc.path || !bytes.Equal(payload, body) {
				t.Errorf("%s %s with %q", r.Method, r.URL.Path, bodies[0])
			}
			if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIA/") ||
				r.Header.Get("X-Amz-Content-Sha256") == "" || r.Header.Get("Content-Md5") == "" {
				t.Errorf("not signed with the payload's hash: %v", r.Header)
			}
			for k, want := range tc.headers {
				if v := r.Header.Get(k); v != want {
					t.Errorf("%s = %q, want %q", k, v, want)
				}
			}
		})
	}
}

// unchunk returns the payload of an aws-chunked body, checking that every
// chunk is signed.
func unchunk(t *testing.T, b []byte) []byte {
	t.Helper()
	var out []byte
	for {
		line, rest, ok := bytes.Cut(b, []byte("\r\n"))
		size, sig, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(string(size), 16, 64)
		if !ok || err != nil || !bytes.HasPrefix(sig, []byte("chunk-signature=")) || int64(len(rest)) < n+2 {
			t.Fatalf("not aws-chunked: %q", b)
		}
		if n == 0 {
			return out
		}
		out = append(out, rest[:n]...)
		b = rest[n+2:]
	}
}
