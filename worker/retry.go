package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/credential"
)

// deleter deletes API keys: the worker's client, or a leaked key's own.
type deleter interface {
	DeleteAPIKey(ctx context.Context, apiKeyID string) error
}

// revoke deletes res.APIKeyID with del, through call, and fills res with
// the answer: a 404 is already_revoked here, for the caller to judge (see
// judge404). own says del signs with the worker's credential; otherwise the
// key signs its own delete. unanswered says an attempt got no answer or a
// 5xx, and so may have deleted the key; interrupted means shutdown stopped
// it before an outcome.
func (w *Worker) revoke(ctx, stop context.Context, storedAt time.Time, res *events.Result, del deleter, own bool) (unanswered, interrupted bool) {
	err := w.call(ctx, stop, storedAt, func(ctx context.Context) error {
		return del.DeleteAPIKey(ctx, res.APIKeyID)
	}, func(err error) {
		res.Attempts++
		if res.Attempts > 1 {
			w.cfg.Metrics.Retries.Inc()
		}
		status := httpStatus(err)
		w.cfg.Metrics.ObserveAttempt(status)
		res.HTTPStatus = status
		// An attempt without an answer, or a 5xx, may have deleted the key
		// before it failed; a 408 or 429 did not.
		if kalshi.IsTransient(err) && (status == 0 || status >= 500) {
			unanswered = true
		}
	})
	if errors.Is(err, errStopped) {
		return unanswered, true
	}
	var be *budgetError
	if errors.As(err, &be) {
		exhausted(res, storedAt, be.why)
		return unanswered, false
	}
	status := httpStatus(err)
	outcome, e := classify(err, status)
	if !own && kalshi.IsUnknownSigningKey(err) {
		// A key deleting itself: Kalshi no longer knowing it is the 404 of
		// an ordinary delete.
		outcome, e = events.AlreadyRevoked, nil
	}
	res.Outcome, res.Error = outcome, e
	if own && unauthorized(err) {
		w.credentialRefused(err)
	}
	return unanswered, false
}

// errStopped is call's answer when shutdown stopped it before an answer.
var errStopped = errors.New("stopped by shutdown")

// errReleased is call's answer once the replica has given up reaching
// Kalshi: the request goes back undecided, like on shutdown.
var errReleased = fmt.Errorf("%w: Kalshi has not answered this replica %d times in a row; released to the others", errStopped, credential.Unanswered)

// ignoreStopped is nil for errStopped: shutdown leaves the request
// undecided, for its redelivery.
func ignoreStopped(err error) error {
	if errors.Is(err, errStopped) {
		return nil
	}
	return err
}

// budgetError is call's answer when the retry budget ran out first; it
// says why.
type budgetError struct{ why string }

func (e *budgetError) Error() string { return e.why }

// call makes op through the limiter until it succeeds or fails for good,
// retrying transient failures with exponential backoff and jitter until the
// budget that started when the request was stored runs out. Each attempt is
// signed afresh by the client; seen hears of each attempt's answer. It
// returns op's last error (nil on success), a *budgetError when the budget
// ran out first, or errStopped when shutdown stopped it.
func (w *Worker) call(ctx, stop context.Context, storedAt time.Time, op func(context.Context) error, seen func(error)) error {
	return w.callVia(ctx, stop, storedAt, w.cfg.Limiter.Begin, op, seen)
}

