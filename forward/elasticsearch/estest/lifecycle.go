package estest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
)

// Distributions GET / can report.
const (
	Elasticsearch = "elasticsearch"
	OpenSearch    = "opensearch"
)

// Policy is a stored lifecycle policy: an ILM policy (Elasticsearch) or an
// ISM policy (OpenSearch), as it was put.
type Policy struct {
	Body json.RawMessage
	// SeqNo counts the puts of an ISM policy from 0.
	SeqNo int
}

// Policies returns the lifecycle policies by name.
func (s *Server) Policies() map[string]Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Policy, len(s.policies))
	for k, v := range s.policies {
		out[k] = Policy{Body: slices.Clone(v.Body), SeqNo: v.SeqNo}
	}
	return out
}

// timeValue is an Elasticsearch time value: a count and a unit.
var timeValue = regexp.MustCompile(`^[0-9]+(d|h|m|s|ms|micros|nanos)$`)

// ilmActions are the actions each ILM phase allows, as the ILM reference
// lists them.
var ilmActions = map[string][]string{
	"hot":    {"set_priority", "unfollow", "rollover", "readonly", "downsample", "shrink", "forcemerge", "searchable_snapshot"},
	"warm":   {"set_priority", "unfollow", "readonly", "downsample", "allocate", "migrate", "shrink", "forcemerge"},
	"cold":   {"set_priority", "unfollow", "readonly", "downsample", "searchable_snapshot", "allocate", "migrate"},
	"frozen": {"unfollow", "searchable_snapshot"},
	"delete": {"wait_for_snapshot", "delete"},
}

// putILMPolicy serves PUT _ilm/policy/{name} as Elasticsearch checks it:
// the body is {"policy": {"phases": …, "_meta": …}}, phases are the five
// ILM phases, each with an optional min_age time value and the actions
// that phase allows.
func (s *Server) putILMPolicy(w http.ResponseWriter, r *http.Request, name string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	bad := func(format string, args ...any) {
		s.refuse(w, http.StatusBadRequest, "x_content_parse_exception", fmt.Sprintf(format, args...))
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		bad("invalid JSON: %v", err)
		return
	}
	for k := range doc {
		if k != "policy" {
			bad("[put_lifecycle_request] unknown field [%s]", k)
			return
		}
	}
	var policy map[string]json.RawMessage
	if err := json.Unmarshal(doc["policy"], &policy); err != nil || policy == nil {
		bad("[put_lifecycle_request] failed to parse field [policy]")
		return
	}
	for k := range policy {
		if k != "phases" && k != "_meta" {
			bad("[lifecycle_policy] unknown field [%s]", k)
			return
		}
	}
	var phases map[string]struct {
		MinAge  *string                    `json:"min_age"`
		Actions map[string]json.RawMessage `json:"actions"`
	}
	if err := json.Unmarshal(policy["phases"], &phases); err != nil || phases == nil {
		bad("[lifecycle_policy] failed to parse field [phases]")
		return
	}
	for phase, p := range phases {
		allowed, ok := ilmActions[phase]
		if !ok {
			bad("Lifecycle does not support phase [%s]", phase)
			return
		}
		if p.MinAge != nil && !timeValue.MatchString(*p.MinAge) {
			bad("failed to parse setting [min_age] with value [%s] as a time value", *p.MinAge)
			return
		}
		if p.Actions == nil {
			bad("[phase] required [actions] field is missing in phase [%s]", phase)
			return
		}
		for a, v := range p.Actions {
			if !slices.Contains(allowed, a) {
				bad("invalid action [%s] defined in phase [%s]", a, phase)
				return
			}
			var obj map[string]any
			if json.Unmarshal(v, &obj) != nil || obj == nil {
				bad("action [%s] must be an object", a)
				return
			}
		}
	}
	s.mu.Lock()
	s.policies[name] = Policy{Body: body}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]bool{"acknowledged": true})
}

// ismConditions are the transition conditions of ISM.
var ismConditions = []string{"min_index_age", "min_doc_count", "min_size", "min_rollover_age", "cron"}

