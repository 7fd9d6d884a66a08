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
// stored runs out. Each attempt is signed afresh by the client. It fills
// res; interrupted means shutdown stopped it before an outcome.
func (w *Worker) revoke(stop, ctx context.Context, storedAt time.Time, res *events.Result) (interrupted bool) {
	b := w.retryPolicy(storedAt)
	for {
		if err := w.cfg.Limiter.Wait(stop); err != nil {
			return true
		}
		res.Attempts++
		if res.Attempts > 1 {
			w.cfg.Metrics.Retries.Inc()
		}
		actx, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
		err := w.del.DeleteAPIKey(actx, res.APIKeyID)
		cancel()
		status := httpStatus(err)
		w.cfg.Metrics.observeAttempt(status)
		res.HTTPStatus = status

		if done := classify(err, status, res); done {
			return false
		}
		// Transient. Kalshi's limits are per account: a 429 holds every delete.
		next := b.NextBackOff()
		if status == http.StatusTooManyRequests {
			// Kalshi's bucket is empty although we kept to the budget:
			// halve it (recovering over ThrottleRecovery) for every delete.
			w.cfg.Limiter.Throttle()
			w.reportRate()
		}
		if ra := kalshi.RetryAfter(err); ra > 0 {
			w.cfg.Limiter.Pause(ra)
		} else if status == http.StatusTooManyRequests && math.IsInf(w.cfg.Limiter.Rate(), 1) {
			// No budget to halve: hold every delete briefly instead.
			w.cfg.Limiter.Pause(min(next, time.Second))
		}
		if next == backoff.Stop {
			res.Outcome = events.Failed
			res.Error = &events.Error{Code: events.CodeRetriesExhausted, Message: fmt.Sprintf(
				"gave up after %d attempts, %s after the request was stored: %v",
				res.Attempts, time.Since(storedAt).Round(time.Second), err)}
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

// classify turns the answer to one attempt into an outcome, or reports
// that it is transient (done == false).
func classify(err error, status int, res *events.Result) (done bool) {
	fail := func(o events.Outcome, code events.Code) bool {
		res.Outcome = o
		res.Error = &events.Error{Code: code, Message: err.Error()}
		return true
	}
	switch {
	case err == nil:
		res.Outcome = events.Revoked
		res.HTTPStatus = http.StatusNoContent
		return true
	case kalshi.IsNotFound(err):
		res.Outcome = events.AlreadyRevoked
		return true
	case kalshi.IsTransient(err):
		return false
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fail(events.Failed, events.CodeKalshiUnauthorized)
	case status == http.StatusBadRequest:
		return fail(events.Rejected, events.CodeKalshiBadRequest)
	case errors.Is(err, kalshi.ErrInvalidKeyID):
		return fail(events.Rejected, events.CodeInvalidRequest)
	default: // another 4xx Kalshi does not document for this call
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
