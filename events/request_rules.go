package events

// The rules of each request field's value: ids, key IDs, leaked keys, free text,
// media types and times. Each returns a problem in plain words, or "".

import (
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// keyIDByte reports whether c may appear in an api_key_id.
func keyIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
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
