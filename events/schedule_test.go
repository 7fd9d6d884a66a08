package events

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeNotBefore(t *testing.T) {
	at := time.Date(2026, 12, 24, 17, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		header  map[string][]string
		body    string
		want    time.Time
		wantErr string
	}{
		{"plain", nil, `{"api_key_id":"k","not_before":"2026-12-24T18:00:00+01:00"}`, at, ""},
		{"structured", nil, `{"specversion":"1.0","id":"c","source":"s","type":"t","data":{"api_key_id":"k","not_before":"2026-12-24T17:00:00Z"}}`, at, ""},
		{"binary", ceHdr(), `{"api_key_id":"k","not_before":"2026-12-24T17:00:00.000Z"}`, at, ""},
		{"null is absent", nil, `{"api_key_id":"k","not_before":null}`, time.Time{}, ""},
		{"absent", nil, `{"api_key_id":"k"}`, time.Time{}, ""},
		{"not a time", nil, `{"api_key_id":"k","not_before":"in 10 minutes"}`, time.Time{}, `not_before "in 10 minutes" is not an RFC 3339 time`},
		{"no zone", nil, `{"api_key_id":"k","not_before":"2026-12-24T17:00:00"}`, time.Time{}, "is not an RFC 3339 time"},
		{"a number", nil, `{"api_key_id":"k","not_before":1766595600}`, time.Time{}, "not_before must be a string, not a number"},
		{"in data", nil, `{"specversion":"1.0","id":"c","source":"s","type":"t","data":{"api_key_id":"k","not_before":true}}`, time.Time{}, "data.not_before must be a string, not a boolean"},
		{"twice", nil, `{"api_key_id":"k","not_before":"2026-12-24T17:00:00Z","not_before":"2026-12-25T17:00:00Z"}`, time.Time{}, `the key "not_before" more than once`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRequest(tc.header, []byte(tc.body), fallback)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if !got.NotBefore.Equal(tc.want) || (!tc.want.IsZero() && got.NotBefore.Location() != time.UTC) {
					t.Errorf("NotBefore = %v, want %v in UTC", got.NotBefore, tc.want)
				}
				return
			}
			var ire *InvalidRequestError
			if !errors.As(err, &ire) || !strings.Contains(ire.Reason, tc.wantErr) {
				t.Errorf("err = %v, want an invalid request saying %q", err, tc.wantErr)
			}
		})
	}
}

func TestCheckNotBefore(t *testing.T) {
	stored := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	max := 30 * 24 * time.Hour
	for _, tc := range []struct {
		name      string
		notBefore time.Time
		wantErr   string
	}{
		{"absent", time.Time{}, ""},
		{"in the past", stored.Add(-time.Hour), ""},
		{"exactly the maximum", stored.Add(max), ""},
		{"a second beyond", stored.Add(max + time.Second), "not_before 2026-12-31T12:00:01Z is 30.0 days after the request was stored; at most 30 days ahead is accepted (REVOKER_MAX_SCHEDULE)"},
		{"far beyond", stored.Add(400 * 24 * time.Hour), "is 400 days after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckNotBefore(tc.notBefore, stored, max, "REVOKER_MAX_SCHEDULE")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			var ire *InvalidRequestError
			if !errors.As(err, &ire) || !strings.Contains(ire.Reason, tc.wantErr) {
				t.Errorf("err = %v, want an invalid request saying %q", err, tc.wantErr)
			}
		})
	}
}

func TestScheduled(t *testing.T) {
	stored := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		notBefore time.Time
		want      bool
	}{{time.Time{}, false}, {stored, false}, {stored.Add(-time.Second), false}, {stored.Add(time.Millisecond), true}} {
		if got := (Request{NotBefore: tc.notBefore}).Scheduled(stored); got != tc.want {
			t.Errorf("Scheduled with not_before %v = %v, want %v", tc.notBefore, got, tc.want)
		}
	}
}

func TestSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		6 * time.Second: "6s", 90 * time.Minute: "1h30m", 2 * time.Hour: "2h", 24 * time.Hour: "1 day",
		30 * 24 * time.Hour: "30 days", 36 * time.Hour: "1.5 days", 1500 * time.Millisecond: "2s",
	} {
		if got := Span(d); got != want {
			t.Errorf("Span(%v) = %q, want %q", d, got, want)
		}
	}
}
