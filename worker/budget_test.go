package worker_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker"
)

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
				l := worker.NewLimiter(kalshi.DeleteBudget(tt.limits, dflt))
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
	cfg.Limiter = worker.NewLimiter(perSecond, burst)
	// Queued before the worker starts, so they all want to go at once.
	if err := worker.Provision(ctx, r.js, cfg); err != nil {
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
