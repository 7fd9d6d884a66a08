package budget

import (
	"context"
	"math"
	"time"
)

// What a 429 does to the Limiter: Throttle halves the rate in force, which
// recovers in steps (advanceLocked, targetLocked); Pause holds every delete
// for a Retry-After, and a process that wakes from a freeze holds them too
// until the fleet has told it the pause in force. The fleet hears of a
// local pause or throttle through tell (pause.go).

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

// Throttle is what a 429 calls: Kalshi's bucket is empty although this
// process kept to its budget (another client of the account, or a budget
// read wrongly). It halves the rate in force (see ThrottleFloor), empties
// the local bucket so no burst follows, and lets the rate recover over
// ThrottleRecovery. Calls within ThrottleHold of the last halving do
// nothing. Without a rate limit it does nothing: only Pause applies.
func (l *Limiter) Throttle() {
	if l.throttle() {
		l.tell(pauseNote{throttle: true})
	}
}

// throttle is Throttle without telling the fleet; it reports whether it
// halved the rate.
func (l *Limiter) throttle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bucket == nil {
		return false
	}
	now := time.Now()
	if !l.throttledAt.IsZero() && now.Sub(l.throttledAt) < ThrottleHold {
		return false
	}
	l.advanceLocked(now)
	base := l.baseLocked()
	if base <= 0 {
		return false // holding every delete already
	}
	floor := min(ThrottleFloor, base) / base
	l.factor = max(floor, l.inForce/base/2)
	l.throttledAt = now
	l.replanLocked(now)
	// Empty the bucket, keeping any debt: a burst of 0 caps the tokens at
	// 0 when the next call brings them up to date.
	l.bucket.SetBurstAt(now, 0)
	l.applyLocked(now)
	l.headLocked(now)
	return true
}

// MaxPause bounds one Pause: a hostile or mistaken Retry-After must not
// freeze every delete of the process. The request that received it waits
// its full length itself, within its own retry budget.
const MaxPause = time.Minute

// Pause holds every delete for d (at most MaxPause) from now, or longer if
// already paused. With a Fleet, the other replicas pause as well.
func (l *Limiter) Pause(d time.Duration) {
	if d <= 0 {
		return
	}
	until := time.Now().Add(min(d, MaxPause))
	l.mu.Lock()
	if until.After(l.ownPause) {
		l.ownPause = until
	}
	hook := l.ownPaused
	l.mu.Unlock()
	if l.pauseUntil(until) {
		l.tell(pauseNote{until: until})
	}
	if hook != nil {
		hook()
	}
}

// ownPauseLeft is how much is left of the last pause Kalshi gave this
// replica itself (zero when none is in force): what it records in the
// replica plan. Another replica's pause is not recorded again, or two
// replicas would lengthen each other's pause for ever.
func (l *Limiter) ownPauseLeft(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.ownPause.Sub(now), 0)
}

// setOwnPaused sets who hears of this replica's own pauses (nil: no one).
func (l *Limiter) setOwnPaused(f func()) {
	l.mu.Lock()
	l.ownPaused = f
	l.mu.Unlock()
}

// pauseUntil holds every delete until until, unless a pause already lasts
// longer: a pause is only ever lengthened. It reports whether it
// lengthened the pause; it tells no one.
func (l *Limiter) pauseUntil(until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !until.After(l.pausedUntil) {
		return false
	}
	now := time.Now()
	l.pausedUntil = until
	l.advanceLocked(now)
	l.replanLocked(now)
	return true
}

// PausedUntil reports when the pause in force ends; the zero time or a
// past one when there is none.
func (l *Limiter) PausedUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pausedUntil
}

// AfterPause blocks until no pause is in force, without spending a token:
// for a call that the pause must hold but the budget's share need not (the
// credential check, which runs while an automatic share is still zero). It
// returns ctx.Err() if ctx ends first.
func (l *Limiter) AfterPause(ctx context.Context) error {
	for {
		d := time.Until(l.PausedUntil())
		if d <= 0 {
			return ctx.Err()
		}
		t := time.NewTimer(d) // a pause lengthened meanwhile: the loop waits again
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// tell passes a local pause or throttle to the fleet, if one listens.
func (l *Limiter) tell(n pauseNote) {
	l.mu.Lock()
	notify := l.notify
	l.mu.Unlock()
	if notify != nil {
		notify(n)
	}
}

// setNotify sets who hears of local pauses and throttles (nil: no one).
func (l *Limiter) setNotify(f func(pauseNote)) {
	l.mu.Lock()
	l.notify = f
	l.mu.Unlock()
}

// advanceLocked moves to the recovery step reached at now, if any, and
// ends a recovery that is over.
func (l *Limiter) advanceLocked(now time.Time) {
	if l.bucket != nil && l.targetLocked(now) != l.inForce {
		l.replanLocked(now)
		l.applyLocked(now)
		l.headLocked(now)
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

// After a gap of freezeGap in awake the process was frozen (SIGSTOP, a
// paused VM, a starved machine): pauses the other replicas broadcast
// meanwhile may be unread in its socket, and whichever goroutine runs first
// on waking may be a delete. So every call then waits wakeHold, while the
// fleet is asked again for the pause in force (chaos seed 391272).
const (
	freezeGap = time.Second
	wakeHold  = askWindow
)

// wakeLocked notes that the process runs at now; after a freeze it holds
// every call for wakeHold and reports true. Call with l.mu held.
func (l *Limiter) wakeLocked(now time.Time) bool {
	if l.awake.IsZero() {
		return false
	}
	frozen := now.Sub(l.awake) > freezeGap
	l.awake = now
	if frozen && now.Add(wakeHold).After(l.pausedUntil) {
		l.pausedUntil = now.Add(wakeHold)
		l.advanceLocked(now)
		l.replanLocked(now)
	}
	return frozen
}

// keepAwake is the Fleet's tick: it starts the freeze watch (awake) and
// asks the others after a freeze.
func (l *Limiter) keepAwake(now time.Time) {
	l.mu.Lock()
	if l.awake.IsZero() {
		l.awake = now
	}
	frozen, woke := l.wakeLocked(now), l.woke
	l.mu.Unlock()
	if frozen && woke != nil {
		woke()
	}
}

// setWoke sets who asks the fleet again after a freeze; nil stops the watch.
func (l *Limiter) setWoke(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.woke = f
	if f == nil {
		l.awake = time.Time{}
	}
}

// pauseNote is a local pause or throttle, as the fleet hears of it: until
// is the end of the pause (zero: none), throttle says the rate was halved.
type pauseNote struct {
	until    time.Time
	throttle bool
}
