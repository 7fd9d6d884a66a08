package worker

import (
	"context"
	"math"
	"sync"
	"time"
)

// Throttling after a 429: the rate in force is halved, not below
// ThrottleFloor deletes per second (or the configured rate, if lower), and
// climbs back to the configured rate in ten equal steps over
// ThrottleRecovery. Further 429s within ThrottleHold of a halving come from
// deletes sent before it and do not halve again.
const (
	ThrottleFloor    = 1.0
	ThrottleRecovery = 20 * time.Second
	ThrottleHold     = time.Second
	throttleSteps    = 10
)

// Limiter spends the account's delete budget. One Limiter is shared by every
// delete of a process, because Kalshi's limits are per account: a 429 (and
// its Retry-After) holds all of them, not only the one that got it.
//
// It is a token bucket: Burst deletes at once, then one every 1/rate
// seconds. A delete that has to wait holds a reservation; whenever the plan
// changes (SetRate, Throttle, Pause, a recovery step) every waiting delete
// gives its reservation back and plans again under the new rate, so a
// lowered rate holds them at once and a raised one frees them at once.
// (golang.org/x/time/rate cannot re-plan waiters it has already scheduled,
// which is why the bucket is kept here.) All methods are safe for
// concurrent use.
type Limiter struct {
	mu sync.Mutex

	perSecond float64 // configured; +Inf: unlimited
	burst     int     // configured; 0 when unlimited
	// share is the fraction of the configured budget this process may
	// spend (SetShare): replicas of one account split it. 0 holds every
	// delete; an unlimited budget ignores it.
	share float64

	// Throttle state: right after the last Throttle (at throttledAt) the
	// rate in force was perSecond*factor. throttledAt is zero when the
	// configured rate is in force.
	factor      float64
	throttledAt time.Time

	inForce float64   // rate the bucket fills at, from last
	tokens  float64   // at last; negative: deletes holding a reservation
	last    time.Time // when tokens was last brought up to date
	waiting int       // deletes holding a reservation of the current plan
	held    int       // deletes waiting while the rate in force is zero (share 0)

	pausedUntil time.Time
	replan      chan struct{} // closed, and replaced, when waiters must plan again
}

// NewLimiter returns a Limiter allowing perSecond deletes with the given
// burst (at least 1), starting with a full bucket. perSecond <= 0 means
// unlimited (pauses after a 429 still apply).
func NewLimiter(perSecond float64, burst int) *Limiter {
	l := &Limiter{perSecond: math.Inf(1), inForce: math.Inf(1), factor: 1, share: 1, replan: make(chan struct{})}
	l.SetRate(perSecond, burst)
	return l
}

// SetRate changes the configured budget; deletes already waiting plan again
// under it at once. Setting the budget in force again changes nothing (a
// throttle keeps recovering), so a periodic refresh may call it freely. A
// throttle in progress keeps its fraction of the new rate.
func (l *Limiter) SetRate(perSecond float64, burst int) {
	if !(perSecond > 0) || math.IsInf(perSecond, 1) {
		perSecond, burst = math.Inf(1), 0
	} else if burst < 1 {
		burst = 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if perSecond == l.perSecond && burst == l.burst {
		return
	}
	now := time.Now()
	l.advanceLocked(now)
	wasUnlimited := math.IsInf(l.perSecond, 1)
	l.perSecond, l.burst = perSecond, burst
	l.replanLocked()
	if math.IsInf(perSecond, 1) {
		l.factor, l.throttledAt = 1, time.Time{}
	}
	if wasUnlimited {
		l.tokens = float64(l.burstLocked())
	}
	l.tokens = min(l.tokens, float64(l.burstLocked()))
	l.inForce = l.targetLocked(now)
}

// SetShare sets the fraction of the configured budget this process may
// spend, from 0 (hold every delete) to 1 (all of it, the default): both the
// rate and the burst are scaled, the burst rounded down to whole deletes
// and at least 1 unless share is 0. Lowering it takes effect at once, with
// what the bucket held cut to the new burst; raising it grants no tokens,
// the bucket only fills faster from now on. Deletes already waiting plan
// again at once. An unlimited budget ignores the share.
func (l *Limiter) SetShare(share float64) {
	if !(share > 0) {
		share = 0
	}
	share = min(share, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if share == l.share {
		return
	}
	now := time.Now()
	l.advanceLocked(now)
	l.share = share
	l.replanLocked()
	if !math.IsInf(l.perSecond, 1) {
		l.tokens = min(l.tokens, float64(l.burstLocked()))
	}
	l.inForce = l.targetLocked(now)
}

// Share reports the fraction set by SetShare.
func (l *Limiter) Share() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.share
}

// baseLocked is the configured rate times the share: the rate in force
// when not throttled.
func (l *Limiter) baseLocked() float64 {
	if math.IsInf(l.perSecond, 1) {
		return l.perSecond
	}
	return l.perSecond * l.share
}

// burstLocked is the configured burst times the share, in whole deletes.
func (l *Limiter) burstLocked() int {
	switch {
	case l.share >= 1 || math.IsInf(l.perSecond, 1):
		return l.burst
	case l.share <= 0:
		return 0
	}
	return burstOf(float64(l.burst) * l.share)
}

// Rate reports the budget in force in deletes per second: the configured
// rate times the share, less while recovering from a Throttle; +Inf when
// unlimited.
func (l *Limiter) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.targetLocked(time.Now())
}

