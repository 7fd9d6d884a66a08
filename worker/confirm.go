package worker

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/confirm"
	"github.com/revoker/revoker/worker/ledger"
)

// confirmations are the revoked keys to confirm dead (package
// worker/confirm), checked with the fleet's listing or this worker's own.
func (w *Worker) confirmations() *confirm.Revocations {
	return confirm.New(confirm.Config{
		SelfKeyID:      w.cfg.SelfKeyID,
		Delay:          w.cfg.ConfirmDelay,
		Interval:       w.cfg.ConfirmInterval,
		GiveUp:         w.cfg.ConfirmGiveUp,
		AttemptTimeout: w.cfg.AttemptTimeout,
		SharedKeys: func(ctx context.Context, storedAt, notBefore time.Time, keys []string) (map[string]kalshi.APIKey, time.Time, bool) {
			return w.replica().SharedKeys(ctx, storedAt, notBefore, keys)
		},
		Keys: func(ctx context.Context, notBefore time.Time) (map[string]kalshi.APIKey, time.Time, error) {
			// One attempt's share of a request's retry budget: a failure
			// says what Kalshi answered. Waiting for another caller's
			// listing ends with the round's own time too.
			wait := 2 * w.cfg.AttemptTimeout
			stop, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			keys, started, err := w.replica().Keys(ctx, stop, time.Now().Add(w.cfg.AttemptTimeout-w.cfg.MaxRetry), notBefore)
			if errors.Is(err, errStopped) && ctx.Err() == nil {
				err = fmt.Errorf("no listing within %v", wait)
			}
			return keys, started, err
		},
		ListFailed: func(err error) {
			if unauthorized(err) {
				w.credentialRefused(err)
			}
		},
		Ledger: func() *ledger.Ledger { return w.ledger },
		As: func(keyID string, key crypto.Signer) (*kalshi.Client, error) {
			return w.del.As(keyID, key)
		},
		Limiter:     w.cfg.Limiter,
		RateChanged: w.reportRate,
		Unconfirmed: w.cfg.Metrics.Unconfirmed,
		Logger:      w.cfg.Logger,
	})
}
