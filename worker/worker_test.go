package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// denySource is a request policy for tests: it refuses one source.
type denySource string

func (d denySource) AuthorizeAt(_ map[string][]string, _ []byte, req events.Request, _ time.Time) error {
	if req.Source == string(d) {
		return errors.New("source " + req.Source + " is not trusted")
	}
	return nil
}

func TestEveryOutcomeFromRealRequests(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(2)
	cfg := r.config()
	cfg.ProtectedKeys = []string{keys[1]}
	cfg.Policy = denySource("evil")
	_, stop := r.start(cfg)

	r.publish("revoke", keys[0])
	r.publish("gone", "b0b0b0b0-0000-4000-8000-000000000000")
	r.publishRaw("garbage", []byte(`{"api_key_id": 42`))
	r.publish("bad-chars", "../../account")
	r.publish("self", r.selfID)
	r.publish("protected", keys[1])
	r.publish("untrusted", keys[0], "source", "evil")

	got := r.waitResults(7, 20*time.Second)
	want := map[string]struct {
		outcome events.Outcome
		code    events.Code
		status  int
	}{
		"revoke":    {events.Revoked, "", 204},
		"gone":      {events.AlreadyRevoked, "", 404},
		"garbage":   {events.Rejected, events.CodeInvalidRequest, 0},
		"bad-chars": {events.Rejected, events.CodeInvalidRequest, 0},
		"self":      {events.Rejected, events.CodeSelfRevocationRefused, 0},
		"protected": {events.Rejected, events.CodeProtectedKey, 0},
		"untrusted": {events.Rejected, events.CodeUnauthorizedRequest, 0},
	}
	for id, w := range want {
		res, ok := got[id]
		if !ok {
			t.Errorf("%s: no result", id)
			continue
		}
		code := events.Code("")
		if res.Error != nil {
			code = res.Error.Code
			if res.Error.Message == "" {
				t.Errorf("%s: error without a message", id)
			}
		}
		if res.Outcome != w.outcome || code != w.code || res.HTTPStatus != w.status {
			t.Errorf("%s: got %s/%q/%d, want %s/%q/%d", id, res.Outcome, code, res.HTTPStatus, w.outcome, w.code, w.status)
		}
		if res.Deliveries != 1 {
			t.Errorf("%s: deliveries %d, want 1", id, res.Deliveries)
		}
	}
	if r.emu.HasKey(keys[0]) {
		t.Error("the revoked key still exists")
	}
	if !r.emu.HasKey(keys[1]) || !r.emu.HasKey(r.selfID) {
		t.Error("a protected key or the worker's own key was deleted")
	}
	if n := r.emu.Stats().DeleteAttempts[r.selfID] + r.emu.Stats().DeleteAttempts[keys[1]]; n != 0 {
		t.Errorf("%d DELETEs reached Kalshi for refused keys", n)
	}
	r.waitQueueEmpty()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestKalshiBadRequestIsRejected(t *testing.T) {
	r := newRig(t)
	// The emulator, like Kalshi, answers 400 to a key ID that is no UUID.
	_, _ = r.start(r.config())
	r.publish("bad", "k1")
	res := r.waitResults(1, 10*time.Second)["bad"]
	if res.Outcome != events.Rejected || res.Error == nil || res.Error.Code != events.CodeKalshiBadRequest || res.HTTPStatus != 400 {
		t.Fatalf("got %+v, want rejected/kalshi_bad_request/400", res)
	}
	if n := r.emu.Stats().DeleteAttempts["k1"]; n != 1 {
		t.Errorf("a 400 was retried: %d attempts", n)
	}
}

// A credential refused after it was accepted (revoked or rotated
// meanwhile) fails the request in hand after one attempt, with no retry
// storm, and closes the gate until Kalshi accepts it again.
func TestUnauthorizedFailsWithoutRetryStorm(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(2)
	w, _ := r.start(r.config())
	r.emu.RemoveKey(r.selfID)
	r.publish("r1", keys[0])
	res := r.waitResults(1, 10*time.Second)["r1"]
	if res.Outcome != events.Failed || res.Error == nil || res.Error.Code != events.CodeKalshiUnauthorized || res.Attempts != 1 {
		t.Errorf("got %+v, want failed/kalshi_unauthorized after 1 attempt", res)
	}
	natstest.WaitFor(t, 10*time.Second, "not ready", func() bool { return w.Ready() != nil })
	r.waitNoPull()
	r.publish("r2", keys[1])
	if r.requestsLeft() != 1 || r.emu.Stats().DeleteAttempts[keys[1]] != 0 {
		t.Errorf("a request was taken after Kalshi refused the credential")
	}
}

func TestStormsEndRevoked(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(20)
	r.emu.SetFaults(emulator.Faults{Seed: 7, ServerError: 0.3, TooMany: 0.2, RetryAfter: 0, LostResponse: 0.1})
	_, _ = r.start(r.config())
	for i, k := range keys {
		r.publish(k, k)
		_ = i
	}
	got := r.waitResults(20, 60*time.Second)
	retried := 0
	for _, k := range keys {
		res := got[k]
		if !res.Outcome.Succeeded() {
			t.Errorf("%s: %s %+v, want revoked or already_revoked", k, res.Outcome, res.Error)
		}
		if res.Attempts > 1 {
			retried++
		}
		if r.emu.HasKey(k) {
			t.Errorf("%s still exists", k)
		}
	}
	if retried == 0 {
		t.Error("no request needed a retry: the faults were not injected")
	}
	r.waitQueueEmpty()
}

func TestRetryAfterIsHonoured(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	_, _ = r.start(r.config())
	r.emu.SetFaults(emulator.Faults{Seed: 1, TooMany: 1, RetryAfter: time.Second})
	r.publish("slow", keys[0])
	natstest.WaitFor(t, 10*time.Second, "a 429", func() bool { return r.emu.Stats().TooMany > 0 })
	first := time.Now()
	r.emu.SetFaults(emulator.Faults{})
	res := r.waitResults(1, 10*time.Second)["slow"]
	if res.Outcome != events.Revoked {
		t.Fatalf("got %s, want revoked", res.Outcome)
	}
	// The retry may not come before the second the 429 asked for.
	if elapsed := time.Since(first); elapsed < 900*time.Millisecond {
		t.Errorf("retried %v after a 429 with Retry-After: 1", elapsed)
	}
	// The 429 may have answered the listing taken before the first DELETE.
	if st := r.emu.Stats(); st.TooMany == 0 || res.Attempts < 1 {
		t.Errorf("%d 429s, %d DELETE attempts; want a 429, then the DELETE", st.TooMany, res.Attempts)
	}
}

func TestRetriesExhausted(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	cfg.MaxRetry = time.Second
	_, _ = r.start(cfg)
	r.emu.SetFaults(emulator.Faults{Seed: 1, ServerError: 1})
	before := r.emu.Stats().Requests
	r.publish("doomed", keys[0])
	res := r.waitResults(1, 10*time.Second)["doomed"]
	if res.Outcome != events.Failed || res.Error == nil || res.Error.Code != events.CodeRetriesExhausted {
		t.Fatalf("got %+v, want failed/retries_exhausted", res)
	}
	// The listing before the first DELETE gets the 5xx too, and is retried
	// within the same budget.
	if calls := r.emu.Stats().Requests - before; calls < 3 {
		t.Errorf("only %d calls in a 1s budget with 5ms backoff", calls)
	}
	r.waitQueueEmpty()
}

func TestMaxDeliveries(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	cfg.MaxDeliveries = 2
	ctx := context.Background()
	if err := provision.Ensure(ctx, r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	r.publish("poison", keys[0])
	// A worker that dies holding the request: delivered once, never acked.
	cons, err := r.js.Consumer(ctx, "KEY_REVOKE_REQUESTS", "revoker")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		_ = m.NakWithDelay(0)
	}
	_, _ = r.start(cfg)
	res := r.waitResults(1, 10*time.Second)["poison"]
	if res.Outcome != events.Failed || res.Error == nil || res.Error.Code != events.CodeMaxDeliveries || res.Deliveries != 2 {
		t.Fatalf("got %+v, want failed/max_deliveries on delivery 2", res)
	}
	if !r.emu.HasKey(keys[0]) || r.emu.Stats().DeleteAttempts[keys[0]] != 0 {
		t.Error("the last delivery still called Kalshi")
	}
	r.waitQueueEmpty()
}

func TestDuplicateRequestDeletesOnce(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	_, _ = r.start(r.config())
	r.publish("dup", keys[0])
	r.publish("dup", keys[0])
	got := r.waitResults(1, 10*time.Second)
	if got["dup"].Outcome != events.Revoked {
		t.Fatalf("got %+v", got["dup"])
	}
	r.waitQueueEmpty()
	if n := r.emu.Stats().DeleteAttempts[keys[0]]; n != 1 {
		t.Errorf("%d DELETEs for one request published twice", n)
	}
}

func TestRedeliveryAfterStoredResultAddsNoResult(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	// A worker stored this request's result, then died before its ack.
	stored := events.Result{RequestID: "once", APIKeyID: keys[0], Outcome: events.Revoked, Attempts: 1, Deliveries: 1,
		HTTPStatus: 204, ReceivedAt: time.Now(), CompletedAt: time.Now()}
	doc, err := stored.MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("keys.revoke.results.revoked")
	m.Data = doc
	m.Header.Set(jetstream.MsgIDHeader, "once")
	if _, err := r.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	r.publish("once", keys[0])
	_, _ = r.start(cfg)
	r.waitQueueEmpty()
	if got := r.results(); len(got) != 1 {
		t.Fatalf("%d results for one request, want 1", len(got))
	}
}

func TestResultsStreamUnavailable(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(5)
	cfg := r.config()
	ctx := context.Background()
	w, _ := r.start(cfg)
	natstest.WaitFor(t, 10*time.Second, "the worker bound", func() bool { return w.Ready() == nil })
	if err := r.js.DeleteStream(ctx, "KEY_REVOKE_RESULTS"); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		r.publish(k, k)
	}
	// Every key is deleted, but no result can be stored: nothing is acked.
	natstest.WaitFor(t, 10*time.Second, "all deletes", func() bool { return len(r.emu.Stats().Deletes) == 5 })
	natstest.WaitFor(t, 10*time.Second, "a redelivery", func() bool {
		info, err := r.js.Consumer(ctx, "KEY_REVOKE_REQUESTS", "revoker")
		if err != nil {
			return false
		}
		ci, err := info.Info(ctx)
		return err == nil && ci.NumRedelivered > 0
	})
	if n := r.requestsLeft(); n != 5 {
		t.Fatalf("%d requests left in the queue while results cannot be stored, want 5", n)
	}
	// The stream comes back.
	if _, err := r.js.CreateStream(ctx, provision.ResultsStreamConfig(cfg.Provisioning())); err != nil {
		t.Fatal(err)
	}
	got := r.waitResults(5, 30*time.Second)
	for _, k := range keys {
		if got[k].Outcome != events.Revoked {
			t.Errorf("%s: %s, want revoked (the outcome decided before the outage)", k, got[k].Outcome)
		}
		if got[k].Deliveries < 2 {
			t.Errorf("%s: deliveries %d, want a redelivery", k, got[k].Deliveries)
		}
	}
	r.waitQueueEmpty()
	for _, k := range keys {
		if n := r.emu.Stats().Deletes[k]; n != 1 {
			t.Errorf("%s deleted %d times", k, n)
		}
	}
}

