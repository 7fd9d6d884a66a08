package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/metrics"
	"github.com/revoker/revoker/worker/natstest"
)

// While Kalshi answers only 5xx, a revocation cannot be confirmed. After
// ConfirmGiveUp it is recorded as unconfirmed, with why, and no longer
// checked: no more calls, for the account's list or signed with the leaked
// key, and the gauge does not count it.
func TestConfirmationGivesUp(t *testing.T) {
	r := newRig(t)
	// Both keys stay listed after their delete: found alive, they raise
	// the gauge, and nothing confirms them before Kalshi fails.
	stale := r.addKeys(1)[0]
	ids, pems := r.leakedKeys(1)
	r.emu.KeepListing(stale)
	r.emu.KeepListing(ids[0])
	cfg := r.config()
	cfg.Metrics = metrics.New(prometheus.NewRegistry())
	cfg.ConfirmDelay, cfg.ConfirmInterval, cfg.ConfirmGiveUp = 500*time.Millisecond, 100*time.Millisecond, 3*time.Second
	r.start(cfg)
	r.publish("stale", stale)
	r.publishLeaked("leaked", pems[0], "")
	res := r.waitResults(2, 20*time.Second)
	leakedID := res["leaked"].APIKeyID
	natstest.WaitFor(t, 10*time.Second, "the gauge to count the keys still listed", func() bool {
		return testutil.ToFloat64(cfg.Metrics.Unconfirmed) == 2
	})
	r.emu.SetFaults(emulator.Faults{Seed: 1, ServerError: 1}) // every answer a 5xx

	led, err := ledger.Open(context.Background(), r.js)
	if err != nil {
		t.Fatal(err)
	}
	given := func(id string) *ledger.KeyRecord {
		rec, err := led.Lookup(context.Background(), id)
		if err != nil || rec == nil || rec.UnconfirmedAt.IsZero() {
			return nil
		}
		return rec
	}
	var recs []*ledger.KeyRecord
	natstest.WaitFor(t, 20*time.Second, "the worker to give up on both keys", func() bool {
		recs = recs[:0]
		for _, id := range []string{stale, leakedID} {
			if rec := given(id); rec != nil {
				recs = append(recs, rec)
			}
		}
		return len(recs) == 2
	})
	for i, rec := range recs {
		if !rec.ConfirmedAt.IsZero() {
			t.Errorf("key %d: confirmed at %v and given up", i, rec.ConfirmedAt)
		}
		if d := rec.UnconfirmedAt.Sub(rec.RevokedAt); d < cfg.ConfirmGiveUp {
			t.Errorf("key %d given up %v after its revocation, before ConfirmGiveUp", i, d)
		}
		if !strings.Contains(rec.UnconfirmedReason, "not confirmed within 3s of the revocation: the account's keys could not be listed: ") {
			t.Errorf("key %d: reason %q", i, rec.UnconfirmedReason)
		}
	}
	// The gauge is set once a round ends, after its records are written.
	natstest.WaitFor(t, 10*time.Second, "the gauge to count no key given up", func() bool {
		return testutil.ToFloat64(cfg.Metrics.Unconfirmed) == 0
	})
	// Given up, nothing is checked any more: ten intervals without a call.
	before := r.emu.Stats()
	since := time.Now()
	natstest.WaitFor(t, 5*time.Second, "ten check intervals", func() bool { return time.Since(since) > 10*cfg.ConfirmInterval })
	after := r.emu.Stats()
	if n := after.Requests - before.Requests; n != 0 {
		t.Errorf("%d calls after giving up (%d signed with the leaked key)", n,
			len(after.BySigner[leakedID])-len(before.BySigner[leakedID]))
	}
}
