package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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

// Result is the outcome of one request.
type Result struct {
	RequestID  string // the request's id
	RequestSeq uint64 // the request's stream sequence; tells apart requests that claimed one id
	APIKeyID   string // the key id in canonical form; may be empty
	// LeakedKeyFingerprint names the leaked private key a request carried, as
	// "sha256:" + hex of its DER public key; empty for a request by key ID.
	LeakedKeyFingerprint string
	Outcome              Outcome   // how the request ended
	Attempts             int       // Kalshi DELETE attempts
	Deliveries           int       // JetStream deliveries of the request
	HTTPStatus           int       // Kalshi's last status; 0 (left out) when none was received
	Reason               string    // from the request; left out when empty
	RequestedBy          string    // from the request; left out when empty
	Source               string    // from the request; left out when empty
	RequestedAt          time.Time // from the request; left out when zero
	NotBefore            time.Time // from the request: no DELETE before it; left out when zero
	ReceivedAt           time.Time // when the request was stored
	CompletedAt          time.Time // when the outcome was decided; also the event's time
	DurationMS           int64     // CompletedAt - ReceivedAt in milliseconds
	Detail               string    // how the outcome was established, when that is not plain; left out when empty
	RevokedBy            string    // on AlreadyRevoked: the request that revoked the key, when known
	RevokedAt            time.Time // on AlreadyRevoked: when that request revoked it; left out when zero
	// The blast radius, for a key the account listed before the DELETE: its
	// name, its scopes (nil: not listed) and, for a key restricted to one
	// subaccount, that subaccount. Left out when unknown.
	KeyName       string
	KeyScopes     []string
	KeySubaccount *int
	Containment   *Containment // for a request with cancel_orders; nil otherwise
	Error         *Error       // set exactly when Outcome is Rejected or Failed
	Trace         Trace        // from the request: the extension attributes traceparent and tracestate
}

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
	for _, t := range []struct {
		name string
		t    time.Time
	}{{"requested_at", r.RequestedAt}, {"not_before", r.NotBefore}, {"received_at", r.ReceivedAt}, {"completed_at", r.CompletedAt}, {"revoked_at", r.RevokedAt}} {
		if y := t.t.UTC().Year(); y < 0 || y > 9999 {
			problems = append(problems, fmt.Sprintf("%s year %d is outside 0 to 9999", t.name, y))
		}
	}
	if len(problems) > 0 {
		return errors.New("invalid result: " + strings.Join(problems, "; "))
	}
	return nil
}

