//go:build bench

package main

import (
	"bytes"
	"context"
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
	"syscall"
)

// apiVersion is the Engine API of Docker 20.10, which later daemons serve
// too.
const apiVersion = "/v1.41"

// benchLabel marks the containers the harness creates with the process ID
// of the harness, so that the ones an interrupted run left behind are
// removed by the next, and those of a harness still running are not.
const benchLabel = "io.logferry.bench"

// dockerClient speaks the few calls of the Docker Engine API the harness
// needs, over dockerd's unix socket, so that no docker CLI process is
// started in the measured part of a run. It is safe for concurrent use.
type dockerClient struct {
	hc *http.Client
}

func newDockerClient(socket string) *dockerClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		// One connection per container waiting for its exit, and more.
		MaxIdleConnsPerHost: 512,
	}
	return &dockerClient{hc: &http.Client{Transport: tr}}
}

func (c *dockerClient) close() { c.hc.CloseIdleConnections() }

// apiError is an answer with a status other than 2xx.
type apiError struct {
	method, path string
	status       int
	message      string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("docker %s %s: %s (status %d)", e.method, e.path, e.message, e.status)
}

// request sends one API call; the caller closes the body of a nil-error
// answer.
func (c *dockerClient) request(ctx context.Context, method, path string, query url.Values, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("docker %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	u := "http://docker" + apiVersion + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("docker %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker %s %s: %w", method, path, err)
	}
	if res.StatusCode/100 != 2 {
		defer res.Body.Close()
		var msg struct{ Message string }
		b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		if json.Unmarshal(b, &msg) != nil || msg.Message == "" {
			msg.Message = strings.TrimSpace(string(b))
		}
		return nil, &apiError{method: method, path: path, status: res.StatusCode, message: msg.Message}
	}
	return res, nil
}

// call sends one API call and decodes its JSON answer into out, if not nil.
func (c *dockerClient) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	res, err := c.request(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, res.Body)
	} else {
		err = json.NewDecoder(res.Body).Decode(out)
	}
	if err != nil {
		return fmt.Errorf("docker %s %s: read answer: %w", method, path, err)
	}
	return nil
}

// dockerRoot returns dockerd's data root, e.g. /var/lib/docker.
func (c *dockerClient) dockerRoot(ctx context.Context) (string, error) {
	var info struct{ DockerRootDir string }
	if err := c.call(ctx, http.MethodGet, "/info", nil, nil, &info); err != nil {
		return "", err
	}
	return info.DockerRootDir, nil
}

// imageExists reports an error unless the image is there.
func (c *dockerClient) imageExists(ctx context.Context, image string) error {
	return c.call(ctx, http.MethodGet, "/images/"+url.PathEscape(image)+"/json", nil, nil, nil)
}

// pluginInfo is what the harness needs to know of an installed plugin.
type pluginInfo struct {
	ID      string
	Enabled bool
	// root is the host source of the mount named "root", if any.
	root string
}

func (c *dockerClient) plugin(ctx context.Context, name string) (pluginInfo, error) {
	var p struct {
		ID      string `json:"Id"`
		Enabled bool
		// .Config.Mounts is what dockerd mounts; .Settings.Mounts stops
		// following "docker plugin set" once dockerd has restarted.
		Config struct {
			Mounts []struct{ Name, Source string }
		}
	}
	if err := c.call(ctx, http.MethodGet, "/plugins/"+url.PathEscape(name)+"/json", nil, nil, &p); err != nil {
		return pluginInfo{}, err
	}
	info := pluginInfo{ID: p.ID, Enabled: p.Enabled}
	for _, m := range p.Config.Mounts {
		if m.Name == "root" {
			info.root = m.Source
		}
	}
	return info, nil
}

