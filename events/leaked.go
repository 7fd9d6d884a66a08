package events

import "log/slog"

// LeakedKey is the PEM of a leaked private key that a request carries so that
// revoker finds and deletes the API key it belongs to. It is a secret: every
// way of printing it (fmt verbs, slog, JSON) shows only "[REDACTED]", and
// nothing revoker stores holds it.
type LeakedKey struct{ pem string } // a string: a Request stays comparable

// NewLeakedKey wraps a PEM.
func NewLeakedKey(pem string) LeakedKey { return LeakedKey{pem: pem} }

// IsZero reports whether the request carried no leaked key.
func (k LeakedKey) IsZero() bool { return len(k.pem) == 0 }

// PEM returns the key's PEM text, for parsing only.
func (k LeakedKey) PEM() []byte { return []byte(k.pem) }

const redacted = "[REDACTED]"

// String hides the key.
func (k LeakedKey) String() string {
	if k.IsZero() {
		return ""
	}
	return redacted
}

// GoString hides the key from %#v too.
func (k LeakedKey) GoString() string { return "events.LeakedKey{" + k.String() + "}" }

// LogValue hides the key from slog.
func (k LeakedKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON hides the key from encoding/json.
func (k LeakedKey) MarshalJSON() ([]byte, error) { return []byte(`"` + k.String() + `"`), nil }
