package worker

import (
	"context"
	"crypto"
	"errors"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/leaked"
	"github.com/revoker/revoker/worker/ledger"
)

// search is what package worker/leaked needs of the worker to find a
// leaked key's API key: its calls through call, and failureCode.
func (w *Worker) search() leaked.Config {
	return leaked.Config{
		MaxRetry: w.cfg.MaxRetry,
		MissTTL:  w.cfg.LeakedMissTTL,
		Call: func(ctx, stop context.Context, storedAt time.Time, op func(context.Context) error) error {
			return w.call(ctx, stop, storedAt, op, func(error) {})
		},
		Stopped: errStopped,
		Exhausted: func(err error) bool {
			var be *budgetError
			return errors.As(err, &be)
		},
		OutOfBudget: func(why string) error { return &budgetError{why} },
		Failed: func(err error) events.Code {
			code := failureCode(err)
			if code == events.CodeKalshiUnauthorized {
				w.credentialRefused(err)
			}
			return code
		},
		List:   func(ctx context.Context) ([]kalshi.APIKey, error) { return w.del.ListAPIKeys(ctx) },
		As:     func(keyID string, key crypto.Signer) (*kalshi.Client, error) { return w.del.As(keyID, key) },
		Ledger: func() *ledger.Ledger { return w.ledger },
		Logger: w.cfg.Logger,
	}
}

// listedLeaked is how the account listed the key a leaked PEM was found to
// be, for the blast radius: as the search's listing showed it, or (found by
// an earlier delivery or request) as the shared listing shows it now, or
// by its ID alone. The leaked key was accepted as this key moments ago, so
// it counts as listed either way.
func (w *Worker) listedLeaked(ctx, stop context.Context, storedAt time.Time, f leaked.Found) *kalshi.APIKey {
	if f.Key != nil {
		return f.Key
	}
	if !f.Foreign {
		if k, err := w.listedForAttempt(ctx, stop, storedAt, f.KeyID); err == nil && k != nil {
			return k
		}
	}
	return &kalshi.APIKey{ID: f.KeyID}
}
