package worker

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter spends the account's delete budget. One Limiter is shared by every
// delete of a process, because Kalshi's limits are per account: a 429 (and
// its Retry-After) pauses all of them, not only the one that got it.
type Limiter struct {
	bucket *rate.Limiter

	mu          sync.Mutex
	pausedUntil time.Time
	now         func() time.Time
}

// NewLimiter returns a Limiter allowing perSecond deletes with the given
// burst. perSecond <= 0 means unlimited (pauses after a 429 still apply).
func NewLimiter(perSecond float64, burst int) *Limiter {
	l := &Limiter{bucket: rate.NewLimiter(rate.Inf, 0), now: time.Now}
	l.SetRate(perSecond, burst)
	return l
}

// SetRate changes the budget in place; waiting deletes see it at once.
func (l *Limiter) SetRate(perSecond float64, burst int) {
	if perSecond <= 0 || math.IsInf(perSecond, 1) {
		l.bucket.SetLimit(rate.Inf)
		return
	}
	if burst < 1 {
		burst = 1
	}
	l.bucket.SetBurst(burst)
	l.bucket.SetLimit(rate.Limit(perSecond))
}

// Rate reports the budget in force in deletes per second (+Inf when unlimited).
func (l *Limiter) Rate() float64 { return float64(l.bucket.Limit()) }

// Pause holds every delete for d from now, or longer if already paused.
func (l *Limiter) Pause(d time.Duration) {
	if d <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if until := l.now().Add(d); until.After(l.pausedUntil) {
		l.pausedUntil = until
	}
}

// Wait blocks until a delete may be sent: after any pause has passed and a
// token is available.
func (l *Limiter) Wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		wait := l.pausedUntil.Sub(l.now())
		l.mu.Unlock()
		if wait <= 0 {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return l.bucket.Wait(ctx)
}
