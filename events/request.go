package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
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

func keyIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

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

// ceAttrs are the CloudEvents attributes revoker uses, each valid or empty.
type ceAttrs struct {
	id     string
	source string
	time   time.Time
	data   json.RawMessage // structured mode only: the data object
}

// structured checks the attributes of a structured CloudEvent.
func (d *decoder) structured(top *object) ceAttrs {
	var ce ceAttrs
	d.dups(top, "body")
	if v, ok, problem := stringValue("specversion", top.raw[kSpecVersion]); problem != "" {
		d.add(problem)
	} else if !ok {
		d.add(`specversion must be "1.0"`)
	} else if v != "1.0" {
		d.addf(`specversion %s is not supported (want "1.0")`, Quote(v))
	}
	if v, ok := d.requiredString("id", top.raw[kID]); ok {
		if problem := d.checkID("id", v); problem != "" {
			d.add(problem)
		} else {
			ce.id = v
		}
	}
	if v, ok := d.requiredString("source", top.raw[kSource]); ok {
		if problem := checkText("source", v); problem != "" {
			d.add(problem)
		} else {
			ce.source = v
		}
	}
	if v, ok := d.requiredString("type", top.raw[kType]); ok {
		d.add(checkText("type", v))
	}
	if v, ok, problem := stringValue("datacontenttype", top.raw[kDataContentType]); problem != "" {
		d.add(problem)
	} else if ok {
		d.add(checkJSONMediaType("datacontenttype", v))
	}
	if v, ok, problem := stringValue("time", top.raw[kTime]); problem != "" {
		d.add(problem)
	} else if ok {
		t, problem := parseTime("time", v)
		d.add(problem)
		ce.time = t
	}
	data := top.raw[kData]
	switch {
	case top.raw[kDataBase64] != nil:
		d.add("data_base64 is not supported; send data as a JSON object")
	case data == nil || isNull(data):
		d.add("data is required: the request fields go inside a data object")
	case data[0] != '{':
		d.addf("data must be a JSON object, not %s", kind(data))
	default:
		ce.data = data
	}
	return ce
}

// binary checks the attributes of a binary CloudEvent.
func (d *decoder) binary() ceAttrs {
	var ce ceAttrs
	h := &d.hdr
	if !h.has(hSpecVersion) {
		d.add("ce-specversion header is required")
	} else if v := h.val[hSpecVersion]; v != "1.0" {
		d.addf(`ce-specversion header %s is not supported (want "1.0")`, Quote(v))
	}
	if !h.has(hID) {
		d.add("ce-id header is required")
	} else if problem := d.checkID("ce-id header", h.val[hID]); problem != "" {
		d.add(problem)
	} else {
		ce.id = h.val[hID]
	}
	if !h.has(hSource) || h.val[hSource] == "" {
		d.add("ce-source header is required")
	} else if problem := checkText("ce-source header", h.val[hSource]); problem != "" {
		d.add(problem)
	} else {
		ce.source = h.val[hSource]
	}
	if !h.has(hType) || h.val[hType] == "" {
		d.add("ce-type header is required")
	} else {
		d.add(checkText("ce-type header", h.val[hType]))
	}
	if h.has(hTime) {
		t, problem := parseTime("ce-time header", h.val[hTime])
		d.add(problem)
		ce.time = t
	}
	if h.has(hDataContentType) {
		d.add(checkJSONMediaType("ce-datacontenttype header", h.val[hDataContentType]))
	}
	if h.has(hContentType) {
		d.add(checkJSONMediaType("Content-Type header", h.val[hContentType]))
	}
	return ce
}

