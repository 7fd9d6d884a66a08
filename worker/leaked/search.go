// Package leaked finds the API key a leaked private key belongs to: the
// leaked key itself ([Key], which prints as its fingerprint alone), the
// search ([Find]: one list of the account's keys, then one call signed as
// each listed key with the leaked key until Kalshi accepts one), what the
// ledger remembers of earlier searches (the key found, a search that found
// nothing: miss.go), and where a redelivery resumes a search ([Search]).
//
// It knows the worker only through its [Config]: the call within the
// request's budget, the Kalshi client's listing and As, the ledger, and
// the worker's reading of a failed call. Package worker imports this
// package, never the reverse.
package leaked

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/ledger"
)

// Config is what a search needs of the worker.
type Config struct {
	MaxRetry time.Duration // the request's retry budget, from when it was stored
	MissTTL  time.Duration // how long a search that found nothing is remembered

	// Call makes op within the delete budget and the retries of the request
	// stored at storedAt; stop ends it on shutdown with Stopped. Its error is
	// Stopped, one that Exhausted says ran out of the retry budget, or op's
	// last.
	Call      func(ctx, stop context.Context, storedAt time.Time, op func(context.Context) error) error
	Stopped   error
	Exhausted func(error) bool
	// OutOfBudget is the error of a search that ran out of the retry
	// budget, saying why (one Exhausted reports).
	OutOfBudget func(why string) error
	// Failed reads a call that failed for good (the worker's one reading of
	// a Kalshi answer), checking the credential again when Kalshi refused it.
	Failed func(error) events.Code

	List   func(ctx context.Context) ([]kalshi.APIKey, error) // signed with the worker's credential
	As     func(keyID string, key crypto.Signer) (*kalshi.Client, error)
	Ledger func() *ledger.Ledger
	Logger *slog.Logger
}

// Found is the key a leaked private key belongs to.
type Found struct {
	KeyID   string
	Foreign bool           // not the account's: it deletes itself, signed with the leaked key
	Key     *kalshi.APIKey // how the search's listing showed it; nil when not listed or not searched
}

// Search is where a leaked key's search starts, and whom it tells of each
// listed key that refused the leaked key (in order): a redelivery resumes
// after the last one recorded.
type Search struct {
	From    string          // every listed key up to this one refused it already
	Refused func(id string) // nil: nobody to tell
}

// Find finds the key lk is: as the ledger remembers it from an earlier
// request with the same PEM (after whose delete no listed key is it, and
// Kalshi's 404 then says already_revoked), or by a search, whose find it
// records before any DELETE. hint is the API key the request names, if
// any. It returns the key, or the refusal that ends the request, or the
// error that sends it back (Config.Stopped on shutdown).
func Find(ctx, stop context.Context, cfg Config, storedAt time.Time, lk *Key, hint string, s Search) (f Found, fail *events.Error, err error) {
	known := func() (Found, error) {
		e, err := cfg.Ledger().LeakedKeyOf(ctx, lk.fingerprint)
		return Found{KeyID: e.Key, Foreign: e.Foreign}, err
	}
	if f, err = known(); err != nil || f.KeyID != "" {
		return f, nil, err
	}
	x := finder{cfg}
	switch f, fail, err = x.identifyOnce(ctx, stop, storedAt, lk, hint, s); {
	case fail != nil && fail.Code == events.CodeLeakedKeyNotFound:
		// Another request with this PEM may have recorded the key and
		// deleted it while this one listed the account's keys.
		if k, kerr := known(); kerr != nil || k.KeyID != "" {
			f, fail, err = k, nil, kerr
		}
	case err == nil && fail == nil:
		err = cfg.Ledger().RecordLeaked(ctx, lk.fingerprint, ledger.Leaked{Key: f.KeyID, Foreign: f.Foreign})
	}
	return f, fail, err
}

// finder is one search, with the worker's Config.
type finder struct{ Config }

// identify finds the API key a leaked private key belongs to. It lists the
// account's keys with the worker's credential, then makes one signed call as
// each listed key with the leaked key, the hint first, until Kalshi accepts
// one. Only an accepted call names a key: a refusal of any kind never does.
// A hint the account does not list is tried first, as another account's key.
// Every call goes through Config.Call.
//
// It returns the key, or the error that ends the request
// (leaked_key_not_found among them), or Stopped on shutdown.
func (x finder) identify(ctx, stop context.Context, storedAt time.Time, lk *Key, hint string, s Search) (Found, *events.Error, error) {
	var keys []kalshi.APIKey
	err := x.Call(ctx, stop, storedAt, func(ctx context.Context) error {
		var err error
		keys, err = x.List(ctx)
		return err
	})
	if err != nil {
		return Found{}, x.failure("listing the account's keys", err), x.stoppedOrNil(err)
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
	x.Logger.Debug("identifying a leaked key", "leaked_key_fingerprint", lk.fingerprint, "listed_keys", len(listed), "hint", hint)

	if hint != "" {
		if seen[hint] != nil {
			i := slices.Index(listed, hint)
			listed = slices.Insert(slices.Delete(listed, i, i+1), 0, hint)
		} else {
			ok, err := x.probe(ctx, stop, storedAt, hint, lk)
			if err != nil {
				return Found{}, x.failure("trying the leaked key as "+hint, err), x.stoppedOrNil(err)
			}
			if ok {
				return Found{KeyID: hint, Foreign: true}, nil, nil
			}
		}
	}
	deadline := storedAt.Add(x.MaxRetry)
	for i, id := range listed {
		if id != hint && s.From != "" && id <= s.From {
			continue // refused on an earlier delivery
		}
		if i > 0 && time.Now().After(deadline) {
			return Found{}, x.failure("", x.OutOfBudget(fmt.Sprintf(
				"the retry budget ran out after trying the leaked key as %d of the %d listed keys", i, len(listed)))), nil
		}
		ok, err := x.probe(ctx, stop, storedAt, id, lk)
		if err != nil {
			return Found{}, x.failure("trying the leaked key as "+id, err), x.stoppedOrNil(err)
		}
		if ok {
			return Found{KeyID: id, Key: seen[id]}, nil, nil
		}
		if id != hint && s.Refused != nil {
			s.Refused(id)
		}
	}
	x.Logger.Info("no key accepts a leaked key", "leaked_key_fingerprint", lk.fingerprint, "listed_keys", len(listed), "hint", hint)
	return Found{}, notFound(lk), nil
}

// probe reports whether Kalshi accepts a call signed as keyID with the
// leaked key. An error is Stopped or one Exhausted reports.
func (x finder) probe(ctx, stop context.Context, storedAt time.Time, keyID string, lk *Key) (bool, error) {
	as, err := x.As(keyID, lk.signer)
	if err != nil {
		return false, nil // a key ID no call can be signed as cannot be it
	}
	err = x.Call(ctx, stop, storedAt, func(ctx context.Context) error {
		_, err := as.ListAPIKeys(ctx)
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, x.Stopped), x.Exhausted(err):
		return false, err
	}
	return false, nil
}

// failure is the error that ends a request whose identification failed
// with err while doing what. It is nil for Stopped.
func (x finder) failure(what string, err error) *events.Error {
	if what != "" {
		what += ": "
	}
	if errors.Is(err, x.Stopped) {
		return nil
	}
	return &events.Error{Code: x.Failed(err), Message: what + err.Error()}
}

func (x finder) stoppedOrNil(err error) error {
	if errors.Is(err, x.Stopped) {
		return x.Stopped
	}
	return nil
}