func TestShutdownMidBatchLosesNothing(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(40)
	r.emu.SetFaults(emulator.Faults{Latency: 30 * time.Millisecond, ServerError: 0.2, Seed: 3})
	cfg := r.config()
	cfg.Concurrency = 4
	_, stop := r.start(cfg)
	for _, k := range keys {
		r.publish(k, k)
	}
	natstest.WaitFor(t, 20*time.Second, "some results", func() bool { return len(r.results()) >= 5 })
	if err := stop(); err != nil {
		t.Fatalf("Run after cancellation: %v", err)
	}
	if n := len(r.results()); n >= 40 {
		t.Fatalf("all %d done before shutdown; the test proves nothing", n)
	}
	_, _ = r.start(cfg)
	got := r.waitResults(40, 60*time.Second)
	for _, k := range keys {
		if !got[k].Outcome.Succeeded() {
			t.Errorf("%s: %s", k, got[k].Outcome)
		}
		if r.emu.HasKey(k) {
			t.Errorf("%s still exists", k)
		}
	}
	r.waitQueueEmpty()
}

func TestLostConsumerIsRecreated(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(2)
	cfg := r.config()
	w, _ := r.start(cfg)
	r.publish("before", keys[0])
	r.waitResults(1, 10*time.Second)

	ctx := context.Background()
	r.srv.Shutdown()
	// While the worker is disconnected, the consumer goes away.
	r.srv.Restart(t)
	// The test's own connection reconnects too; until then the delete times out.
	natstest.WaitFor(t, 20*time.Second, "the consumer deleted", func() bool {
		err := r.js.DeleteConsumer(ctx, "KEY_REVOKE_REQUESTS", "revoker")
		return err == nil || errors.Is(err, jetstream.ErrConsumerNotFound)
	})
	r.publish("after", keys[1])
	got := r.waitResults(2, 30*time.Second)
	if got["after"].Outcome != events.Revoked {
		t.Fatalf("after the consumer was lost: %+v", got["after"])
	}
	natstest.WaitFor(t, 10*time.Second, "ready again", func() bool { return w.Ready() == nil })
}

