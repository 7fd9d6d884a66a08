package events

import (
	"strings"
	"testing"
)

const (
	tp     = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	tpBody = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ts     = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
)

// A request carries its trace context in any of its forms; the first place
// that has a valid traceparent wins, with the tracestate found there.
func TestDecodeRequestTrace(t *testing.T) {
	plain := func(extra string) string { return `{"id":"r-1","api_key_id":"k-1"` + extra + `}` }
	for _, tc := range []struct {
		name   string
		header map[string][]string
		body   string
		want   Trace
	}{
		{"none", nil, plain(""), Trace{}},
		{"plain fields", nil, plain(`,"traceparent":"` + tp + `","tracestate":"` + ts + `"`), Trace{tp, ts}},
		{"structured extension attributes", nil,
			`{"specversion":"1.0","id":"ce-1","source":"ir","type":"t","traceparent":"` + tp + `","tracestate":"` + ts + `","data":{"api_key_id":"k-1"}}`, Trace{tp, ts}},
		{"structured data fields", nil,
			`{"specversion":"1.0","id":"ce-1","source":"ir","type":"t","data":{"api_key_id":"k-1","traceparent":"` + tp + `"}}`, Trace{Parent: tp}},
		{"attribute before data", nil,
			`{"specversion":"1.0","id":"ce-1","source":"ir","type":"t","traceparent":"` + tp + `","data":{"api_key_id":"k-1","traceparent":"` + tpBody + `"}}`, Trace{Parent: tp}},
		{"binary ce- headers", ceHdr("ce-traceparent", tp, "ce-tracestate", ts), `{"api_key_id":"k-1"}`, Trace{tp, ts}},
		{"NATS headers", hdr("traceparent", tp, "tracestate", ts), plain(""), Trace{tp, ts}},
		{"NATS headers in another case", hdr("Traceparent", tp, "TraceState", ts), plain(""), Trace{tp, ts}},
		{"body before headers", hdr("traceparent", tp), plain(`,"traceparent":"` + tpBody + `"`), Trace{Parent: tpBody}},
		{"ce- header before NATS header", ceHdr("ce-traceparent", tp, "traceparent", tpBody), `{"api_key_id":"k-1"}`, Trace{Parent: tp}},
		{"malformed body value falls through to a header", hdr("traceparent", tp), plain(`,"traceparent":"junk"`), Trace{Parent: tp}},
		{"tracestate without traceparent", hdr("tracestate", ts), plain(""), Trace{}},
		{"invalid tracestate dropped, traceparent kept", hdr("traceparent", tp, "tracestate", "Bad Key=1"), plain(""), Trace{Parent: tp}},
		{"not a string", nil, plain(`,"traceparent":55`), Trace{}},
		{"field names are case-sensitive", nil, plain(`,"TraceParent":"` + tp + `"`), Trace{}},
		{"invalid JSON", hdr("traceparent", tp), `{"traceparent":`, Trace{Parent: tp}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := DecodeRequest(tc.header, []byte(tc.body), fallback)
			if req.Trace != tc.want {
				t.Errorf("Trace = %+v, want %+v", req.Trace, tc.want)
			}
		})
	}
}

// A malformed trace context is dropped, never a reason to refuse a revocation.
func TestMalformedTraceIsDroppedNotRejected(t *testing.T) {
	req, err := DecodeRequest(hdr("traceparent", "00-ZZ"), []byte(`{"id":"r-1","api_key_id":"k-1","traceparent":"bogus\u0000"}`), fallback)
	if err != nil {
		t.Fatalf("a malformed traceparent made the request invalid: %v", err)
	}
	if !req.Trace.IsZero() {
		t.Errorf("Trace = %+v, want none", req.Trace)
	}
}

func TestTraceParentFormat(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" for invalid
	}{
		{tp, tp},
		{" " + tp + " ", tp},
		{strings.ToUpper(tp), ""},
		{"00-00000000000000000000000000000000-b7ad6b7169203331-01", ""},
		{"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", ""},
		{"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""},
		{tp + "-extra", ""}, // version 00 has exactly four fields
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", ""},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1", ""},
		{"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""},
		{"", ""},
	} {
		if got := checkTrace(tc.in, "").Parent; got != tc.want {
			t.Errorf("checkTrace(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTraceStateFormat(t *testing.T) {
	long := strings.Repeat("a", 250)
	many := strings.Repeat("k=v,", 32) + "x=y"
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{ts, true},
		{"congo=t61rcWkgMzE", true},
		{"a=1, ,b=2", true}, // empty members are allowed
		{"tenant1@sys=v", true},
		{"1tenant@sys=v", true},
		{"k=v with space", true},
		{"", false},
		{"K=v", false},
		{"1k=v", false},
		{"k", false},
		{"k=", false},
		{"k=v ", true}, // the trailing space is optional whitespace around the member
		{"k=a=b", false},
		{"k=\u00e9", false},
		{"k=" + long + long, false},
		{many, false},
		{strings.Repeat("k=v,", 32), true},
	} {
		got := checkTrace(tp, tc.in).State != ""
		if got != tc.want {
			t.Errorf("tracestate %q valid = %v, want %v", tc.in, got, tc.want)
		}
	}
}