// fields decodes the plain request fields of obj into req. inData says whether they sit
// inside a structured CloudEvent's data, which only changes how problems are worded.
func (d *decoder) fields(obj *object, inData bool, req *Request) {
	prefix, where := "", "body"
	if inData {
		prefix, where = "data.", "data"
	}
	d.dups(obj, where)

	if v, ok, problem := stringValue(prefix+"id", obj.raw[kID]); problem != "" {
		d.add(problem)
	} else if ok {
		if problem := d.checkID(prefix+"id", v); problem != "" {
			d.add(problem)
		} else {
			d.plainID = v
		}
	}

	name := prefix + "leaked_private_key"
	v, leaked, problem := stringValue(name, obj.raw[kLeakedPrivateKey])
	if problem != "" {
		d.add(problem)
		leaked = true // the problem is enough; no second one for api_key_id
	} else if leaked {
		if problem := checkLeakedKey(name, v); problem != "" {
			d.add(problem)
		} else {
			req.LeakedKey = LeakedKey{pem: v}
		}
	}

	// With a leaked key, api_key_id is an optional hint.
	name = prefix + "api_key_id"
	v, ok, problem := stringValue(name, obj.raw[kAPIKeyID])
	switch {
	case problem != "":
		d.add(problem)
	case !ok && !leaked:
		d.add(name + " is required (or leaked_private_key)")
	case ok && v == "":
		d.add(name + " is empty")
	case ok:
		req.APIKeyID = CanonicalAPIKeyID(cut(v, MaxAPIKeyIDLength))
		d.add(checkAPIKeyID(name, v))
	}

	text := func(k int, dst *string) {
		name := prefix + keyNames[k]
		v, ok, problem := stringValue(name, obj.raw[k])
		if problem != "" {
			d.add(problem)
			return
		}
		if ok {
			*dst = cut(v, MaxTextLength)
			d.add(checkText(name, v))
		}
	}
	text(kReason, &req.Reason)
	text(kRequestedBy, &req.RequestedBy)
	text(kSource, &req.Source)

	name = prefix + "requested_at"
	if v, ok, problem := stringValue(name, obj.raw[kRequestedAt]); problem != "" {
		d.add(problem)
	} else if ok {
		t, problem := parseTime(name, v)
		d.add(problem)
		req.RequestedAt = t
	}

	name = prefix + "cancel_orders"
	if raw := obj.raw[kCancelOrders]; raw != nil && !isNull(raw) {
		if k := kind(raw); k != "a boolean" {
			d.addf("%s must be a boolean, not %s", name, k)
		} else {
			req.CancelOrders = raw[0] == 't'
		}
	}
	d.notBefore(prefix, obj.raw[kNotBefore], req)
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

// Keys the decoder looks at, at the top level and inside data.
const (
	kID = iota
	kAPIKeyID
	kReason
	kRequestedBy
	kSource
	kRequestedAt
	kLeakedPrivateKey
	kCancelOrders
	kNotBefore
	kSpecVersion
	kType
	kData
	kDataBase64
	kDataContentType
	kTime
	nKeys
)

var keyNames = [nKeys]string{
	kID:               "id",
	kAPIKeyID:         "api_key_id",
	kReason:           "reason",
	kRequestedBy:      "requested_by",
	kSource:           "source",
	kRequestedAt:      "requested_at",
	kLeakedPrivateKey: "leaked_private_key",
	kCancelOrders:     "cancel_orders",
	kNotBefore:        "not_before",
	kSpecVersion:      "specversion",
	kType:             "type",
	kData:             "data",
	kDataBase64:       "data_base64",
	kDataContentType:  "datacontenttype",
	kTime:             "time",
}

func keyIndex(name string) int {
	for i, k := range keyNames {
		if k == name {
			return i
		}
	}
	return -1
}

// object is a JSON object reduced to the keys the decoder knows.
type object struct {
	raw [nKeys]json.RawMessage // the value of each known key, nil when absent
	dup []string               // known keys that appeared more than once
}

// readObject reads b, which must be exactly one JSON object. what names b in problems.
func readObject(b []byte, what string) (*object, string) {
	// Valid JSON, the usual case, is walked in place: no allocation per
	// key or value. Anything else goes through the decoder, which words the
	// problem. Measured as deployed (Ed25519, c16), the decoder alone costs
	// 70 allocations and about 50 µs of CPU more per request.
	if !json.Valid(b) {
		return readObjectDecoder(b, what)
	}
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return readObjectDecoder(b, what)
	}
	obj := new(object)
	for i = skipSpace(b, i+1); b[i] == '"'; {
		keyEnd := skipString(b, i)
		var k int
		if rawKey := b[i+1 : keyEnd-1]; bytes.IndexByte(rawKey, '\\') < 0 {
			k = keyIndexBytes(rawKey)
		} else {
			var key string
			_ = json.Unmarshal(b[i:keyEnd], &key) // valid: checked above
			k = keyIndex(key)
		}
		i = skipSpace(b, skipSpace(b, keyEnd)+1) // past the colon
		end := skipValue(b, i)
		if k >= 0 {
			if obj.raw[k] != nil {
				obj.dup = append(obj.dup, keyNames[k])
			}
			obj.raw[k] = json.RawMessage(b[i:end:end])
		}
		if i = skipSpace(b, end); b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return obj, ""
}

func keyIndexBytes(name []byte) int {
	for i, k := range keyNames {
		if string(name) == k {
			return i
		}
	}
	return -1
}

// skipSpace, skipString and skipValue walk JSON that json.Valid accepted.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at b[i].
func skipString(b []byte, i int) int {
	for i++; ; i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

// readObjectDecoder is readObject with encoding/json's decoder, for input
// that is not a valid JSON object.
func readObjectDecoder(b []byte, what string) (*object, string) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, what + " is not valid JSON: " + jsonProblem(err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Sprintf("%s must be a JSON object, not %s", what, tokenKind(tok))
	}
	obj := new(object)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, what + " is not valid JSON: " + jsonProblem(err)
		}
		key, _ := tok.(string) // the decoder guarantees a string key here
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, what + " is not valid JSON: " + jsonProblem(err)
		}
		if i := keyIndex(key); i >= 0 {
			if obj.raw[i] != nil {
				obj.dup = append(obj.dup, key)
			}
			obj.raw[i] = bytes.TrimSpace(raw)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, what + " is not valid JSON: " + jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, what + " has more after the JSON object"
	}
	return obj, ""
}

