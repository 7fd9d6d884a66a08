package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// scheduledFor reads what the ledger lists as scheduled for the key.
func (r *rig) scheduledFor(keyID string) []ledger.ScheduledRequest {
	r.t.Helper()
	ctx := context.Background()
	kl, err := ledger.Open(ctx, r.js)
	if err != nil {
		r.t.Fatal(err)
	}
	s, err := kl.Scheduled(ctx, keyID)
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

// deletesOf returns the DELETE calls of the key the emulator answered.
func (r *rig) deletesOf(keyID string) []emulator.Call {
	var out []emulator.Call
	for _, c := range r.emu.Calls() {
		if c.Endpoint == emulator.EndpointDeleteKey && c.KeyID == keyID {
			out = append(out, c)
		}
	}
	return out
}

// A request with not_before 6 s ahead: no DELETE before it, while it sits
// in the requests stream; the replica that saw it first is killed and the
// NATS server restarts meanwhile, and nothing is lost; the result is
// stored after not_before. It is redelivered every 500 ms while it waits,
// far more often than MaxDeliveries: waiting spends none of them.
func TestScheduledRequestWaitsInTheStream(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	cfg.ScheduleRecheck = 500 * time.Millisecond
	cfg.MaxDeliveries = 3

	// Replica A, with a connection of its own, sees the request first.
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	ncA := natstest.Connect(t, r.srv.URL())
	jsA, err := jetstream.New(ncA)
	if err != nil {
		t.Fatal(err)
	}
	a, stopA := r.launch(jsA, r.client, cfg)
	natstest.WaitFor(t, 10*time.Second, "replica A ready", func() bool { return a.Ready() == nil })

	notBefore := time.Now().Add(6 * time.Second).UTC().Truncate(time.Millisecond)
	r.publish("rotate-1", keys[0], "not_before", notBefore.Format(time.RFC3339Nano))
	natstest.WaitFor(t, 5*time.Second, "the schedule in the ledger", func() bool { return len(r.scheduledFor(keys[0])) == 1 })
	got := r.scheduledFor(keys[0])[0]
	if got.RequestID != "rotate-1" || !got.NotBefore.Equal(notBefore) || got.DueDelivery != 0 {
		t.Errorf("ledger lists %+v, want rotate-1 scheduled for %v, not yet due", got, notBefore)
	}

	if n := r.requestsLeft(); n != 1 {
		t.Errorf("%d requests in the stream while it waits, want the scheduled one", n)
	}

	// Replica B starts; A dies without a word; the NATS server restarts.
	_, _ = r.start(cfg)
	ncA.Close()
	_ = stopA()
	r.srv.Restart(t)
	var left uint64
	natstest.WaitFor(t, 10*time.Second, "the requests stream after the restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := r.js.Stream(ctx, "KEY_REVOKE_REQUESTS")
		if err != nil {
			return false
		}
		left = s.CachedInfo().State.Msgs
		return true
	})
	if left != 1 && time.Now().Before(notBefore) {
		t.Errorf("%d requests in the stream after the restart, before not_before; want the scheduled one", left)
	}

	res := r.waitResults(1, 30*time.Second)["rotate-1"]
	if res.Outcome != events.Revoked {
		t.Fatalf("result %+v, want revoked", res)
	}
	if !res.NotBefore.Equal(notBefore) {
		t.Errorf("result's not_before = %v, want %v", res.NotBefore, notBefore)
	}
	if res.CompletedAt.Before(notBefore) {
		t.Errorf("result completed at %v, before not_before %v", res.CompletedAt, notBefore)
	}
	if res.Deliveries > 1 {
		t.Errorf("deliveries = %d, want 1: only those since not_before count", res.Deliveries)
	}
	deletes := r.deletesOf(keys[0])
	if len(deletes) == 0 {
		t.Fatal("no DELETE reached the emulator")
	}
	for _, c := range deletes {
		if c.Signed.Before(notBefore) {
			t.Errorf("DELETE signed at %v, before not_before %v", c.Signed, notBefore)
		}
	}
	t.Logf("first DELETE signed %v after not_before", deletes[0].Signed.Sub(notBefore))
	if r.emu.HasKey(keys[0]) {
		t.Error("the key is still there")
	}
	r.waitQueueEmpty()
	if s := r.scheduledFor(keys[0]); len(s) != 1 || s[0].DueDelivery < 2 {
		t.Errorf("ledger lists %+v, want rotate-1 due from a later delivery", s)
	}
}

