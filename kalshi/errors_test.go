package kalshi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// response builds a response the way the transport hands it over.
func response(status int, header http.Header, body string) *http.Response {
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{StatusCode: status, Header: header, Body: &trackBody{r: strings.NewReader(body)}}
}

type trackBody struct {
	r      io.Reader
	closed bool
}

func (b *trackBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *trackBody) Close() error               { b.closed = true; return nil }

func TestCheckResponseShapes(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		want   APIError
	}{
		{"nested", 401, `{"error":{"code":"authentication_error","message":"authentication error","details":"INCORRECT_API_KEY_SIGNATURE","service":"auth"}}`,
			APIError{StatusCode: 401, Code: "authentication_error", Message: "authentication error", Details: "INCORRECT_API_KEY_SIGNATURE"}},
		{"nested without details", 401, `{"error":{"code":"header_timestamp_expired","message":"header timestamp expired"}}`,
			APIError{StatusCode: 401, Code: "header_timestamp_expired", Message: "header timestamp expired"}},
		{"flat", 400, `{"code":"bad_request","message":"invalid api key id","details":"api_key must be a UUID"}`,
			APIError{StatusCode: 400, Code: "bad_request", Message: "invalid api key id", Details: "api_key must be a UUID"}},
		{"bare msg", 400, `{"msg":"start_date is required"}`,
			APIError{StatusCode: 400, Message: "start_date is required"}},
		{"429 error string", 429, `{"error":"too many requests"}`,
			APIError{StatusCode: 429, Message: "too many requests"}},
		{"error string with message", 403, `{"error":"forbidden","message":"scope write required"}`,
			APIError{StatusCode: 403, Code: "forbidden", Message: "scope write required"}},
		{"html", 502, "<html>\r\n<head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>",
			APIError{StatusCode: 502, Message: "502 Bad Gateway"}},
		{"html without title", 503, "<!doctype html><p>down</p>", APIError{StatusCode: 503}},
		{"plain text", 500, "upstream connect error\nreset reason: overflow", APIError{StatusCode: 500, Message: "upstream connect error"}},
		{"empty", 504, "", APIError{StatusCode: 504}},
		{"white space", 404, " \n ", APIError{StatusCode: 404}},
		{"json null", 500, "null", APIError{StatusCode: 500, Message: "null"}},
		{"json array", 500, `["a"]`, APIError{StatusCode: 500, Message: `["a"]`}},
		{"broken json", 500, `{"error":{"code":`, APIError{StatusCode: 500, Message: `{"error":{"code":`}},
		{"non-string fields", 400, `{"code":400,"message":["a","b"],"details":{"field":"name"}}`,
			APIError{StatusCode: 400, Code: "400", Message: `["a","b"]`, Details: `{"field":"name"}`}},
		{"nested null", 404, `{"error":null,"message":"gone"}`, APIError{StatusCode: 404, Message: "gone"}},
		{"nested wins over flat", 401, `{"error":{"code":"a","message":"b"},"code":"c","message":"d","details":"e"}`,
			APIError{StatusCode: 401, Code: "a", Message: "b", Details: "e"}},
		{"control characters", 400, `{"message":"line1\nline2\t\u0000end"}`, APIError{StatusCode: 400, Message: "line1 line2 end"}},
		{"redirect", 302, "", APIError{StatusCode: 302}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := response(tt.status, nil, tt.body)
			err := CheckResponse(resp)
			var got *APIError
			if !errors.As(err, &got) {
				t.Fatalf("CheckResponse = %v, want *APIError", err)
			}
			if *got != tt.want {
				t.Fatalf("got  %+v\nwant %+v", *got, tt.want)
			}
			if !resp.Body.(*trackBody).closed {
				t.Fatal("body not closed")
			}
			if !strings.HasPrefix(err.Error(), "kalshi api: "+strconv.Itoa(tt.status)) {
				t.Fatalf("Error() = %q", err)
			}
		})
	}
}

