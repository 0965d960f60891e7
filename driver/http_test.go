package driver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/go-plugins-helpers/sdk"
)

// pluginClient serves d's endpoints on a unix socket, as the plugin does, and
// returns a client that talks to it like dockerd.
func pluginClient(t *testing.T, d *Driver) func(endpoint string, body any) (int, []byte) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "p.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	h := sdk.NewHandler(Manifest)
	d.Register(h)
	served := make(chan error, 1)
	go func() { served <- h.Serve(l) }()
	t.Cleanup(func() {
		l.Close()
		if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	t.Cleanup(client.CloseIdleConnections)
	return func(endpoint string, body any) (int, []byte) {
		t.Helper()
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Post("http://plugin"+endpoint, sdk.DefaultContentTypeV1_1, strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("POST %s: %v", endpoint, err)
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out
	}
}

func TestHTTPEndpoints(t *testing.T) {
	d, _ := newTestDriver(t)
	call := pluginClient(t, d)
	id := containerID(21)
	fifo := newFIFO(t)
	info := map[string]any{"ContainerID": id, "ContainerName": "/web", "Config": map[string]string{"max-size": "1m"}}
	badInfo := map[string]any{"ContainerID": id, "Config": map[string]string{"max-size": "lots"}}

	tests := []struct {
		name     string
		endpoint string
		body     any
		status   int
		want     string // exact body without the trailing newline
	}{
		{"activate", "/Plugin.Activate", nil, 200, `{"Implements": ["LogDriver"]}`},
		{"capabilities", "/LogDriver.Capabilities", nil, 200, `{"Cap":{"ReadLogs":true}}`},
		{"bad option", "/LogDriver.StartLogging", map[string]any{"File": newFIFO(t), "Info": badInfo}, 200,
			`{"Err":"invalid log-opt max-size=\"lots\": must be a positive size such as 500k, 10m or 1g"}`},
		{"start", "/LogDriver.StartLogging", map[string]any{"File": fifo, "Info": info}, 200, `{}`},
		{"stop", "/LogDriver.StopLogging", map[string]any{"File": fifo}, 200, `{}`},
		{"stop unknown", "/LogDriver.StopLogging", map[string]any{"File": fifo}, 200,
			`{"Err":"stop logging \"` + fifo + `\": unknown log stream"}`},
		{"read logs of a bad id", "/LogDriver.ReadLogs", map[string]any{"Info": map[string]any{"ContainerID": "x"}}, 500,
			`{"Err":"container id must be 64 hexadecimal characters: \"x\""}`},
		{"read logs of a container without files", "/LogDriver.ReadLogs", map[string]any{"Info": info, "Config": map[string]any{"Tail": -1}}, 200, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := call(tt.endpoint, tt.body)
			if status != tt.status || strings.TrimSuffix(string(body), "\n") != tt.want {
				t.Errorf("%s = %d %q, want %d %q", tt.endpoint, status, body, tt.status, tt.want)
			}
		})
	}
}
