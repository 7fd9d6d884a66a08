package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The rules of not_before: a request that must not act before a set time
// (a key rotation revokes the old key once the new one is live).

// notBefore decodes the not_before field: an RFC 3339 time, or null.
// Whether it is too far ahead depends on when the request was stored and on
// the deployment: that is CheckNotBefore.
func (d *decoder) notBefore(prefix string, raw json.RawMessage, req *Request) {
	name := prefix + "not_before"
	v, ok, problem := stringValue(name, raw)
	if problem != "" || !ok {
		d.add(problem)
		return
	}
	t, problem := parseTime(name, v)
	d.add(problem)
	req.NotBefore = t
}

// Scheduled reports whether the request must wait after storedAt, when
// JetStream stored it: its not_before is later. A not_before at or before
// storedAt changes nothing.
func (r Request) Scheduled(storedAt time.Time) bool {
	return r.NotBefore.After(storedAt)
}

// CheckNotBefore returns an *InvalidRequestError when not_before lies more
// than max after storedAt, when the request was stored (so that every
// delivery of one message gets the same answer); limit says what sets max,
// in the reason. A request without not_before passes.
func CheckNotBefore(notBefore, storedAt time.Time, max time.Duration, limit string) error {
	if ahead := notBefore.Sub(storedAt); ahead > max {
		return &InvalidRequestError{Reason: fmt.Sprintf(
			"not_before %s is %s after the request was stored; at most %s ahead is accepted (%s)",
			notBefore.UTC().Format(time.RFC3339), Span(ahead), Span(max), limit)}
	}
	return nil
}

// Span writes a duration for people: whole days as days, whole hours and
// minutes as hours and minutes, anything else rounded to the second.
func Span(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		if d == 24*time.Hour {
			return "1 day"
		}
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d >= 24*time.Hour:
		return fmt.Sprintf("%.1f days", d.Hours()/24)
	}
	d = d.Round(time.Second)
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return strings.TrimSuffix(d.String(), "0s")
	}
	return d.String()
}