func TestCheckResponseSuccess(t *testing.T) {
	for _, status := range []int{200, 201, 204, 299} {
		resp := response(status, nil, "{}")
		if err := CheckResponse(resp); err != nil {
			t.Fatalf("%d: %v", status, err)
		}
		if resp.Body.(*trackBody).closed {
			t.Fatalf("%d: body closed", status)
		}
	}
	if err := CheckResponse(nil); err == nil {
		t.Fatal("nil response accepted")
	}
}

func TestCheckResponseLongField(t *testing.T) {
	err := CheckResponse(response(400, nil, `{"message":"`+strings.Repeat("é", 1000)+`"}`))
	var e *APIError
	if !errors.As(err, &e) || len(e.Message) > maxField || len(e.Message) < maxField-2 || !strings.HasPrefix(e.Message, "é") {
		t.Fatalf("message of %d bytes", len(e.Message))
	}
}

func TestAPIErrorString(t *testing.T) {
	for _, tt := range []struct {
		e    APIError
		want string
	}{
		{APIError{StatusCode: 401, Code: "authentication_error", Message: "authentication error", Details: "NOT_FOUND"},
			"kalshi api: 401 Unauthorized: authentication_error: authentication error (NOT_FOUND)"},
		{APIError{StatusCode: 429, Message: "too many requests", RetryAfter: 2 * time.Second},
			"kalshi api: 429 Too Many Requests: too many requests; retry after 2s"},
		{APIError{StatusCode: 401, Code: "header_timestamp_expired", Message: "header_timestamp_expired", Details: "header_timestamp_expired"},
			"kalshi api: 401 Unauthorized: header_timestamp_expired"},
		{APIError{StatusCode: 599}, "kalshi api: 599"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

func TestRetryAfterHeader(t *testing.T) {
	date := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"absent", nil, 0},
		{"seconds", http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{"zero", http.Header{"Retry-After": {"0"}}, 0},
		{"padded", http.Header{"Retry-After": {" 7 "}}, 7 * time.Second},
		{"decimal", http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond},
		{"negative", http.Header{"Retry-After": {"-5"}}, 0},
		{"huge", http.Header{"Retry-After": {"99999999999999999999"}}, maxRetryAfter},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"empty", http.Header{"Retry-After": {""}}, 0},
		{"exponent", http.Header{"Retry-After": {"1e3"}}, 0},
		{"http date vs server date", http.Header{"Date": {date.Format(http.TimeFormat)}, "Retry-After": {date.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{"http date in the past", http.Header{"Date": {date.Format(http.TimeFormat)}, "Retry-After": {date.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{"rfc850 date", http.Header{"Date": {date.Format(http.TimeFormat)}, "Retry-After": {"Wednesday, 25-Nov-26 10:00:30 GMT"}}, 30 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckResponse(response(429, tt.header, `{"error":"too many requests"}`))
			if got := RetryAfter(err); got != tt.want {
				t.Fatalf("RetryAfter = %v, want %v", got, tt.want)
			}
		})
	}
	// Without a Date header an HTTP date is taken relative to the local clock.
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	got := RetryAfter(CheckResponse(response(503, http.Header{"Retry-After": {future}}, "")))
	if got < 58*time.Minute || got > time.Hour {
		t.Fatalf("RetryAfter from local clock = %v, want about 1h", got)
	}
	if RetryAfter(errors.New("x")) != 0 || RetryAfter(nil) != 0 {
		t.Fatal("RetryAfter of a non-API error is not 0")
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassification(t *testing.T) {
	api := func(status int) error {
		return fmt.Errorf("kalshi: delete api key x: %w", &APIError{StatusCode: status})
	}
	urlErr := func(err error) error { return &url.Error{Op: "Delete", URL: "http://x", Err: err} }
	for _, tt := range []struct {
		name                string
		err                 error
		transient, notFound bool
	}{
		{"nil", nil, false, false},
		{"204 unexpected 200", api(200), false, false},
		{"400", api(400), false, false},
		{"401", api(401), false, false},
		{"403", api(403), false, false},
		{"404", api(404), false, true},
		{"408", api(408), true, false},
		{"409", api(409), false, false},
		{"429", api(429), true, false},
		{"500", api(500), true, false},
		{"502", api(502), true, false},
		{"503", api(503), true, false},
		{"504", api(504), true, false},
		{"invalid key id", fmt.Errorf("kalshi: delete api key: %w", ErrInvalidKeyID), false, false},
		{"deadline", urlErr(context.DeadlineExceeded), true, false},
		{"canceled", urlErr(context.Canceled), true, false},
		{"bare deadline", context.DeadlineExceeded, true, false},
		{"connection refused", urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), true, false},
		{"timeout", urlErr(timeoutError{}), true, false},
		{"eof", urlErr(io.EOF), true, false},
		{"unexpected eof", fmt.Errorf("decode: %w", io.ErrUnexpectedEOF), true, false},
		{"other url error", urlErr(errors.New("something")), true, false},
		{"sign error", urlErr(&signError{errors.New("hsm offline")}), false, false},
		{"unknown authority", urlErr(x509.UnknownAuthorityError{}), false, false},
		{"plain error", errors.New("decode: invalid character"), false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTransient(tt.err); got != tt.transient {
				t.Errorf("IsTransient = %v", got)
			}
			if got := IsPermanent(tt.err); got != (tt.err != nil && !tt.transient) {
				t.Errorf("IsPermanent = %v", got)
			}
			if got := IsNotFound(tt.err); got != tt.notFound {
				t.Errorf("IsNotFound = %v", got)
			}
		})
	}
}

// FuzzCheckResponse checks that CheckResponse never fails, whatever the
// status, headers and body: nil exactly for 2xx, otherwise an *APIError
// with the status, a non-negative Retry-After, printable fields of bounded
// size, and the body closed.
func FuzzCheckResponse(f *testing.F) {
	seeds := []struct {
		status            int
		retryAfter, ctype string
		body              string
	}{
		{401, "", "application/json", `{"error":{"code":"authentication_error","message":"authentication error","details":"INCORRECT_API_KEY_SIGNATURE"}}`},
		{400, "", "application/json", `{"code":"bad_request","message":"bad","details":"x"}`},
		{400, "", "application/json", `{"msg":"start_date is required"}`},
		{429, "2", "application/json", `{"error":"too many requests"}`},
		{429, "Wed, 25 Nov 2026 10:00:00 GMT", "", ""},
		{502, "", "text/html", "<html><head><title>502 Bad Gateway</title></head></html>"},
		{503, "-1", "", "\x00\xff\xfe"},
		{204, "", "", ""},
		{200, "", "application/json", `{"api_keys":[]}`},
		{404, "1.5", "application/json", `{"error":{"code":1,"message":{"a":[1,2]},"details":null},"msg":"x"}`},
		{500, "99999999999999999999999", "application/json", `{"error":"`},
		{0, "", "", ""},
		{999, "", "", "<title>"},
	}
	for _, s := range seeds {
		f.Add(s.status, s.retryAfter, s.ctype, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, retryAfter, ctype string, body []byte) {
		header := http.Header{}
		if retryAfter != "" {
			header.Set("Retry-After", retryAfter)
		}
		if ctype != "" {
			header.Set("Content-Type", ctype)
		}
		resp := response(status, header, string(body))
		err := CheckResponse(resp)
		if status >= 200 && status <= 299 {
			if err != nil {
				t.Fatalf("status %d: %v", status, err)
			}
			return
		}
		var e *APIError
		if !errors.As(err, &e) {
			t.Fatalf("status %d: %T %v, want *APIError", status, err, err)
		}
		if e.StatusCode != status || e.RetryAfter < 0 {
			t.Fatalf("got %+v for status %d", e, status)
		}
		for _, s := range []string{e.Code, e.Message, e.Details} {
			if len(s) > maxField || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("field %q: too long or not printable", s)
			}
		}
		if e.Error() == "" || !resp.Body.(*trackBody).closed {
			t.Fatal("empty message or body not closed")
		}
	})
}
