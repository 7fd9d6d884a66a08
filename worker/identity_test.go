package worker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/metrics"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// Regression tests for the ways issue 11 found to break "one request, one
// true outcome, never the wrong key". Each failed on the main it was filed
// against.

// byMsgID reads the stored results keyed by their Nats-Msg-Id.
func (r *rig) byMsgID() map[string]events.Result {
	r.t.Helper()
	out := map[string]events.Result{}
	for _, s := range r.stored() {
		if _, dup := out[s.MsgID]; dup {
			r.t.Errorf("two results stored under %s", s.MsgID)
		}
		out[s.MsgID] = s.Result
	}
	return out
}

// untrustedRejections are the stored results under untrusted- message ids.
func untrustedRejections(got map[string]events.Result) []events.Result {
	var out []events.Result
	for id, res := range got {
		if strings.HasPrefix(id, events.UntrustedIDPrefix) {
			out = append(out, res)
		}
	}
	return out
}

// resultsOutage makes the results and untrusted streams unreachable (no
// stream listens on their subjects) without losing what they hold, or ends
// that.
func (r *rig) resultsOutage(cfg worker.Config, on bool) {
	r.t.Helper()
	for _, sc := range []jetstream.StreamConfig{provision.ResultsStreamConfig(cfg.Provisioning()), provision.UntrustedStreamConfig(cfg.Provisioning())} {
		if on {
			sc.Subjects = []string{"offline." + sc.Name + ".>"}
		}
		if _, err := r.js.UpdateStream(context.Background(), sc); err != nil {
			r.t.Fatal(err)
		}
	}
}

// Item 1: a key ID in another letter case is the same key to every guard.
func TestCaseVariantsOfGuardedKeysAreRefused(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(2)
	cfg := r.config()
	cfg.SelfKeyID = strings.ToUpper(r.selfID) // as an operator may paste it
	cfg.ProtectedKeys = []string{keys[0]}
	w, _ := r.start(cfg)

	r.publish("own-upper", strings.ToUpper(r.selfID))
	r.publish("protected-one-letter", strings.ToUpper(keys[0][:1])+keys[0][1:])
	r.publish("bystander-upper", strings.ToUpper(keys[1]))
	got := r.waitResults(3, 10*time.Second)

	if res := got["own-upper"]; res.Error == nil || res.Error.Code != events.CodeSelfRevocationRefused || res.APIKeyID != r.selfID {
		t.Errorf("own key in upper case: %+v, want self_revocation_refused naming %s", res, r.selfID)
	}
	if res := got["protected-one-letter"]; res.Error == nil || res.Error.Code != events.CodeProtectedKey {
		t.Errorf("protected key with one letter upper-cased: %+v, want protected_key", res)
	}
	if res := got["bystander-upper"]; res.Outcome != events.Revoked || res.APIKeyID != keys[1] {
		t.Errorf("an ordinary key in upper case: %+v, want revoked under its canonical ID", res)
	}
	if !r.emu.HasKey(r.selfID) || !r.emu.HasKey(keys[0]) {
		t.Fatal("a guarded key was deleted")
	}
	if err := w.Ready(); err != nil {
		t.Errorf("not ready after refusing: %v", err)
	}
}

// Item 2: an undecodable or invalid request claiming a genuine request's id
// is rejected under its own message id and hides nothing.
func TestInvalidRequestCannotPreemptTheGenuineResult(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	r.start(r.config())
	r.publishRaw("", []byte(`{"id":"inc-1","api_key_id":"x y"}`))
	r.publishRaw("", []byte(`{"id":"inc-1","api_key_id":`)) // undecodable; id unreadable
	r.publish("inc-1", keys[0])
	r.waitQueueEmpty()
	got := r.byMsgID()
	if res := got["inc-1"]; res.Outcome != events.Revoked || res.APIKeyID != keys[0] {
		t.Errorf("inc-1: %+v, want revoked", res)
	}
	if n := len(untrustedRejections(got)); n != 2 || len(got) != 3 {
		t.Errorf("%d untrusted rejections of %d results, want 2 of 3", n, len(got))
	}
	if r.emu.HasKey(keys[0]) {
		t.Error("the genuine request's key is still live")
	}
}

