package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/metrics"
	"github.com/revoker/revoker/worker/natstest"
)

// A revoked key is confirmed dead in the ledger once the account no longer
// lists it; one the account keeps listing stays unconfirmed and raises the
// gauge. One list serves every key waiting.
func TestConfirmation(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(6)
	stale := keys[5]
	r.emu.KeepListing(stale)
	_, pems := r.leakedKeys(1)
	cfg := r.config()
	cfg.Metrics = metrics.New(prometheus.NewRegistry())
	// A round a second at most: the burst's keys are due together, and the
	// key kept listed is checked again only every second or more.
	cfg.ConfirmDelay, cfg.ConfirmInterval = 300*time.Millisecond, time.Second
	r.start(cfg)
	from := len(r.emu.Calls())
	for _, k := range keys {
		r.publish("c-"+k, k)
	}
	r.publishLeaked("c-leaked", pems[0], "")
	res := r.waitResults(len(keys)+1, 20*time.Second)
	leakedKey := res["c-leaked"].APIKeyID
	for id, rs := range res {
		if rs.Outcome != events.Revoked {
			t.Fatalf("%s: %s, want revoked", id, rs.Outcome)
		}
	}

	led, err := ledger.Open(context.Background(), r.js)
	if err != nil {
		t.Fatal(err)
	}
	confirmed := func(id string) bool {
		rec, err := led.Lookup(context.Background(), id)
		return err == nil && rec != nil && !rec.ConfirmedAt.IsZero()
	}
	natstest.WaitFor(t, 10*time.Second, "the revocations confirmed", func() bool {
		for _, k := range append(keys[:5:5], leakedKey) {
			if !confirmed(k) {
				return false
			}
		}
		return true
	})
	// Seven keys revoked in a burst were confirmed by a few lists, not one
	// each; the leaked key's own call was refused once. The worker's lists
	// are GET /api_keys signed as itself: the leaked key's identification,
	// the listings before a first DELETE (at most one per 2s) and the
	// confirmation rounds (at most one per ConfirmInterval). A loaded
	// machine spreads the burst over more rounds: the bound grows with the
	// span of the lists.
	after := r.emu.Stats()
	var first, last time.Time
	lists := -1 // minus the leaked key's identification
	for _, c := range r.emu.Calls()[from:] {
		if c.Endpoint == emulator.EndpointListKeys && c.Signer == r.selfID && c.Status == 200 {
			if first.IsZero() {
				first = c.Arrived
			}
			last = c.Arrived
			lists++
		}
	}
	span := last.Sub(first)
	if most := 2 + int(span/cfg.ConfirmInterval) + int(span/(2*time.Second)); lists < 1 || lists > most {
		t.Errorf("%d lists of the account's keys over %v to confirm 7 revocations, want 1 to %d", lists, span, most)
	}
	if n := after.BySigner[leakedKey][401]; n < 1 {
		t.Errorf("the leaked key's own call was not tried after its delete (%d)", n)
	}
	natstest.WaitFor(t, 10*time.Second, "the gauge to count the key still listed", func() bool {
		return testutil.ToFloat64(cfg.Metrics.Unconfirmed) == 1
	})
	if confirmed(stale) {
		t.Error("a key the account still lists was confirmed dead")
	}
	for _, k := range keys[:5] {
		rec, _ := led.Lookup(context.Background(), k)
		if rec.ConfirmedAt.Before(rec.RevokedAt) {
			t.Errorf("%s confirmed at %v, before its revocation at %v", k, rec.ConfirmedAt, rec.RevokedAt)
		}
	}
}

// A key is confirmed dead only on proof: while the account's list fails,
// or a leaked key's own call is answered with anything but "unknown key",
// nothing is confirmed; once the answers come, it is.
func TestConfirmationNeedsProof(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	_, pems := r.leakedKeys(1)
	cfg := r.config()
	cfg.ConfirmDelay, cfg.ConfirmInterval = time.Second, 100*time.Millisecond
	r.start(cfg)
	r.publish("plain", keys[0])
	r.publishLeaked("leaked", pems[0], "")
	res := r.waitResults(2, 20*time.Second)
	before := r.emu.Stats()
	r.emu.SetFaults(emulator.Faults{Seed: 1, ServerError: 1}) // every answer a 5xx
	led, err := ledger.Open(context.Background(), r.js)
	if err != nil {
		t.Fatal(err)
	}
	confirmed := func(id string) bool {
		rec, err := led.Lookup(context.Background(), id)
		return err == nil && rec != nil && !rec.ConfirmedAt.IsZero()
	}
	natstest.WaitFor(t, 10*time.Second, "three failed rounds", func() bool {
		st := r.emu.Stats()
		failed := 0
		for status, n := range st.BySigner[r.selfID] {
			if status >= 500 {
				failed += n - before.BySigner[r.selfID][status]
			}
		}
		return failed >= 3
	})
	for _, id := range []string{keys[0], res["leaked"].APIKeyID} {
		if confirmed(id) {
			t.Errorf("%s confirmed while Kalshi answered only 5xx", id)
		}
	}
	r.emu.SetFaults(emulator.Faults{})
	natstest.WaitFor(t, 10*time.Second, "both confirmed once Kalshi answers", func() bool {
		return confirmed(keys[0]) && confirmed(res["leaked"].APIKeyID)
	})
}
