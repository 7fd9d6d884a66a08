package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// TestBudgetKeepsKalshiBelowItsLimit revokes more keys at once than the
// account's bucket holds: with the budget DeleteBudget reads from Kalshi,
// none of the deletes gets a 429, and the limiter, not Kalshi, sets the pace.
func TestBudgetKeepsKalshiBelowItsLimit(t *testing.T) {
	r := newRig(t)
	r.emu.SetLimits(200, 200) // the basic tier: 20 deletes a second, 20 at once
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	limits, err := r.client.AccountLimits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	costs, err := r.client.EndpointCosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	perSecond, burst := kalshi.DeleteBudget(limits, costs)
	if perSecond != 18 || burst != 18 {
		t.Fatalf("budget %v/s burst %d, want 18/s burst 18", perSecond, burst)
	}
	r.emu.SetLimits(200, 200) // full again: reading the limits cost 10 tokens

	const n = 45
	keys := r.addKeys(n)
	cfg := r.config()
	cfg.Concurrency = 16
	cfg.Limiter = budget.NewLimiter(perSecond, burst)
	// Queued before the worker starts, so they all want to go at once.
	if err := provision.Ensure(ctx, r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		r.publish(fmt.Sprintf("mass-%d", i), k)
	}
	start := time.Now()
	_, _ = r.start(cfg)
	got := r.waitResults(n, 30*time.Second)
	elapsed := time.Since(start)
	for id, res := range got {
		if res.Outcome != events.Revoked || res.Attempts != 1 {
			t.Errorf("%s: %s after %d attempts, want revoked at the first", id, res.Outcome, res.Attempts)
		}
	}
	if tooMany := r.emu.Stats().TooMany; tooMany != 0 {
		t.Errorf("Kalshi answered 429 %d times", tooMany)
	}
	// 18 at once, then 18 a second: the last of 45 leaves after 1.5 s.
	if floor := time.Duration(float64(n-burst) / perSecond * 0.95 * float64(time.Second)); elapsed < floor {
		t.Errorf("%d deletes in %v: faster than the budget allows (%v)", n, elapsed, floor)
	}
}

// joinFleet joins l to the default group's pauses on its own connection to
// url, as another replica would.
func joinFleet(t testing.TB, url string, l *budget.Limiter) {
	t.Helper()
	nc := natstest.Connect(t, url)
	f, err := budget.JoinFleet(nc, budget.FleetConfig{Group: "revoker", Limiter: l})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Leave)
	if err := nc.Flush(); err != nil { // the subscription is in place
		t.Fatal(err)
	}
}

// TestLongRetryAfterPausesEveryone: a Retry-After longer than the request's
// budget ends that request retries_exhausted, and still holds every other
// call (up to MaxPause), on this replica and, through the fleet, the
// others. Before, only the request ended and the next call went at once.
func TestLongRetryAfterPausesEveryone(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	cfg.Limiter = budget.NewLimiter(0, 0)
	other := budget.NewLimiter(0, 0)
	joinFleet(t, r.srv.URL(), cfg.Limiter)
	joinFleet(t, r.srv.URL(), other)
	r.start(cfg)
	r.emu.SetFaults(emulator.Faults{Seed: 1, TooMany: 1, RetryAfter: time.Hour})
	sent := time.Now()
	r.publish("slow", keys[0])
	res := r.waitResults(1, 10*time.Second)["slow"]
	if res.Error == nil || res.Error.Code != events.CodeRetriesExhausted {
		t.Errorf("got %+v, want failed/retries_exhausted", res)
	}
	// MaxPause from when each heard of the 429: after the publish, and
	// before now, however slow the machine.
	for name, l := range map[string]*budget.Limiter{"this replica": cfg.Limiter, "another replica": other} {
		natstest.WaitFor(t, 10*time.Second, name+" paused for MaxPause", func() bool {
			until := l.PausedUntil()
			return !until.Before(sent.Add(budget.MaxPause)) && !until.After(time.Now().Add(budget.MaxPause))
		})
	}
}
