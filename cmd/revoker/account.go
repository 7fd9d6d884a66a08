package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/budget"
)

// How often "run" reads the account's limits again, and how soon after a
// failure.
const (
	limitsRefresh = 5 * time.Minute
	limitsRetry   = 15 * time.Second
)

// account keeps the delete budget in line with what Kalshi says of the
// account. (Whether Kalshi accepts the credential at all is the worker's
// gate.)
type account struct {
	client  *kalshi.Client
	cfg     Config
	limiter *budget.Limiter
	cancels *budget.Limiter // the budget of order cancels, from the write bucket
	logger  *slog.Logger
}

// refreshLoop sets the delete budget: a fixed REVOKER_RATE once, or, with
// auto, from the account limits read at start and every few minutes.
func (a *account) refreshLoop(ctx context.Context) {
	a.applyFixedRate()
	if !a.cfg.Rate.Auto {
		return // nothing Kalshi says changes it
	}
	for {
		next := limitsRefresh
		if err := a.refresh(ctx); err != nil {
			next = limitsRetry
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (a *account) applyFixedRate() {
	// Until the limits are read, or with a fixed delete rate: the basic
	// tier's write bucket; unlimited deletes, unlimited cancels.
	a.cancels.SetRate(kalshi.CancelBudget(kalshi.Limits{}, kalshi.Costs{}))
	switch r := a.cfg.Rate; {
	case r.Auto:
		// Until the limits are read: the basic tier's budget.
		a.limiter.SetRate(kalshi.FallbackDeleteBudget()) // the share applies in the limiter
	case r.PerSecond == 0:
		a.limiter.SetRate(0, 0)
		a.cancels.SetRate(0, 0)
	default:
		a.limiter.SetRate(r.PerSecond, max(1, int(r.PerSecond)))
	}
}

// signed makes one call signed with the worker's credential: a pause holds
// it, and a 429 it gets pauses the fleet like any other call's (chaos seed
// 108172: the endpoint-costs read once heeded none).
func (a *account) signed(ctx context.Context, call func(context.Context) error) error {
	if err := a.limiter.AfterPause(ctx); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*a.cfg.AttemptTimeout)
	defer cancel()
	err := call(rctx)
	budget.HeedAnswer(a.limiter, err)
	return err
}

func (a *account) refresh(ctx context.Context) error {
	var limits kalshi.Limits
	err := a.signed(ctx, func(ctx context.Context) (err error) { limits, err = a.client.AccountLimits(ctx); return err })
	if err != nil {
		if ctx.Err() == nil {
			a.logger.Warn("cannot read the account limits", "err", err, "retry_in", limitsRetry)
		}
		return err
	}
	var costs kalshi.Costs
	if err := a.signed(ctx, func(ctx context.Context) (err error) { costs, err = a.client.EndpointCosts(ctx); return err }); err != nil {
		a.logger.Warn("cannot read the endpoint costs; assuming the default cost", "err", err)
	}
	perSecond, burst := kalshi.DeleteBudget(limits, costs)
	if configured, _ := a.limiter.Configured(); perSecond != configured {
		a.logger.Info("account delete budget", "per_second", perSecond, "burst", burst, "tier", limits.UsageTier, "share", a.limiter.Share())
	}
	a.limiter.SetRate(perSecond, burst)
	a.cancels.SetRate(kalshi.CancelBudget(limits, costs))
	return nil
}
