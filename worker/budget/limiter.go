package budget

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter spends the account's delete budget. One Limiter is shared by every
// delete of a process, because Kalshi's limits are per account: a 429 (and
// its Retry-After) holds all of them, not only the one that got it; joined
// to a Fleet (pause.go), it holds those of every replica too.
//
// The budget is counted when a call is sent, but Kalshi meters its
// arrival: attempts that a cut link holds arrive together when it heals.
// So an attempt (Begin) counts against the burst until it is answered,
// and one given up unanswered until a later one is: the bucket holds that
// many tokens fewer, and what the link delivers at once plus what the
// bucket adds never exceeds the burst (one probe at a time excepted).
//
// The bucket is a golang.org/x/time/rate.Limiter: Burst deletes at once,
// then one every 1/rate seconds. Deletes that have to wait queue in order;
// the first holds a reservation of the next token, and the next one
// reserves when it leaves. Whenever the plan changes (SetRate, SetShare,
// Throttle, Pause, a recovery step) that reservation is given back
// (Reservation.CancelAt) and made again under the new rate, so a lowered
// rate holds the waiting deletes at once and a raised one frees them at
// once. (Only the latest reservation of a rate.Limiter gives back its whole
// token when cancelled, which is why only one delete holds one.) All
// methods are safe for concurrent use.
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

	// bucket holds the tokens at the rate in force (inForce) and the burst
	// times the share; nil when unlimited.
	bucket  *rate.Limiter
	inForce float64
	// queue are the deletes waiting, in the order they came; only the
	// first may hold a reservation.
	queue []*waiter

	pausedUntil time.Time
	// ownPause is when the last pause this replica got from Kalshi itself
	// (Pause, not another replica's) ends: the one it records in the
	// replica plan. ownPaused, if set (Share), hears of each at once.
	ownPause  time.Time
	ownPaused func()

	// inflight counts attempts sent (Begin) and not yet answered or given
	// up: each holds a token of the burst, because Kalshi meters arrival and
	// a link that held them may deliver them all at once.
	inflight int
	// stale are the end times, oldest first, of attempts given up without
	// an answer: their bytes may still be on their way (a cut link that
	// delivers what it held when it heals), so each still holds a token of
	// the burst until an attempt sent after it is answered, or StaleHold.
	stale []time.Time
	// notify, if set (Fleet), hears of every local Pause that lengthened
	// the pause and every Throttle that halved the rate, so the other
	// replicas can follow.
	notify func(pauseNote)
	// awake is when this process last ran, as the Fleet's ticker and every
	// wait see it; zero outside a fleet. woke, if set, asks the others for
	// the pause in force after a freeze.
	awake time.Time
	woke  func()
}

// waiter is a delete waiting for its turn.
type waiter struct {
	wake chan struct{}     // its plan changed (capacity 1)
	r    *rate.Reservation // the first one's claim on the next token
	at   time.Time         // when r's token is there
}

