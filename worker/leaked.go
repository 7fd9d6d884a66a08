package worker

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// leakedKey is the private key a request carries so that revoker finds the
// API key it belongs to. Only its fingerprint is ever written anywhere:
// printed or logged, it shows that alone.
type leakedKey struct {
	signer      crypto.Signer
	fingerprint string
}

func (k *leakedKey) String() string       { return "leaked key " + k.fingerprint }
func (k *leakedKey) GoString() string     { return k.String() }
func (k *leakedKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// parseLeakedKey parses a request's leaked key; a key that does not parse
// makes the request invalid. The error never holds the PEM.
func parseLeakedKey(k events.LeakedKey) (*leakedKey, error) {
	signer, err := kalshi.ParsePrivateKey(k.PEM())
	if err != nil {
		return nil, &events.InvalidRequestError{Reason: "leaked_private_key: " + strings.TrimPrefix(err.Error(), "private key: ")}
	}
	fp, err := kalshi.Fingerprint(signer)
	if err != nil {
		return nil, &events.InvalidRequestError{Reason: "leaked_private_key: " + err.Error()}
	}
	return &leakedKey{signer: signer, fingerprint: fp}, nil
}

// found is the key a leaked private key belongs to.
type found struct {
	keyID   string
	foreign bool           // not the account's: it deletes itself, signed with the leaked key
	key     *kalshi.APIKey // how the search's listing showed it; nil when not listed or not searched
}

// identify finds the API key a leaked private key belongs to. It lists the
// account's keys with the worker's credential, then makes one signed call as
// each listed key with the leaked key, the hint first, until Kalshi accepts
// one. Only an accepted call names a key: a refusal of any kind never does.
// A hint the account does not list is tried first, as another account's key.
// Every call goes through the limiter and call's retries.
//
// It returns the key, or the error that ends the request
// (leaked_key_not_found among them), or errStopped on shutdown.
func (w *Worker) identify(ctx, stop context.Context, storedAt time.Time, lk *leakedKey, hint string, s search) (found, *events.Error, error) {
	var keys []kalshi.APIKey
	err := w.call(ctx, stop, storedAt, func(ctx context.Context) error {
		var err error
		keys, err = w.del.ListAPIKeys(ctx)
		return err
	}, func(error) {})
	if err != nil {
		return found{}, w.identifyFailure("listing the account's keys", err), stoppedOrNil(err)
	}
	listed := make([]string, 0, len(keys))
	seen := make(map[string]*kalshi.APIKey, len(keys))
	for _, k := range keys {
		if id := events.CanonicalAPIKeyID(k.ID); kalshi.ValidKeyID(id) && seen[id] == nil {
			seen[id] = &k
			listed = append(listed, id)
		}
	}
	// In order, so that a redelivery resumes where an earlier delivery's
	// search stopped.
	slices.Sort(listed)
	w.cfg.Logger.Debug("identifying a leaked key", "leaked_key_fingerprint", lk.fingerprint, "listed_keys", len(listed), "hint", hint)

	if hint != "" {
		if seen[hint] != nil {
			i := slices.Index(listed, hint)
			listed = slices.Insert(slices.Delete(listed, i, i+1), 0, hint)
		} else {
			ok, err := w.probe(ctx, stop, storedAt, hint, lk)
			if err != nil {
				return found{}, w.identifyFailure("trying the leaked key as "+hint, err), stoppedOrNil(err)
			}
			if ok {
				return found{keyID: hint, foreign: true}, nil, nil
			}
		}
	}
	deadline := storedAt.Add(w.cfg.MaxRetry)
	for i, id := range listed {
		if id != hint && s.from != "" && id <= s.from {
			continue // refused on an earlier delivery
		}
		if i > 0 && time.Now().After(deadline) {
			return found{}, w.identifyFailure("", &budgetError{fmt.Sprintf(
				"the retry budget ran out after trying the leaked key as %d of the %d listed keys", i, len(listed))}), nil
		}
		ok, err := w.probe(ctx, stop, storedAt, id, lk)
		if err != nil {
			return found{}, w.identifyFailure("trying the leaked key as "+id, err), stoppedOrNil(err)
		}
		if ok {
			return found{keyID: id, key: seen[id]}, nil, nil
		}
		if id != hint && s.refused != nil {
			s.refused(id)
		}
	}
	w.cfg.Logger.Info("no key accepts a leaked key", "leaked_key_fingerprint", lk.fingerprint, "listed_keys", len(listed), "hint", hint)
	return found{}, leakedKeyNotFound(lk), nil
}

// search is where a leaked key's search starts, and whom it tells of each
// listed key that refused the leaked key (in order): a redelivery resumes
// after the last one recorded.
type search struct {
	from    string          // every listed key up to this one refused it already
	refused func(id string) // nil: nobody to tell
}

// probe reports whether Kalshi accepts a call signed as keyID with the
// leaked key. An error is errStopped or a *budgetError.
func (w *Worker) probe(ctx, stop context.Context, storedAt time.Time, keyID string, lk *leakedKey) (bool, error) {
	as, err := w.del.As(keyID, lk.signer)
	if err != nil {
		return false, nil // a key ID no call can be signed as cannot be it
	}
	err = w.call(ctx, stop, storedAt, func(ctx context.Context) error {
		_, err := as.ListAPIKeys(ctx)
		return err
	}, func(error) {})
	var be *budgetError
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errStopped), errors.As(err, &be):
		return false, err
	}
	return false, nil
}

// identifyFailure is the error that ends a request whose identification
// failed with err while doing what. It is nil for errStopped.
func (w *Worker) identifyFailure(what string, err error) *events.Error {
	if what != "" {
		what += ": "
	}
	if errors.Is(err, errStopped) {
		return nil
	}
	code := failureCode(err)
	if code == events.CodeKalshiUnauthorized {
		w.credentialRefused(err)
	}
	return &events.Error{Code: code, Message: what + err.Error()}
}

func stoppedOrNil(err error) error {
	if errors.Is(err, errStopped) {
		return errStopped
	}
	return nil
}

// listedLeaked is how the account listed the key a leaked PEM was found to
// be, for the blast radius: as the search's listing showed it, or (found by
// an earlier delivery or request) as the shared listing shows it now, or
// by its ID alone. The leaked key was accepted as this key moments ago, so
// it counts as listed either way.
func (w *Worker) listedLeaked(ctx, stop context.Context, storedAt time.Time, f found) *kalshi.APIKey {
	if f.key != nil {
		return f.key
	}
	if !f.foreign {
		if k, err := w.listedForAttempt(ctx, stop, storedAt, f.keyID); err == nil && k != nil {
			return k
		}
	}
	return &kalshi.APIKey{ID: f.keyID}
}