// ismActions are the ISM actions.
var ismActions = []string{"delete", "rollover", "read_only", "read_write", "replica_count", "force_merge",
	"shrink", "close", "open", "notification", "snapshot", "index_priority", "allocation", "rollup", "transform", "alias", "retry", "timeout"}

// ismPolicy is what putISMPolicy checks of a body.
type ismPolicy struct {
	Policy *struct {
		Description  string `json:"description"`
		DefaultState string `json:"default_state"`
		States       []struct {
			Name        string                       `json:"name"`
			Actions     []map[string]json.RawMessage `json:"actions"`
			Transitions []struct {
				StateName  string                     `json:"state_name"`
				Conditions map[string]json.RawMessage `json:"conditions"`
			} `json:"transitions"`
		} `json:"states"`
		ISMTemplate json.RawMessage `json:"ism_template"`
	} `json:"policy"`
}

// putISMPolicy serves PUT _plugins/_ism/policies/{name} as OpenSearch
// does: a new policy is created; an existing one only with if_seq_no and
// if_primary_term matching its own (409 otherwise). The states must be
// named, default_state and every transition must name one of them, and
// conditions and actions must be ISM's.
func (s *Server) putISMPolicy(w http.ResponseWriter, r *http.Request, name string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	bad := func(format string, args ...any) {
		s.refuse(w, http.StatusBadRequest, "illegal_argument_exception", fmt.Sprintf(format, args...))
	}
	var p ismPolicy
	if err := json.Unmarshal(body, &p); err != nil || p.Policy == nil {
		bad("failed to parse the policy")
		return
	}
	names := map[string]bool{}
	for _, st := range p.Policy.States {
		if st.Name == "" || names[st.Name] {
			bad("state names must be set and unique")
			return
		}
		names[st.Name] = true
	}
	if len(names) == 0 || !names[p.Policy.DefaultState] {
		bad("Policy default state [%s] does not exist", p.Policy.DefaultState)
		return
	}
	for _, st := range p.Policy.States {
		for _, a := range st.Actions {
			if len(a) == 0 {
				bad("an action must be named")
				return
			}
			for k := range a {
				if !slices.Contains(ismActions, k) {
					bad("Invalid field: [%s] found in Action.", k)
					return
				}
			}
		}
		for _, tr := range st.Transitions {
			if !names[tr.StateName] {
				bad("Policy state [%s] does not exist", tr.StateName)
				return
			}
			for c, v := range tr.Conditions {
				if !slices.Contains(ismConditions, c) {
					bad("Invalid field: [%s] found in Conditions.", c)
					return
				}
				var age string
				if c == "min_index_age" && (json.Unmarshal(v, &age) != nil || !timeValue.MatchString(age)) {
					bad("failed to parse [min_index_age] %s as a time value", v)
					return
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.policies[name]
	q := r.URL.Query()
	if exists {
		seq, err1 := strconv.Atoi(q.Get("if_seq_no"))
		term, err2 := strconv.Atoi(q.Get("if_primary_term"))
		if err1 != nil || err2 != nil || seq != old.SeqNo || term != 1 {
			// Not a bad request: how OpenSearch tells a client to read
			// the policy's sequence number first.
			writeError(w, http.StatusConflict, "version_conflict_engine_exception",
				fmt.Sprintf("[%s]: version conflict, document already exists (current version [%d])", name, old.SeqNo+1))
			return
		}
		s.policies[name] = Policy{Body: body, SeqNo: old.SeqNo + 1}
	} else {
		s.policies[name] = Policy{Body: body}
	}
	cur := s.policies[name]
	writeJSON(w, http.StatusCreated, map[string]any{"_id": name, "_version": cur.SeqNo + 1, "_seq_no": cur.SeqNo, "_primary_term": 1})
}

// getISMPolicy serves GET _plugins/_ism/policies/{name}.
func (s *Server) getISMPolicy(w http.ResponseWriter, name string) {
	s.mu.Lock()
	p, ok := s.policies[name]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "status_exception", "Policy not found")
		return
	}
	var body map[string]json.RawMessage
	_ = json.Unmarshal(p.Body, &body)
	writeJSON(w, http.StatusOK, map[string]any{"_id": name, "_version": p.SeqNo + 1, "_seq_no": p.SeqNo, "_primary_term": 1, "policy": body["policy"]})
}