// The retry budget of a scheduled request starts at its not_before: with a
// budget shorter than the wait, a Kalshi that fails at first is retried
// after not_before until it answers.
func TestScheduledRequestBudgetStartsAtNotBefore(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	cfg.MaxRetry = 2 * time.Second
	r.start(cfg)

	notBefore := time.Now().Add(4 * time.Second).UTC()
	r.publish("later", keys[0], "not_before", notBefore.Format(time.RFC3339Nano))
	natstest.WaitFor(t, 5*time.Second, "the schedule in the ledger", func() bool { return len(r.scheduledFor(keys[0])) == 1 })
	r.emu.SetFaults(emulator.Faults{Seed: 1, ServerError: 1})
	natstest.WaitFor(t, 15*time.Second, "two failed calls after not_before", func() bool {
		n := 0
		for _, c := range r.emu.Calls() {
			if c.Status >= 500 && !c.Signed.Before(notBefore) {
				n++
			}
		}
		return n >= 2
	})
	r.emu.SetFaults(emulator.Faults{})
	res := r.waitResults(1, 15*time.Second)["later"]
	if res.Outcome != events.Revoked {
		t.Fatalf("result %+v, want revoked: the budget runs from not_before", res)
	}
}

// A not_before too far ahead, or not a time, is rejected as invalid;
// nothing is deleted. Too far is beyond REVOKER_MAX_SCHEDULE, or beyond
// what the requests stream keeps (its max age, less the retry budget and
// an hour).
func TestScheduledRequestRejections(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(3)
	cfg := r.config()
	cfg.MaxSchedule = time.Hour
	_, stop := r.start(cfg)

	r.publish("too-far", keys[0], "not_before", time.Now().Add(2*time.Hour).UTC().Format(time.RFC3339))
	r.publish("not-a-time", keys[1], "not_before", "tomorrow at noon")
	byID := r.waitResults(2, 15*time.Second)
	for id, want := range map[string]string{
		"too-far":    "after the request was stored; at most 1h ahead is accepted (REVOKER_MAX_SCHEDULE)",
		"not-a-time": `not_before "tomorrow at noon" is not an RFC 3339 time`,
	} {
		res := byID[id]
		if res.Outcome != events.Rejected || res.Error == nil || res.Error.Code != events.CodeInvalidRequest || !strings.Contains(res.Error.Message, want) {
			t.Errorf("%s: %+v, want rejected invalid_request saying %q", id, res, want)
		}
	}

	// A requests stream that keeps requests 7 days, as an earlier revoker
	// provisioned it: 10 days ahead is refused although
	// REVOKER_MAX_SCHEDULE allows 30.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	sc := provision.RequestsStreamConfig(cfg.Provisioning())
	sc.MaxAge = 7 * 24 * time.Hour
	if _, err := r.js.UpdateStream(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	cfg.MaxSchedule = 30 * 24 * time.Hour
	r.start(cfg)
	r.publish("beyond-the-stream", keys[2], "not_before", time.Now().Add(10*24*time.Hour).UTC().Format(time.RFC3339))
	res := r.waitResults(3, 15*time.Second)["beyond-the-stream"]
	if want := "the stream KEY_REVOKE_REQUESTS keeps a request 7 days"; res.Outcome != events.Rejected || res.Error == nil || !strings.Contains(res.Error.Message, want) {
		t.Errorf("beyond-the-stream: %+v, want rejected saying %q", res, want)
	}
	for _, k := range keys {
		if !r.emu.HasKey(k) {
			t.Errorf("key %s was deleted", k)
		}
	}
}

// As provisioned, the requests stream keeps a request a week after the
// latest not_before accepted.
func TestRequestsStreamKeepsScheduledRequests(t *testing.T) {
	for _, max := range []time.Duration{0, time.Hour} {
		cfg := worker.Config{MaxSchedule: max}
		want := 7*24*time.Hour + max
		if max == 0 {
			want = 37 * 24 * time.Hour
		}
		if got := provision.RequestsStreamConfig(cfg.Provisioning()).MaxAge; got != want {
			t.Errorf("MaxSchedule %v: the requests stream keeps a request %v, want %v", max, got, want)
		}
	}
}

// A not_before at or before the time the request was stored changes
// nothing: the request is carried out at once, nothing is scheduled.
func TestNotBeforeInThePastActsAtOnce(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	r.start(r.config())
	r.publish("past", keys[0], "not_before", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	if res := r.waitResults(1, 15*time.Second)["past"]; res.Outcome != events.Revoked || res.Deliveries != 1 {
		t.Errorf("result %+v, want revoked on the first delivery", res)
	}
	if s := r.scheduledFor(keys[0]); len(s) != 0 {
		t.Errorf("ledger lists %+v as scheduled, want nothing", s)
	}
}

// A waiting request keeps one of the consumer's ack-pending slots, and a
// consumer at its max ack pending delivers nothing more: scheduled
// requests may hold at most half, so a request that acts now still gets
// through when more are scheduled.
func TestScheduledRequestsLeaveRoomForTheUrgent(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(5)
	cfg := r.config()
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	cc := provision.ConsumerConfig(cfg.Provisioning())
	cc.MaxAckPending = 4
	if _, err := r.js.UpdateConsumer(context.Background(), "KEY_REVOKE_REQUESTS", cc); err != nil {
		t.Fatal(err)
	}
	r.start(cfg)

	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for i, k := range keys[:4] {
		id := fmt.Sprintf("rotate-%d", i)
		r.publish(id, k, "not_before", later)
		natstest.WaitFor(t, 10*time.Second, id+" scheduled or refused", func() bool {
			for _, res := range r.stored() {
				if res.RequestID == id {
					return true
				}
			}
			return len(r.scheduledFor(k)) == 1
		})
	}
	rejected := r.waitResults(2, 10*time.Second)
	for _, id := range []string{"rotate-2", "rotate-3"} {
		if res := rejected[id]; res.Outcome != events.Rejected || res.Error == nil ||
			!strings.Contains(res.Error.Message, "holds 3 unacknowledged requests of at most 4") {
			t.Errorf("%s: %+v, want refused: the consumer's slots are half taken", id, res)
		}
	}
	r.publish("urgent", keys[4])
	if res := r.waitResults(3, 15*time.Second)["urgent"]; res.Outcome != events.Revoked {
		t.Errorf("urgent: %+v, want revoked", res)
	}
	for _, k := range keys[:2] {
		if s := r.scheduledFor(k); len(s) != 1 || !r.emu.HasKey(k) {
			t.Errorf("key %s: scheduled %+v, want waiting", k, s)
		}
	}
}

// A leaked key's request may be scheduled too: it waits under the leaked
// key's fingerprint in the ledger, and no call is signed with the PEM (nor
// any DELETE sent) before its not_before.
func TestScheduledLeakedKeyRequest(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(1)
	r.start(r.config())
	notBefore := time.Now().Add(2 * time.Second).UTC()
	body, _ := json.Marshal(map[string]string{"id": "leak-later", "leaked_private_key": string(pems[0]), "not_before": notBefore.Format(time.RFC3339Nano)})
	r.publishRaw("leak-later", body)
	natstest.WaitFor(t, 5*time.Second, "the schedule under the fingerprint", func() bool {
		kv, err := r.js.KeyValue(context.Background(), ledger.Bucket)
		if err != nil {
			return false
		}
		_, err = kv.Get(context.Background(), "leaked."+strings.TrimPrefix(fingerprintOf(t, pems[0]), "sha256:")+".scheduled")
		return err == nil
	})
	res := r.waitResults(1, 15*time.Second)["leak-later"]
	if res.Outcome != events.Revoked || res.APIKeyID != ids[0] || !res.NotBefore.Equal(notBefore) {
		t.Fatalf("result %+v, want %s revoked, not_before %v", res, ids[0], notBefore)
	}
	for _, c := range r.emu.Calls() {
		if c.Signer == ids[0] && c.Signed.Before(notBefore) || c.KeyID == ids[0] && c.Signed.Before(notBefore) {
			t.Errorf("%s signed at %v by %s, before not_before %v", c.Endpoint, c.Signed, c.Signer, notBefore)
		}
	}
}