// Item 2, with signing on: an unsigned forgery with an invalid body, and a
// stale copy of the signed request, both stored first, hide nothing.
func TestForgeriesAndStaleCopiesCannotPreemptASignedRequest(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg, kp := r.signedConfig()
	r.start(cfg)
	r.publishRaw("", []byte(`{"id":"inc-7","api_key_id":"../x"}`))
	r.publishMsg(signedRequest(t, kp, "inc-7", keys[0], time.Now().Add(-time.Hour)))
	r.publishMsg(signedRequest(t, kp, "inc-7", keys[0], time.Now()))
	r.waitQueueEmpty()
	got := r.byMsgID()
	if res := got["inc-7"]; res.Outcome != events.Revoked {
		t.Errorf("the genuine signed request: %+v, want revoked", res)
	}
	for _, res := range untrustedRejections(got) {
		if res.Outcome != events.Rejected {
			t.Errorf("untrusted: %+v", res)
		}
	}
	if len(got) != 3 || r.emu.HasKey(keys[0]) {
		t.Errorf("%d results, key live %v: want 3 results and the key gone", len(got), r.emu.HasKey(keys[0]))
	}
}

// Item 3: during a results-stream outage a forgery's decided rejection is
// never handed to the genuine request that claims the same id.
func TestForgeryDecidedDuringAnOutageIsNotTheGenuineResult(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg, kp := r.signedConfig()
	r.start(cfg)
	r.resultsOutage(cfg, true)
	r.publish("inc-3", keys[0]) // unsigned
	natstest.WaitFor(t, 30*time.Second, "the forgery decided", func() bool { return r.redelivered() > 0 })
	r.publishMsg(signedRequest(t, kp, "inc-3", keys[0], time.Now()))
	r.resultsOutage(cfg, false)
	r.waitQueueEmpty()
	got := r.byMsgID()
	if res := got["inc-3"]; res.Outcome != events.Revoked || r.emu.HasKey(keys[0]) {
		t.Errorf("the genuine request: %+v (key live %v), want revoked", res, r.emu.HasKey(keys[0]))
	}
}

// redelivered is the consumer's count of messages delivered more than once.
func (r *rig) redelivered() int {
	ctx := context.Background()
	cons, err := r.js.Consumer(ctx, "KEY_REVOKE_REQUESTS", "revoker")
	if err != nil {
		return 0
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return 0
	}
	return ci.NumRedelivered
}

// Item 4: an id names one request. A corrected request after an invalid one
// is carried out; a second valid request for another key under the same id
// is rejected as conflicting, deletes nothing, and changes no result.
func TestOneIDNamesOneRequest(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(3)
	r.start(r.config())
	r.publishRaw("", []byte(`{"id":"inc-2","api_key_id":"x y"}`))
	r.publishRaw("", []byte(`{"id":"inc-2","api_key_id":"`+keys[0]+`"}`))
	r.waitQueueEmpty()
	r.publishRaw("", []byte(`{"id":"inc-2","api_key_id":"`+keys[1]+`"}`))
	r.publishRaw("", []byte(`{"id":"inc-2","api_key_id":"`+strings.ToUpper(keys[0])+`"}`)) // the same request
	r.waitQueueEmpty()

	got := r.byMsgID()
	if res := got["inc-2"]; res.Outcome != events.Revoked || res.APIKeyID != keys[0] {
		t.Errorf("inc-2: %+v, want revoked %s", res, keys[0])
	}
	conflicts := 0
	for _, res := range untrustedRejections(got) {
		if res.Error.Code == events.CodeConflictingRequestID {
			conflicts++
			if res.APIKeyID != keys[1] || !strings.Contains(res.Error.Message, keys[0]) {
				t.Errorf("conflict: %+v", res)
			}
		}
	}
	if conflicts != 1 || len(got) != 3 {
		t.Errorf("%d conflicts in %d results, want 1 in 3: %+v", conflicts, len(got), got)
	}
	if !r.emu.HasKey(keys[1]) || r.emu.Stats().DeleteAttempts[keys[1]] != 0 {
		t.Error("the conflicting request touched its key")
	}
	if n := r.emu.Stats().DeleteAttempts[keys[0]]; n != 1 {
		t.Errorf("%d DELETEs of %s, want 1: a repeat of a decided request deletes nothing", n, keys[0])
	}
}

