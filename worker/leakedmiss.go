package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
)

// A leaked PEM that matched no key is remembered by its fingerprint for
// Config.LeakedMissTTL, so that repeating it costs no Kalshi call: without
// this, every repeat would buy a full search (one list and one signed call
// per listed key) from the account's budget.
//
//	miss.<sha256 hex>  a missEntry: when the search found nothing, and the hint it tried

// missEntry is a leaked key's search that found no key.
type missEntry struct {
	// At is when the search ended. A reader ignores an entry older than
	// the TTL: the server's expiry is not exact.
	At   time.Time `json:"at"`
	Hint string    `json:"hint,omitempty"` // the api_key_id tried with it, if any
}

func missKey(fingerprint string) string { return "miss." + strings.TrimPrefix(fingerprint, "sha256:") }

// recordMiss remembers that the leaked key's search found nothing, for ttl.
func (l *ledger) recordMiss(ctx context.Context, fingerprint string, e missEntry, ttl time.Duration) error {
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

// missOf returns the leaked key's search that found nothing less than ttl
// before now, or nil.
func (l *ledger) missOf(ctx context.Context, fingerprint string, now time.Time, ttl time.Duration) (*missEntry, error) {
	var e missEntry
	if found, err := l.getJSON(ctx, missKey(fingerprint), &e); !found {
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

// identifyOnce is identify, remembering a search that found nothing: a
// repeat of the PEM within Config.LeakedMissTTL gets leaked_key_not_found
// without any call, unless it names a hint not yet tried, which costs one
// call as that key (and a search only if it accepts the leaked key).
func (w *Worker) identifyOnce(ctx, stop context.Context, storedAt time.Time, lk *leakedKey, hint string, s search) (found, *events.Error, error) {
	miss, err := w.ledger.missOf(ctx, lk.fingerprint, time.Now(), w.cfg.LeakedMissTTL)
	if err != nil {
		return found{}, nil, err
	}
	if miss != nil {
		if hint == "" || hint == miss.Hint {
			w.cfg.Logger.Debug("a leaked key that matched no key recently: no search", "leaked_key_fingerprint", lk.fingerprint, "searched_at", miss.At)
			return found{}, leakedKeyNotFound(lk), nil
		}
		ok, err := w.probe(ctx, stop, storedAt, hint, lk)
		if err != nil {
			return found{}, w.identifyFailure("trying the leaked key as "+hint, err), stoppedOrNil(err)
		}
		if !ok {
			return found{}, leakedKeyNotFound(lk), nil
		}
		// The hint takes it: a search now tells whether the account lists it.
	}
	f, fail, err := w.identify(ctx, stop, storedAt, lk, hint, s)
	if fail != nil && fail.Code == events.CodeLeakedKeyNotFound {
		if err := w.ledger.recordMiss(ctx, lk.fingerprint, missEntry{At: time.Now().UTC(), Hint: hint}, w.cfg.LeakedMissTTL); err != nil {
			w.cfg.Logger.Warn("cannot remember a leaked key that matched no key; a repeat searches again", "leaked_key_fingerprint", lk.fingerprint, "err", err)
		}
	}
	return f, fail, err
}

// leakedKeyNotFound is the refusal of a leaked key no key accepts. It names
// neither how many keys the account has nor whether a hint is one of them:
// any requester reads it.
func leakedKeyNotFound(lk *leakedKey) *events.Error {
	return &events.Error{Code: events.CodeLeakedKeyNotFound,
		Message: "no API key accepts the leaked key " + lk.fingerprint + "; nothing was deleted"}
}