func TestSameKeyTwiceAtOnce(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	r.emu.SetFaults(emulator.Faults{Latency: 50 * time.Millisecond})
	_, _ = r.start(r.config())
	r.publish("first", keys[0])
	r.publish("second", keys[0])
	got := r.waitResults(2, 10*time.Second)
	outcomes := []events.Outcome{got["first"].Outcome, got["second"].Outcome}
	if !(outcomes[0] == events.Revoked && outcomes[1] == events.AlreadyRevoked) &&
		!(outcomes[1] == events.Revoked && outcomes[0] == events.AlreadyRevoked) {
		t.Fatalf("outcomes %v, want one revoked and one already_revoked", outcomes)
	}
	if n := r.emu.Stats().Deletes[keys[0]]; n != 1 {
		t.Errorf("deleted %d times", n)
	}
}

func TestSelfRevocationStopsTheWorker(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	cfg.AllowSelfRevoke = true
	w, _ := r.start(cfg)
	natstest.WaitFor(t, 10*time.Second, "ready", func() bool { return w.Ready() == nil })
	r.publish("self", r.selfID)
	if res := r.waitResults(1, 10*time.Second)["self"]; res.Outcome != events.Revoked {
		t.Fatalf("got %+v", res)
	}
	natstest.WaitFor(t, 5*time.Second, "not ready", func() bool { return w.Ready() != nil })
	if !strings.Contains(w.Ready().Error(), "own key") {
		t.Errorf("readiness says %q", w.Ready())
	}
	// It takes no more requests: once it has no pull waiting at the server,
	// a new request cannot be delivered to it.
	ctx := context.Background()
	cons, err := r.js.Consumer(ctx, "KEY_REVOKE_REQUESTS", "revoker")
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, "no pull waiting", func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumWaiting == 0
	})
	r.publish("later", keys[0])
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumPending != 1 || ci.NumAckPending != 0 || !r.emu.HasKey(keys[0]) {
		t.Errorf("after self-revocation: pending %d, ack pending %d; want the request left alone", ci.NumPending, ci.NumAckPending)
	}
}

// countingDeleter counts calls, to prove bounded concurrency.
type countingDeleter struct {
	worker.Kalshi
	now, peak atomic.Int32
}

func (c *countingDeleter) DeleteAPIKey(ctx context.Context, id string) error {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return c.Kalshi.DeleteAPIKey(ctx, id)
}

func TestConcurrencyIsBounded(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(30)
	r.emu.SetFaults(emulator.Faults{Latency: 20 * time.Millisecond})
	cfg := r.config()
	cfg.Concurrency = 3
	d := &countingDeleter{Kalshi: r.client}
	_, _ = r.startWith(d, cfg)
	for _, k := range keys {
		r.publish(k, k)
	}
	r.waitResults(30, 30*time.Second)
	if p := d.peak.Load(); p != 3 {
		t.Errorf("peak concurrency %d, want 3", p)
	}
}