// Item 5: a time no result can hold is rejected at decode; the message
// leaves the queue and the key is untouched.
func TestPoisonTimestampSettles(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	r.start(r.config())
	for i, at := range []string{"0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"} {
		body, _ := json.Marshal(map[string]string{"id": "poison-" + string(rune('a'+i)), "api_key_id": keys[0], "requested_at": at})
		r.publishRaw("", body)
	}
	r.waitQueueEmpty()
	for _, res := range r.results() {
		if res.Error == nil || res.Error.Code != events.CodeInvalidRequest || !strings.Contains(res.Error.Message, "requested_at") {
			t.Errorf("%s: %+v, want invalid_request naming requested_at", res.RequestID, res)
		}
	}
	if !r.emu.HasKey(keys[0]) {
		t.Error("a poison request deleted its key")
	}
}

// Item 6: a Retry-After longer than the request's budget ends it at once,
// failed/retries_exhausted, naming the wait.
func TestLongRetryAfterEndsTheRequest(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	r.start(r.config())
	r.emu.SetFaults(emulator.Faults{Seed: 1, TooMany: 1, RetryAfter: 360000000 * time.Second})
	r.publish("slow", keys[0])
	// A result at all is "at once": waiting out the Retry-After (or the
	// minute of MaxRetry) would outlast the deadline.
	res := r.waitResults(1, 20*time.Second)["slow"]
	if res.Error == nil || res.Error.Code != events.CodeRetriesExhausted || !strings.Contains(res.Error.Message, "Retry-After") {
		t.Errorf("got %+v, want failed/retries_exhausted naming the Retry-After", res)
	}
}

// Item 7: the worker takes no request while Kalshi has not answered its
// credential with a key list: at a base URL that is not Kalshi's API a DELETE
// would answer 404 and report already_revoked; with a refused key every
// request would fail.
func TestCredentialGateTakesNoRequest(t *testing.T) {
	for _, tc := range []struct {
		name, why string
		cfg       func(r *rig) kalshi.Config
	}{
		{"wrong base URL", "KALSHI_BASE_URL", func(r *rig) kalshi.Config {
			return kalshi.Config{BaseURL: strings.TrimSuffix(r.emu.URL(), "/trade-api/v2"), KeyID: r.selfID, PrivateKey: emulatortest.Key()}
		}},
		{"refused credential", "GET /api_keys", func(r *rig) kalshi.Config {
			// A key ID Kalshi knows, signed with the wrong private key: 401.
			return kalshi.Config{BaseURL: r.emu.URL(), KeyID: r.selfID, PrivateKey: emulatortest.OtherKey()}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			keys := r.addKeys(1)
			client, err := kalshi.New(tc.cfg(r))
			if err != nil {
				t.Fatal(err)
			}
			w, _ := r.launch(r.js, client, r.config())
			r.publish("gated", keys[0])
			natstest.WaitFor(t, 10*time.Second, "readiness to say why", func() bool {
				err := w.Ready()
				return err != nil && strings.Contains(err.Error(), tc.why)
			})
			if r.requestsLeft() != 1 || len(r.results()) != 0 || r.emu.Stats().DeleteAttempts[keys[0]] != 0 {
				t.Error("a request was taken before Kalshi accepted the credential")
			}
		})
	}
}

// slowKalshi deletes after a pause, and counts the deletes it was asked for.
type slowKalshi struct {
	worker.Kalshi
	pause time.Duration
	calls atomic.Int32
}

