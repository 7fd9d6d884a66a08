package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// ResultMode is how a result is laid out in its NATS message, following the CloudEvents
// NATS protocol binding (cloudevents/spec, bindings/nats-protocol-binding.md).
type ResultMode string

// The two result modes.
const (
	// Structured: the body is the CloudEvents JSON document of [Result.MarshalEvent],
	// with the header "content-type: application/cloudevents+json".
	Structured ResultMode = "structured"
	// Binary: the body is the document's data object; every other attribute is a
	// header "ce-<attribute>", its value percent-encoded, and "content-type:
	// application/json" says what the body is.
	Binary ResultMode = "binary"
)

// ParseResultMode returns the mode s names, "structured" or "binary".
func ParseResultMode(s string) (ResultMode, error) {
	switch m := ResultMode(s); m {
	case Structured, Binary:
		return m, nil
	}
	return "", fmt.Errorf("%s is not structured or binary", Quote(s))
}

// Header names and media types of the NATS binding. Header names are written in
// lower case, as the binding spells them; readers match them in any case.
const (
	ContentTypeHeader   = "content-type"
	CloudEventsJSONType = "application/cloudevents+json"
	ceHeaderPrefix      = "ce-"
)

// ResultMessage returns the header and body of the NATS message that carries the
// structured result document doc (made by [Result.MarshalEvent]) in mode. The caller
// adds its own headers, such as Nats-Msg-Id. An empty mode is Structured.
func ResultMessage(doc []byte, mode ResultMode) (map[string][]string, []byte, error) {
	switch mode {
	case Structured, "":
		return map[string][]string{ContentTypeHeader: {CloudEventsJSONType}}, doc, nil
	case Binary:
	default:
		return nil, nil, fmt.Errorf("result mode %s is not structured or binary", Quote(string(mode)))
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return nil, nil, fmt.Errorf("result document: %w", err)
	}
	data, ok := top["data"]
	if !ok {
		return nil, nil, errors.New("result document: no data")
	}
	h := make(map[string][]string, len(top)+1)
	for name, raw := range top {
		if name == "data" {
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, nil, fmt.Errorf("result document: attribute %s is not a string", Quote(name))
		}
		h[ceHeaderPrefix+name] = []string{percentEncode(v)}
	}
	// The binding maps datacontenttype to ce-datacontenttype; content-type says
	// the same to readers that look for it, as the HTTP binding does.
	if ct, ok := h[ceHeaderPrefix+"datacontenttype"]; ok {
		h[ContentTypeHeader] = ct
	}
	return h, data, nil
}

// ParseResultMsg decodes a stored result message, in either mode or as stored
// before results carried headers: the one way to read a result from a stream.
func ParseResultMsg(header map[string][]string, body []byte) (Result, error) {
	doc, err := ResultDoc(header, body)
	if err != nil {
		return Result{}, err
	}
	return ParseResult(doc)
}

// ResultDoc returns the structured CloudEvents JSON document of a stored result
// message: the body itself in structured mode (content-type application/cloudevents…,
// or no ce-specversion header), else the document rebuilt from the ce-* headers and
// the body as data, the attributes in the order MarshalEvent writes them.
func ResultDoc(header map[string][]string, body []byte) ([]byte, error) {
	ct := strings.ToLower(headerValue(header, ContentTypeHeader))
	if strings.HasPrefix(ct, "application/cloudevents") || headerValue(header, ceHeaderPrefix+"specversion") == "" {
		return body, nil
	}
	attrs := map[string]string{}
	for k, vs := range header {
		name, ok := cutPrefixFold(k, ceHeaderPrefix)
		if !ok || len(vs) == 0 {
			continue
		}
		name = strings.ToLower(name)
		if _, dup := attrs[name]; dup {
			return nil, fmt.Errorf("parse result: header %s%s appears in two spellings", ceHeaderPrefix, Quote(name))
		}
		v, err := percentDecodeStrict(vs[0])
		if err != nil {
			return nil, fmt.Errorf("parse result: header %s%s: %w", ceHeaderPrefix, Quote(name), err)
		}
		attrs[name] = v
	}
	if _, ok := attrs["data"]; ok {
		return nil, errors.New("parse result: ce-data is not an attribute")
	}
	if !json.Valid(body) {
		return nil, errors.New("parse result: the body is not JSON")
	}
	order := []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "traceparent", "tracestate"}
	var rest []string
	for name := range attrs {
		if !slices.Contains(order, name) {
			rest = append(rest, name)
		}
	}
	slices.Sort(rest)
	b := make([]byte, 0, len(body)+512)
	b = append(b, '{')
	for _, name := range append(order, rest...) {
		v, ok := attrs[name]
		if !ok {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = appendString(b, name)
		b = append(b, ':')
		b = appendString(b, v)
	}
	b = append(b, `,"data":`...)
	b = append(b, bytes.TrimSpace(body)...)
	return append(b, '}'), nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// percentEncode encodes a header value as the binding asks: space, '"', '%' and
// every byte outside printable ASCII become %XY.
func percentEncode(v string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c > '~' || c == '"' || c == '%' {
			if b.Len() == 0 {
				b.Grow(len(v) + 16)
				b.WriteString(v[:i])
			}
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		} else if b.Len() > 0 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return v
	}
	return b.String()
}

// percentDecodeStrict decodes a header value as the binding asks of a reader: a
// double-quoted value is unquoted first, then %XY (either case) decoded once; the
// result must be UTF-8.
func percentDecodeStrict(v string) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			if v[i] == '\\' && i+1 < len(v)-1 {
				i++
			}
			b.WriteByte(v[i])
		}
		v = b.String()
	}
	if !strings.Contains(v, "%") {
		if !utf8.ValidString(v) {
			return "", errors.New("not UTF-8")
		}
		return v, nil
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b = append(b, v[i])
			continue
		}
		if i+2 >= len(v) {
			return "", errors.New("a % without two hex digits")
		}
		hi, ok1 := unhex(v[i+1])
		lo, ok2 := unhex(v[i+2])
		if !ok1 || !ok2 {
			return "", errors.New("a % without two hex digits")
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	if !utf8.Valid(b) {
		return "", errors.New("percent-encoded bytes that are not UTF-8")
	}
	return string(b), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