// Configured reports the budget set by NewLimiter or SetRate: perSecond is
// +Inf and burst 0 when unlimited.
func (l *Limiter) Configured() (perSecond float64, burst int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perSecond, l.burst
}

// Throttle is what a 429 calls: Kalshi's bucket is empty although this
// process kept to its budget (another client of the account, or a budget
// read wrongly). It halves the rate in force (see ThrottleFloor), empties
// the local bucket so no burst follows, and lets the rate recover over
// ThrottleRecovery. Calls within ThrottleHold of the last halving do
// nothing. Without a rate limit it does nothing: only Pause applies.
func (l *Limiter) Throttle() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if math.IsInf(l.perSecond, 1) {
		return
	}
	now := time.Now()
	if !l.throttledAt.IsZero() && now.Sub(l.throttledAt) < ThrottleHold {
		return
	}
	l.advanceLocked(now)
	base := l.baseLocked()
	if base <= 0 {
		return // holding every delete already
	}
	floor := min(ThrottleFloor, base) / base
	l.factor = max(floor, l.inForce/base/2)
	l.throttledAt = now
	l.replanLocked()
	l.tokens = min(l.tokens, 0)
	l.inForce = l.targetLocked(now)
}

// MaxPause bounds one Pause: a hostile or mistaken Retry-After must not
// freeze every delete of the process. The request that received it waits
// its full length itself, within its own retry budget.
const MaxPause = time.Minute

// Pause holds every delete for d (at most MaxPause) from now, or longer if
// already paused.
func (l *Limiter) Pause(d time.Duration) {
	if d <= 0 {
		return
	}
	d = min(d, MaxPause)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if until := now.Add(d); until.After(l.pausedUntil) {
		l.pausedUntil = until
		l.advanceLocked(now)
		l.replanLocked()
	}
}

// Wait blocks until a delete may be sent: after any pause has passed and a
// token is available. It returns ctx.Err() if ctx ends first, giving back
// the token it was waiting for.
func (l *Limiter) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for {
		l.mu.Lock()
		now := time.Now()
		wait := l.pausedUntil.Sub(now)
		reserved, held := false, false
		if wait <= 0 {
			l.advanceLocked(now)
			switch {
			case math.IsInf(l.inForce, 1):
				l.mu.Unlock()
				return nil
			case l.inForce <= 0:
				// Share 0: nothing to reserve; wait for the next plan.
				wait = time.Hour
				l.held++
				held = true
			default:
				l.tokens--
				if l.tokens >= 0 {
					l.mu.Unlock()
					return nil
				}
				wait = durationOf(-l.tokens / l.inForce)
				l.waiting++
				reserved = true
			}
		}
		replan := l.replan
		l.mu.Unlock()

		t := time.NewTimer(wait)
		select {
		case <-t.C:
			if held {
				l.unhold(replan)
			}
			if !reserved {
				continue // the pause is over
			}
			l.mu.Lock()
			kept := replan == l.replan
			if kept {
				l.waiting--
			}
			l.mu.Unlock()
			if kept {
				return nil
			}
			// The plan changed as the timer fired: the token was given back.
		case <-replan:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			if held {
				l.unhold(replan)
			}
			if reserved {
				l.mu.Lock()
				if replan == l.replan {
					l.waiting--
					l.tokens = min(l.tokens+1, float64(l.burstLocked()))
				}
				l.mu.Unlock()
			}
			return ctx.Err()
		}
	}
}

// unhold counts out a waiter of a zero rate, unless a new plan already did.
func (l *Limiter) unhold(replan chan struct{}) {
	l.mu.Lock()
	if replan == l.replan {
		l.held--
	}
	l.mu.Unlock()
}

// advanceLocked fills the bucket up to now at the rate in force, then
// moves to the next recovery step if one was reached.
func (l *Limiter) advanceLocked(now time.Time) {
	if math.IsInf(l.inForce, 1) {
		l.tokens, l.last = float64(l.burst), now
		return
	}
	if el := now.Sub(l.last); el > 0 {
		l.tokens = min(float64(l.burstLocked()), l.tokens+el.Seconds()*l.inForce)
		l.last = now
	}
	if r := l.targetLocked(now); r != l.inForce {
		l.inForce = r
		l.replanLocked()
	}
	if !l.throttledAt.IsZero() && now.Sub(l.throttledAt) >= ThrottleRecovery {
		l.factor, l.throttledAt = 1, time.Time{}
	}
}

// targetLocked is the rate that should be in force at now.
func (l *Limiter) targetLocked(now time.Time) float64 {
	base := l.baseLocked()
	if l.throttledAt.IsZero() || math.IsInf(base, 1) {
		return base
	}
	el := now.Sub(l.throttledAt)
	if el >= ThrottleRecovery {
		return base
	}
	step := math.Floor(float64(el) / float64(ThrottleRecovery/throttleSteps))
	return base * (l.factor + (1-l.factor)*step/throttleSteps)
}

// replanLocked gives back every reservation and wakes their holders.
func (l *Limiter) replanLocked() {
	if l.waiting == 0 && l.held == 0 {
		return
	}
	l.tokens = min(l.tokens+float64(l.waiting), float64(l.burstLocked()))
	l.waiting, l.held = 0, 0
	close(l.replan)
	l.replan = make(chan struct{})
}

// durationOf converts seconds to a Duration, rounding up so a waiter never
// wakes before its token is there.
func durationOf(seconds float64) time.Duration {
	return time.Duration(math.Ceil(seconds * float64(time.Second)))
}
