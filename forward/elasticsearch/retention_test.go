package elasticsearch

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/forward/elasticsearch/estest"
)

// TestRetentionPolicy: with elasticsearch-retention the sink installs, on
// Elasticsearch, an ILM policy deleting indices past the retention and a
// template that attaches it; on OpenSearch an ISM policy that attaches
// itself to the pattern's new indices, and replaces the one there with
// the sequence number OpenSearch asks for. estest checks both shapes as
// the APIs define them.
func TestRetentionPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		distribution string
	}{
		{"elasticsearch", estest.Elasticsearch},
		{"opensearch", estest.OpenSearch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := estest.NewServer(estest.Options{Distribution: tc.distribution})
			defer srv.Close()
			for i, retention := range []string{"30d", "7d"} { // the second replaces the first
				cfg := fast(srv.URL)
				cfg.Template, cfg.Retention = true, retention
				s := newTestSink(t, cfg, Credentials{}, nil)
				s.Send(&forward.Event{Time: epoch, Source: "stdout", Line: []byte("x")})
				closeSink(t, s, 10*time.Second)
				if st := srv.Stats(); st.BadRequests != 0 {
					t.Fatalf("sink %d: the server refused %d requests: %v", i, st.BadRequests, srv.Requests())
				}
			}
			pol, ok := srv.Policies()["logferry-docker"]
			if !ok {
				t.Fatalf("policies %v", srv.Policies())
			}
			var tmpl struct {
				Template struct {
					Settings map[string]any `json:"settings"`
				} `json:"template"`
			}
			if err := json.Unmarshal(srv.Templates()["logferry-docker"], &tmpl); err != nil {
				t.Fatal(err)
			}
			body := string(pol.Body)
			switch tc.distribution {
			case estest.Elasticsearch:
				if !strings.Contains(body, `"delete":{"min_age":"7d","actions":{"delete":{}}}`) {
					t.Errorf("ILM policy %s", body)
				}
				if got := tmpl.Template.Settings["index.lifecycle.name"]; got != "logferry-docker" {
					t.Errorf("template settings %v, want index.lifecycle.name", tmpl.Template.Settings)
				}
			case estest.OpenSearch:
				if !strings.Contains(body, `"min_index_age":"7d"`) || !strings.Contains(body, `"index_patterns":["docker-*"]`) || pol.SeqNo != 1 {
					t.Errorf("ISM policy (seq %d) %s", pol.SeqNo, body)
				}
				if len(tmpl.Template.Settings) != 0 {
					t.Errorf("template settings %v on OpenSearch", tmpl.Template.Settings)
				}
			}
		})
	}
}

func TestRetentionOption(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opts    map[string]string
		want    string
		wantErr string
	}{
		{map[string]string{KeyURL: "http://es:9200", KeyTemplate: "true", KeyRetention: "30d"}, "30d", ""},
		{map[string]string{KeyURL: "http://es:9200", KeyTemplate: "true", KeyRetention: "36h"}, "36h", ""},
		{map[string]string{KeyURL: "http://es:9200", KeyRetention: "30d"}, "", "needs elasticsearch-template=true"},
		{map[string]string{KeyURL: "http://es:9200", KeyTemplate: "true", KeyRetention: "1 month"}, "", "30d or 12h"},
		{map[string]string{KeyURL: "http://es:9200", KeyTemplate: "true", KeyRetention: "0d"}, "", "30d or 12h"},
		{map[string]string{KeyURL: "http://es:9200", KeyTemplate: "true", KeyRetention: "30m"}, "", "30d or 12h"},
	}
	for _, tt := range tests {
		t.Run(tt.opts[KeyRetention], func(t *testing.T) {
			cfg, _, err := ParseConfig(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, forward.ErrInvalidOption) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), KeyRetention) {
					t.Errorf("error %v, want one about %s saying %q", err, KeyRetention, tt.wantErr)
				}
				return
			}
			if err != nil || cfg.Retention != tt.want {
				t.Errorf("Retention %q, %v; want %q", cfg.Retention, err, tt.want)
			}
		})
	}
}

// TestLifecyclePolicyShapes: the policies the sink puts are accepted by
// estest's checks of the ILM and ISM APIs, and what the checks refuse is
// refused (so that they check something).
func TestLifecyclePolicyShapes(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		ilmPolicy("30d"),
		ismPolicy("docker-*", "30d"),
		templateBody("docker-*", `"index.lifecycle.name":"logferry-docker"`),
	} {
		if !json.Valid([]byte(body)) {
			t.Errorf("invalid JSON: %s", body)
		}
	}
	srv := estest.NewServer(estest.Options{})
	defer srv.Close()
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{ilmPolicy("30d"), true},
		{`{"policy":{"phases":{"delete":{"min_age":"30 days","actions":{"delete":{}}}}}}`, false},
		{`{"policy":{"phases":{"hot":{"actions":{"delete":{}}}}}}`, false},
		{`{"policy":{"phases":{"purge":{"actions":{}}}}}`, false},
	} {
		status := putJSON(t, srv.URL+"/_ilm/policy/p", tc.body)
		if (status == 200) != tc.ok {
			t.Errorf("PUT _ilm/policy %s: %d", tc.body, status)
		}
	}
	open := estest.NewServer(estest.Options{Distribution: estest.OpenSearch})
	defer open.Close()
	for _, tc := range []struct {
		body   string
		status int
	}{
		{ismPolicy("docker-*", "30d"), 201},
		{ismPolicy("docker-*", "30d"), 409}, // exists: needs if_seq_no
		{`{"policy":{"default_state":"hot","states":[{"name":"hot","actions":[],"transitions":[{"state_name":"gone","conditions":{"min_index_age":"1d"}}]}]}}`, 400},
		{`{"policy":{"default_state":"warm","states":[{"name":"hot","actions":[{"delete":{}}],"transitions":[]}]}}`, 400},
	} {
		if status := putJSON(t, open.URL+"/_plugins/_ism/policies/p", tc.body); status != tc.status {
			t.Errorf("PUT ISM policy %s: %d, want %d", tc.body, status, tc.status)
		}
	}
}

// putJSON puts body at url and returns the status.
func putJSON(t *testing.T, url, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
