package budget_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/budget"
)

// The tests run in synctest bubbles: time only moves when every goroutine
// of the bubble is blocked, so the timings below are exact.

// limiterGrants runs n Waits one after another and returns how long after
// start each one returned.
func limiterGrants(t *testing.T, l *budget.Limiter, n int) []time.Duration {
	t.Helper()
	start := time.Now()
	out := make([]time.Duration, n)
	for i := range out {
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		out[i] = time.Since(start)
	}
	return out
}

func justAfter(got, want time.Duration) bool {
	d := got - want
	return d >= 0 && d < time.Millisecond
}

func TestLimiterBurstThenRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(10, 3)
		got := limiterGrants(t, l, 6)
		want := []time.Duration{0, 0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
		for i := range want {
			if !justAfter(got[i], want[i]) {
				t.Errorf("grant %d at %v, want %v (all: %v)", i, got[i], want[i], got)
			}
		}
		if r := l.Rate(); r != 10 {
			t.Errorf("Rate = %v, want 10", r)
		}
	})
}

func TestLimiterUnlimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, rate := range []float64{0, -1, math.Inf(1), math.NaN()} {
			l := budget.NewLimiter(rate, 0)
			got := limiterGrants(t, l, 1000)
			if got[len(got)-1] != 0 {
				t.Errorf("rate %v: 1000 deletes took %v, want no wait", rate, got[len(got)-1])
			}
			if r := l.Rate(); !math.IsInf(r, 1) {
				t.Errorf("rate %v: Rate = %v, want +Inf", rate, r)
			}
			l.Throttle() // nothing to halve
			if r := l.Rate(); !math.IsInf(r, 1) {
				t.Errorf("rate %v: Rate after Throttle = %v, want +Inf", rate, r)
			}
		}
	})
}

func TestLimiterBurstAtLeastOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(2, 0)
		if r, b := l.Configured(); r != 2 || b != 1 {
			t.Errorf("Configured = %v, %d, want 2, 1", r, b)
		}
		got := limiterGrants(t, l, 3)
		if !justAfter(got[0], 0) || !justAfter(got[1], 500*time.Millisecond) || !justAfter(got[2], time.Second) {
			t.Errorf("grants at %v, want 0, 500ms, 1s", got)
		}
	})
}

// limiterWaiters are goroutines that each Wait once; they record when they
// were let through (relative to their start), in the order they were.
type limiterWaiters struct {
	mu    sync.Mutex
	at    []time.Duration
	errs  []error
	wg    sync.WaitGroup
	start time.Time
}

func startLimiterWaiters(ctx context.Context, l *budget.Limiter, n int) *limiterWaiters {
	w := &limiterWaiters{start: time.Now()}
	for range n {
		w.wg.Go(func() {
			err := l.Wait(ctx)
			w.mu.Lock()
			defer w.mu.Unlock()
			if err != nil {
				w.errs = append(w.errs, err)
				return
			}
			w.at = append(w.at, time.Since(w.start))
		})
	}
	return w
}

func (w *limiterWaiters) done() (at []time.Duration, errs []error) {
	w.wg.Wait()
	return w.at, w.errs
}

func TestLimiterSetRateFreesWaitersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(1, 1)
		w := startLimiterWaiters(context.Background(), l, 5)
		synctest.Wait() // one went through, four hold reservations up to 4s ahead
		time.Sleep(100 * time.Millisecond)
		l.SetRate(100, 10)
		at, errs := w.done()
		if len(errs) != 0 {
			t.Fatal(errs)
		}
		// At 1/s the last would have left at 4s. After 100ms at 1/s the
		// bucket holds 0.1 tokens; at 100/s the four need 3.9 more.
		if last := at[len(at)-1]; last > 140*time.Millisecond {
			t.Errorf("last waiter left at %v after the rate went up at 100ms", last)
		}
		if r, b := l.Configured(); r != 100 || b != 10 {
			t.Errorf("Configured = %v, %d, want 100, 10", r, b)
		}
	})
}

func TestLimiterSetRateHoldsWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(100, 1)
		w := startLimiterWaiters(context.Background(), l, 4)
		synctest.Wait()
		l.SetRate(1, 1) // before any reservation (10ms apart) came due
		at, errs := w.done()
		if len(errs) != 0 {
			t.Fatal(errs)
		}
		want := []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second}
		for i := range want {
			if !justAfter(at[i], want[i]) {
				t.Errorf("grants at %v, want %v", at, want)
				break
			}
		}
	})
}

func TestLimiterSetRateSameBudgetKeepsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(10, 5)
		l.Throttle()
		l.SetRate(10, 5) // a periodic refresh that found nothing new
		if r := l.Rate(); r != 5 {
			t.Errorf("Rate = %v after a same-budget SetRate, want the throttled 5", r)
		}
		if got := limiterGrants(t, l, 1); !justAfter(got[0], 200*time.Millisecond) {
			t.Errorf("first delete after a throttle at %v, want 200ms (bucket emptied)", got[0])
		}
	})
}

func TestLimiterThrottleHalvesAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(36, 36)
		l.Throttle()
		if r := l.Rate(); r != 18 {
			t.Fatalf("Rate after a 429 = %v, want 18", r)
		}
		// Within the hold: the 429s of deletes already in flight.
		time.Sleep(budget.ThrottleHold / 2)
		l.Throttle()
		l.Throttle()
		if r := l.Rate(); r != 18 {
			t.Fatalf("Rate after 429s within the hold = %v, want still 18", r)
		}
		// Recovery in ten steps from 18 back to 36 over ThrottleRecovery.
		start := time.Now()
		prev := l.Rate()
		for time.Since(start) < budget.ThrottleRecovery {
			time.Sleep(budget.ThrottleRecovery / 40)
			r := l.Rate()
			if r < prev {
				t.Fatalf("rate fell from %v to %v while recovering", prev, r)
			}
			prev = r
		}
		if r := l.Rate(); r != 36 {
			t.Fatalf("Rate %v after recovery, want 36", r)
		}
		// A 429 after the hold halves again, from the rate in force.
		l.Throttle()
		time.Sleep(budget.ThrottleHold)
		l.Throttle()
		if r := l.Rate(); r != 9 {
			t.Fatalf("Rate after two spaced 429s = %v, want 9", r)
		}
	})
}

func TestLimiterThrottleMidRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(40, 4)
		l.Throttle() // 20
		time.Sleep(budget.ThrottleRecovery / 2)
		if r := l.Rate(); r != 30 {
			t.Fatalf("Rate halfway through recovery = %v, want 30", r)
		}
		l.Throttle() // from 30
		if r := l.Rate(); r != 15 {
			t.Fatalf("Rate after a 429 mid-recovery = %v, want 15", r)
		}
	})
}

func TestLimiterThrottleFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(10, 1)
		for range 10 {
			l.Throttle()
			time.Sleep(budget.ThrottleHold)
		}
		if r := l.Rate(); r < budget.ThrottleFloor || r > budget.ThrottleFloor*1.2 {
			t.Fatalf("Rate after many 429s = %v, want about the floor %v", r, budget.ThrottleFloor)
		}
		slow := budget.NewLimiter(0.5, 1) // below the floor: never raised
		slow.Throttle()
		if r := slow.Rate(); r != 0.5 {
			t.Fatalf("Rate of a 0.5/s budget after a 429 = %v, want 0.5", r)
		}
	})
}

func TestLimiterThrottleReplansWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(10, 1)
		w := startLimiterWaiters(context.Background(), l, 4) // 0, 100ms, 200ms, 300ms at 10/s
		synctest.Wait()
		l.Throttle() // now 5/s, bucket empty: 200, 400, 600ms
		at, errs := w.done()
		if len(errs) != 0 {
			t.Fatal(errs)
		}
		want := []time.Duration{0, 200 * time.Millisecond, 400 * time.Millisecond, 600 * time.Millisecond}
		for i := range want {
			if !justAfter(at[i], want[i]) {
				t.Fatalf("grants at %v, want %v", at, want)
			}
		}
	})
}

func TestLimiterPauseHoldsEveryone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(0, 0)
		l.Pause(2 * time.Second)
		l.Pause(time.Second) // shorter: does not cut the pause
		l.Pause(0)
		got := limiterGrants(t, l, 3)
		for i, at := range got {
			if !justAfter(at, 2*time.Second) {
				t.Errorf("unlimited delete %d let through at %v, want 2s", i, at)
			}
		}

		limited := budget.NewLimiter(10, 2)
		w := startLimiterWaiters(context.Background(), limited, 4) // 0, 0, 100ms, 200ms
		synctest.Wait()
		limited.Pause(time.Second) // the two waiting ones are held
		at, errs := w.done()
		if len(errs) != 0 {
			t.Fatal(errs)
		}
		if len(at) != 4 || at[1] != 0 || !justAfter(at[2], time.Second) || !justAfter(at[3], time.Second) {
			t.Errorf("grants at %v, want 0, 0, then both at 1s (the bucket refilled meanwhile)", at)
		}
	})
}

func TestLimiterWaitCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(1, 1)
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want the context's error", err)
		}
		// The token it gave back is the next one's: at 1s, not 2s.
		start := time.Now()
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); !justAfter(el, 900*time.Millisecond) {
			t.Errorf("next delete waited %v, want 900ms", el)
		}
		done, stop := context.WithCancel(context.Background())
		stop()
		if err := budget.NewLimiter(0, 0).Wait(done); !errors.Is(err, context.Canceled) {
			t.Errorf("Wait with a cancelled context = %v, want context.Canceled", err)
		}
		l.Pause(time.Hour)
		ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
		defer cancel2()
		if err := l.Wait(ctx2); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait during a pause = %v, want the context's error", err)
		}
	})
}

