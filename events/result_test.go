package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var (
	t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	t1 = t0.Add(1500 * time.Millisecond)
	t2 = t1.Add(12345678 * time.Nanosecond)
)

func revokedResult() Result {
	return Result{
		RequestID: "inc-4711-1", RequestSeq: 7, APIKeyID: "a952bcbe-0d1f-4f0e-9c3a-1b2c3d4e5f60", Outcome: Revoked,
		Attempts: 1, Deliveries: 1, HTTPStatus: 204,
		Reason: "leaked in a public gist", RequestedBy: "ir-bot", Source: "incident-response",
		RequestedAt: t0, ReceivedAt: t1, CompletedAt: t2, DurationMS: 12,
	}
}

func rejectedResult() Result {
	return Result{
		RequestID: "KEY_REVOKE_REQUESTS-42", RequestSeq: 42, APIKeyID: "a/b", Outcome: Rejected, Deliveries: 1,
		Reason: "tab\there \"quoted\" <b>&amp;</b> \u2028 é", ReceivedAt: t1, CompletedAt: t1, DurationMS: 0,
		Error: &Error{Code: CodeInvalidRequest, Message: `api_key_id "a/b" has characters outside [A-Za-z0-9_-]`},
	}
}

func failedResult() Result {
	return Result{
		RequestID: "ce-1", APIKeyID: "k", Outcome: Failed, Attempts: 7, Deliveries: 2, HTTPStatus: 503,
		Source: "ir", ReceivedAt: t0, CompletedAt: t0.Add(15 * time.Minute), DurationMS: 900000,
		Error: &Error{Code: CodeRetriesExhausted, Message: "kalshi: 503 service_unavailable"},
	}
}

func TestMarshalEventGolden(t *testing.T) {
	for name, r := range map[string]Result{
		"revoked":  revokedResult(),
		"rejected": rejectedResult(),
		"failed":   failedResult(),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := r.MarshalEvent()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, bytes.TrimSuffix(want, []byte("\n"))) {
				t.Errorf("MarshalEvent() =\n%s\nwant (%s)\n%s", got, path, want)
			}
		})
	}
}

func TestMarshalEventShape(t *testing.T) {
	got, err := rejectedResult().MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"specversion": "1.0", "id": "KEY_REVOKE_REQUESTS-42", "source": "revoker", "type": "revoker.key.rejected",
		"subject": "a/b", "time": "2026-11-25T10:00:01.5Z", "datacontenttype": "application/json",
	} {
		if doc[k] != want {
			t.Errorf("%s = %v, want %v", k, doc[k], want)
		}
	}
	data := doc["data"].(map[string]any)
	for _, k := range []string{"http_status", "requested_by", "source", "requested_at"} {
		if _, ok := data[k]; ok {
			t.Errorf("data.%s present, want it left out", k)
		}
	}
	if e, ok := data["error"].(map[string]any); !ok || e["code"] != "invalid_request" {
		t.Errorf("data.error = %v, want code invalid_request", data["error"])
	}

	// An empty key id is left out of subject (CloudEvents: if present, not
	// empty) but still appears as data.api_key_id.
	r := revokedResult()
	r.APIKeyID = ""
	got, err = r.MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got, []byte(`"subject"`)) || !bytes.Contains(got, []byte(`"api_key_id":"",`)) {
		t.Errorf("an empty key id must leave out subject and still appear as data.api_key_id: %s", got)
	}
	if bytes.Contains(got, []byte(`"error"`)) {
		t.Errorf("a revoked result has an error: %s", got)
	}
}

func TestMarshalEventUTC(t *testing.T) {
	r := revokedResult()
	tokyo := time.FixedZone("JST", 9*3600)
	r.CompletedAt = time.Date(2026, 11, 25, 19, 0, 0, 250_000_000, tokyo)
	got, err := r.MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte(`"time":"2026-11-25T10:00:00.25Z"`)) ||
		!bytes.Contains(got, []byte(`"completed_at":"2026-11-25T10:00:00.25Z"`)) {
		t.Errorf("times not in UTC: %s", got)
	}
}

