package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/ledger"
)

// Containment: after a key is deleted (never before: a live key could place
// new orders), a request with cancel_orders cancels the resting orders the
// key could have placed with DELETE /portfolio/events/orders: a key
// restricted to subaccount S cancels S's orders; an unrestricted key every
// order of the member, only when the deployment allows it (CancelAll). The
// key's outcome is decided first; the cancel only adds data.containment.
//
// The cancel is recorded in the request's ledger entry before it is sent
// and again once answered, so a redelivery neither repeats a finished
// cancel nor skips an unfinished one (an unanswered one is sent again:
// cancelling what is already cancelled changes nothing).

// CancelScope is what REVOKER_CANCEL_ORDERS allows: which orders a request
// with cancel_orders may cancel.
type CancelScope string

// The cancel scopes.
const (
	CancelOff        CancelScope = "off"        // none: cancel_orders gets cancel_orders_not_allowed
	CancelSubaccount CancelScope = "subaccount" // a subaccount-restricted key's subaccount
	CancelAll        CancelScope = "all"        // also every order of the member, for an unrestricted key
)

// DefaultCancelScope is REVOKER_CANCEL_ORDERS's default.
const DefaultCancelScope = CancelOff

// ParseCancelScope reads REVOKER_CANCEL_ORDERS.
func ParseCancelScope(s string) (CancelScope, error) {
	switch sc := CancelScope(s); sc {
	case CancelOff, CancelSubaccount, CancelAll:
		return sc, nil
	}
	return "", fmt.Errorf("%q is not off, subaccount or all", s)
}

// NeedsScope reports whether a cancel under sc needs the worker's key to
// trade: a write scope, "write" or "write::trade".
func (sc CancelScope) NeedsScope() bool { return sc == CancelSubaccount || sc == CancelAll }

// CanCancel reports whether scopes (a key's, as listed) allow cancelling
// orders. Kalshi does not document the scope the cancel needs; trading
// needs write::trade or the older write.
func CanCancel(scopes []string) bool {
	return slices.Contains(scopes, "write") || slices.Contains(scopes, "write::trade")
}

// maxCancelCalls bounds the calls of one containment: each cancels at most
// kalshi.MaxCancelOrders, and one that cancels fewer found none left.
const maxCancelCalls = 10

// blastRadius copies what the account listed of key into res. A key known
// only by its ID (no listed scopes) has none.
func blastRadius(res *events.Result, key *kalshi.APIKey) {
	if key == nil || key.Scopes == nil {
		return
	}
	res.KeyName = key.Name
	res.KeyScopes = slices.Clone(key.Scopes)
	if key.Subaccount != nil {
		sub := *key.Subaccount
		res.KeySubaccount = &sub
	}
}

// contain carries out the cancel_orders of the request claimed as c once
// res's outcome is decided, and sets res.Containment. key is how the
// account listed the key before the DELETE; own says the worker's
// credential deleted it (not the leaked key itself, of another account).
// It records the cancel with the claim before sending it and once
// answered; it returns errStopped when shutdown stopped the cancel (the
// record makes the redelivery send it again), or a ledger error.
func (w *Worker) contain(ctx, stop context.Context, storedAt time.Time, req request, res *events.Result, c *ledger.Claim, key *kalshi.APIKey, own bool) error {
	if rec := c.Cancel; rec != nil && rec.Done {
		res.Containment = &events.Containment{OrdersCancelled: rec.Cancelled, Error: rec.Error}
		return nil
	}
	sub, refusal := w.cancelReach(res, key, own)
	if refusal != nil {
		res.Containment = &events.Containment{Error: refusal}
		return nil
	}
	rec := ledger.Cancel{StartedAt: time.Now()}
	if err := c.RecordCancel(ctx, rec); err != nil {
		return err
	}
	n, fail := w.cancelOrders(ctx, stop, storedAt, sub)
	if errors.Is(fail, errStopped) {
		return errStopped
	}
	rec.Done, rec.Cancelled = true, n
	if fail != nil {
		rec.Error = cancelFailure(fail)
	}
	if err := c.RecordCancel(ctx, rec); err != nil {
		return err
	}
	res.Containment = &events.Containment{OrdersCancelled: rec.Cancelled, Error: rec.Error}
	w.cfg.Logger.Info("cancelled resting orders of a revoked key", "request_id", req.ID, "api_key_id", res.APIKeyID,
		"subaccount", subaccountAttr(sub), "orders_cancelled", n, "err", fail)
	return nil
}

// cancelReach says which orders the key's cancel may cancel: those of
// subaccount *sub, or every subaccount's when sub is nil; or why none.
func (w *Worker) cancelReach(res *events.Result, key *kalshi.APIKey, own bool) (sub *int, refusal *events.Error) {
	notAllowed := func(format string, args ...any) (*int, *events.Error) {
		return nil, &events.Error{Code: events.CodeCancelOrdersNotAllowed, Message: fmt.Sprintf(format, args...) + "; no order was cancelled"}
	}
	scope := w.cfg.CancelOrders
	switch {
	case !res.Outcome.Succeeded():
		return nil, notDeleted(res)
	case scope == CancelOff || scope == "":
		return notAllowed("REVOKER_CANCEL_ORDERS is off")
	case !own:
		return notAllowed("the key is another account's: this account's orders are not its")
	case key == nil || key.Scopes == nil:
		return notAllowed("the account did not list the key before the DELETE, so which orders it could place is unknown")
	case key.Subaccount != nil:
		return key.Subaccount, nil
	case scope != CancelAll:
		return notAllowed("the key is not restricted to a subaccount, and REVOKER_CANCEL_ORDERS=%s cancels only a subaccount's orders (all would cancel every order of the member)", scope)
	}
	return nil, nil
}

// cancelOrders cancels the resting orders of subaccount *sub (nil: all),
// calling again while a call cancels the most one can, through callWrite's
// budget and retries. It returns the orders cancelled, and the error that
// stopped it.
func (w *Worker) cancelOrders(ctx, stop context.Context, storedAt time.Time, sub *int) (int, error) {
	total := 0
	for range maxCancelCalls {
		var n int
		err := w.callWrite(ctx, stop, storedAt, func(ctx context.Context) error {
			var err error
			n, err = w.del.CancelOrders(ctx, sub)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < kalshi.MaxCancelOrders {
			break
		}
	}
	return total, nil
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

func subaccountAttr(sub *int) any {
	if sub == nil {
		return "all"
	}
	return *sub
}

// ignoreStopped is nil for errStopped: shutdown leaves the request
// undecided, for its redelivery.
func ignoreStopped(err error) error {
	if errors.Is(err, errStopped) {
		return nil
	}
	return err
}

// uncontained gives a request with cancel_orders that ended without the
// key deleted its data.containment: nothing was cancelled, for the reason
// the request failed.
func uncontained(req request, res *events.Result) {
	if !req.CancelOrders || res.Containment != nil || res.Outcome.Succeeded() {
		return
	}
	res.Containment = &events.Containment{Error: notDeleted(res)}
}

// notDeleted is the containment error of a request whose key was not
// deleted: its own error's code.
func notDeleted(res *events.Result) *events.Error {
	code := events.CodeInvalidRequest
	if res.Error != nil {
		code = res.Error.Code
	}
	return &events.Error{Code: code, Message: "the key was not deleted, and a live key could place new orders; no order was cancelled"}
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
