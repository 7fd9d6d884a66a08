package events

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
)

// Trace is the W3C trace context (https://www.w3.org/TR/trace-context/) a request
// carried. A result carries it on as the CloudEvents distributed-tracing extension
// attributes traceparent and tracestate, and the worker's log lines name it, so that a
// revocation can be found in the tracing system of the one that asked for it.
type Trace struct {
	Parent string // traceparent, valid; "" when the request had none that is valid
	State  string // tracestate, valid; "" when absent, invalid or without Parent
}

// IsZero reports whether t carries no trace context.
func (t Trace) IsZero() bool { return t.Parent == "" }

// Where a request may carry its trace context, first found first taken:
// the body's top level (a plain field, or a structured CloudEvent's extension
// attribute), a structured CloudEvent's data, the binary CloudEvent headers
// ce-traceparent and ce-tracestate, and the NATS headers traceparent and
// tracestate. tracestate is taken from where traceparent was found.
//
// A malformed value is dropped, not rejected, as the W3C specification asks of
// a receiver: tracing is diagnostics, and a request that deletes a leaked key
// must never be refused for it.

// readTrace returns the trace context of a request, or the zero Trace.
func readTrace(header map[string][]string, body []byte) Trace {
	if bytes.Contains(body, []byte(`traceparent`)) && len(body) <= MaxRequestSize {
		// Field names match exactly, as in DecodeRequest; a body that is not
		// JSON is rejected there, and its trace dropped here.
		var top map[string]json.RawMessage
		if json.Unmarshal(body, &top) == nil {
			if t := traceIn(top); !t.IsZero() {
				return t
			}
			var data map[string]json.RawMessage
			if json.Unmarshal(top["data"], &data) == nil {
				if t := traceIn(data); !t.IsZero() {
					return t
				}
			}
		}
	}
	if t := checkTrace(headerValue(header, "ce-traceparent"), headerValue(header, "ce-tracestate")); !t.IsZero() {
		return t
	}
	return checkTrace(headerValue(header, "traceparent"), headerValue(header, "tracestate"))
}

// traceIn returns the trace context of the fields of one JSON object; a
// value that is not a string counts as absent.
func traceIn(obj map[string]json.RawMessage) Trace {
	var parent, state string
	_ = json.Unmarshal(obj["traceparent"], &parent)
	_ = json.Unmarshal(obj["tracestate"], &state)
	return checkTrace(parent, state)
}

// headerValue returns the first value of the header name, whatever its case;
// when several spellings are present, the one that sorts first, so the choice
// is stable.
func headerValue(h map[string][]string, name string) string {
	var keys []string
	for k, vs := range h {
		if len(vs) > 0 && strings.EqualFold(k, name) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Strings(keys)
	return h[keys[0]][0]
}

// checkTrace returns the trace context of a traceparent and tracestate as
// received: the zero Trace unless parent is valid, and no State unless state is.
func checkTrace(parent, state string) Trace {
	parent = strings.TrimSpace(parent)
	p, ok := validTraceParent(parent)
	if !ok {
		return Trace{}
	}
	t := Trace{Parent: p}
	if state = strings.Trim(state, " \t"); validTraceState(state) {
		t.State = state
	}
	return t
}

// validTraceParent checks a traceparent: version-traceid-parentid-flags in
// lower-case hex, neither id all zeros, version not ff. A later version may
// append fields after a dash; they are cut, as version 00 knows none of them.
func validTraceParent(v string) (string, bool) {
	const n = 55 // 2+1+32+1+16+1+2
	if len(v) < n || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return "", false
	}
	version := v[:2]
	switch {
	case !lowerHex(version) || version == "ff":
		return "", false
	case version == "00" && len(v) != n:
		return "", false
	case len(v) > n && v[n] != '-':
		return "", false
	}
	traceID, parentID, flags := v[3:35], v[36:52], v[53:55]
	if !lowerHex(traceID) || !lowerHex(parentID) || !lowerHex(flags) ||
		strings.Count(traceID, "0") == len(traceID) || strings.Count(parentID, "0") == len(parentID) {
		return "", false
	}
	return v[:n], true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// validTraceState checks a tracestate: at most 32 comma-separated key=value
// members, the keys as W3C defines them, the values printable ASCII without
// "," and "=", at most 512 bytes in all (the length every vendor must carry).
func validTraceState(v string) bool {
	if v == "" || len(v) > 512 {
		return false
	}
	members := 0
	for m := range strings.SplitSeq(v, ",") {
		m = strings.Trim(m, " \t")
		if m == "" {
			continue // empty members are allowed
		}
		if members++; members > 32 {
			return false
		}
		key, value, ok := strings.Cut(m, "=")
		if !ok || !validTraceStateKey(key) || !validTraceStateValue(value) {
			return false
		}
	}
	return members > 0
}

func validTraceStateKey(k string) bool {
	tenant, system, multi := strings.Cut(k, "@")
	if multi {
		// tenant@system: the tenant up to 241 characters and may start with a
		// digit, the system up to 14 starting with a letter.
		return len(tenant) >= 1 && len(tenant) <= 241 && keyChars(tenant, true) &&
			len(system) >= 1 && len(system) <= 14 && keyChars(system, false)
	}
	return len(k) >= 1 && len(k) <= 256 && keyChars(k, false)
}

func keyChars(s string, digitFirst bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		lower, digit := c >= 'a' && c <= 'z', c >= '0' && c <= '9'
		switch {
		case i == 0 && !lower && !(digitFirst && digit):
			return false
		case !lower && !digit && c != '_' && c != '-' && c != '*' && c != '/':
			return false
		}
	}
	return true
}

func validTraceStateValue(v string) bool {
	if v == "" || len(v) > 256 || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}
