package worker

import (
	"context"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/ledger"
)

// identifyOnce is identify, remembering a search that found nothing: a
// repeat of the PEM within Config.LeakedMissTTL gets leaked_key_not_found
// without any call, unless it names a hint not yet tried, which costs one
// call as that key (and a search only if it accepts the leaked key).
func (w *Worker) identifyOnce(ctx, stop context.Context, storedAt time.Time, lk *leakedKey, hint string, s search) (found, *events.Error, error) {
	miss, err := w.ledger.MissOf(ctx, lk.fingerprint, time.Now(), w.cfg.LeakedMissTTL)
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
		if err := w.ledger.RecordMiss(ctx, lk.fingerprint, ledger.Miss{At: time.Now().UTC(), Hint: hint}, w.cfg.LeakedMissTTL); err != nil {
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
