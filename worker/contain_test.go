package worker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/contain"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// publishCancel sends a request for keyID with cancel_orders set as given
// (omitted when nil).
func (r *rig) publishCancel(id, keyID string, cancel *bool) {
	r.t.Helper()
	body := map[string]any{"id": id, "api_key_id": keyID}
	if cancel != nil {
		body["cancel_orders"] = *cancel
	}
	data, _ := json.Marshal(body)
	r.publishRaw(id, data)
}

var yes = func() *bool { b := true; return &b }()

// cancelCalls are the emulator's answered DELETE /portfolio/events/orders.
func cancelCalls(emu *emulator.Emulator) []emulator.Call {
	var out []emulator.Call
	for _, c := range emu.Calls() {
		if c.Endpoint == emulator.EndpointCancelOrders {
			out = append(out, c)
		}
	}
	return out
}

// deleteAnswered is when the emulator answered the 204 that deleted keyID.
func deleteAnswered(t *testing.T, emu *emulator.Emulator, keyID string) time.Time {
	t.Helper()
	for _, c := range emu.Calls() {
		if c.Endpoint == emulator.EndpointDeleteKey && c.KeyID == keyID && c.Status == 204 {
			return c.Answered
		}
	}
	t.Fatalf("no 204 DELETE of %s", keyID)
	return time.Time{}
}

// checkBlastRadius checks that res carries the key as the account listed it.
func checkBlastRadius(t *testing.T, res events.Result, listed kalshi.APIKey) {
	t.Helper()
	if res.KeyName != listed.Name || !slices.Equal(res.KeyScopes, listed.Scopes) || res.KeyScopes == nil ||
		(res.KeySubaccount == nil) != (listed.Subaccount == nil) ||
		res.KeySubaccount != nil && *res.KeySubaccount != *listed.Subaccount {
		t.Errorf("blast radius %q %q %v, want the listing's %+v", res.KeyName, res.KeyScopes, res.KeySubaccount, listed)
	}
}

