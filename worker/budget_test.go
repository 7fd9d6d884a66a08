package worker_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker"
)

func TestDeleteBudget(t *testing.T) {
	basic := kalshi.Limits{UsageTier: "basic", Read: kalshi.Bucket{RefillRate: 200, BucketCapacity: 200}}
	premier := kalshi.Limits{UsageTier: "premier", Read: kalshi.Bucket{RefillRate: 1000, BucketCapacity: 1000},
		Write: kalshi.Bucket{RefillRate: 1, BucketCapacity: 1}}
	dflt := kalshi.Costs{DefaultCost: 10}
	listed := func(method, path string, cost int) kalshi.Costs {
		return kalshi.Costs{DefaultCost: 10, EndpointCosts: []kalshi.EndpointCost{{Method: method, Path: path, Cost: cost}}}
	}
	tests := []struct {
		name      string
		limits    kalshi.Limits
		costs     kalshi.Costs
		share     float64
		perSecond float64
		burst     int
	}{
		{"basic tier, default cost", basic, dflt, 1, 18, 18},
		{"no costs read: cost 10", basic, kalshi.Costs{}, 1, 18, 18},
		{"default cost changed", basic, kalshi.Costs{DefaultCost: 20}, 1, 9, 9},
		{"half the account", basic, dflt, 0.5, 9, 9},
		{"share above 1 is 1", basic, dflt, 3, 18, 18},
		{"share 0 is 1", basic, dflt, 0, 18, 18},
		{"share NaN is 1", basic, dflt, math.NaN(), 18, 18},
		{"premier: read bucket, not write", premier, dflt, 1, 90, 90},
		{"delete listed with prefix and template", basic, listed("DELETE", "/trade-api/v2/api_keys/{api_key}", 20), 1, 9, 9},
		{"delete listed without prefix, :param", basic, listed("delete", "/api_keys/:id", 5), 1, 36, 36},
		{"another endpoint listed", basic, listed("GET", "/api_keys/{api_key}", 50), 1, 18, 18},
		{"listing the collection is not the delete", basic, listed("DELETE", "/api_keys", 50), 1, 18, 18},
		{"burst from capacity", kalshi.Limits{Read: kalshi.Bucket{RefillRate: 400, BucketCapacity: 100}}, dflt, 1, 36, 9},
		{"tiny share keeps a burst of 1", basic, dflt, 0.01, 0.18, 1},
		{"free delete is unlimited", basic, listed("DELETE", "/api_keys/{api_key}", 0), 1, 0, 0},
		{"limits not read: fallback", kalshi.Limits{}, dflt, 1, 18, 18},
		{"fallback times share", kalshi.Limits{}, dflt, 0.25, 4.5, 4},
		{"negative refill: fallback", kalshi.Limits{Read: kalshi.Bucket{RefillRate: -1, BucketCapacity: 200}}, dflt, 1, 18, 18},
		{"no capacity: fallback", kalshi.Limits{Read: kalshi.Bucket{RefillRate: 200}}, dflt, 1, 18, 18},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			perSecond, burst := worker.DeleteBudget(tt.limits, tt.costs, tt.share)
			if math.Abs(perSecond-tt.perSecond) > 1e-9 || burst != tt.burst {
				t.Errorf("DeleteBudget = %v/s burst %d, want %v/s burst %d", perSecond, burst, tt.perSecond, tt.burst)
			}
		})
	}
}

func TestFallbackDeleteBudget(t *testing.T) {
	for _, tt := range []struct {
		share     float64
		perSecond float64
		burst     int
	}{{1, 18, 18}, {0.5, 9, 9}, {0.01, 0.18, 1}, {-1, 18, 18}} {
		perSecond, burst := worker.FallbackDeleteBudget(tt.share)
		if math.Abs(perSecond-tt.perSecond) > 1e-9 || burst != tt.burst {
			t.Errorf("FallbackDeleteBudget(%v) = %v/s burst %d, want %v/s burst %d", tt.share, perSecond, burst, tt.perSecond, tt.burst)
		}
	}
	if worker.BasicDeleteRate*worker.BudgetFraction != 18 {
		t.Errorf("basic budget %v, want 18 deletes/s", worker.BasicDeleteRate*worker.BudgetFraction)
	}
}

// TestDeleteBudgetFromTheEmulator reads the budget the way cmd does, from a
// Kalshi that lists a non-default delete cost.
func TestDeleteBudgetFromTheEmulator(t *testing.T) {
	emu := emulator.New(emulator.Options{Refill: 400, Capacity: 200, DeleteCost: 20})
	if err := emu.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := emu.AddKey("revoker", priv.Public())
	c, err := kalshi.New(kalshi.Config{BaseURL: emu.URL(), KeyID: id, PrivateKey: priv})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	limits, err := c.AccountLimits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	costs, err := c.EndpointCosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 400 tokens/s and 200 tokens at 20 a delete: 20/s and 10, times 0.9.
	perSecond, burst := worker.DeleteBudget(limits, costs, 1)
	if math.Abs(perSecond-18) > 1e-9 || burst != 9 {
		t.Errorf("budget %v/s burst %d, want 18/s burst 9 (costs %+v)", perSecond, burst, costs)
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
	perSecond, burst := worker.DeleteBudget(limits, costs, 1)
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
