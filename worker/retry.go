package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// revoke deletes res.APIKeyID, retrying transient failures with exponential
// backoff and jitter until the budget that started when the request was
// stored runs out. Each attempt is signed afresh by the client. attempted
// says an earlier delivery may already have deleted the key. It fills res;
// interrupted means shutdown stopped it before an outcome.
func (w *Worker) revoke(ctx, stop context.Context, storedAt time.Time, res *events.Result, attempted bool) (interrupted bool) {
	b := w.retryPolicy(storedAt)
	deadline := storedAt.Add(w.cfg.MaxRetry)
	mayHaveDeleted := attempted
	for {
		// No wait for the budget outlives the request's budget; the first
		// attempt is always made.
		wait := deadline
		if res.Attempts == 0 {
			wait = later(deadline, time.Now().Add(w.cfg.AttemptTimeout))
		}
		lctx, cancel := context.WithDeadline(stop, wait)
		err := w.cfg.Limiter.Wait(lctx)
		cancel()
		switch {
		case stop.Err() != nil:
			return true
		case err != nil:
			exhausted(res, storedAt, "the rate limit held every attempt until the retry budget ran out")
			return false
		}
		res.Attempts++
		if res.Attempts > 1 {
			w.cfg.Metrics.Retries.Inc()
		}
		actx, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
		err = w.del.DeleteAPIKey(actx, res.APIKeyID)
		cancel()
		status := httpStatus(err)
		w.cfg.Metrics.observeAttempt(status)
		res.HTTPStatus = status

		if outcome, e := classify(err, status); outcome != "" {
			res.Outcome, res.Error = outcome, e
			if outcome == events.AlreadyRevoked && mayHaveDeleted {
				// The key is gone and an attempt of this request whose answer
				// never came may have been what deleted it.
				res.Outcome = events.Revoked
				res.Detail = "Kalshi answered 404 after an earlier attempt of this request went unanswered: that attempt deleted the key"
			}
			if status == http.StatusUnauthorized || status == http.StatusForbidden {
				w.credentialRefused(err)
			}
			return false
		}
		// Transient. An attempt without an answer, or a 5xx, may have
		// deleted the key before it failed; a 408 or 429 did not.
		if status == 0 || status >= 500 {
			mayHaveDeleted = true
		}
		next := b.NextBackOff()
		if status == http.StatusTooManyRequests {
			// Kalshi's bucket is empty although we kept to the budget:
			// halve it (recovering over ThrottleRecovery) for every delete.
			w.cfg.Limiter.Throttle()
			w.reportRate()
		}
		// Kalshi's limits are per account: a 429 holds every delete.
		if ra := kalshi.RetryAfter(err); ra > 0 {
			if left := time.Until(deadline); ra > left {
				exhausted(res, storedAt, fmt.Sprintf("Kalshi asked to wait %v (Retry-After), longer than the %v left of the retry budget: %v",
					ra, left.Round(time.Second), err))
				return false
			}
			w.cfg.Limiter.Pause(ra)
			next = max(next, ra)
		} else if status == http.StatusTooManyRequests && math.IsInf(w.cfg.Limiter.Rate(), 1) {
			// No budget to halve: hold every delete briefly instead.
			w.cfg.Limiter.Pause(min(next, time.Second))
		}
		if next == backoff.Stop {
			exhausted(res, storedAt, err.Error())
			return false
		}
		w.cfg.Logger.Debug("transient failure; retrying", "request_id", res.RequestID,
			"attempt", res.Attempts, "err", err, "in", next)
		if stop.Err() != nil {
			return true
		}
		t := time.NewTimer(next)
		select {
		case <-stop.Done():
			t.Stop()
			return true
		case <-t.C:
		}
	}
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
	fail := func(o events.Outcome, code events.Code) (events.Outcome, *events.Error) {
		return o, &events.Error{Code: code, Message: err.Error()}
	}
	switch {
	case err == nil || status >= 200 && status <= 299:
		return events.Revoked, nil
	case kalshi.IsNotFound(err):
		return events.AlreadyRevoked, nil
	case kalshi.IsTransient(err):
		return "", nil
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fail(events.Failed, events.CodeKalshiUnauthorized)
	case errors.Is(err, kalshi.ErrInvalidKeyID):
		return fail(events.Rejected, events.CodeInvalidRequest)
	default: // 400, or another 4xx Kalshi does not document for this call
		return fail(events.Rejected, events.CodeKalshiBadRequest)
	}
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
