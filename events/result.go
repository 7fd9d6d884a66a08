package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"
)

// Outcome is how a request ended.
type Outcome string

// The four outcomes.
const (
	Revoked        Outcome = "revoked"         // Kalshi answered 204
	AlreadyRevoked Outcome = "already_revoked" // Kalshi answered 404: the key does not exist (any more)
	Rejected       Outcome = "rejected"        // nothing was deleted: the request is invalid or refused
	Failed         Outcome = "failed"          // a valid request could not be carried out
)

// Type returns the CloudEvents type of a result with this outcome, "revoker.key.<outcome>".
func (o Outcome) Type() string { return "revoker.key." + string(o) }

// Succeeded reports whether the key is gone: Revoked or AlreadyRevoked.
func (o Outcome) Succeeded() bool { return o == Revoked || o == AlreadyRevoked }

// Valid reports whether o is one of the four outcomes.
func (o Outcome) Valid() bool {
	switch o {
	case Revoked, AlreadyRevoked, Rejected, Failed:
		return true
	}
	return false
}

// Error is the "error" of a Rejected or Failed result. It is also an error.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Error returns "code: message".
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// MaxResultSize bounds an encoded result in bytes, whatever the request held:
// MarshalEvent shortens free text to stay within it.
const MaxResultSize = 8 << 10

// Result is the outcome of one request. Its fields and their JSON names are
// the result's data as the contract lists them: MarshalEvent and ParseResult
// are encoding/json of this struct, so a field added here is in the
// document. A time.Time field is written in UTC and checked by Validate.
type Result struct {
	RequestID  string `json:"request_id"`  // the request's id
	RequestSeq uint64 `json:"request_seq"` // the request's stream sequence; tells apart requests that claimed one id
	APIKeyID   string `json:"api_key_id"`  // the key id in canonical form; may be empty
	// LeakedKeyFingerprint names the leaked private key a request carried, as
	// "sha256:" + hex of its DER public key; empty for a request by key ID.
	LeakedKeyFingerprint string       `json:"leaked_key_fingerprint,omitempty"`
	Outcome              Outcome      `json:"outcome"`                // how the request ended
	Attempts             int          `json:"attempts"`               // Kalshi DELETE attempts
	Deliveries           int          `json:"deliveries"`             // JetStream deliveries of the request
	HTTPStatus           int          `json:"http_status,omitempty"`  // Kalshi's last status; 0 (left out) when none was received
	Reason               string       `json:"reason,omitempty"`       // from the request
	RequestedBy          string       `json:"requested_by,omitempty"` // from the request
	Source               string       `json:"source,omitempty"`       // from the request
	RequestedAt          time.Time    `json:"requested_at,omitzero"`  // from the request
	NotBefore            time.Time    `json:"not_before,omitzero"`    // from the request: no DELETE before it
	ReceivedAt           time.Time    `json:"received_at"`            // when the request was stored
	CompletedAt          time.Time    `json:"completed_at"`           // when the outcome was decided; also the event's time
	DurationMS           int64        `json:"duration_ms"`            // CompletedAt - ReceivedAt in milliseconds
	Detail               string       `json:"detail,omitempty"`       // how the outcome was established, when that is not plain
	RevokedBy            string       `json:"revoked_by,omitempty"`   // on AlreadyRevoked: the request that revoked the key, when known
	RevokedAt            time.Time    `json:"revoked_at,omitzero"`    // on AlreadyRevoked: when that request revoked it
	BlastRadius                       // what the account listed of the key (contain.go); the ledger's key record keeps it too
	Containment          *Containment `json:"containment,omitempty"` // for a request with cancel_orders; nil otherwise
	Error                *Error       `json:"error,omitempty"`       // set exactly when Outcome is Rejected or Failed
	// Trace is the request's trace context: the event's extension
	// attributes traceparent and tracestate, not data.
	Trace Trace `json:"-"`
}

// resultTimes are Result's time fields (promoted ones included) with their
// JSON names, found once: Validate checks them and the document has them in UTC.
var resultTimes = func() (times []struct {
	name  string
	index []int
}) {
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Result]()) {
		if f.Type == reflect.TypeFor[time.Time]() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			times = append(times, struct {
				name  string
				index []int
			}{name, f.Index})
		}
	}
	return times
}()

// eachTime calls f with the JSON name and the address of each of r's times.
func (r *Result) eachTime(f func(name string, t *time.Time)) {
	v := reflect.ValueOf(r).Elem()
	for _, tf := range resultTimes {
		f(tf.name, v.FieldByIndex(tf.index).Addr().Interface().(*time.Time))
	}
}

// inUTC sets each of r's times in UTC.
func (r *Result) inUTC() { r.eachTime(func(_ string, t *time.Time) { *t = t.UTC() }) }