// TestLimiterConcurrentChanges runs in real time under the race detector:
// deletes wait while others change the rate, throttle and pause, and all of
// them get through. It checks the total rate too.
func TestLimiterConcurrentChanges(t *testing.T) {
	l := budget.NewLimiter(2000, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for range n / 16 {
				if err := l.Wait(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	var changers sync.WaitGroup
	changers.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			switch i % 4 {
			case 0:
				l.SetRate(1000+float64(i%7)*100, 10+i%5)
			case 1:
				l.Throttle()
			case 2:
				l.Pause(time.Millisecond)
			default:
				_ = l.Rate()
			}
		}
	})
	wg.Wait()
	close(stop)
	changers.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Wait: %v", err)
	}
	// At no more than 2000/s (less while throttled), 400 deletes beyond a
	// burst of 20 take at least 190ms.
	if el := time.Since(start); el < 190*time.Millisecond {
		t.Errorf("%d deletes in %v: faster than the budget allows", n, el)
	}
}

func TestLimiterShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(10, 6)
		l.SetShare(0) // a joiner: nothing until the others made room
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait at share 0 = %v, want the deadline", err)
		}
		if r := l.Rate(); r != 0 {
			t.Errorf("Rate at share 0 = %v", r)
		}
		released := make(chan time.Duration, 1)
		start := time.Now()
		go func() {
			_ = l.Wait(context.Background())
			released <- time.Since(start)
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		select {
		case d := <-released:
			t.Fatalf("released at share 0 after %v", d)
		default:
		}
		l.SetShare(0.5) // raising grants no tokens: the bucket fills at 5/s
		if got := <-released; !justAfter(got, time.Second+200*time.Millisecond) {
			t.Errorf("released %v after start, want 1.2s", got)
		}
		if r := l.Rate(); r != 5 {
			t.Errorf("Rate at share 0.5 = %v, want 5", r)
		}
		time.Sleep(10 * time.Second) // full: burst 6 x 0.5 = 3
		got := limiterGrants(t, l, 4)
		want := []time.Duration{0, 0, 0, 200 * time.Millisecond}
		for i := range want {
			if !justAfter(got[i], want[i]) {
				t.Errorf("grant %d at %v, want %v (all: %v)", i, got[i], want[i], got)
			}
		}
		l.SetShare(1.0 / 3) // lowering cuts the bucket to the new burst (2)
		time.Sleep(10 * time.Second)
		l.SetShare(0.25)
		got = limiterGrants(t, l, 2)
		if !justAfter(got[0], 0) || !justAfter(got[1], 400*time.Millisecond) {
			t.Errorf("after lowering to 1/4 of 10/s burst 6: grants at %v, want 0 and 400ms", got)
		}
		l.SetShare(1)
		if r := budget.NewLimiter(0, 0); true {
			r.SetShare(0) // unlimited ignores the share
			if got := limiterGrants(t, r, 3); got[2] != 0 {
				t.Errorf("unlimited at share 0 waited %v", got[2])
			}
		}
	})
}

// TestDeleteBudgetTimesShare: a replica's part of the account's budget
// (kalshi.DeleteBudget) is what the limiter makes of it at its share.
func TestDeleteBudgetTimesShare(t *testing.T) {
	basic := kalshi.Limits{UsageTier: "basic", Read: kalshi.Bucket{RefillRate: 200, BucketCapacity: 200}}
	dflt := kalshi.Costs{DefaultCost: 10}
	for _, tt := range []struct {
		name      string
		limits    kalshi.Limits
		share     float64
		perSecond float64
		burst     int
	}{
		{"whole account", basic, 1, 18, 18},
		{"half the account", basic, 0.5, 9, 9},
		{"share above 1 is 1", basic, 3, 18, 18},
		{"tiny share keeps a burst of 1", basic, 0.01, 0.18, 1},
		{"fallback times share", kalshi.Limits{}, 0.25, 4.5, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := budget.NewLimiter(kalshi.DeleteBudget(tt.limits, dflt))
				l.SetShare(tt.share)
				if r := l.Rate(); math.Abs(r-tt.perSecond) > 1e-9 {
					t.Errorf("Rate = %v, want %v", r, tt.perSecond)
				}
				got := limiterGrants(t, l, tt.burst+1)
				if got[tt.burst-1] != 0 || got[tt.burst] == 0 {
					t.Errorf("grants at %v, want a burst of %d", got, tt.burst)
				}
			})
		})
	}
}