// callVia is call with begin taking each attempt's turn in the budget:
// the delete budget's Limiter.Begin, or another (callWrite).
func (w *Worker) callVia(ctx, stop context.Context, storedAt time.Time, begin func(context.Context) (func(bool), error), op func(context.Context) error, seen func(error)) error {
	b := w.retryPolicy(storedAt)
	deadline := storedAt.Add(w.cfg.MaxRetry)
	for attempts := 0; ; attempts++ {
		// No wait for the budget outlives the request's budget; the first
		// attempt is always made.
		wait := deadline
		if attempts == 0 {
			wait = later(deadline, time.Now().Add(w.cfg.AttemptTimeout))
		}
		if w.gate().CutOff() {
			return errReleased
		}
		lctx, cancel := context.WithDeadline(stop, wait)
		err := w.awaitNATS(lctx)
		var sent func(bool)
		if err == nil {
			sent, err = begin(lctx)
		}
		cancel()
		switch {
		case stop.Err() != nil:
			if sent != nil {
				sent(false) // not sent after all: held as if lost, harmless while stopping
			}
			return errStopped
		case err != nil:
			return &budgetError{"the rate limit (or a NATS outage) held every attempt until the retry budget ran out"}
		}
		// Until it is answered the attempt counts against the burst:
		// Kalshi meters its arrival, which a cut link delays.
		actx, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
		err = op(actx)
		cancel()
		sent(httpStatus(err) != 0) // answered: any HTTP status
		w.gate().Heard(err)
		seen(err)
		if !kalshi.IsTransient(err) {
			return err
		}
		next := b.NextBackOff()
		if budget.HeedAnswer(w.cfg.Limiter, err) {
			w.reportRate()
		}
		if ra := kalshi.RetryAfter(err); ra > 0 {
			// Every call waits already (up to MaxPause), on every replica,
			// also when this request cannot.
			if left := time.Until(deadline); ra > left {
				return &budgetError{fmt.Sprintf("Kalshi asked to wait %v (Retry-After), longer than the %v left of the retry budget: %v",
					ra, left.Round(time.Second), err)}
			}
			next = max(next, ra)
		}
		if next == backoff.Stop {
			return &budgetError{err.Error()}
		}
		w.cfg.Logger.Debug("transient failure; retrying", "attempt", attempts+1, "err", err, "in", next)
		if stop.Err() != nil {
			return errStopped
		}
		t := time.NewTimer(next)
		select {
		case <-stop.Done():
			t.Stop()
			return errStopped
		case <-t.C:
		}
	}
}

// awaitNATS waits until the worker's NATS connection is up. No Kalshi call
// is made while it is down: the replica could not hear another's pause
// meanwhile, nor store what the call decides.
func (w *Worker) awaitNATS(ctx context.Context) error {
	if w.js == nil || w.js.Conn().IsConnected() {
		return nil
	}
	nc := w.js.Conn()
	up := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(up)
	t := time.NewTicker(100 * time.Millisecond) // in case the change came before the listener
	defer t.Stop()
	for !nc.IsConnected() {
		select {
		case <-up:
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// exhausted ends res failed/retries_exhausted.
func exhausted(res *events.Result, storedAt time.Time, why string) {
	res.Outcome = events.Failed
	res.Error = &events.Error{Code: events.CodeRetriesExhausted, Message: fmt.Sprintf(
		"gave up after %d attempts, %s after the request was stored: %s",
		res.Attempts, time.Since(storedAt).Round(time.Second), why)}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// retryPolicy is the backoff between attempts: exponential from
// RetryInitial, doubling up to RetryMaxDelay, with ±50% jitter, ending
// when the budget counted from storedAt would be overrun. The first attempt
// is always made, even when the budget ran out while the request queued.
func (w *Worker) retryPolicy(storedAt time.Time) backoff.BackOff {
	budget := time.Until(storedAt.Add(w.cfg.MaxRetry))
	b := &backoff.ExponentialBackOff{
		InitialInterval:     w.cfg.RetryInitial,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         w.cfg.RetryMaxDelay,
		MaxElapsedTime:      max(budget, time.Nanosecond),
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return b
}

// classify turns the answer to one attempt into an outcome, with its error
// for Rejected and Failed, or "" when the failure is transient. Any 2xx
// means the key was deleted.
func classify(err error, status int) (events.Outcome, *events.Error) {
	switch {
	case err == nil || status >= 200 && status <= 299:
		return events.Revoked, nil
	case kalshi.IsNotFound(err):
		return events.AlreadyRevoked, nil
	case kalshi.IsTransient(err):
		return "", nil
	}
	code := failureCode(err)
	return code.Outcome(), &events.Error{Code: code, Message: err.Error()}
}

// failureCode is the one reading of a Kalshi call that failed for good
// (what call returned, neither a success, a 404 nor errStopped): the retry
// budget ran out, Kalshi refused the worker's credential (401, 403), the key
// ID is one Kalshi cannot take, or Kalshi refused the call otherwise (400,
// or another 4xx it does not document for the call). The code's outcome is
// the events table's (Code.Outcome).
func failureCode(err error) events.Code {
	var be *budgetError
	switch {
	case errors.As(err, &be):
		return events.CodeRetriesExhausted
	case unauthorized(err):
		return events.CodeKalshiUnauthorized
	case errors.Is(err, kalshi.ErrInvalidKeyID):
		return events.CodeInvalidRequest
	default:
		return events.CodeKalshiBadRequest
	}
}

// unauthorized reports whether Kalshi refused the credential that signed
// the call: 401 or 403.
func unauthorized(err error) bool {
	s := httpStatus(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden
}

func httpStatus(err error) int {
	if err == nil {
		return http.StatusNoContent
	}
	var apiErr *kalshi.APIError
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode
	}
	return 0
}