func (s *slowKalshi) DeleteAPIKey(ctx context.Context, id string) error {
	s.calls.Add(1)
	select {
	case <-time.After(s.pause):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Kalshi.DeleteAPIKey(ctx, id)
}

// Item 8: the keep-alive follows the ack wait of the consumer actually
// bound, not the configured default: a busy request is not redelivered to
// another replica while the first still works on it.
func TestKeepAliveFollowsTheBoundConsumer(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	ctx := context.Background()
	if err := provision.Ensure(ctx, r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	cc := provision.ConsumerConfig(cfg.Provisioning())
	cc.AckWait = 3 * time.Second // an operator's consumer, shorter than the default
	if _, err := r.js.UpdateConsumer(ctx, "KEY_REVOKE_REQUESTS", cc); err != nil {
		t.Fatal(err)
	}
	cfg.Provision = false
	cfg.AttemptTimeout = 10 * time.Second
	slow := &slowKalshi{Kalshi: r.client, pause: 5 * time.Second}
	r.startWith(slow, cfg)
	r.startWith(slow, cfg)
	r.publish("busy", keys[0])
	res := r.waitResults(1, 20*time.Second)["busy"]
	if res.Outcome != events.Revoked || res.Deliveries != 1 || slow.calls.Load() != 1 {
		t.Errorf("got %+v after %d DELETEs; want revoked on the only delivery, one DELETE", res, slow.calls.Load())
	}
}

// Item 9: a key this request's own attempt deleted is reported revoked,
// never already_revoked: after a lost response, and after the worker died
// holding the request and another replica took it over.
func TestOwnDeleteIsNeverAlreadyRevoked(t *testing.T) {
	t.Run("lost response", func(t *testing.T) {
		r := newRig(t)
		keys := r.addKeys(1)
		r.start(r.config())
		r.emu.SetFaults(emulator.Faults{Seed: 1, LostResponse: 1})
		r.publish("lost", keys[0])
		natstest.WaitFor(t, 10*time.Second, "the key deleted", func() bool { return !r.emu.HasKey(keys[0]) })
		r.emu.SetFaults(emulator.Faults{})
		res := r.waitResults(1, 10*time.Second)["lost"]
		if res.Outcome != events.Revoked || res.Detail == "" {
			t.Errorf("got %+v, want revoked with a detail", res)
		}
	})
	t.Run("worker died", func(t *testing.T) {
		r := newRig(t)
		keys := r.addKeys(1)
		cfg := r.config()
		cfg.AckWait = 3 * time.Second
		die := r.launchDying(cfg)
		r.publish("died", keys[0])
		die() // after its delete: it never stores a result, acks or says it is busy
		r.start(cfg)
		res := r.waitResults(1, 20*time.Second)["died"]
		if res.Outcome != events.Revoked || res.Deliveries < 2 {
			t.Errorf("got %+v, want revoked on a redelivery", res)
		}
	})
}

// launchDying provisions cfg and runs a worker, with a connection of its
// own, whose first successful delete never returns. die waits for that
// delete, then kills the worker with the request in hand.
func (r *rig) launchDying(cfg worker.Config) (die func()) {
	r.t.Helper()
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		r.t.Fatal(err)
	}
	nc := natstest.Connect(r.t, r.srv.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		r.t.Fatal(err)
	}
	cfg.DrainTimeout = 100 * time.Millisecond
	dying := &dyingKalshi{Kalshi: r.client, deleted: make(chan struct{})}
	w, _ := r.launch(js, dying, cfg)
	natstest.WaitFor(r.t, 10*time.Second, "the dying worker ready", func() bool { return w.Ready() == nil })
	return func() {
		<-dying.deleted
		nc.Close()
	}
}

// dyingKalshi deletes the key, then never returns: its worker "dies" with
// the request in hand.
type dyingKalshi struct {
	worker.Kalshi
	deleted chan struct{}
	once    atomic.Bool
}

func (d *dyingKalshi) DeleteAPIKey(ctx context.Context, id string) error {
	if err := d.Kalshi.DeleteAPIKey(ctx, id); err != nil {
		return err
	}
	if d.once.CompareAndSwap(false, true) {
		close(d.deleted)
	}
	<-ctx.Done()
	return ctx.Err()
}

// The settings a guarantee needs are checked against what exists.
func TestSettingsThatBreakAGuaranteeAreRefused(t *testing.T) {
	r := newRig(t)
	cfg := r.config()
	ctx := context.Background()
	if err := provision.Ensure(ctx, r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	if err := provision.Check(ctx, r.js, cfg.Provisioning()); err != nil {
		t.Fatalf("as provisioned: %v", err)
	}
	rs := provision.ResultsStreamConfig(cfg.Provisioning())
	rs.Duplicates = time.Minute
	cc := provision.ConsumerConfig(cfg.Provisioning())
	cc.AckWait = time.Minute
	if _, err := r.js.UpdateStream(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if _, err := r.js.UpdateConsumer(ctx, "KEY_REVOKE_REQUESTS", cc); err != nil {
		t.Fatal(err)
	}
	err := provision.Check(ctx, r.js, cfg.Provisioning())
	for _, want := range []string{"duplicates window of 1m0s", "ack wait of 1m0s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("provision.Check: %v; want it to name %q", err, want)
		}
	}
	w, err := worker.New(r.js, r.client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.Run(rctx); err == nil || !strings.Contains(err.Error(), "ack wait") {
		t.Errorf("Run: %v, want the refusal", err)
	}
}

// putClaim writes a ledger claim for id as another message (seq) made it.
func (r *rig) putClaim(id, key string, seq uint64, claimedAt time.Time, result []byte) {
	r.t.Helper()
	kv, err := r.js.KeyValue(context.Background(), ledger.Bucket)
	if err != nil {
		r.t.Fatal(err)
	}
	e := map[string]any{"key": key, "seq": seq, "claimed_at": claimedAt, "attempted": true}
	if result != nil {
		e["result"] = json.RawMessage(result)
	}
	v, _ := json.Marshal(e)
	if _, err := kv.Put(context.Background(), "req."+base64.RawURLEncoding.EncodeToString([]byte(id)), v); err != nil {
		r.t.Fatal(err)
	}
}

// A second message of a request waits while the message that claimed it
// is carrying it out, then stores that message's result; it takes the
// request over only when the claim is older than any request can take.
func TestCopiesOfARequestWaitForTheClaim(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(2)
	cfg := r.config()
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	r.putClaim("held", keys[0], 999, time.Now(), nil)
	r.putClaim("abandoned", keys[1], 998, time.Now().Add(-time.Hour), nil)
	r.start(cfg)
	r.publish("held", keys[0])
	r.publish("abandoned", keys[1])

	natstest.WaitFor(t, 10*time.Second, "the abandoned claim taken over", func() bool { return len(r.results()) == 1 })
	if res := r.byMsgID()["abandoned"]; res.Outcome != events.Revoked || r.emu.HasKey(keys[1]) {
		t.Errorf("abandoned: %+v, want revoked by the copy", res)
	}
	natstest.WaitFor(t, 10*time.Second, "the held copy delivered again", func() bool { return r.redelivered() > 0 })
	if len(r.results()) != 1 || !r.emu.HasKey(keys[0]) || r.emu.Stats().DeleteAttempts[keys[0]] != 0 {
		t.Fatal("the copy of a held request acted on its own")
	}
	// The claiming message decides; the copy stores its decision.
	decided := events.Result{RequestID: "held", RequestSeq: 999, APIKeyID: keys[0], Outcome: events.Revoked,
		Attempts: 1, HTTPStatus: 204, ReceivedAt: time.Now(), CompletedAt: time.Now()}
	doc, err := decided.MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	r.putClaim("held", keys[0], 999, time.Now(), doc)
	r.waitQueueEmpty()
	if res := r.byMsgID()["held"]; res.Outcome != events.Revoked || res.RequestSeq != 999 {
		t.Errorf("held: %+v, want the claiming message's result", res)
	}
	if r.emu.Stats().DeleteAttempts[keys[0]] != 0 {
		t.Error("the copy deleted the key the claiming message was deleting")
	}
}

// Item 6: one Retry-After pauses every delete of the process, but never for
// longer than MaxPause.
func TestPauseHasACeiling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := budget.NewLimiter(0, 0)
		l.Pause(360000000 * time.Second)
		start := time.Now()
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != budget.MaxPause {
			t.Errorf("waited %v, want the ceiling %v", waited, budget.MaxPause)
		}
	})
}

// The ledger's fill is watched: full, it would take no new request.
func TestLedgerFillIsReported(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	cfg.Metrics = metrics.New(nil)
	r.start(cfg)
	r.publish("fill", keys[0])
	r.waitResults(1, 10*time.Second)
	natstest.WaitFor(t, 10*time.Second, "the ledger's fill in the gauge", func() bool {
		return testutil.ToFloat64(cfg.Metrics.LedgerFill) > 0
	})
	if f := testutil.ToFloat64(cfg.Metrics.LedgerFill); f >= 0.01 {
		t.Errorf("one request filled %v of a 1 GiB ledger", f)
	}
}
