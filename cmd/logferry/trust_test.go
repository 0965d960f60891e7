package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA returns a self-signed CA certificate in PEM.
func testCA(t *testing.T, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestCountCerts(t *testing.T) {
	a, b := testCA(t, "a"), testCA(t, "b")
	tests := []struct {
		name  string
		files map[string][]byte // "->target" makes a link
		want  int
	}{
		{name: "missing directory", files: nil, want: 0},
		{name: "empty", files: map[string][]byte{}, want: 0},
		{name: "bundle", files: map[string][]byte{"ca-certificates.crt": append(append([]byte{}, a...), b...)}, want: 2},
		{
			name: "bundle and the same certificates beside it",
			files: map[string][]byte{
				"ca-certificates.crt": append(append([]byte{}, a...), b...),
				"a.pem":               a,
				"b.pem":               b,
			},
			want: 2,
		},
		{
			name: "links out of the mount and files that are no certificate",
			files: map[string][]byte{
				"a.pem":       a,
				"gone.pem":    []byte("->/nonexistent/logferry/ca.crt"),
				"README":      []byte("not a certificate"),
				"key.pem":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
				"garbage.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}),
			},
			want: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "certs")
			if tt.files != nil {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, data := range tt.files {
				path := filepath.Join(dir, name)
				var err error
				if target, ok := strings.CutPrefix(string(data), "->"); ok {
					err = os.Symlink(target, path)
				} else {
					err = os.WriteFile(path, data, 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			got, err := countCerts(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("countCerts = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestReportTrust(t *testing.T) {
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "ca-certificates.crt"), testCA(t, "host"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		want []string
	}{
		{"host store", host, []string{"level=INFO", "trust the host's CA store", "certificates=1"}},
		{"empty store", t.TempDir(), []string{"level=WARN", "embedded Mozilla roots", "roots="}},
		{"no mount", filepath.Join(host, "missing"), []string{"level=WARN", "embedded Mozilla roots"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			reportTrust(slog.New(slog.NewTextHandler(&out, nil)), tt.dir)
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("log %q lacks %q", out.String(), w)
				}
			}
			if strings.Contains(out.String(), "roots=0") {
				t.Errorf("log %q: the embedded bundle is empty", out.String())
			}
		})
	}
}