// NewLimiter returns a Limiter allowing perSecond deletes with the given
// burst (at least 1), starting with a full bucket. perSecond <= 0 means
// unlimited (pauses after a 429 still apply).
func NewLimiter(perSecond float64, burst int) *Limiter {
	l := &Limiter{perSecond: math.Inf(1), inForce: math.Inf(1), factor: 1, share: 1}
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
	l.replanLocked(now)
	l.perSecond, l.burst = perSecond, burst
	switch {
	case math.IsInf(perSecond, 1):
		l.factor, l.throttledAt = 1, time.Time{}
		l.bucket = nil
		for _, w := range l.queue {
			w.signal()
		}
	case l.bucket == nil:
		l.bucket = rate.NewLimiter(0, l.burstLocked()) // full
	}
	l.applyLocked(now)
	l.headLocked(now)
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
	l.replanLocked(now)
	l.share = share
	l.applyLocked(now)
	l.headLocked(now)
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

// capLocked is the burst less the attempts in flight or stale: the tokens
// the bucket may hold now. Arrivals at Kalshi then stay within the burst,
// however a link that held the attempts delivers them. With none in flight
// one may always go (when the budget allows any): the probe that finds the
// link healed, whose answer frees the stale ones.
func (l *Limiter) capLocked() int {
	b := l.burstLocked()
	c := b - l.inflight - len(l.stale)
	if l.inflight == 0 && b > 0 {
		c = max(c, 1)
	}
	return max(0, c)
}

// StaleHold is how long an attempt given up without an answer may still
// hold a token of the burst: how long a cut link is taken to keep bytes it
// may deliver. Any answer to a later attempt ends it sooner.
const StaleHold = 2 * time.Minute

// pruneLocked drops the stale attempts held for StaleHold.
func (l *Limiter) pruneLocked(now time.Time) {
	i := 0
	for i < len(l.stale) && now.Sub(l.stale[i]) >= StaleHold {
		i++
	}
	if i > 0 {
		l.stale = slices.Delete(l.stale, 0, i)
	}
}

// setCapLocked puts capLocked into the bucket: lowered, the tokens are
// cut to it; raised, none are added (the bucket refills at the rate).
func (l *Limiter) setCapLocked(now time.Time) {
	if l.bucket != nil {
		l.bucket.SetBurstAt(now, l.capLocked())
	}
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

// Begin is Wait for an attempt that is sent at once. From its return until
// end is called, the attempt counts against the burst, so the bucket holds
// that many tokens fewer: Kalshi meters arrival, not sending, and attempts
// that a cut link held arrive together when it heals; counted, the bucket
// cannot add a burst on top. Call end with answered when Kalshi's answer
// came (any HTTP status), and without when the attempt was given up
// (timeout, connection lost): it may still arrive, so it keeps counting
// until a later attempt is answered, or StaleHold. Only the first call of
// end counts.
func (l *Limiter) Begin(ctx context.Context) (end func(answered bool), err error) {
	if err := l.wait(ctx, true); err != nil {
		return nil, err
	}
	sent := time.Now()
	var once sync.Once
	return func(answered bool) { once.Do(func() { l.end(sent, answered) }) }, nil
}

// end is an attempt of Begin, sent at sent, answered or given up. Answered,
// its token of the burst comes back to the bucket's capacity (not as a
// token: the bucket refills it at the rate in force), and so do those of
// the attempts given up before it was sent: the link works, and what it
// held has arrived.
func (l *Limiter) end(sent time.Time, answered bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.inflight--
	if answered {
		i := 0
		for i < len(l.stale) && l.stale[i].Before(sent) {
			i++
		}
		l.stale = slices.Delete(l.stale, 0, i)
	} else {
		l.stale = append(l.stale, now)
	}
	l.pruneLocked(now)
	l.setCapLocked(now)
	l.headLocked(now)
}

// Held reports the attempts that count against the burst: in flight, and
// given up without an answer (see Begin).
func (l *Limiter) Held() (inFlight, stale int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(time.Now())
	return l.inflight, len(l.stale)
}

// Wait blocks until a delete may be sent: after any pause has passed and a
// token is available. It returns ctx.Err() if ctx ends first, giving back
// the token it was waiting for.
func (l *Limiter) Wait(ctx context.Context) error { return l.wait(ctx, false) }

// wait is Wait; hold counts the attempt in flight (Begin) under the same
// lock that let it go, so the bucket never holds its token meanwhile.
func (l *Limiter) wait(ctx context.Context, hold bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	now := time.Now()
	if l.wakeLocked(now) && l.woke != nil {
		go l.woke()
	}
	l.advanceLocked(now)
	if len(l.stale) > 0 && now.Sub(l.stale[0]) >= StaleHold {
		l.pruneLocked(now)
		l.setCapLocked(now)
	}
	if len(l.queue) == 0 && !now.Before(l.pausedUntil) &&
		(l.bucket == nil || l.inForce > 0 && l.bucket.AllowN(now, 1)) {
		l.holdLocked(now, hold)
		l.mu.Unlock()
		return nil
	}
	w := &waiter{wake: make(chan struct{}, 1)}
	l.queue = append(l.queue, w)
	l.headLocked(now)
	for {
		wait := time.Duration(-1) // none: until woken
		switch {
		case now.Before(l.pausedUntil):
			if l.queue[0] == w {
				wait = l.pausedUntil.Sub(now)
			}
		case w.r != nil:
			if !w.at.After(now) {
				l.holdLocked(now, hold)
				l.leaveLocked(w, now)
				l.mu.Unlock()
				return nil
			}
			wait = w.at.Sub(now)
		case l.bucket == nil:
			l.holdLocked(now, hold)
			l.leaveLocked(w, now)
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()

		var timer *time.Timer
		var fired <-chan time.Time
		if wait >= 0 {
			timer = time.NewTimer(wait)
			fired = timer.C
		}
		select {
		case <-fired:
		case <-w.wake:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		l.mu.Lock()
		now = time.Now()
		if ctx.Err() != nil {
			if w.r != nil {
				w.r.CancelAt(now) // the latest reservation: its whole token
			}
			l.leaveLocked(w, now)
			l.mu.Unlock()
			return ctx.Err()
		}
		l.advanceLocked(now)
		l.headLocked(now)
	}
}

// holdLocked counts an attempt that goes now in flight, if hold, and cuts
// the bucket's capacity by its token.
func (l *Limiter) holdLocked(now time.Time, hold bool) {
	if !hold {
		return
	}
	l.inflight++
	l.pruneLocked(now)
	l.setCapLocked(now)
}

// signal wakes w to look at its plan again.
func (w *waiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// leaveLocked takes w out of the queue; the next one reserves if w was
// first.
func (l *Limiter) leaveLocked(w *waiter, now time.Time) {
	i := slices.Index(l.queue, w)
	if i < 0 {
		return
	}
	w.r = nil
	l.queue = slices.Delete(l.queue, i, i+1)
	if i == 0 && len(l.queue) > 0 {
		l.queue[0].signal()
		l.headLocked(now)
	}
}

// headLocked has the first waiting delete reserve the next token, if it
// holds none and a token can come: not paused, and a rate above zero.
func (l *Limiter) headLocked(now time.Time) {
	if len(l.queue) == 0 || l.bucket == nil || !(l.inForce > 0) || l.capLocked() < 1 || now.Before(l.pausedUntil) {
		return
	}
	h := l.queue[0]
	if h.r != nil {
		return
	}
	h.r = l.bucket.ReserveN(now, 1)
	d := h.r.DelayFrom(now)
	if d > 0 {
		d += time.Nanosecond // rate rounds down; never wake before the token
	}
	h.at = now.Add(d)
	h.signal()
}

// applyLocked puts the burst and the rate that should be in force into the
// bucket. The burst goes first: the tokens the bucket held are cut to it
// before the new rate counts.
func (l *Limiter) applyLocked(now time.Time) {
	l.inForce = l.targetLocked(now)
	if l.bucket == nil {
		return
	}
	l.bucket.SetBurstAt(now, l.capLocked())
	l.bucket.SetLimitAt(now, rate.Limit(l.inForce))
}

// replanLocked gives back the reservation of the first waiting delete,
// unless its token is due, and wakes it. Call it before the bucket's rate
// changes: a reservation is given back at the rate it was made at.
func (l *Limiter) replanLocked(now time.Time) {
	if len(l.queue) == 0 {
		return
	}
	h := l.queue[0]
	if h.r != nil && h.at.After(now) {
		h.r.CancelAt(now)
		h.r = nil
	}
	h.signal()
}

// burstOf rounds a share of the burst down to whole deletes, at least one.
// The tiny epsilon keeps 0.5*18 at 9 despite floating point.
func burstOf(deletes float64) int {
	return max(1, int(math.Floor(deletes+1e-9)))
}
