package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	// With no CA certificate in the host's store (the "ca-certs" mount
	// missing or empty), crypto/x509 falls back to these Mozilla roots:
	// the plugin's own root file system is empty but for the binary.
	_ "golang.org/x/crypto/x509roots/fallback"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// caStore is where config.json's "ca-certs" mount puts the host's CA
// store (by default the host's /etc/ssl/certs). crypto/x509 reads the
// system roots from there on Linux: every destination without a *-tls-ca
// option trusts what the host trusts.
const caStore = "/etc/ssl/certs"

// reportTrust logs where the certificates of TLS destinations without a
// *-tls-ca option are checked against: the host's CA store, or, when it
// holds none, the embedded roots. It reads the store as crypto/x509 does
// (every file in the directory, PEM), only to say what it found.
func reportTrust(log *slog.Logger, dir string) {
	n, err := countCerts(dir)
	if n > 0 {
		log.Info("TLS: destinations without a CA option trust the host's CA store", "dir", dir, "certificates", n)
		return
	}
	roots := 0
	for range bundle.Roots() {
		roots++
	}
	args := []any{"dir", dir, "roots", roots}
	if err != nil {
		args = append(args, "error", err)
	}
	log.Warn("TLS: the host's CA store is not mounted or holds no certificate; destinations without a CA option trust the embedded Mozilla roots", args...)
}

// countCerts returns how many distinct CA certificates the files in dir
// hold: a bundle such as ca-certificates.crt and the single certificates
// beside it count each certificate once. Files that cannot be read (such
// as links to where the mount does not reach) are skipped, as crypto/x509
// skips them; a missing dir holds none.
func countCerts(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read CA store %q: %w", dir, err)
	}
	seen := make(map[[sha256.Size]byte]bool)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			if _, err := x509.ParseCertificate(b.Bytes); err == nil {
				seen[sha256.Sum256(b.Bytes)] = true
			}
		}
	}
	return len(seen), nil
}
