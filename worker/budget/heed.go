package budget

import (
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/revoker/revoker/kalshi"
)

// HeedAnswer applies what one Kalshi answer says of the account's budget to
// l, whichever call got it (a delete, a listing, a probe, a credential or
// confirmation check, the console's): a 429 halves the budget (recovering
// over ThrottleRecovery) and a Retry-After pauses every call, on every
// replica; a 429 without one, with no budget to halve, holds every call
// briefly. It reports whether the rate changed.
func HeedAnswer(l *Limiter, err error) (throttled bool) {
	var ae *kalshi.APIError
	tooMany := errors.As(err, &ae) && ae.StatusCode == http.StatusTooManyRequests
	if !tooMany && kalshi.RetryAfter(err) <= 0 {
		return false
	}
	if tooMany {
		// Kalshi's bucket is empty although we kept to the budget.
		l.Throttle()
		throttled = true
	}
	switch ra := kalshi.RetryAfter(err); {
	case ra > 0:
		l.Pause(ra)
	case math.IsInf(l.Rate(), 1):
		l.Pause(noBudgetPause)
	}
	return throttled
}

// noBudgetPause is how long a 429 without Retry-After holds every call when
// there is no budget to halve.
const noBudgetPause = time.Second
