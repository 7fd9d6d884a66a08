// Package contain owns containment: after a key is deleted (never before:
// a live key could place new orders), a request with cancel_orders cancels
// the resting orders the key could have placed with DELETE
// /portfolio/events/orders: a key restricted to subaccount S cancels S's
// orders; an unrestricted key every order of the member, only when the
// deployment allows it ([All]). The key's outcome is decided first; the
// cancel only adds data.containment, and the key's blast radius (what the
// account listed of it before the DELETE) goes into the result.
//
// The cancel is recorded in the request's ledger entry (package
// worker/ledger) before it is sent and again once answered, so a
// redelivery neither repeats a finished cancel nor skips an unfinished one
// (an unanswered one is sent again: cancelling what is already cancelled
// changes nothing).
//
// It knows the worker only through its [Config]: the scope the deployment
// allows, and the cancel call within the worker's budget and retries.
// Package worker imports this package, never the reverse.
package contain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/ledger"
)

// Config is what containment needs of the worker.
type Config struct {
	Scope Scope // REVOKER_CANCEL_ORDERS
	// Cancel makes one DELETE /portfolio/events/orders for subaccount *sub
	// (nil: every subaccount) within the cancel budget and the retry budget
	// of the request stored at storedAt, and returns the orders cancelled;
	// stop ends it on shutdown with Stopped.
	Cancel  func(ctx, stop context.Context, storedAt time.Time, sub *int) (int, error)
	Stopped error
	// Failure is the containment error of a cancel that failed for good
	// with err.
	Failure func(err error) *events.Error
	Logger  *slog.Logger
}

// maxCancelCalls bounds the calls of one containment: each cancels at most
// kalshi.MaxCancelOrders, and one that cancels fewer found none left.
const maxCancelCalls = 10

// BlastRadius copies what the account listed of key into res. A key known
// only by its ID (no listed scopes) has none.
func BlastRadius(res *events.Result, key *kalshi.APIKey) {
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

// Contain carries out the cancel_orders of the request claimed as c once
// res's outcome is decided, and sets res.Containment. key is how the
// account listed the key before the DELETE; own says the worker's
// credential deleted it (not the leaked key itself, of another account).
// It records the cancel with the claim before sending it and once
// answered; it returns Config.Stopped when shutdown stopped the cancel (the
// record makes the redelivery send it again), or a ledger error.
func Contain(ctx, stop context.Context, cfg Config, storedAt time.Time, res *events.Result, c *ledger.Claim, key *kalshi.APIKey, own bool) error {
	if rec := c.Cancel; rec != nil && rec.Done {
		res.Containment = &events.Containment{OrdersCancelled: rec.Cancelled, Error: rec.Error}
		return nil
	}
	sub, refusal := reach(cfg.Scope, res, key, own)
	if refusal != nil {
		res.Containment = &events.Containment{Error: refusal}
		return nil
	}
	rec := ledger.Cancel{StartedAt: time.Now()}
	if err := c.RecordCancel(ctx, rec); err != nil {
		return err
	}
	n, fail := cancelOrders(ctx, stop, cfg, storedAt, sub)
	if errors.Is(fail, cfg.Stopped) {
		return cfg.Stopped
	}
	rec.Done, rec.Cancelled = true, n
	if fail != nil {
		rec.Error = cfg.Failure(fail)
	}
	if err := c.RecordCancel(ctx, rec); err != nil {
		return err
	}
	res.Containment = &events.Containment{OrdersCancelled: rec.Cancelled, Error: rec.Error}
	cfg.Logger.Info("cancelled resting orders of a revoked key", "request_id", res.RequestID, "api_key_id", res.APIKeyID,
		"subaccount", subaccountAttr(sub), "orders_cancelled", n, "err", fail)
	return nil
}

// reach says which orders the key's cancel may cancel under scope: those
// of subaccount *sub, or every subaccount's when sub is nil; or why none.
func reach(scope Scope, res *events.Result, key *kalshi.APIKey, own bool) (sub *int, refusal *events.Error) {
	notAllowed := func(format string, args ...any) (*int, *events.Error) {
		return nil, &events.Error{Code: events.CodeCancelOrdersNotAllowed, Message: fmt.Sprintf(format, args...) + "; no order was cancelled"}
	}
	switch {
	case !res.Outcome.Succeeded():
		return nil, notDeleted(res)
	case scope == Off || scope == "":
		return notAllowed("REVOKER_CANCEL_ORDERS is off")
	case !own:
		return notAllowed("the key is another account's: this account's orders are not its")
	case key == nil || key.Scopes == nil:
		return notAllowed("the account did not list the key before the DELETE, so which orders it could place is unknown")
	case key.Subaccount != nil:
		return key.Subaccount, nil
	case scope != All:
		return notAllowed("the key is not restricted to a subaccount, and REVOKER_CANCEL_ORDERS=%s cancels only a subaccount's orders (all would cancel every order of the member)", scope)
	}
	return nil, nil
}

// cancelOrders cancels the resting orders of subaccount *sub (nil: all),
// calling again while a call cancels the most one can. It returns the
// orders cancelled, and the error that stopped it.
func cancelOrders(ctx, stop context.Context, cfg Config, storedAt time.Time, sub *int) (int, error) {
	total := 0
	for range maxCancelCalls {
		n, err := cfg.Cancel(ctx, stop, storedAt, sub)
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

func subaccountAttr(sub *int) any {
	if sub == nil {
		return "all"
	}
	return *sub
}

// Uncontained gives a request with cancel_orders that ended without the
// key deleted its data.containment: nothing was cancelled, for the reason
// the request failed.
func Uncontained(cancelOrders bool, res *events.Result) {
	if !cancelOrders || res.Containment != nil || res.Outcome.Succeeded() {
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
