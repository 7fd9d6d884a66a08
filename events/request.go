package events

// The request: its type, its limits and DecodeRequest, which reads the headers and
// the body, picks the form (plain, CloudEvents structured or binary: request_plain.go,
// request_structured.go, request_binary.go), follows the id chain and gathers problems.
// The rules each field obeys are in request_rules.go, the JSON reader in readobject.go.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of a request.
const (
	// MaxRequestSize is the largest request body accepted, in bytes.
	MaxRequestSize = 64 << 10
	// MaxIDLength is the longest request id accepted, in bytes.
	MaxIDLength = 256
	// MaxTextLength is the longest reason, requested_by or source accepted, in bytes.
	MaxTextLength = 1 << 10
	// MaxAPIKeyIDLength is the longest api_key_id accepted.
	MaxAPIKeyIDLength = 128
	// MaxLeakedKeyLength is the longest leaked_private_key accepted, in bytes: an
	// RSA-8192 key in PKCS#8 PEM is about 6.5 KiB.
	MaxLeakedKeyLength = 16 << 10
)

// Request is a decoded "revoke key" request.
type Request struct {
	ID          string    // idempotency key, from the fallback chain; see the package documentation
	APIKeyID    string    // the key to delete (with LeakedKey: a hint), canonical, cut to MaxAPIKeyIDLength bytes
	LeakedKey   LeakedKey // a leaked private key whose API key is to be deleted; zero when absent
	Reason      string    // free text, may be empty
	RequestedBy string    // who asked, may be empty
	Source      string    // the requesting system, may be empty
	RequestedAt time.Time // in UTC; zero when absent
	NotBefore   time.Time // no DELETE before it (schedule.go); in UTC; zero when absent
	CloudEvent  bool      // arrived as a CloudEvent (structured or binary)
	Trace       Trace     // W3C trace context, carried to the result; zero when absent or malformed
	// CancelOrders asks, once the key is deleted, to cancel the resting
	// orders it could have placed (cancel_orders).
	CancelOrders bool
}

// InvalidRequestError is the error DecodeRequest returns for a request that must be
// rejected. Reason names every problem in plain words, separated by "; ".
type InvalidRequestError struct {
	Reason string
}

func (e *InvalidRequestError) Error() string { return "invalid request: " + e.Reason }

// CanonicalAPIKeyID returns the one spelling revoker compares, guards, records and
// deletes for a key ID: Kalshi key IDs are UUIDs, which Kalshi matches in any letter
// case, so every case of one ID names one key. IDs are ASCII ([A-Za-z0-9_-]), so this
// lower-cases ASCII letters and leaves anything else as it is.
func CanonicalAPIKeyID(id string) string {
	for i := 0; i < len(id); i++ {
		if 'A' <= id[i] && id[i] <= 'Z' {
			b := []byte(id)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return id
}

// UntrustedIDPrefix starts the result message id of a request whose own id cannot be
// trusted (see UntrustedMsgID). No request id may start with it, so a request can never
// claim such a message id and hide the rejection stored under it.
const UntrustedIDPrefix = "untrusted-"

// UntrustedMsgID is the Nats-Msg-Id of the result of the message at stream and seq
// when that message's claimed id is not trusted: it was undecodable, invalid, refused
// by the policy or in conflict with another request. It names the message, not the
// claim, so the rejection can neither hide nor pre-empt another request's result.
func UntrustedMsgID(stream string, seq uint64) string {
	return UntrustedIDPrefix + stream + "-" + strconv.FormatUint(seq, 10)
}

// maxProblems is how many problems an invalid request's reason names; the rest are
// counted. A result, and the log line that tells of it, stays small whatever the input.
const maxProblems = 5

// DecodeRequest decodes a request in any of its three forms (see the package
// documentation). header is the NATS message header; names match in any case. fallbackID
// is the last link of the id chain, "<stream>-<sequence>".
//
// It always returns the best Request it can: its ID follows the id chain, skipping links
// that are invalid, and its APIKeyID, Reason, RequestedBy and Source are what was received
// as far as it could be decoded. The error is nil or an *InvalidRequestError.
func DecodeRequest(header map[string][]string, body []byte, fallbackID string) (Request, error) {
	d := decoder{hdr: readHeaders(header), reserved: fallbackPrefix(fallbackID)}
	req := d.decode(body)
	req.Trace = readTrace(header, body)
	switch {
	case d.plainID != "":
		req.ID = d.plainID
	case d.ceID != "":
		req.ID = d.ceID
	case d.hdr.has(hMsgID) && d.checkID("", d.hdr.val[hMsgID]) == "":
		req.ID = d.hdr.val[hMsgID]
	default:
		req.ID = fallbackID
	}
	if len(d.problems) > 0 {
		problems := d.problems
		if len(problems) > maxProblems {
			problems = append(problems[:maxProblems:maxProblems], fmt.Sprintf("and %d more problems", len(problems)-maxProblems))
		}
		return req, &InvalidRequestError{Reason: strings.Join(problems, "; ")}
	}
	return req, nil
}

// decoder holds the state of one DecodeRequest call.
type decoder struct {
	hdr      headers
	problems []string
	plainID  string // a valid plain id, or ""
	ceID     string // a valid CloudEvents id, or ""
	reserved string // "<stream>-" of the fallback id, whose form no other id may take; or ""
}

// checkID is checkID, and also refuses the reserved form of a fallback id.
func (d *decoder) checkID(name, v string) string {
	if problem := checkID(name, v); problem != "" {
		return problem
	}
	return reservedID(name, v, d.reserved)
}

func (d *decoder) add(problem string) {
	if problem != "" {
		d.problems = append(d.problems, problem)
	}
}

func (d *decoder) addf(format string, args ...any) {
	d.problems = append(d.problems, fmt.Sprintf(format, args...))
}

func (d *decoder) decode(body []byte) Request {
	var top *object
	switch {
	case len(body) > MaxRequestSize:
		d.addf("body is %d bytes; at most %d are allowed", len(body), MaxRequestSize)
	case len(bytes.TrimSpace(body)) == 0:
		d.add("body is empty")
	case !utf8.Valid(body):
		d.add("body is not valid UTF-8")
	default:
		var problem string
		top, problem = readObject(body, "body")
		d.add(problem)
	}

	var req Request
	fields, inData := top, false
	var ce ceAttrs
	switch {
	case top != nil && top.raw[kSpecVersion] != nil:
		req.CloudEvent = true
		ce = d.structured(top)
		fields, inData = nil, true
		if ce.data != nil {
			var problem string
			fields, problem = readObject(ce.data, "data")
			d.add(problem)
		}
	case d.hdr.binary():
		req.CloudEvent = true
		ce = d.binary()
	}
	d.ceID = ce.id
	if fields != nil {
		d.fields(fields, inData, &req)
	}
	if req.Source == "" {
		req.Source = ce.source
	}
	if req.RequestedAt.IsZero() {
		req.RequestedAt = ce.time
	}
	return req
}

// dups reports the known keys that appear more than once in obj.
func (d *decoder) dups(obj *object, where string) {
	for _, k := range obj.dup {
		d.addf("%s has the key %q more than once", where, k)
	}
}

// requiredString returns the string value of a field that must be present.
func (d *decoder) requiredString(name string, raw json.RawMessage) (string, bool) {
	v, ok, problem := stringValue(name, raw)
	switch {
	case problem != "":
		d.add(problem)
		return "", false
	case !ok:
		d.add(name + " is required")
		return "", false
	case v == "":
		d.add(name + " is empty")
		return "", false
	}
	return v, true
}
