package events

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// parseHeaderSpec turns "Name: value" lines into a header, so the fuzzer can vary headers.
func parseHeaderSpec(spec string) map[string][]string {
	h := make(map[string][]string)
	for line := range strings.SplitSeq(spec, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			h[k] = append(h[k], strings.TrimPrefix(v, " "))
		}
	}
	return h
}

// keyIDPattern restates the contract independently of ValidAPIKeyID.
var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// fallbackDigits is the sequence part of a fallback id.
var fallbackDigits = regexp.MustCompile(`^[0-9]+$`)

func FuzzDecodeRequest(f *testing.F) {
	ce := "ce-specversion: 1.0\nce-id: ce-1\nce-source: ir\nce-type: t"
	for _, seed := range []struct{ body, headers, fallback string }{
		{`{"id":"inc-4711-1","api_key_id":"a952bcbe-0d1f","reason":"leaked","requested_by":"ir-bot","source":"ir","requested_at":"2026-11-25T10:00:00Z"}`, "", fallback},
		{`{"api_key_id":"k"}`, "Nats-Msg-Id: msg-1", fallback},
		{`{"specversion":"1.0","id":"ce-1","source":"ir","type":"t","datacontenttype":"application/json","data":{"api_key_id":"k"}}`, "", fallback},
		{`{"specversion":"1.0","id":"ce-1","source":"ir","type":"t","data_base64":"e30="}`, "", fallback},
		{`{"api_key_id":"k","id":"inc-1"}`, ce, fallback},
		{`{"api_key_id":"k"}`, "ce-id: a%0D%0Ab\nCE-ID: x\nContent-Type: text/plain", fallback},
		{`{"api_key_id":"../x"}`, "", fallback},
		{`{"api_key_id":"a/b"}`, "", fallback},
		{`{"api_key_id":"a%2Fb"}`, "", fallback},
		{`{"api_key_id":12345}`, "", fallback},
		{`{"api_key_id":1e999999999}`, "", fallback},
		{`{"api_key_id":["k"],"id":{"x":1}}`, "", fallback},
		{`{"api_key_id":"k\u0000"}`, "", fallback},
		{"{\"api_key_id\":\"k\x00\"}", "", fallback},
		{"{\"api_key_id\":\"k\",\"reason\":\"\xff\xfe\"}", "", fallback},
		{`{"id":"a\r\nNats-Msg-Id: b","api_key_id":"k","reason":"\u001b[31m"}`, "", fallback},
		{`{"id":"` + strings.Repeat("i", 300) + `","api_key_id":"` + strings.Repeat("k", 200) + `"}`, "", fallback},
		{`{"api_key_id":"k","x":` + strings.Repeat("[", 12000) + strings.Repeat("]", 12000) + `}`, "", fallback},
		{`{"api_key_id":"k"}` + strings.Repeat(" ", MaxRequestSize), "Nats-Msg-Id: big", fallback},
		{`{"api_key_id":"k","api_key_id":"j"}`, "", fallback},
		{`[]`, "", fallback},
		{``, "", ""},
		{`{"api_key_id":"k"}`, "", ""},
		{`{"specversion":null,"id":"","data":null}`, ce, "s-1"},
		{`{"leaked_private_key":"-----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY-----\n"}`, "", fallback},
		{`{"leaked_private_key":"x PRIVATE KEY","api_key_id":"K"}`, "", fallback},
		{`{"leaked_private_key":null,"api_key_id":null}`, "", fallback},
		{`{"id":"KEY_REVOKE_REQUESTS-43","api_key_id":"k"}`, "", fallback},
		{`{"api_key_id":"k","not_before":"2026-12-24T18:00:00+01:00"}`, "", fallback},
		{`{"api_key_id":"k","not_before":"tomorrow","not_before":1}`, "", fallback},
		{`{"api_key_id":"k"}`, "Nats-Msg-Id: KEY_REVOKE_REQUESTS-43", fallback},
		{`{"api_key_id":"k"}`, "ce-specversion: 1.0\nce-id: S-1-9\nce-source: ir\nce-type: t", "S-1-8"},
	} {
		f.Add([]byte(seed.body), seed.headers, seed.fallback)
	}

	f.Fuzz(func(t *testing.T, body []byte, headers, fallbackID string) {
		h := parseHeaderSpec(headers)
		req, err := DecodeRequest(h, body, fallbackID)

		if fallbackID != "" && req.ID == "" {
			t.Fatalf("empty ID with fallback %q", fallbackID)
		}
		if req.ID != fallbackID {
			if problem := checkID("id", req.ID); problem != "" {
				t.Fatalf("ID %q is not a safe id: %s", req.ID, problem)
			}
			// No id but a message's own fallback has the fallback's form.
			if i := strings.LastIndexByte(fallbackID, '-'); i > 0 && fallbackDigits.MatchString(fallbackID[i+1:]) &&
				strings.HasPrefix(req.ID, fallbackID[:i+1]) && fallbackDigits.MatchString(req.ID[i+1:]) {
				t.Fatalf("ID %q squats the fallback form of %q", req.ID, fallbackID)
			}
		}
		if len(req.APIKeyID) > MaxAPIKeyIDLength || !utf8.ValidString(req.APIKeyID) {
			t.Fatalf("APIKeyID %q is too long or not UTF-8", req.APIKeyID)
		}
		for _, s := range []string{req.Reason, req.RequestedBy, req.Source} {
			if len(s) > MaxTextLength || !utf8.ValidString(s) {
				t.Fatalf("text field %q is too long or not UTF-8", s)
			}
		}
		if !req.RequestedAt.IsZero() && req.RequestedAt.Location().String() != "UTC" {
			t.Fatalf("RequestedAt %v is not UTC", req.RequestedAt)
		}

		again, err2 := DecodeRequest(h, body, fallbackID)
		if again != req || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("not deterministic: %+v, %v then %+v, %v", req, err, again, err2)
		}

		if err != nil {
			var ire *InvalidRequestError
			if !errors.As(err, &ire) || ire.Reason == "" {
				t.Fatalf("err = %#v, want *InvalidRequestError with a reason", err)
			}
			return
		}

		// With a leaked key, api_key_id is an optional hint.
		if !keyIDPattern.MatchString(req.APIKeyID) && (req.LeakedKey.IsZero() || req.APIKeyID != "") {
			t.Fatalf("accepted api_key_id %q", req.APIKeyID)
		}
		if !req.LeakedKey.IsZero() && (len(req.LeakedKey.PEM()) > MaxLeakedKeyLength || !strings.Contains(string(req.LeakedKey.PEM()), "PRIVATE KEY")) {
			t.Fatal("accepted a leaked_private_key that is too long or holds no PRIVATE KEY block")
		}
		for _, s := range []string{req.Reason, req.RequestedBy, req.Source} {
			if strings.IndexFunc(s, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) >= 0 {
				t.Fatalf("accepted a control character in %q", s)
			}
		}
		if fallbackID == "" {
			return
		}
		res := Result{
			RequestID: req.ID, APIKeyID: req.APIKeyID, Outcome: Revoked, Reason: req.Reason,
			RequestedBy: req.RequestedBy, Source: req.Source, RequestedAt: req.RequestedAt,
		}
		doc, err := res.MarshalEvent()
		if err != nil {
			t.Fatalf("MarshalEvent of an accepted request: %v", err)
		}
		back, err := ParseResult(doc)
		if err != nil {
			t.Fatalf("ParseResult(%s): %v", doc, err)
		}
		if back.RequestID != res.RequestID && utf8.ValidString(res.RequestID) || back.APIKeyID != res.APIKeyID ||
			back.Reason != res.Reason || !back.RequestedAt.Equal(res.RequestedAt) {
			t.Fatalf("round trip changed the result:\n%+v\n%+v", res, back)
		}
	})
}

