package leaked

import (
	"context"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/ledger"
)

// identifyOnce is identify, remembering a search that found nothing: a
// repeat of the PEM within Config.MissTTL gets leaked_key_not_found
// without any call, unless it names a hint not yet tried, which costs one
// call as that key (and a search only if it accepts the leaked key).
func (x finder) identifyOnce(ctx, stop context.Context, storedAt time.Time, lk *Key, hint string, s Search) (Found, *events.Error, error) {
	miss, err := x.Ledger().MissOf(ctx, lk.fingerprint, time.Now(), x.MissTTL)
	if err != nil {
		return Found{}, nil, err
	}
	if miss != nil {
		if hint == "" || hint == miss.Hint {
			x.Logger.Debug("a leaked key that matched no key recently: no search", "leaked_key_fingerprint", lk.fingerprint, "searched_at", miss.At)
			return Found{}, notFound(lk), nil
		}
		ok, err := x.probe(ctx, stop, storedAt, hint, lk)
		if err != nil {
			return Found{}, x.failure("trying the leaked key as "+hint, err), x.stoppedOrNil(err)
		}
		if !ok {
			return Found{}, notFound(lk), nil
		}
		// The hint takes it: a search now tells whether the account lists it.
	}
	f, fail, err := x.identify(ctx, stop, storedAt, lk, hint, s)
	if fail != nil && fail.Code == events.CodeLeakedKeyNotFound {
		if err := x.Ledger().RecordMiss(ctx, lk.fingerprint, ledger.Miss{At: time.Now().UTC(), Hint: hint}, x.MissTTL); err != nil {
			x.Logger.Warn("cannot remember a leaked key that matched no key; a repeat searches again", "leaked_key_fingerprint", lk.fingerprint, "err", err)
		}
	}
	return f, fail, err
}

// notFound is the refusal of a leaked key no key accepts. It names
// neither how many keys the account has nor whether a hint is one of them:
// any requester reads it.
func notFound(lk *Key) *events.Error {
	return &events.Error{Code: events.CodeLeakedKeyNotFound,
		Message: "no API key accepts the leaked key " + lk.fingerprint + "; nothing was deleted"}
}