// Validate reports whether r can be encoded as the contract says: a request id, a known
// outcome, an Error exactly on Rejected and Failed, and times within years 0 to 9999.
func (r Result) Validate() error {
	var problems []string
	if r.RequestID == "" {
		problems = append(problems, "no request id")
	}
	switch {
	case !r.Outcome.Valid():
		problems = append(problems, fmt.Sprintf("unknown outcome %q", r.Outcome))
	case r.Outcome.Succeeded() && r.Error != nil:
		problems = append(problems, fmt.Sprintf("outcome %s with an error", r.Outcome))
	case !r.Outcome.Succeeded() && (r.Error == nil || r.Error.Code == ""):
		problems = append(problems, fmt.Sprintf("outcome %s without an error code", r.Outcome))
	}
	r.eachTime(func(name string, t *time.Time) {
		if y := t.UTC().Year(); y < 0 || y > 9999 {
			problems = append(problems, fmt.Sprintf("%s year %d is outside 0 to 9999", name, y))
		}
	})
	if len(problems) > 0 {
		return errors.New("invalid result: " + strings.Join(problems, "; "))
	}
	return nil
}

// MarshalEvent encodes r as the CloudEvents 1.0 structured JSON document of the contract:
// id is the request id, source "revoker", type Outcome.Type(), subject the key id (left
// out when empty, as CloudEvents asks), time CompletedAt, and the request's trace context
// as the distributed-tracing extension attributes traceparent and tracestate. Times are
// in UTC. The document is at most MaxResultSize bytes: when r would be longer, its free
// text (reason, requested_by, source, detail, the blast radius, the error messages) is
// cut, marked with "…". It fails only when Validate does.
func (r Result) MarshalEvent() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := r.encode()
	// Ids and key IDs are bounded by DecodeRequest; only free text can be long.
	for _, n := range []int{256, 64, 0} {
		if err != nil || len(b) <= MaxResultSize {
			break
		}
		b, err = r.shortened(n).encode()
	}
	if err != nil {
		return nil, fmt.Errorf("invalid result: %w", err)
	}
	if len(b) > MaxResultSize {
		return nil, fmt.Errorf("invalid result: %d bytes even without free text; at most %d", len(b), MaxResultSize)
	}
	return b, nil
}

// shortened returns r with every free-text field cut to at most n bytes.
func (r Result) shortened(n int) Result {
	short := func(s string) string {
		if len(s) <= n {
			return s
		}
		return cut(s, n) + "…"
	}
	r.Reason, r.RequestedBy, r.Source, r.Detail = short(r.Reason), short(r.RequestedBy), short(r.Source), short(r.Detail)
	r.shortenBlastRadius(short)
	if r.Error != nil {
		r.Error = &Error{Code: r.Error.Code, Message: short(r.Error.Message)}
	}
	return r
}

// resultEvent is the CloudEvents envelope of a result; its data is the Result.
type resultEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	TraceParent     string    `json:"traceparent,omitempty"`
	TraceState      string    `json:"tracestate,omitempty"`
	Data            *Result   `json:"data"`
}

// encode is encoding/json of r's event, with HTML left unescaped.
func (r Result) encode() ([]byte, error) {
	r.inUTC()
	var buf bytes.Buffer
	buf.Grow(1024)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(resultEvent{
		SpecVersion: "1.0", ID: r.RequestID, Source: "revoker", Type: r.Outcome.Type(), Subject: r.APIKeyID,
		Time: r.CompletedAt, DataContentType: "application/json", TraceParent: r.Trace.Parent, TraceState: r.Trace.State,
		Data: &r,
	})
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), err
}

// ResultSubject returns the subject a result with outcome o is published on:
// prefix + "." + o, for example "keys.revoke.results.revoked".
func ResultSubject(prefix string, o Outcome) string { return prefix + "." + string(o) }

// ParseResult decodes a result document made by MarshalEvent. It checks that the
// document is a CloudEvents 1.0 event whose type matches its data's outcome; times come
// back in UTC.
func ParseResult(doc []byte) (Result, error) {
	var d resultEvent
	if err := json.Unmarshal(doc, &d); err != nil {
		return Result{}, fmt.Errorf("parse result: %w", err)
	}
	switch {
	case d.SpecVersion != "1.0":
		return Result{}, fmt.Errorf("parse result: specversion %q is not 1.0", d.SpecVersion)
	case d.Data == nil:
		return Result{}, errors.New("parse result: no data")
	case !d.Data.Outcome.Valid():
		return Result{}, fmt.Errorf("parse result: unknown outcome %q", d.Data.Outcome)
	case d.Type != d.Data.Outcome.Type():
		return Result{}, fmt.Errorf("parse result: type %q does not match outcome %q", d.Type, d.Data.Outcome)
	}
	r := *d.Data
	r.Trace = Trace{Parent: d.TraceParent, State: d.TraceState}
	r.inUTC()
	if r.RequestID == "" {
		r.RequestID = d.ID
	}
	if r.APIKeyID == "" {
		r.APIKeyID = d.Subject
	}
	return r, nil
}

// appendString appends s as a quoted JSON string, escaped exactly as encoding/json does
// with HTML escaping off: invalid UTF-8 becomes U+FFFD, and U+2028 and U+2029 are
// escaped. message.go and Containment use it.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