// FuzzResultSize asserts the bound on what a request can make revoker store:
// whatever the request's bytes and headers, its result (rejected when it is
// invalid, revoked otherwise) encodes, parses back, and is at most
// MaxResultSize bytes; laid out in binary mode, it reads back the same.
func FuzzResultSize(f *testing.F) {
	f.Add([]byte(`{"id":"inc-1","api_key_id":"k","reason":"r"}`), "")
	f.Add([]byte(`{"api_key_id":"k"`+strings.Repeat(`,"id":0`, 9000)+`}`), "")
	f.Add([]byte(`{"id":"`+strings.Repeat(`\"`, 120)+`","api_key_id":"`+strings.Repeat(`\u0001`, 120)+`","reason":"`+
		strings.Repeat(`\u2028`, 340)+`","requested_by":"`+strings.Repeat(`\u0000`, 170)+`","source":"`+strings.Repeat(`\"`, 500)+`"}`), "")
	f.Add([]byte(`{"api_key_id":"k","requested_at":"0000-01-01T00:00:00+01:00"}`), "ce-id: "+strings.Repeat("\u2029", 80))
	f.Add([]byte(`{"id":"`+strings.Repeat(`\"`, 120)+`","api_key_id":"k","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",`+
		`"tracestate":"`+strings.Repeat("a=b,", 127)+`c=d"}`), "")
	f.Fuzz(func(t *testing.T, body []byte, headers string) {
		req, err := DecodeRequest(parseHeaderSpec(headers), body, "KEY_REVOKE_REQUESTS-18446744073709551615")
		res := Result{
			RequestID: req.ID, RequestSeq: 1<<64 - 1, APIKeyID: req.APIKeyID, Outcome: Revoked, Attempts: 1, Deliveries: 10,
			HTTPStatus: 204, Reason: req.Reason, RequestedBy: req.RequestedBy, Source: req.Source, RequestedAt: req.RequestedAt,
			Trace: req.Trace,
		}
		if err != nil {
			res.Outcome, res.HTTPStatus = Rejected, 0
			res.Error = &Error{Code: CodeInvalidRequest, Message: err.Error()}
		}
		doc, err := res.MarshalEvent()
		if err != nil {
			t.Fatalf("a result of a decoded request does not encode: %v", err)
		}
		if len(doc) > MaxResultSize {
			t.Fatalf("result is %d bytes, over %d", len(doc), MaxResultSize)
		}
		if _, err := ParseResult(doc); err != nil {
			t.Fatalf("result does not parse: %v\n%s", err, doc)
		}
		h, data, err := ResultMessage(doc, Binary)
		if err != nil {
			t.Fatalf("binary layout: %v", err)
		}
		if back, err := ResultDoc(h, data); err != nil || !bytes.Equal(back, doc) {
			t.Fatalf("binary layout does not read back: %v\n%s\n%s", err, back, doc)
		}
	})
}

// FuzzParseResultMsg: whatever a stored message holds (anyone allowed to
// publish on a results subject can store one), reading it is an error or a
// result, never a crash.
func FuzzParseResultMsg(f *testing.F) {
	doc, _ := tracedResult().MarshalEvent()
	h, data, _ := ResultMessage(doc, Binary)
	var spec strings.Builder
	for k, v := range h {
		spec.WriteString(k + ": " + v[0] + "\n")
	}
	f.Add(data, spec.String())
	f.Add(doc, "content-type: application/cloudevents+json")
	f.Add([]byte(`{}`), "ce-specversion: 1.0\nce-id: %C0%A0\nce-x: \"a\\\"b\"")
	f.Fuzz(func(t *testing.T, body []byte, headers string) {
		_, _ = ParseResultMsg(parseHeaderSpec(headers), body)
	})
}