func jsonProblem(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end"
	}
	return err.Error()
}

func tokenKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

// kind names the JSON type of a raw value in problems.
func kind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// stringValue decodes raw, which must be a JSON string, null or absent. ok is false when
// it is null or absent; problem is set when it is another type.
func stringValue(name string, raw json.RawMessage) (v string, ok bool, problem string) {
	if raw == nil || isNull(raw) {
		return "", false, ""
	}
	if raw[0] != '"' {
		return "", false, fmt.Sprintf("%s must be a string, not %s", name, kind(raw))
	}
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 {
		// No escapes: the decoder has checked the syntax and DecodeRequest the UTF-8.
		return string(inner), true, ""
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", false, fmt.Sprintf("%s is not a valid JSON string", name)
	}
	return v, true, ""
}

// checkAPIKeyID returns a problem unless v is a valid api_key_id.
func checkAPIKeyID(name, v string) string {
	for i := 0; i < len(v); i++ {
		if !keyIDByte(v[i]) {
			return fmt.Sprintf("%s %s has characters outside [A-Za-z0-9_-]", name, Quote(v))
		}
	}
	if len(v) > MaxAPIKeyIDLength {
		return fmt.Sprintf("%s is %d characters; at most %d are allowed", name, len(v), MaxAPIKeyIDLength)
	}
	return ""
}

// checkLeakedKey returns a problem unless v can be a leaked PEM private key. Whether it
// parses is for the caller to find out, with the parser that signs; no problem quotes v.
func checkLeakedKey(name, v string) string {
	switch {
	case len(v) > MaxLeakedKeyLength:
		return fmt.Sprintf("%s is %d bytes; at most %d are allowed", name, len(v), MaxLeakedKeyLength)
	case !strings.Contains(v, "PRIVATE KEY"):
		return name + " is not a PEM private key (no PRIVATE KEY block)"
	}
	return ""
}