// restartPlugin disables the plugin (forcing it: no container uses it
// between runs) and enables it again, so that a run starts with a fresh
// plugin process.
func (c *dockerClient) restartPlugin(ctx context.Context, name string) error {
	path := "/plugins/" + url.PathEscape(name)
	if err := c.call(ctx, http.MethodPost, path+"/disable", url.Values{"force": {"1"}}, nil, nil); err != nil {
		return err
	}
	// timeout=0: no limit on requests to the plugin, as "make install" sets.
	return c.call(ctx, http.MethodPost, path+"/enable", url.Values{"timeout": {"0"}}, nil, nil)
}

// containerSpec is a container to create.
type containerSpec struct {
	name      string
	image     string
	cmd       []string
	logDriver string
	logOpts   map[string]string
	// binds are host:container[:ro] bind mounts.
	binds []string
}

func (c *dockerClient) create(ctx context.Context, s containerSpec) (string, error) {
	body := map[string]any{
		"Image":  s.image,
		"Cmd":    s.cmd,
		"Labels": map[string]string{benchLabel: strconv.Itoa(os.Getpid())},
		"HostConfig": map[string]any{
			"NetworkMode": "none",
			"Binds":       s.binds,
			"LogConfig":   map[string]any{"Type": s.logDriver, "Config": s.logOpts},
		},
	}
	var out struct {
		ID string `json:"Id"`
	}
	err := c.call(ctx, http.MethodPost, "/containers/create", url.Values{"name": {s.name}}, body, &out)
	return out.ID, err
}

func (c *dockerClient) start(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil)
}

// remove removes a container, stopping it first if need be.
func (c *dockerClient) remove(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/containers/"+id, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
}

// logPath returns the container's json-file path (empty for other drivers).
func (c *dockerClient) logPath(ctx context.Context, id string) (string, error) {
	var out struct{ LogPath string }
	err := c.call(ctx, http.MethodGet, "/containers/"+id+"/json", nil, nil, &out)
	return out.LogPath, err
}

// leftovers returns the containers that harnesses no longer running left.
func (c *dockerClient) leftovers(ctx context.Context) ([]string, error) {
	filters, _ := json.Marshal(map[string][]string{"label": {benchLabel}})
	var out []struct {
		ID     string `json:"Id"`
		Labels map[string]string
	}
	err := c.call(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(filters)}}, nil, &out)
	var ids []string
	for _, c := range out {
		if pid, perr := strconv.Atoi(c.Labels[benchLabel]); perr == nil && pid > 1 && pid != os.Getpid() && alive(pid) {
			continue // another harness's
		}
		ids = append(ids, c.ID)
	}
	return ids, err
}

// alive tells whether a process pid exists (the harness runs beside
// dockerd, in the same PID namespace).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// exitWaiter is a registered wait for a container's next exit.
type exitWaiter struct {
	res  *http.Response
	path string
}

// waitNextExit registers a wait for the container's next exit; it returns
// once dockerd has registered it, so the container may be started then.
func (c *dockerClient) waitNextExit(ctx context.Context, id string) (*exitWaiter, error) {
	path := "/containers/" + id + "/wait"
	res, err := c.request(ctx, http.MethodPost, path, url.Values{"condition": {"next-exit"}}, nil)
	if err != nil {
		return nil, err
	}
	return &exitWaiter{res: res, path: path}, nil
}

// wait blocks until the container has exited (or the context given to
// waitNextExit is done) and returns its exit code.
func (w *exitWaiter) wait() (int, error) {
	defer w.res.Body.Close()
	var out struct {
		StatusCode int
		Error      *struct{ Message string }
	}
	if err := json.NewDecoder(w.res.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("docker POST %s: read answer: %w", w.path, err)
	}
	if out.Error != nil && out.Error.Message != "" {
		return out.StatusCode, fmt.Errorf("docker POST %s: %s", w.path, out.Error.Message)
	}
	return out.StatusCode, nil
}

// abandon releases a wait that will not be waited for.
func (w *exitWaiter) abandon() { w.res.Body.Close() }