// MarshalEvent encodes r as the CloudEvents 1.0 structured JSON document of the contract:
// id is the request id, source "revoker", type Outcome.Type(), subject the key id (left
// out when empty, as CloudEvents asks), time CompletedAt, and the request's trace context
// as the distributed-tracing extension attributes traceparent and tracestate. The
// document is at most MaxResultSize bytes: when r would be longer, its free text
// (reason, requested_by, source, the error message) is cut, marked with "…".
// It fails only when Validate does.
func (r Result) MarshalEvent() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b := r.encode()
	// Ids and key IDs are bounded by DecodeRequest; only free text can be long.
	for _, n := range []int{256, 64, 0} {
		if len(b) <= MaxResultSize {
			break
		}
		b = r.shortened(n).encode()
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

func (r Result) encode() []byte {
	n := 560 + 2*(len(r.RequestID)+len(r.APIKeyID)) + len(r.LeakedKeyFingerprint) + len(r.Reason) + len(r.RequestedBy) + len(r.Source) +
		len(r.Trace.Parent) + len(r.Trace.State)
	if r.Error != nil {
		n += 32 + len(r.Error.Code) + len(r.Error.Message)
	}
	b := make([]byte, 0, n)
	b = append(b, `{"specversion":"1.0","id":`...)
	b = appendString(b, r.RequestID)
	b = append(b, `,"source":"revoker","type":"revoker.key.`...)
	b = append(b, r.Outcome...) // valid outcomes need no escaping
	b = append(b, '"')
	if r.APIKeyID != "" {
		b = append(b, `,"subject":`...)
		b = appendString(b, r.APIKeyID)
	}
	b = append(b, `,"time":`...)
	b = appendTime(b, r.CompletedAt)
	b = append(b, `,"datacontenttype":"application/json"`...)
	if r.Trace.Parent != "" {
		b = append(b, `,"traceparent":`...)
		b = appendString(b, r.Trace.Parent)
	}
	if r.Trace.State != "" {
		b = append(b, `,"tracestate":`...)
		b = appendString(b, r.Trace.State)
	}
	b = append(b, `,"data":{"request_id":`...)
	b = appendString(b, r.RequestID)
	b = append(b, `,"request_seq":`...)
	b = strconv.AppendUint(b, r.RequestSeq, 10)
	b = append(b, `,"api_key_id":`...)
	b = appendString(b, r.APIKeyID)
	if r.LeakedKeyFingerprint != "" {
		b = append(b, `,"leaked_key_fingerprint":`...)
		b = appendString(b, r.LeakedKeyFingerprint)
	}
	b = append(b, `,"outcome":"`...)
	b = append(b, r.Outcome...)
	b = append(b, `","attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, `,"deliveries":`...)
	b = strconv.AppendInt(b, int64(r.Deliveries), 10)
	if r.HTTPStatus != 0 {
		b = append(b, `,"http_status":`...)
		b = strconv.AppendInt(b, int64(r.HTTPStatus), 10)
	}
	if r.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, r.Reason)
	}
	if r.RequestedBy != "" {
		b = append(b, `,"requested_by":`...)
		b = appendString(b, r.RequestedBy)
	}
	if r.Source != "" {
		b = append(b, `,"source":`...)
		b = appendString(b, r.Source)
	}
	if !r.RequestedAt.IsZero() {
		b = append(b, `,"requested_at":`...)
		b = appendTime(b, r.RequestedAt)
	}
	if !r.NotBefore.IsZero() {
		b = append(b, `,"not_before":`...)
		b = appendTime(b, r.NotBefore)
	}
	b = append(b, `,"received_at":`...)
	b = appendTime(b, r.ReceivedAt)
	b = append(b, `,"completed_at":`...)
	b = appendTime(b, r.CompletedAt)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, r.DurationMS, 10)
	if r.Detail != "" {
		b = append(b, `,"detail":`...)
		b = appendString(b, r.Detail)
	}
	if r.RevokedBy != "" {
		b = append(b, `,"revoked_by":`...)
		b = appendString(b, r.RevokedBy)
	}
	if !r.RevokedAt.IsZero() {
		b = append(b, `,"revoked_at":`...)
		b = appendTime(b, r.RevokedAt)
	}
	b = r.appendBlastRadius(b)
	if r.Error != nil {
		b = append(b, `,"error":{"code":`...)
		b = appendString(b, string(r.Error.Code))
		b = append(b, `,"message":`...)
		b = appendString(b, r.Error.Message)
		b = append(b, '}')
	}
	b = append(b, "}}"...)
	return b
}

// ResultSubject returns the subject a result with outcome o is published on:
// prefix + "." + o, for example "keys.revoke.results.revoked".
func ResultSubject(prefix string, o Outcome) string { return prefix + "." + string(o) }

// resultDoc is the wire form of a result, for ParseResult (and for tests, which compare
// MarshalEvent with encoding/json).
type resultDoc struct {
	SpecVersion     string      `json:"specversion"`
	ID              string      `json:"id"`
	Source          string      `json:"source"`
	Type            string      `json:"type"`
	Subject         string      `json:"subject,omitempty"`
	Time            time.Time   `json:"time"`
	DataContentType string      `json:"datacontenttype"`
	TraceParent     string      `json:"traceparent,omitempty"`
	TraceState      string      `json:"tracestate,omitempty"`
	Data            *resultData `json:"data"`
}

type resultData struct {
	RequestID   string    `json:"request_id"`
	RequestSeq  uint64    `json:"request_seq"`
	APIKeyID    string    `json:"api_key_id"`
	Fingerprint string    `json:"leaked_key_fingerprint,omitempty"`
	Outcome     Outcome   `json:"outcome"`
	Attempts    int       `json:"attempts"`
	Deliveries  int       `json:"deliveries"`
	HTTPStatus  int       `json:"http_status,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	RequestedBy string    `json:"requested_by,omitempty"`
	Source      string    `json:"source,omitempty"`
	RequestedAt time.Time `json:"requested_at,omitzero"`
	NotBefore   time.Time `json:"not_before,omitzero"`
	ReceivedAt  time.Time `json:"received_at"`
	CompletedAt time.Time `json:"completed_at"`
	DurationMS  int64     `json:"duration_ms"`
	Detail      string    `json:"detail,omitempty"`
	RevokedBy   string    `json:"revoked_by,omitempty"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	// The blast radius and the containment (contain.go).
	KeyName       string       `json:"key_name,omitempty"`
	KeyScopes     *[]string    `json:"key_scopes,omitempty"`
	KeySubaccount *int         `json:"key_subaccount,omitempty"`
	Containment   *Containment `json:"containment,omitempty"`
	Error         *Error       `json:"error,omitempty"`
}

// ParseResult decodes a result document made by MarshalEvent. It checks that the
// document is a CloudEvents 1.0 event whose type matches its data's outcome; times come
// back in UTC.
func ParseResult(doc []byte) (Result, error) {
	var d resultDoc
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
	data := d.Data
	r := Result{
		RequestID:            data.RequestID,
		RequestSeq:           data.RequestSeq,
		APIKeyID:             data.APIKeyID,
		Outcome:              data.Outcome,
		LeakedKeyFingerprint: data.Fingerprint,
		Attempts:             data.Attempts,
		Deliveries:           data.Deliveries,
		HTTPStatus:           data.HTTPStatus,
		Reason:               data.Reason,
		RequestedBy:          data.RequestedBy,
		Source:               data.Source,
		RequestedAt:          data.RequestedAt.UTC(),
		NotBefore:            data.NotBefore.UTC(),
		ReceivedAt:           data.ReceivedAt.UTC(),
		CompletedAt:          data.CompletedAt.UTC(),
		DurationMS:           data.DurationMS,
		Detail:               data.Detail,
		RevokedBy:            data.RevokedBy,
		RevokedAt:            data.RevokedAt.UTC(),
		KeyName:              data.KeyName,
		KeySubaccount:        data.KeySubaccount,
		Containment:          data.Containment,
		Error:                data.Error,
		Trace:                Trace{Parent: d.TraceParent, State: d.TraceState},
	}
	if data.KeyScopes != nil {
		r.KeyScopes = *data.KeyScopes
		if r.KeyScopes == nil {
			r.KeyScopes = []string{}
		}
	}
	if r.RequestID == "" {
		r.RequestID = d.ID
	}
	if r.APIKeyID == "" {
		r.APIKeyID = d.Subject
	}
	return r, nil
}

// appendTime appends t as a quoted RFC 3339 time in UTC with the fractional seconds it needs.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString appends s as a quoted JSON string, escaped exactly as encoding/json does
// with HTML escaping off: invalid UTF-8 becomes U+FFFD, and U+2028 and U+2029 are escaped.
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