// checkID returns a problem unless v can be a request id (and so a Nats-Msg-Id).
func checkID(name, v string) string {
	switch {
	case v == "":
		return name + " is empty"
	case len(v) > MaxIDLength:
		return fmt.Sprintf("%s is %d bytes; at most %d are allowed", name, len(v), MaxIDLength)
	case !utf8.ValidString(v):
		return name + " is not valid UTF-8"
	case strings.HasPrefix(v, UntrustedIDPrefix):
		return fmt.Sprintf("%s %s starts with %q, which revoker reserves for its own results", name, Quote(v), UntrustedIDPrefix)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Sprintf("%s %s contains a control character", name, Quote(v))
		}
	}
	first, _ := utf8.DecodeRuneInString(v)
	last, _ := utf8.DecodeLastRuneInString(v)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return fmt.Sprintf("%s %s starts or ends with a space", name, Quote(v))
	}
	return ""
}

// checkText returns a problem unless v is a valid free-text value: at most MaxTextLength
// bytes of UTF-8 without control characters other than tab.
func checkText(name, v string) string {
	if len(v) > MaxTextLength {
		return fmt.Sprintf("%s is %d bytes; at most %d are allowed", name, len(v), MaxTextLength)
	}
	if !utf8.ValidString(v) {
		return name + " is not valid UTF-8"
	}
	for _, r := range v {
		if r != '\t' && unicode.IsControl(r) {
			return fmt.Sprintf("%s %s contains a control character", name, Quote(v))
		}
	}
	return ""
}

// checkJSONMediaType returns a problem unless v names a JSON media type.
func checkJSONMediaType(name, v string) string {
	mt, _, err := mime.ParseMediaType(v)
	if err == nil && (mt == "application/json" || mt == "text/json" ||
		strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return ""
	}
	return fmt.Sprintf("%s %s is not JSON", name, Quote(v))
}

func parseTime(name, v string) (time.Time, string) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Sprintf("%s %s is not an RFC 3339 time", name, Quote(v))
	}
	// A result carries the time in UTC and RFC 3339 holds years 0 to 9999 only.
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Sprintf("%s %s is outside the years 0001 to 9999 in UTC", name, Quote(v))
	}
	return t.UTC(), ""
}

// Quote quotes s for a message, cut to 64 bytes (and marked "...") so that
// no field, however long, makes a long message. Every character that is not
// Printable is escaped.
func Quote(s string) string {
	const max = 64
	if len(s) <= max {
		return quoteAll(s)
	}
	return quoteAll(cut(s, max)) + "..."
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// Headers DecodeRequest reads.
const (
	hSpecVersion = iota
	hID
	hSource
	hType
	hTime
	hDataContentType
	hContentType
	hMsgID
	nHeaders
)

var headerNames = [nHeaders]string{
	hSpecVersion:     "ce-specversion",
	hID:              "ce-id",
	hSource:          "ce-source",
	hType:            "ce-type",
	hTime:            "ce-time",
	hDataContentType: "ce-datacontenttype",
	hContentType:     "Content-Type",
	hMsgID:           "Nats-Msg-Id",
}

// headers holds the first value of each header DecodeRequest reads. When a header appears
// under several spellings, the spelling that sorts first wins, so the choice is stable.
type headers struct {
	val [nHeaders]string
	key [nHeaders]string // the spelling val came from; "" when absent
}

func readHeaders(h map[string][]string) headers {
	var hs headers
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		for i, name := range headerNames {
			if !strings.EqualFold(k, name) {
				continue
			}
			if hs.key[i] == "" || k < hs.key[i] {
				hs.key[i], hs.val[i] = k, vs[0]
			}
			break
		}
	}
	for i := hSpecVersion; i <= hDataContentType; i++ {
		if hs.key[i] != "" {
			hs.val[i] = percentDecode(hs.val[i])
		}
	}
	return hs
}

func (h *headers) has(i int) bool { return h.key[i] != "" }

// binary reports whether the headers mark a binary CloudEvent.
func (h *headers) binary() bool {
	return h.has(hSpecVersion) || h.has(hID) || h.has(hSource) || h.has(hType)
}

// percentDecode decodes a CloudEvents header value that is validly percent-encoded, and
// returns any other value as it is.
func percentDecode(v string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	if d, err := url.PathUnescape(v); err == nil && utf8.ValidString(d) {
		return d
	}
	return v
}
