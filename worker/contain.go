package worker

import (
	"context"
	"errors"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/contain"
)

// containment is what package worker/contain needs of the worker: the
// scope the deployment allows, and the cancel through callWrite.
func (w *Worker) containment() contain.Config {
	return contain.Config{
		Scope: w.cfg.CancelOrders,
		Cancel: func(ctx, stop context.Context, storedAt time.Time, sub *int) (n int, err error) {
			err = w.callWrite(ctx, stop, storedAt, func(ctx context.Context) error {
				n, err = w.del.CancelOrders(ctx, sub)
				return err
			})
			return n, err
		},
		Stopped: errStopped,
		Failure: cancelFailure,
		Logger:  w.cfg.Logger,
	}
}

// callWrite is call for a call that spends the write bucket: it waits for
// the fleet's pause like every call, then for the cancel budget
// (Config.Cancels, split like the delete budget), not the delete budget.
func (w *Worker) callWrite(ctx, stop context.Context, storedAt time.Time, op func(context.Context) error) error {
	return w.callVia(ctx, stop, storedAt, func(ctx context.Context) (func(bool), error) {
		if err := w.cfg.Limiter.AfterPause(ctx); err != nil {
			return nil, err
		}
		w.cfg.Cancels.SetShare(w.cfg.Limiter.Share())
		return w.cfg.Cancels.Begin(ctx)
	}, op, func(error) {})
}

// cancelFailure is the containment error of a cancel that failed with err.
func cancelFailure(err error) *events.Error {
	e := &events.Error{Code: failureCode(err), Message: err.Error()}
	var be *budgetError
	if errors.As(err, &be) {
		e.Message = "cancelling orders: " + be.why
	}
	return e
}
