package driver

import (
	"bufio"
	"encoding/json"
	"net/http"

	"github.com/docker/go-plugins-helpers/sdk"
)

// Manifest is the answer to /Plugin.Activate.
const Manifest = `{"Implements": ["LogDriver"]}`

type startLoggingRequest struct {
	File string
	Info Info
}

type stopLoggingRequest struct {
	File string
}

type readLogsRequest struct {
	Info   Info
	Config ReadConfig
}

// response is the body of every /LogDriver.* answer but ReadLogs.
type response struct {
	Err string `json:",omitempty"`
}

type capabilitiesResponse struct {
	Cap struct{ ReadLogs bool }
	Err string `json:",omitempty"`
}

// Register adds the /LogDriver.* endpoints of d to h.
func (d *Driver) Register(h sdk.Handler) {
	h.HandleFunc("/LogDriver.StartLogging", func(w http.ResponseWriter, r *http.Request) {
		var req startLoggingRequest
		if err := sdk.DecodeRequest(w, r, &req); err != nil {
			return
		}
		respond(w, d.StartLogging(req.File, &req.Info))
	})
	h.HandleFunc("/LogDriver.StopLogging", func(w http.ResponseWriter, r *http.Request) {
		var req stopLoggingRequest
		if err := sdk.DecodeRequest(w, r, &req); err != nil {
			return
		}
		respond(w, d.StopLogging(r.Context(), req.File))
	})
	h.HandleFunc("/LogDriver.Capabilities", func(w http.ResponseWriter, r *http.Request) {
		var res capabilitiesResponse
		res.Cap.ReadLogs = true
		sdk.EncodeResponse(w, res, false)
	})
	h.HandleFunc("/LogDriver.ReadLogs", func(w http.ResponseWriter, r *http.Request) {
		var req readLogsRequest
		if err := sdk.DecodeRequest(w, r, &req); err != nil {
			return
		}
		if _, err := d.logPath(req.Info.ContainerID); err != nil {
			sdk.EncodeResponse(w, response{Err: err.Error()}, true)
			return
		}
		w.Header().Set("Content-Type", "application/x-json-stream")
		bw := bufio.NewWriterSize(w, 64<<10)
		flusher, _ := w.(http.Flusher)
		flush := func() {
			if bw.Flush() == nil && flusher != nil {
				flusher.Flush()
			}
		}
		err := d.ReadLogs(r.Context(), &req.Info, req.Config, bw, flush)
		flush()
		if err != nil && r.Context().Err() == nil {
			d.log.Error("read logs", "container", req.Info.ContainerID, "error", err)
		}
	})
}

// respond answers with 200 and the error, if any, in Err: dockerd shows
// that text as it is (a non-200 status would be wrapped in more words).
func respond(w http.ResponseWriter, err error) {
	var res response
	if err != nil {
		res.Err = err.Error()
	}
	w.Header().Set("Content-Type", sdk.DefaultContentTypeV1_1)
	_ = json.NewEncoder(w).Encode(res)
}