// listing is the account's keys by ID, as Kalshi lists them now.
func (r *rig) listing() map[string]kalshi.APIKey {
	r.t.Helper()
	keys, err := r.client.ListAPIKeys(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	m := make(map[string]kalshi.APIKey, len(keys))
	for _, k := range keys {
		m[k.ID] = k
	}
	return m
}

// A subaccount-restricted key with orders in its own and another
// subaccount: revoked, its subaccount's orders cancelled after the DELETE,
// the other's intact; without cancel_orders nothing is cancelled; the
// blast radius equals the listing and outlives the key.
func TestCancelOrdersOfARestrictedKey(t *testing.T) {
	r := newRig(t)
	bot := r.emu.AddSubaccountKey("trading bot", &emulatortest.OtherKey().PublicKey, 3, "read", "write::trade")
	quiet := r.emu.AddSubaccountKey("quiet bot", &emulatortest.OtherKey().PublicKey, 5, "read")
	r.emu.AddOrders(3, 4)
	r.emu.AddOrders(5, 2)
	r.emu.AddOrders(0, 1)
	listed := r.listing()
	cfg := r.config()
	cfg.CancelOrders = contain.Subaccount
	r.start(cfg)

	r.publishCancel("contain", bot, yes)
	r.publishCancel("no-cancel", quiet, nil)
	got := r.waitResults(2, 20*time.Second)
	res := got["contain"]
	if res.Outcome != events.Revoked || res.Containment == nil || res.Containment.Error != nil || res.Containment.OrdersCancelled != 4 {
		t.Fatalf("contain: %s %+v, want revoked with 4 orders cancelled", res.Outcome, res.Containment)
	}
	if n3, n5, n0 := r.emu.RestingOrders(3), r.emu.RestingOrders(5), r.emu.RestingOrders(0); n3 != 0 || n5 != 2 || n0 != 1 {
		t.Fatalf("resting orders: subaccount 3 %d, 5 %d, 0 %d; want 0, 2, 1", n3, n5, n0)
	}
	calls := cancelCalls(r.emu)
	if len(calls) != 1 || calls[0].Status != 200 {
		t.Fatalf("cancel calls %+v, want one answered 200", calls)
	}
	if del := deleteAnswered(t, r.emu, bot); calls[0].Arrived.Before(del) {
		t.Errorf("the cancel arrived at %v, before the DELETE was answered at %v", calls[0].Arrived, del)
	}
	checkBlastRadius(t, res, listed[bot])

	quietRes := got["no-cancel"]
	if quietRes.Outcome != events.Revoked || quietRes.Containment != nil {
		t.Fatalf("no-cancel: %s %+v, want revoked without containment", quietRes.Outcome, quietRes.Containment)
	}
	checkBlastRadius(t, quietRes, listed[quiet])
	if quietRes.KeySubaccount == nil || *quietRes.KeySubaccount != 5 {
		t.Errorf("no-cancel: key_subaccount %v, want 5", quietRes.KeySubaccount)
	}

	// The key is gone from the listing; a repeat of the request reports
	// the same blast radius and containment from the ledger, and cancels
	// nothing again.
	if _, still := r.listing()[bot]; still {
		t.Fatal("the key is still listed")
	}
	data, _ := json.Marshal(map[string]any{"id": "contain", "api_key_id": bot, "cancel_orders": true})
	r.publishRaw("contain-again", data)
	natstest.WaitFor(t, 10*time.Second, "the repeat settled", func() bool { return r.requestsLeft() == 0 })
	again := r.waitResults(2, 5*time.Second)["contain"]
	checkBlastRadius(t, again, listed[bot])
	if again.Containment == nil || again.Containment.OrdersCancelled != 4 || len(cancelCalls(r.emu)) != 1 {
		t.Errorf("the repeat: %+v after %d cancels, want the recorded containment and one cancel", again.Containment, len(cancelCalls(r.emu)))
	}
}

// Under REVOKER_CANCEL_ORDERS=off (the default) cancel_orders is refused:
// the key is revoked, nothing is cancelled.
func TestCancelOrdersOff(t *testing.T) {
	r := newRig(t)
	bot := r.emu.AddSubaccountKey("bot", &emulatortest.OtherKey().PublicKey, 3, "read", "write")
	r.emu.AddOrders(3, 2)
	r.start(r.config())
	r.publishCancel("off", bot, yes)
	res := r.waitResults(1, 20*time.Second)["off"]
	if res.Outcome != events.Revoked || res.Containment == nil || res.Containment.Error == nil ||
		res.Containment.Error.Code != events.CodeCancelOrdersNotAllowed {
		t.Fatalf("off: %s %+v, want revoked with cancel_orders_not_allowed", res.Outcome, res.Containment)
	}
	if r.emu.RestingOrders(3) != 2 || len(cancelCalls(r.emu)) != 0 {
		t.Fatalf("off cancelled orders: %d left, %d cancel calls", r.emu.RestingOrders(3), len(cancelCalls(r.emu)))
	}
}

// An unrestricted key cancels every order of the member only under all;
// under subaccount it is refused and nothing is cancelled.
func TestCancelOrdersOfAnUnrestrictedKey(t *testing.T) {
	for _, tc := range []struct {
		scope     contain.Scope
		cancelled int
	}{{contain.Subaccount, 0}, {contain.All, 5}} {
		t.Run(string(tc.scope), func(t *testing.T) {
			r := newRig(t)
			key := r.emu.AddKey("admin bot", &emulatortest.OtherKey().PublicKey, "read", "write")
			r.emu.AddOrders(0, 2)
			r.emu.AddOrders(7, 3)
			listed := r.listing()
			cfg := r.config()
			cfg.CancelOrders = tc.scope
			r.start(cfg)
			r.publishCancel("wide", key, yes)
			res := r.waitResults(1, 20*time.Second)["wide"]
			if res.Outcome != events.Revoked || res.Containment == nil {
				t.Fatalf("%s %+v", res.Outcome, res.Containment)
			}
			checkBlastRadius(t, res, listed[key])
			if res.KeySubaccount != nil {
				t.Errorf("key_subaccount %d for an unrestricted key", *res.KeySubaccount)
			}
			switch tc.scope {
			case contain.All:
				if res.Containment.Error != nil || res.Containment.OrdersCancelled != 5 || r.emu.RestingOrders(-1) != 0 {
					t.Errorf("all: %+v, %d left; want 5 cancelled", res.Containment, r.emu.RestingOrders(-1))
				}
			default:
				if res.Containment.Error == nil || res.Containment.Error.Code != events.CodeCancelOrdersNotAllowed ||
					r.emu.RestingOrders(-1) != 5 || len(cancelCalls(r.emu)) != 0 {
					t.Errorf("subaccount: %+v, %d left; want not allowed, nothing cancelled", res.Containment, r.emu.RestingOrders(-1))
				}
			}
		})
	}
}

// A kill between the DELETE and the cancel: the redelivery cancels once.
func TestCancelOrdersAfterAKill(t *testing.T) {
	r := newRig(t)
	bot := r.emu.AddSubaccountKey("bot", &emulatortest.OtherKey().PublicKey, 9, "write::trade")
	r.emu.AddOrders(9, 3)
	listed := r.listing()
	cfg := r.config()
	cfg.AckWait = 3 * time.Second
	cfg.CancelOrders = contain.Subaccount
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	// The first worker deletes the key and dies as it is about to cancel.
	nc := natstest.Connect(t, r.srv.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	dying := &dyingBeforeCancel{Kalshi: r.client, reached: make(chan struct{})}
	dcfg := cfg
	dcfg.DrainTimeout = 100 * time.Millisecond
	w, _ := r.launch(js, dying, dcfg)
	natstest.WaitFor(t, 10*time.Second, "the dying worker ready", func() bool { return w.Ready() == nil })
	r.publishCancel("killed", bot, yes)
	select {
	case <-dying.reached:
	case <-time.After(20 * time.Second):
		t.Fatal("the dying worker never came to the cancel")
	}
	nc.Close()
	if r.emu.HasKey(bot) || r.emu.RestingOrders(9) != 3 {
		t.Fatalf("before the redelivery: key present %v, %d orders; want deleted, 3", r.emu.HasKey(bot), r.emu.RestingOrders(9))
	}

	r.start(cfg)
	res := r.waitResults(1, 20*time.Second)["killed"]
	if res.Outcome != events.Revoked || res.Deliveries < 2 || res.Containment == nil || res.Containment.OrdersCancelled != 3 {
		t.Fatalf("got %s after %d deliveries, %+v; want revoked, 3 cancelled, on a redelivery", res.Outcome, res.Deliveries, res.Containment)
	}
	if calls := cancelCalls(r.emu); len(calls) != 1 || r.emu.RestingOrders(9) != 0 {
		t.Fatalf("%d cancel calls, %d orders left; want one, none", len(calls), r.emu.RestingOrders(9))
	}
	checkBlastRadius(t, res, listed[bot])
}

// dyingBeforeCancel deletes keys, then never sends a cancel: its worker
// "dies" between the DELETE and the cancel.
type dyingBeforeCancel struct {
	worker.Kalshi
	reached chan struct{}
	once    atomic.Bool
}

func (d *dyingBeforeCancel) CancelOrders(ctx context.Context, _ *int) (int, error) {
	if d.once.CompareAndSwap(false, true) {
		close(d.reached)
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// A leaked key's request gets the blast radius of the key its PEM belongs
// to, from the search's listing, and cancels that key's subaccount's orders.
func TestLeakedKeyBlastRadiusAndCancel(t *testing.T) {
	r := newRig(t)
	signer, pemKey := emulatortest.NewKeyPEM(t, emulatortest.PKCS8Ed25519)
	r.emu.AddKey("decoy", &emulatortest.OtherKey().PublicKey, "read")
	leaky := r.emu.AddSubaccountKey("leaky bot", signer.Public(), 12, "read", "write")
	r.emu.AddOrders(12, 3)
	r.emu.AddOrders(11, 1)
	listed := r.listing()
	cfg := r.config()
	cfg.CancelOrders = contain.Subaccount
	r.start(cfg)
	body, _ := json.Marshal(map[string]any{"id": "leak", "leaked_private_key": string(pemKey), "cancel_orders": true})
	r.publishRaw("leak", body)
	res := r.waitResults(1, 20*time.Second)["leak"]
	if res.Outcome != events.Revoked || res.APIKeyID != leaky || res.Containment == nil || res.Containment.OrdersCancelled != 3 {
		t.Fatalf("%s %s %+v, want %s revoked, 3 cancelled", res.APIKeyID, res.Outcome, res.Containment, leaky)
	}
	checkBlastRadius(t, res, listed[leaky])
	if r.emu.RestingOrders(11) != 1 {
		t.Error("another subaccount's order was cancelled")
	}
}

// What an earlier delivery recorded of its cancel decides the redelivery's:
// a finished cancel is not sent again (its count is reported), one recorded
// as started but not answered is sent.
func TestCancelRecordedInTheLedger(t *testing.T) {
	for _, tc := range []struct {
		name      string
		record    map[string]any
		cancelled int // reported
		calls     int // cancel calls sent now
	}{
		{"finished", map[string]any{"started_at": time.Now().Add(-time.Hour), "done": true, "cancelled": 7}, 7, 0},
		{"started", map[string]any{"started_at": time.Now().Add(-time.Hour)}, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			bot := r.emu.AddSubaccountKey("bot", &emulatortest.OtherKey().PublicKey, 3, "write")
			r.emu.AddOrders(3, 2)
			cfg := r.config()
			cfg.CancelOrders = contain.Subaccount
			if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
				t.Fatal(err)
			}
			// An earlier message (sequence 99) of the request, long gone,
			// left its claim with the cancel record.
			kv, err := r.js.KeyValue(context.Background(), ledger.Bucket)
			if err != nil {
				t.Fatal(err)
			}
			e, _ := json.Marshal(map[string]any{"key": bot, "seq": 99, "claimed_at": time.Now().Add(-time.Hour),
				"attempted": true, "cancel": tc.record})
			if _, err := kv.Put(context.Background(), "req."+base64.RawURLEncoding.EncodeToString([]byte("again")), e); err != nil {
				t.Fatal(err)
			}
			r.start(cfg)
			r.publishCancel("again", bot, yes)
			res := r.waitResults(1, 20*time.Second)["again"]
			if res.Outcome != events.Revoked || res.Containment == nil || res.Containment.OrdersCancelled != tc.cancelled {
				t.Fatalf("%s %+v, want revoked with %d cancelled", res.Outcome, res.Containment, tc.cancelled)
			}
			if n := len(cancelCalls(r.emu)); n != tc.calls {
				t.Errorf("%d cancel calls, want %d", n, tc.calls)
			}
		})
	}
}

// The cancel spends the cancel budget (the write bucket), not the delete
// budget: with room for one cancel, the second request's key is revoked
// but its cancel runs out of retry budget waiting, and cancels nothing.
func TestCancelSpendsTheCancelBudget(t *testing.T) {
	r := newRig(t)
	a := r.emu.AddSubaccountKey("a", &emulatortest.OtherKey().PublicKey, 1, "write")
	b := r.emu.AddSubaccountKey("b", &emulatortest.OtherKey().PublicKey, 2, "write")
	r.emu.AddOrders(1, 1)
	r.emu.AddOrders(2, 1)
	cfg := r.config()
	cfg.CancelOrders = contain.Subaccount
	cfg.MaxRetry = 3 * time.Second
	cfg.Cancels = budget.NewLimiter(0.0001, 1) // one cancel, then one every few hours
	r.start(cfg)
	r.publishCancel("a", a, yes)
	r.waitResults(1, 20*time.Second)
	r.publishCancel("b", b, yes)
	got := r.waitResults(2, 20*time.Second)
	if res := got["a"]; res.Containment == nil || res.Containment.OrdersCancelled != 1 {
		t.Errorf("a: %+v, want 1 cancelled", res.Containment)
	}
	res := got["b"]
	if res.Outcome != events.Revoked || res.Containment == nil || res.Containment.Error == nil ||
		res.Containment.Error.Code != events.CodeRetriesExhausted {
		t.Errorf("b: %s %+v, want revoked, containment retries_exhausted", res.Outcome, res.Containment)
	}
	if r.emu.RestingOrders(2) != 1 || len(cancelCalls(r.emu)) != 1 {
		t.Errorf("b's order cancelled anyway: %d left, %d cancel calls", r.emu.RestingOrders(2), len(cancelCalls(r.emu)))
	}
}
