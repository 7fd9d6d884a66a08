package kalshi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// maxErrorBody bounds how much of an error response CheckResponse reads.
	maxErrorBody = 64 << 10
	// maxField bounds each text field of an APIError, in bytes.
	maxField = 512
)

// APIError is a response from Kalshi with a status outside 2xx, or a 2xx
// status a call did not expect (DeleteAPIKey wants exactly 204).
//
// Code, Message and Details come from the body, whichever shape it has;
// any of them may be empty. For authentication failures Details (or Code)
// holds Kalshi's reason, such as INCORRECT_API_KEY_SIGNATURE, NOT_FOUND,
// signature_is_missing_from_headers or header_timestamp_expired.
type APIError struct {
	StatusCode int
	Code       string
	Message    string
	Details    string
	// RetryAfter is the server's Retry-After hint (seconds or an HTTP date),
	// 0 when absent or unparsable.
	RetryAfter time.Duration
}

// Error describes the failure as "STATUS TEXT: code: message (details)",
// leaving out the parts the body did not provide.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("kalshi api: ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	if e.Code != "" {
		b.WriteString(": ")
		b.WriteString(e.Code)
	}
	if e.Message != "" && e.Message != e.Code {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Details != "" && e.Details != e.Code && e.Details != e.Message {
		b.WriteString(" (")
		b.WriteString(e.Details)
		b.WriteByte(')')
	}
	if e.RetryAfter > 0 {
		b.WriteString("; retry after ")
		b.WriteString(e.RetryAfter.String())
	}
	return b.String()
}

// CheckResponse returns nil for a 2xx response and leaves its body alone.
// For any other status it reads (at most 64 KiB of) and closes the body and
// returns an [*APIError]. It understands Kalshi's error shapes:
//
//	{"error":{"code":"...","message":"...","details":"..."}}  nested
//	{"code":"...","message":"...","details":"..."}            flat
//	{"msg":"..."}                                             bare
//	{"error":"too many requests"}                             429
//
// and falls back to the page title of an HTML body or the first line of a
// text body. It never fails: an unreadable body only leaves fields empty.
func CheckResponse(resp *http.Response) error {
	if resp == nil {
		return &APIError{Message: "no response"}
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	e := &APIError{StatusCode: resp.StatusCode}
	if resp.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		// Drain a little more so the connection can be reused, then close.
		_, _ = io.CopyN(io.Discard, resp.Body, maxErrorBody)
		_ = resp.Body.Close()
		parseErrorBody(e, body)
	}
	now := time.Now()
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		// An HTTP-date Retry-After is relative to the server's clock.
		now = d
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	return e
}

// wireError holds every field of every known error shape. Fields are raw so
// that a number or an object where a string was expected does not fail the
// whole decode.
type wireError struct {
	Error   json.RawMessage `json:"error"`
	Code    json.RawMessage `json:"code"`
	Message json.RawMessage `json:"message"`
	Details json.RawMessage `json:"details"`
	Msg     json.RawMessage `json:"msg"`
}

func parseErrorBody(e *APIError, body []byte) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return
	}
	var w wireError
	if body[0] == '{' && json.Unmarshal(body, &w) == nil {
		// Nested first: its fields win over flat ones.
		errString := false
		if errObj := bytes.TrimSpace(w.Error); len(errObj) > 0 && errObj[0] == '{' {
			var inner wireError
			if json.Unmarshal(errObj, &inner) == nil {
				e.Code = rawText(inner.Code)
				e.Message = rawText(inner.Message)
				e.Details = rawText(inner.Details)
				fill(&e.Message, rawText(inner.Msg))
			}
		} else if s := rawText(w.Error); s != "" {
			// {"error":"too many requests"} and friends.
			e.Message, errString = s, true
		}
		fill(&e.Code, rawText(w.Code))
		if m := rawText(w.Message); m != "" {
			if e.Message == "" {
				e.Message = m
			} else if errString && e.Code == "" {
				// {"error":"x","message":"y"}: the short string is a code.
				e.Code, e.Message = e.Message, m
			}
		}
		fill(&e.Details, rawText(w.Details))
		fill(&e.Message, rawText(w.Msg))
		return
	}
	if body[0] == '<' {
		e.Message = clean(htmlTitle(body))
		return
	}
	line, _, _ := bytes.Cut(body, []byte("\n"))
	e.Message = clean(string(line))
}

func fill(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// rawText renders a JSON value as text: a string unquoted, null as "",
// anything else as its compact JSON.
func rawText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return clean(s)
		}
		return ""
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return clean(buf.String())
	}
	return clean(string(raw))
}

// htmlTitle returns the text of the first <title> element, or "".
func htmlTitle(body []byte) string {
	// ASCII-only lowering keeps every index of lower valid in body;
	// bytes.ToLower would grow invalid UTF-8 and shift them.
	lower := make([]byte, len(body))
	for i, c := range body {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	i := bytes.Index(lower, []byte("<title"))
	if i < 0 {
		return ""
	}
	j := bytes.IndexByte(lower[i:], '>')
	if j < 0 {
		return ""
	}
	start := i + j + 1
	end := bytes.Index(lower[start:], []byte("</title"))
	if end < 0 {
		return ""
	}
	return string(body[start : start+end])
}

// clean makes server-provided text safe to log: valid UTF-8, control
// characters and runs of white space folded into single spaces, at most
// maxField bytes.
func clean(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) {
			space = true
			continue
		}
		sep := space && b.Len() > 0
		space = false
		n := utf8.RuneLen(r)
		if sep {
			n++
		}
		if b.Len()+n > maxField {
			break
		}
		if sep {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// maxRetryAfter keeps a huge Retry-After from overflowing time.Duration.
const maxRetryAfter = time.Duration(math.MaxInt64)

// parseRetryAfter reads a Retry-After value: whole (or decimal) seconds, or
// an HTTP date taken relative to now. Garbage, past dates and negative
// numbers give 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if isDecimal(v) {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs <= 0 {
			return 0
		}
		if secs >= float64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(secs * float64(time.Second))
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// isDecimal reports whether s is digits with at most one '.', and at least
// one digit.
func isDecimal(s string) bool {
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// IsNotFound reports whether err is Kalshi's 404: for DeleteAPIKey, the key
// does not exist (any more), so the desired state already holds.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}

// IsUnknownSigningKey reports whether err is Kalshi's 401 for a signing key
// it does not know (any more): deleted, or never created. A key that signs
// its own delete gets this once it is gone.
func IsUnknownSigningKey(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.StatusCode == http.StatusUnauthorized &&
		(strings.Contains(e.Details, "NOT_FOUND") || e.Code == "NOT_FOUND")
}

// IsTransient reports whether err may go away if the call is repeated (after
// a pause): network errors, timeouts (including an attempt's
// context.DeadlineExceeded), cancellation, and the statuses 408, 429 and
// 5xx. Everything else (400, 401, 403, 404, an invalid key ID, a key that
// cannot sign, a certificate that does not verify) is not.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		s := ae.StatusCode
		return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500
	}
	var se *signError
	if errors.Is(err, ErrInvalidKeyID) || errors.As(err, &se) || isCertError(err) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue)
}

func isCertError(err error) bool {
	var (
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
		cv *tls.CertificateVerificationError
	)
	return errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &cv)
}

// IsPermanent reports whether err is non-nil and not transient: repeating
// the call will fail the same way.
func IsPermanent(err error) bool {
	return err != nil && !IsTransient(err)
}

// RetryAfter returns the server's Retry-After hint carried by err, or 0.
func RetryAfter(err error) time.Duration {
	var e *APIError
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}
