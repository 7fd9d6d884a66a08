package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Leaked is the key a leaked private key was found to be. A key's public
// key never changes, so it stays true; it lets a later request with the
// same PEM find the key after its delete, when no listed key is it.
type Leaked struct {
	Key     string `json:"key"`
	Foreign bool   `json:"foreign,omitempty"`
}

// RecordLeaked notes which key a leaked private key is, unless known.
func (l *Ledger) RecordLeaked(ctx context.Context, fingerprint string, e Leaked) error {
	_, err := l.createJSON(ctx, leakedKeyKey(fingerprint), e)
	return err
}

// LeakedKeyOf returns the key a leaked private key was found to be; its
// Key is "" when the ledger does not know it.
func (l *Ledger) LeakedKeyOf(ctx context.Context, fingerprint string) (Leaked, error) {
	var e Leaked
	_, _, err := l.getEntry(ctx, leakedKeyKey(fingerprint), &e)
	return e, err
}

// A leaked PEM that matched no key is remembered by its fingerprint for
// worker.Config.LeakedMissTTL, so that repeating it costs no Kalshi call:
// without this, every repeat would buy a full search (one list and one
// signed call per listed key) from the account's budget.

// Miss is a leaked key's search that found no key.
type Miss struct {
	// At is when the search ended. A reader ignores an entry older than
	// the TTL: the server's expiry is not exact.
	At   time.Time `json:"at"`
	Hint string    `json:"hint,omitempty"` // the api_key_id tried with it, if any
}

func missKey(fingerprint string) string { return "miss." + strings.TrimPrefix(fingerprint, "sha256:") }

// RecordMiss remembers that the leaked key's search found nothing, for ttl.
func (l *Ledger) RecordMiss(ctx context.Context, fingerprint string, e Miss, ttl time.Duration) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = l.createTTL(ctx, missKey(fingerprint), v, ttl)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil // another search recorded one meanwhile
	}
	return err
}

// MissOf returns the leaked key's search that found nothing less than ttl
// before now, or nil.
func (l *Ledger) MissOf(ctx context.Context, fingerprint string, now time.Time, ttl time.Duration) (*Miss, error) {
	var e Miss
	if _, found, err := l.getEntry(ctx, missKey(fingerprint), &e); !found {
		return nil, err
	}
	if !fresh(e.At, now, ttl) {
		return nil, nil
	}
	return &e, nil
}

// fresh reports whether a miss at at is still remembered at now. One dated
// in the future by more than ttl (a clock far off) is not.
func fresh(at, now time.Time, ttl time.Duration) bool {
	return now.Sub(at) < ttl && at.Sub(now) < ttl
}