// tracedResult is a result of a request that carried a W3C trace context.
func tracedResult() Result {
	r := failedResult()
	r.Trace = Trace{Parent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", State: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}
	return r
}

func TestResultRoundTrip(t *testing.T) {
	scheduled := revokedResult()
	scheduled.NotBefore = t0.Add(time.Hour)
	for _, r := range []Result{revokedResult(), rejectedResult(), failedResult(), tracedResult(), scheduled} {
		doc, err := r.MarshalEvent()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseResult(doc)
		if err != nil {
			t.Fatalf("ParseResult(%s): %v", doc, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
		}
	}
}

func TestParseResultErrors(t *testing.T) {
	good, err := revokedResult().MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ doc, want string }{
		"not JSON":           {`nope`, "parse result: invalid character"},
		"wrong specversion":  {strings.Replace(string(good), `"specversion":"1.0"`, `"specversion":"0.3"`, 1), `specversion "0.3" is not 1.0`},
		"no data":            {`{"specversion":"1.0","id":"x","type":"revoker.key.revoked"}`, "no data"},
		"unknown outcome":    {strings.ReplaceAll(string(good), `revoked"`, `gone"`), `unknown outcome "gone"`},
		"type does not fit":  {strings.Replace(string(good), `revoker.key.revoked`, `revoker.key.failed`, 1), "does not match outcome"},
		"bad time":           {strings.Replace(string(good), `"received_at":"2026`, `"received_at":"x2026`, 1), "parse result"},
		"attempts as string": {strings.Replace(string(good), `"attempts":1`, `"attempts":"1"`, 1), "parse result"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseResult([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseResult() error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*Result)
		want string
	}{
		"no request id":              {func(r *Result) { r.RequestID = "" }, "no request id"},
		"unknown outcome":            {func(r *Result) { r.Outcome = "gone" }, `unknown outcome "gone"`},
		"empty outcome":              {func(r *Result) { r.Outcome = "" }, `unknown outcome ""`},
		"revoked with an error":      {func(r *Result) { r.Error = &Error{Code: CodeMaxDeliveries} }, "outcome revoked with an error"},
		"rejected without an error":  {func(r *Result) { r.Outcome = Rejected }, "outcome rejected without an error code"},
		"failed with an empty code":  {func(r *Result) { r.Outcome, r.Error = Failed, &Error{Message: "m"} }, "outcome failed without an error code"},
		"completed after year 9999":  {func(r *Result) { r.CompletedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "completed_at year 10000"},
		"requested before year zero": {func(r *Result) { r.RequestedAt = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }, "requested_at year -1"},
	} {
		t.Run(name, func(t *testing.T) {
			r := revokedResult()
			tc.edit(&r)
			if err := r.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want it to contain %q", err, tc.want)
			}
			if b, err := r.MarshalEvent(); err == nil {
				t.Errorf("MarshalEvent() = %s, want an error", b)
			}
		})
	}
	for _, r := range []Result{revokedResult(), rejectedResult(), failedResult()} {
		if err := r.Validate(); err != nil {
			t.Errorf("Validate(%s) = %v", r.Outcome, err)
		}
	}
}

func TestOutcomesAndCodes(t *testing.T) {
	for o, want := range map[Outcome]struct {
		typ       string
		succeeded bool
	}{
		Revoked:        {"revoker.key.revoked", true},
		AlreadyRevoked: {"revoker.key.already_revoked", true},
		Rejected:       {"revoker.key.rejected", false},
		Failed:         {"revoker.key.failed", false},
	} {
		if got := o.Type(); got != want.typ {
			t.Errorf("%s.Type() = %q, want %q", o, got, want.typ)
		}
		if got := o.Succeeded(); got != want.succeeded {
			t.Errorf("%s.Succeeded() = %v, want %v", o, got, want.succeeded)
		}
		if !o.Valid() {
			t.Errorf("%s.Valid() = false", o)
		}
	}
	if Outcome("Revoked").Valid() || Outcome("").Succeeded() {
		t.Error("unknown outcomes must be neither valid nor succeeded")
	}
	for c, want := range map[Code]Outcome{
		CodeInvalidRequest: Rejected, CodeUnauthorizedRequest: Rejected, CodeSelfRevocationRefused: Rejected,
		CodeProtectedKey: Rejected, CodeKalshiBadRequest: Rejected,
		CodeKalshiUnauthorized: Failed, CodeRetriesExhausted: Failed, CodeMaxDeliveries: Failed,
		CodeCancelOrdersNotAllowed: "", "other": "",
	} {
		if got := c.Outcome(); got != want {
			t.Errorf("Code(%q).Outcome() = %q, want %q", c, got, want)
		}
	}
	if got := ResultSubject("keys.revoke.results", AlreadyRevoked); got != "keys.revoke.results.already_revoked" {
		t.Errorf("ResultSubject() = %q", got)
	}
	e := &Error{Code: CodeProtectedKey, Message: "key k is protected"}
	if got := e.Error(); got != "protected_key: key k is protected" {
		t.Errorf("Error.Error() = %q", got)
	}
}

func BenchmarkMarshalEvent(b *testing.B) {
	r := revokedResult()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.MarshalEvent(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	body := []byte(`{"id":"inc-4711-1","api_key_id":"a952bcbe-0d1f-4f0e-9c3a-1b2c3d4e5f60","reason":"leaked in a public gist",` +
		`"requested_by":"ir-bot","source":"incident-response","requested_at":"2026-11-25T10:00:00Z"}`)
	h := map[string][]string{"Nats-Msg-Id": {"inc-4711-1"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(h, body, fallback); err != nil {
			b.Fatal(err)
		}
	}
}

// Issue 12, item 1: a request of 64 KiB of repeated keys once made a
// 375 KB rejection. What a rejection says is capped, and so is a result.
func TestRejectionIsBounded(t *testing.T) {
	body := `{"api_key_id":"k"` + strings.Repeat(`,"id":0`, (MaxRequestSize-20)/7) + `}`
	req, err := DecodeRequest(nil, []byte(body), "KEY_REVOKE_REQUESTS-1")
	var ire *InvalidRequestError
	if !errors.As(err, &ire) || strings.Count(ire.Reason, ";") > maxProblems || !strings.Contains(ire.Reason, "more problems") {
		t.Fatalf("reason %.300q: want at most %d problems and a count of the rest", err, maxProblems)
	}
	res := Result{RequestID: req.ID, APIKeyID: req.APIKeyID, Outcome: Rejected, Error: &Error{Code: CodeInvalidRequest, Message: ire.Error()},
		Reason: strings.Repeat("\u2028", MaxTextLength/3), RequestedBy: strings.Repeat(`"`, MaxTextLength), Source: strings.Repeat("\x01", MaxTextLength)}
	doc, err := res.MarshalEvent()
	if err != nil || len(doc) > MaxResultSize {
		t.Fatalf("%d bytes, %v; want at most %d", len(doc), err, MaxResultSize)
	}
	if _, err := ParseResult(doc); err != nil {
		t.Fatal(err)
	}
}
