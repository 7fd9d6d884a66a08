package worker

import (
	"context"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/credential"
)

// gate is whether Kalshi accepts the worker's credential and answers this
// replica (package worker/credential). It is made on first use, so that a
// Worker built without New (unit tests) has one too.
func (w *Worker) gate() *credential.Gate {
	w.credOnce.Do(func() {
		w.cred = credential.New(credential.Config{
			Recheck:        w.cfg.CredentialRecheck,
			Retry:          w.cfg.CredentialRetry,
			AttemptTimeout: w.cfg.AttemptTimeout,
			List:           func(ctx context.Context) ([]kalshi.APIKey, error) { return w.del.ListAPIKeys(ctx) },
			Limiter:        w.cfg.Limiter,
			RateChanged:    w.reportRate,
			Changed:        func() { w.setBound(w.bound.Load()) },
			Logger:         w.cfg.Logger,
		})
	})
	return w.cred
}

// credentialRefused asks for a check now: Kalshi refused a call's
// signature, and the credential may have been revoked or rotated.
func (w *Worker) credentialRefused(err error) {
	w.cfg.Logger.Warn("kalshi refused a delete's credential; checking it again", "err", err)
	w.gate().Refused()
}

// CredentialState is what the operator console (package worker/console)
// reads of it: nil while Kalshi accepts the worker's credential, otherwise
// why requests are not taken.
func (w *Worker) CredentialState() error {
	_, err := w.gate().State()
	return err
}
