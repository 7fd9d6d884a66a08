package kalshi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"math"
	"testing"
	"time"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
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
		perSecond float64
		burst     int
	}{
		{"basic tier, default cost", basic, dflt, 18, 18},
		{"no costs read: cost 10", basic, kalshi.Costs{}, 18, 18},
		{"default cost changed", basic, kalshi.Costs{DefaultCost: 20}, 9, 9},
		{"premier: read bucket, not write", premier, dflt, 90, 90},
		{"delete listed with prefix and template", basic, listed("DELETE", "/trade-api/v2/api_keys/{api_key}", 20), 9, 9},
		{"delete listed without prefix, :param", basic, listed("delete", "/api_keys/:id", 5), 36, 36},
		{"another endpoint listed", basic, listed("GET", "/api_keys/{api_key}", 50), 18, 18},
		{"listing the collection is not the delete", basic, listed("DELETE", "/api_keys", 50), 18, 18},
		{"burst from capacity", kalshi.Limits{Read: kalshi.Bucket{RefillRate: 400, BucketCapacity: 100}}, dflt, 36, 9},
		{"small capacity keeps a burst of 1", kalshi.Limits{Read: kalshi.Bucket{RefillRate: 2, BucketCapacity: 2}}, dflt, 0.18, 1},
		{"free delete is unlimited", basic, listed("DELETE", "/api_keys/{api_key}", 0), 0, 0},
		{"limits not read: fallback", kalshi.Limits{}, dflt, 18, 18},
		{"negative refill: fallback", kalshi.Limits{Read: kalshi.Bucket{RefillRate: -1, BucketCapacity: 200}}, dflt, 18, 18},
		{"no capacity: fallback", kalshi.Limits{Read: kalshi.Bucket{RefillRate: 200}}, dflt, 18, 18},
		{"infinite refill: fallback", kalshi.Limits{Read: kalshi.Bucket{RefillRate: math.Inf(1), BucketCapacity: 200}}, dflt, 18, 18},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			perSecond, burst := kalshi.DeleteBudget(tt.limits, tt.costs)
			if math.Abs(perSecond-tt.perSecond) > 1e-9 || burst != tt.burst {
				t.Errorf("DeleteBudget = %v/s burst %d, want %v/s burst %d", perSecond, burst, tt.perSecond, tt.burst)
			}
		})
	}
}

func TestFallbackDeleteBudget(t *testing.T) {
	if perSecond, burst := kalshi.FallbackDeleteBudget(); math.Abs(perSecond-18) > 1e-9 || burst != 18 {
		t.Errorf("FallbackDeleteBudget() = %v/s burst %d, want 18/s burst 18", perSecond, burst)
	}
	if kalshi.BasicDeleteRate*kalshi.BudgetFraction != 18 {
		t.Errorf("basic budget %v, want 18 deletes/s", kalshi.BasicDeleteRate*kalshi.BudgetFraction)
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
	perSecond, burst := kalshi.DeleteBudget(limits, costs)
	if math.Abs(perSecond-18) > 1e-9 || burst != 9 {
		t.Errorf("budget %v/s burst %d, want 18/s burst 9 (costs %+v)", perSecond, burst, costs)
	}
}

func TestCancelBudget(t *testing.T) {
	basic := kalshi.Limits{Read: kalshi.Bucket{RefillRate: 200, BucketCapacity: 200}, Write: kalshi.Bucket{RefillRate: 100, BucketCapacity: 100}}
	premier := kalshi.Limits{Read: kalshi.Bucket{RefillRate: 1000, BucketCapacity: 1000}, Write: kalshi.Bucket{RefillRate: 1000, BucketCapacity: 500}}
	listed := func(path string, cost int) kalshi.Costs {
		return kalshi.Costs{DefaultCost: 10, EndpointCosts: []kalshi.EndpointCost{{Method: "DELETE", Path: path, Cost: cost}}}
	}
	for _, tt := range []struct {
		name      string
		limits    kalshi.Limits
		costs     kalshi.Costs
		perSecond float64
		burst     int
	}{
		{"listed cost, write bucket", basic, listed(kalshi.CancelOrdersPath, 20), 4.5, 4},
		{"listed without the prefix", premier, listed("/portfolio/events/orders", 100), 9, 4},
		{"unlisted: the whole capacity", basic, kalshi.Costs{DefaultCost: 10}, 0.9, 1},
		{"unlisted, premier", premier, kalshi.Costs{}, 1.8, 1},
		{"another endpoint listed", basic, listed("/portfolio/events/orders/batched", 2), 0.9, 1},
		{"limits not read: basic write bucket", kalshi.Limits{}, listed(kalshi.CancelOrdersPath, 50), 1.8, 1},
		{"free cancel is unlimited", basic, listed(kalshi.CancelOrdersPath, 0), 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			perSecond, burst := kalshi.CancelBudget(tt.limits, tt.costs)
			if math.Abs(perSecond-tt.perSecond) > 1e-9 || burst != tt.burst {
				t.Errorf("CancelBudget = %v/s burst %d, want %v/s burst %d", perSecond, burst, tt.perSecond, tt.burst)
			}
		})
	}
}
