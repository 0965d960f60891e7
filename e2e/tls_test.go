//go:build e2e

package e2e

// What a TLS destination without a *-tls-ca option trusts, through the
// real engine: the CA store the plugin's "ca-certs" mount brings in from
// the host, and, when that is empty, the embedded Mozilla roots, which no
// test server's certificate chains to.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logferry/logferry/forward/elasticsearch/estest"
	"github.com/logferry/logferry/forward/fluentd/fluentdtest"
)

// TestPluginMountsHostCAStore checks the installed plugin: its "ca-certs"
// mount brings the host's /etc/ssl/certs in, read-only, where crypto/x509
// looks for the system roots.
func TestPluginMountsHostCAStore(t *testing.T) {
	t.Parallel()
	got, err := mountOf(t.Context(), suite.plugin, "ca-certs", "{{.Source}} {{.Destination}} {{.Options}}")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"/etc/ssl/certs /etc/ssl/certs", "ro"} {
		if !strings.Contains(got, w) {
			t.Errorf("ca-certs mount %q lacks %q", got, w)
		}
	}
}

// caStore writes a host CA store as Debian lays it out, a bundle named
// ca-certificates.crt, holding the given certificates, and returns its
// directory.
func caStore(t *testing.T, certs ...[]byte) string {
	t.Helper()
	dir := t.TempDir()
	var bundle []byte
	for _, c := range certs {
		bundle = append(bundle, c...)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca-certificates.crt"), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTLSTrustsHostStore runs containers with no *-tls-ca option against
// TLS servers, on a plugin whose ca-certs mount is a host store that holds
// some of the servers' CAs: those servers get every line, and those whose
// CA is not in the store get none (the plugin tries, and refuses their
// certificate). A plugin whose store is empty falls back to the embedded
// roots, which refuse the test servers' CAs too.
func TestTLSTrustsHostStore(t *testing.T) {
	t.Parallel()
	const lines = 50
	esTrusted := esServer(t, estest.Options{TLS: true})
	esUnknown := esServer(t, estest.Options{TLS: true})
	caTrusted, caUnknown := fluentdtest.NewCA(t), fluentdtest.NewCA(t)
	fdTrusted := fluentdtest.NewServer(t, fluentdtest.Config{TLS: caTrusted.ServerTLS(false)})
	fdUnknown := fluentdtest.NewServer(t, fluentdtest.Config{TLS: caUnknown.ServerTLS(false)})

	hostStore := pluginAlias("hostca")
	installPlugin(t, hostStore, t.TempDir(), "ca-certs.source="+caStore(t, esTrusted.CACertPEM(), caTrusted.CertPEM))
	noStore := pluginAlias("noca")
	installPlugin(t, noStore, t.TempDir(), "ca-certs.source="+t.TempDir())

	esOpts := func(srv *estest.Server) []string {
		return []string{"elasticsearch-url=" + srv.URL, "elasticsearch-flush-interval=100ms"}
	}
	// refused waits until the plugin tried the server a few times and
	// checks that it delivered nothing.
	refused := func(t *testing.T, tries func() int, delivered func() int) {
		t.Helper()
		fwdWait(t, fwdCeiling, "TLS handshakes", func() bool { return tries() >= 2 || delivered() > 0 })
		if n := delivered(); n > 0 {
			t.Errorf("%d lines delivered over TLS to a server whose CA the plugin should not trust", n)
		}
	}

	t.Run("elasticsearch, CA in the host store", func(t *testing.T) {
		t.Parallel()
		run(t, spec{driver: driverOf(hostStore), logOpts: esOpts(esTrusted), script: fwdNumberedLines(lines)})
		esDocs(t, esTrusted, lines, fwdCeiling)
		if n := esTrusted.Count(); n != lines {
			t.Errorf("%d documents indexed, want %d", n, lines)
		}
	})
	t.Run("fluentd, CA in the host store", func(t *testing.T) {
		t.Parallel()
		run(t, spec{driver: driverOf(hostStore), logOpts: []string{"fluentd-address=" + fdTrusted.URL()}, script: fwdNumberedLines(lines)})
		fwdCheckLines(t, "receiver", fdTrusted.WaitEvents(lines, fwdCeiling), lines, true)
	})
	t.Run("elasticsearch, CA not in the host store", func(t *testing.T) {
		t.Parallel()
		run(t, spec{driver: driverOf(hostStore), logOpts: esOpts(esUnknown), script: fwdNumberedLines(lines)})
		refused(t, func() int { return esUnknown.Stats().Handshakes }, esUnknown.Count)
	})
	t.Run("fluentd, CA not in the host store", func(t *testing.T) {
		t.Parallel()
		run(t, spec{driver: driverOf(hostStore), logOpts: []string{"fluentd-address=" + fdUnknown.URL()}, script: fwdNumberedLines(lines)})
		refused(t, fdUnknown.FailedHandshakes, func() int { return len(fdUnknown.Events()) })
	})
	t.Run("empty host store: embedded roots", func(t *testing.T) {
		t.Parallel()
		srv := esServer(t, estest.Options{TLS: true})
		run(t, spec{driver: driverOf(noStore), logOpts: esOpts(srv), script: fwdNumberedLines(lines)})
		refused(t, func() int { return srv.Stats().Handshakes }, srv.Count)
	})
}
