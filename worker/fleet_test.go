package worker_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// startReplicas runs n workers, each on a NATS connection of its own, as
// replicas of one deployment sharing the consumer and the ledger.
func (r *rig) startReplicas(n int, cfg worker.Config) {
	r.t.Helper()
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		r.t.Fatal(err)
	}
	for range n {
		js, err := jetstream.New(natstest.Connect(r.t, r.srv.URL()))
		if err != nil {
			r.t.Fatal(err)
		}
		w, _ := r.launch(js, r.client, cfg)
		natstest.WaitFor(r.t, 20*time.Second, "a replica ready", func() bool { return w.Ready() == nil })
	}
}

// Issue 20 items 1-3: three replicas, two request ids for each listed key,
// and keys the account never listed, while Kalshi loses answers and fails
// with 5xx. Every deleted key is revoked by exactly one request, the other
// names it; a key never listed is never revoked and names nobody.
func TestFleetTellsOneTruthPerKey(t *testing.T) {
	r := newRig(t)
	const listed, unknown = 24, 8
	keys := r.addKeys(listed)
	r.emu.SetFaults(emulator.Faults{Seed: 20, LostResponse: 0.3, ServerError: 0.2})
	cfg := r.config()
	cfg.Concurrency = 4
	r.startReplicas(3, cfg)

	for i, k := range keys {
		r.publish(fmt.Sprintf("a-%d", i), k)
		r.publish(fmt.Sprintf("b-%d", i), k)
	}
	unknownIDs := make([]string, unknown)
	for i := range unknownIDs {
		unknownIDs[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		r.publish(fmt.Sprintf("u-%d", i), unknownIDs[i])
	}
	got := r.waitResults(2*listed+unknown, 90*time.Second)

	for i, k := range keys {
		a, b := got[fmt.Sprintf("a-%d", i)], got[fmt.Sprintf("b-%d", i)]
		if r.emu.HasKey(k) {
			t.Errorf("key %d still exists: %s / %s", i, a.Outcome, b.Outcome)
			continue
		}
		var winner, loser events.Result
		switch {
		case a.Outcome == events.Revoked && b.Outcome != events.Revoked:
			winner, loser = a, b
		case b.Outcome == events.Revoked && a.Outcome != events.Revoked:
			winner, loser = b, a
		default:
			t.Errorf("key %d: %s and %s, want exactly one revoked", i, a.Outcome, b.Outcome)
			continue
		}
		if loser.Outcome != events.AlreadyRevoked || loser.RevokedBy != winner.RequestID {
			t.Errorf("key %d: %s ended %s naming %q, want already_revoked naming %s",
				i, loser.RequestID, loser.Outcome, loser.RevokedBy, winner.RequestID)
		}
	}
	for i := range unknownIDs {
		u := got[fmt.Sprintf("u-%d", i)]
		if u.Outcome != events.AlreadyRevoked || u.RevokedBy != "" {
			t.Errorf("unknown key %d: %s naming %q, want already_revoked naming nobody (%s)", i, u.Outcome, u.RevokedBy, u.Detail)
		}
	}
	r.waitQueueEmpty()
}

// fillsLedger deletes the key, then, the first time, fills the ledger to its
// limit before it answers: the decision cannot be recorded meanwhile.
type fillsLedger struct {
	worker.Kalshi
	fill func()
	once sync.Once
}

func (f *fillsLedger) DeleteAPIKey(ctx context.Context, id string) error {
	err := f.Kalshi.DeleteAPIKey(ctx, id)
	f.once.Do(f.fill)
	return err
}

// Issue 20 item 4: the decision is recorded before the result is stored.
// While the ledger cannot take it, no result is stored and the request comes
// back; once it can, the one result stored is the ledger's decision.
func TestDecisionIsRecordedBeforeTheResult(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ledgerStream, err := r.js.Stream(ctx, ledger.Stream)
	if err != nil {
		t.Fatal(err)
	}
	setMaxBytes := func(full bool) {
		info, err := ledgerStream.Info(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		c := info.Config
		c.MaxBytes = provision.LedgerConfig(cfg.Provisioning()).MaxBytes
		if full {
			c.MaxBytes = int64(info.State.Bytes)
		}
		if _, err := r.js.UpdateStream(ctx, c); err != nil {
			t.Error(err)
		}
	}
	r.startWith(&fillsLedger{Kalshi: r.client, fill: func() { setMaxBytes(true) }}, cfg)
	r.publish("full", keys[0])

	cons, err := r.js.Consumer(ctx, "KEY_REVOKE_REQUESTS", "revoker")
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 20*time.Second, "the request delivered again", func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumRedelivered > 0 && ci.NumAckPending > 0
	})
	if res := r.results(); len(res) != 0 {
		t.Fatalf("a result was stored while the ledger could not record it: %+v", res[0])
	}
	setMaxBytes(false)
	res := r.waitResults(1, 20*time.Second)["full"]
	if res.Outcome != events.Revoked {
		t.Errorf("got %s (%s), want revoked", res.Outcome, res.Detail)
	}
	kv, err := r.js.KeyValue(ctx, ledger.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	entry := ledgerRequest(t, kv, "full")
	if decided, err := events.ParseResult(entry.Result); err != nil || decided.Outcome != res.Outcome {
		t.Errorf("the ledger decided %s (%v), the result says %s", decided.Outcome, err, res.Outcome)
	}
}

// Issue 20 item 3: a second request for a key another replica is deleting
// waits for that decision and names it, never "not found".
func TestSecondRequestWaitsForTheFirstsDecision(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	slow := &slowKalshi{Kalshi: r.client, pause: 1500 * time.Millisecond}
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	for _, del := range []worker.Kalshi{slow, r.client} {
		js, err := jetstream.New(natstest.Connect(t, r.srv.URL()))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := r.launch(js, del, cfg)
		natstest.WaitFor(t, 20*time.Second, "a replica ready", func() bool { return w.Ready() == nil })
	}
	r.publish("first", keys[0])
	natstest.WaitFor(t, 10*time.Second, "the slow replica deleting", func() bool { return slow.calls.Load() > 0 })
	r.publish("second", keys[0])
	got := r.waitResults(2, 30*time.Second)
	first, second := got["first"], got["second"]
	if first.Outcome != events.Revoked || second.Outcome != events.AlreadyRevoked || second.RevokedBy != "first" {
		t.Errorf("first %s, second %s naming %q; want revoked, then already_revoked naming first",
			first.Outcome, second.Outcome, second.RevokedBy)
	}
}

// ledgerRequest reads the ledger's entry of request id.
func ledgerRequest(t *testing.T, kv jetstream.KeyValue, id string) (e struct {
	Result json.RawMessage `json:"result"`
}) {
	t.Helper()
	entry, err := kv.Get(context.Background(), "req."+base64.RawURLEncoding.EncodeToString([]byte(id)))
	if err != nil {
		t.Fatalf("ledger entry of %s: %v", id, err)
	}
	if err := json.Unmarshal(entry.Value(), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// cutKalshi is a Kalshi link that can be cut: while cut, every call hangs
// until its attempt times out, as through a blackholed route.
type cutKalshi struct {
	worker.Kalshi
	cut   atomic.Bool
	calls atomic.Int32 // calls made while cut
}

func (c *cutKalshi) hang(ctx context.Context) error {
	c.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func (c *cutKalshi) DeleteAPIKey(ctx context.Context, id string) error {
	if c.cut.Load() {
		return c.hang(ctx)
	}
	return c.Kalshi.DeleteAPIKey(ctx, id)
}

func (c *cutKalshi) ListAPIKeys(ctx context.Context) ([]kalshi.APIKey, error) {
	if c.cut.Load() {
		return nil, c.hang(ctx)
	}
	return c.Kalshi.ListAPIKeys(ctx)
}

// Issue 20 item 6: a replica that cannot reach Kalshi releases what it
// holds and takes nothing new, while another replica carries the requests
// out, long before the retry budget ends.
func TestReplicaCutFromKalshiReleasesItsRequests(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(12)
	cfg := r.config()
	cfg.AttemptTimeout = 200 * time.Millisecond
	cfg.MaxRetry = 30 * time.Second
	cfg.Concurrency = 4
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	cut := &cutKalshi{Kalshi: r.client}
	js, err := jetstream.New(natstest.Connect(t, r.srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	cutOff, _ := r.launch(js, cut, cfg)
	natstest.WaitFor(t, 20*time.Second, "the replica to be cut ready", func() bool { return cutOff.Ready() == nil })
	cut.cut.Store(true)
	for i, k := range keys[:4] {
		r.publish(fmt.Sprintf("held-%d", i), k)
	}
	natstest.WaitFor(t, 10*time.Second, "the cut replica holding requests", func() bool { return cut.calls.Load() >= 4 })
	natstest.WaitFor(t, 10*time.Second, "the cut replica to stop taking work", func() bool { return cutOff.Ready() != nil })

	r.start(cfg) // a healthy replica
	for i, k := range keys[4:] {
		r.publish(fmt.Sprintf("new-%d", i), k)
	}
	got := r.waitResults(len(keys), 20*time.Second)
	for id, res := range got {
		if res.Outcome != events.Revoked {
			t.Errorf("%s: %s %+v, want revoked by the healthy replica", id, res.Outcome, res.Error)
		}
	}
	cut.cut.Store(false)
	natstest.WaitFor(t, 10*time.Second, "the replica to take work again once Kalshi answers", func() bool { return cutOff.Ready() == nil })
}

// Issue 20 item 7: a replica that dies holding a request has it delivered
// again as soon as the others notice its silence, not after the ack wait
// (here 30 s, longer than the test waits).
func TestDeadReplicasRequestsAreDeliveredAtOnce(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	cfg := r.config()
	cfg.AckWait = 30 * time.Second
	// The survivor hears the others from the start, but takes no request
	// until Kalshi answers it.
	survivorLink := &cutKalshi{Kalshi: r.client}
	survivorLink.cut.Store(true)
	js, err := jetstream.New(natstest.Connect(t, r.srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	r.launch(js, survivorLink, cfg)
	die := r.launchDying(cfg)
	r.publish("orphan", keys[0])
	die() // after its delete: it holds the request, silent
	survivorLink.cut.Store(false)
	res := r.waitResults(1, 20*time.Second)["orphan"]
	if res.Outcome != events.Revoked || res.Deliveries < 2 {
		t.Errorf("got %s after %d deliveries, want revoked by the survivor", res.Outcome, res.Deliveries)
	}
}

// stallsAfter signs as other keys (a leaked key's search) until it has done
// so n times, then never returns from the next: its worker dies mid-search.
type stallsAfter struct {
	worker.Kalshi
	n       int32
	calls   atomic.Int32
	stalled chan struct{} // closed when the search stalls
	release chan struct{} // closed at the end of the test
}

func (s *stallsAfter) As(keyID string, key crypto.Signer) (*kalshi.Client, error) {
	if s.calls.Add(1) == s.n+1 {
		close(s.stalled)
		<-s.release
		return nil, errors.New("stalled")
	}
	return s.Kalshi.As(keyID, key)
}

// Issue 20 item 7: a leaked key's request redelivered after its replica
// died mid-search resumes after the keys already tried, not from the start.
func TestLeakedSearchResumesAfterAFailover(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(10)
	target := slices.Index(ids, slices.Max(ids)) // the last key in the search's order
	cfg := r.config()
	cfg.AckWait = 3 * time.Second
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	stall := &stallsAfter{Kalshi: r.client, n: 5, stalled: make(chan struct{}), release: make(chan struct{})}
	nc := natstest.Connect(t, r.srv.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DrainTimeout = 100 * time.Millisecond
	dying, _ := r.launch(js, stall, cfg)
	t.Cleanup(func() { close(stall.release) })
	natstest.WaitFor(t, 10*time.Second, "the dying worker ready", func() bool { return dying.Ready() == nil })
	r.publishLeaked("resume", pems[target], "")
	<-stall.stalled
	before := r.emu.Stats()
	survivor, _ := r.launch(r.js, r.client, cfg)
	natstest.WaitFor(t, 10*time.Second, "the survivor ready", func() bool { return survivor.Ready() == nil })
	nc.Close() // the survivor takes the request over (failover, or the 3 s ack wait)

	res := r.waitResults(1, 30*time.Second)["resume"]
	if res.Outcome != events.Revoked || res.APIKeyID != ids[target] {
		t.Fatalf("got %s for %s, want revoked for %s", res.Outcome, res.APIKeyID, ids[target])
	}
	probes := 0
	for id, n := range answered(before, r.emu.Stats()) {
		if id != r.selfID {
			probes += n
		}
	}
	// Five keys refused it before the stall; the rest are five, plus the
	// DELETE's confirmation signed as the key found.
	if probes > 10-5+1 {
		t.Errorf("the survivor signed %d calls as listed keys, want the search resumed (at most %d)", probes, 10-5+1)
	}
}

// Issue 21 item 4: a refusal decided before any Kalshi call expires from
// the ledger (within a day); a decision that deleted a key does not.
func TestRefusalsExpireFromTheLedger(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	r.start(r.config())
	r.publish("own", r.selfID)
	r.publish("real", keys[0])
	r.waitResults(2, 20*time.Second)
	ttl := func(id string) string {
		stream, err := r.js.Stream(context.Background(), ledger.Stream)
		if err != nil {
			t.Fatal(err)
		}
		m, err := stream.GetLastMsgForSubject(context.Background(), "$KV."+ledger.Bucket+".req."+base64.RawURLEncoding.EncodeToString([]byte(id)))
		if err != nil {
			t.Fatal(err)
		}
		return m.Header.Get("Nats-TTL")
	}
	if got := ttl("own"); got == "" {
		t.Error("the refusal of the worker's own key has no TTL")
	} else if d, err := time.ParseDuration(got); err == nil && d > 24*time.Hour {
		t.Errorf("the refusal's TTL is %v, want at most a day", d)
	}
	if got := ttl("real"); got != "" {
		t.Errorf("the revocation's entry has a TTL of %s", got)
	}
}

// Issue 20 item 5: a 429 with Retry-After pauses every call whichever call
// got it, here the credential check before any request.
func TestRetryAfterOnAnyCallPauses(t *testing.T) {
	r := newRig(t)
	r.emu.SetFaults(emulator.Faults{Seed: 1, TooMany: 1, RetryAfter: 3 * time.Second})
	cfg := r.config()
	cfg.Limiter = budget.NewLimiter(50, 5)
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	r.launch(r.js, r.client, cfg)
	natstest.WaitFor(t, 10*time.Second, "a 429 for the credential check", func() bool { return r.emu.Stats().TooMany > 0 })
	natstest.WaitFor(t, 5*time.Second, "the limiter paused", func() bool { return time.Until(cfg.Limiter.PausedUntil()) > time.Second })
	if got := cfg.Limiter.Rate(); got >= 50 {
		t.Errorf("rate %v after a 429, want it halved", got)
	}
}

// Three replicas that hear each other share one account listing: the
// lister lists, the others ask it. One listing per replica would be three
// in a batch that takes less than listingMaxAge.
func TestFleetSharesOneListing(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(30)
	r.emu.SetFaults(emulator.Faults{Latency: 20 * time.Millisecond})
	cfg := r.config()
	cfg.Concurrency = 4
	cfg.ConfirmDelay = time.Hour // confirmation rounds list too: not here
	beats := r.heldBeats()
	r.startReplicas(3, cfg)
	beats.heardEachOther(3)

	t0 := time.Now()
	for i, k := range keys {
		r.publish(fmt.Sprintf("share-%d", i), k)
	}
	got := r.waitResults(len(keys), 60*time.Second)
	listings, first, last := r.listingsSince(t0)
	for id, res := range got {
		if res.Outcome != events.Revoked {
			t.Errorf("%s: %s", id, res.Outcome)
		}
	}
	// One listing per listingMaxAge (2 s) of the batch, and one more.
	if allowed := 1 + int(last.Sub(first)/(2*time.Second)) + 1; listings > allowed || listings == 0 {
		t.Errorf("%d account listings in a batch of %v: want 1 to %d, one for the fleet at a time", listings, last.Sub(first).Round(time.Millisecond), allowed)
	}
	t.Logf("%d account listings for %d requests on 3 replicas in %v", listings, len(keys), last.Sub(first).Round(time.Millisecond))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// A confirmation round takes the fleet's listing when it was asked for
// after the earliest of its keys was revoked, and leaves the keys revoked
// later to the next round, instead of listing afresh for the newest: while
// the fleet revokes, it lists about once per two seconds, rounds included,
// and every key is still confirmed.
func TestConfirmationRoundsShareTheFleetsListing(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(100)
	cfg := r.config()
	// The fleet's budget: 100 keys in about 10 s, and a short queue before
	// it (a question to the lister waits for the lister's turn).
	cfg.Concurrency = 1
	cfg.Limiter = budget.NewLimiter(10, 1)
	// Rounds further apart than a listing may be old: one taken for the
	// requests is at hand for each round.
	cfg.ConfirmDelay, cfg.ConfirmInterval = 300*time.Millisecond, 2500*time.Millisecond
	r.startReplicas(3, cfg)

	t0 := time.Now()
	for i, k := range keys {
		r.publish(fmt.Sprintf("round-%d", i), k)
	}
	r.waitResults(len(keys), 60*time.Second)
	led, err := ledger.Open(context.Background(), r.js)
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 30*time.Second, "every revocation confirmed", func() bool {
		for _, k := range keys {
			rec, err := led.Lookup(context.Background(), k)
			if err != nil || rec == nil || rec.ConfirmedAt.IsZero() {
				return false
			}
		}
		return true
	})
	listings, first, last := r.listingsSince(t0)
	// One listing per listingMaxAge (2 s) of the batch, the first and last
	// rounds', and one more; a listing of its own for each round is 10-12.
	if allowed := 1 + int(last.Sub(first)/(2*time.Second)) + 2; listings > allowed {
		t.Errorf("%d account listings for a batch of %v and its confirmations: want at most %d", listings, last.Sub(first).Round(time.Millisecond), allowed)
	}
	t.Logf("%d account listings for %d requests and their confirmations on 3 replicas, batch of %v", listings, len(keys), last.Sub(first).Round(time.Millisecond))
}

// A lister whose NATS connection is gone answers "no responders": the
// others turn to the next lister at once instead of each listing for itself
// for a while, so the fleet still lists once per listingMaxAge, from one
// replica.
func TestFleetTurnsToTheNextListerAtOnce(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(60)
	cfg := r.config()
	cfg.Concurrency = 1
	cfg.Limiter = budget.NewLimiter(20, 1) // 60 keys in about 3 s; a short queue before each listing
	cfg.ConfirmDelay = time.Hour           // rounds list too: not here
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	beats := r.heldBeats()
	// Each replica's id, from its first beat, with its connection and the
	// listings it makes.
	type replica struct {
		nc    *nats.Conn
		lists *countsListings
	}
	replicas := make(map[string]replica)
	for range 3 {
		nc := natstest.Connect(t, r.srv.URL())
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		lists := &countsListings{Kalshi: r.client}
		w, _ := r.launch(js, lists, cfg)
		natstest.WaitFor(t, 20*time.Second, "a replica ready and beating", func() bool {
			return w.Ready() == nil && len(beats.ids()) == len(replicas)+1
		})
		for _, id := range beats.ids() {
			if _, ok := replicas[id]; !ok {
				replicas[id] = replica{nc, lists}
			}
		}
	}
	beats.heardEachOther(3)
	lister := slices.Min(slices.Collect(maps.Keys(replicas)))
	replicas[lister].nc.Close() // as if its process died
	natstest.WaitFor(t, 10*time.Second, "the server to drop the lister's subscriptions", func() bool {
		_, err := r.nc.Request(budget.FleetSubject+".listing.revoker."+lister, []byte(`{}`), time.Second)
		return errors.Is(err, nats.ErrNoResponders)
	})
	for _, rp := range replicas {
		rp.lists.n.Store(0)
	}

	for i, k := range keys {
		r.publish(fmt.Sprintf("next-%d", i), k)
	}
	got := r.waitResults(len(keys), 60*time.Second)
	for id, res := range got {
		if res.Outcome != events.Revoked {
			t.Errorf("%s: %s", id, res.Outcome)
		}
	}
	var listed []int32
	for id, rp := range replicas {
		if id != lister {
			listed = append(listed, rp.lists.n.Load())
		}
	}
	t.Logf("survivors listed %v", listed)
	// The next lister lists for both; the other asks it.
	if slices.Min(listed) != 0 || slices.Max(listed) == 0 {
		t.Errorf("the survivors listed the account %v times: want one of them listing for both", listed)
	}
}

// countsListings counts the account listings of one replica.
type countsListings struct {
	worker.Kalshi
	n atomic.Int32
}

func (c *countsListings) ListAPIKeys(ctx context.Context) ([]kalshi.APIKey, error) {
	c.n.Add(1)
	return c.Kalshi.ListAPIKeys(ctx)
}

// A delivery that decided revoked may write the key's record and die (or
// have the ledger refuse the decision) before the decision is recorded: the
// next delivery, answered 404, ends revoked on that record's word, not
// already_revoked naming nobody (chaos seed 391272, four seeds at a time).
func TestKeyRecordOfThisRequestIsItsRevocation(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	r.start(r.config())
	kv, err := r.js.KeyValue(context.Background(), ledger.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	// What the first delivery left: the key gone at Kalshi, its record
	// naming the request, no decision.
	if err := r.client.DeleteAPIKey(context.Background(), keys[0]); err != nil {
		t.Fatal(err)
	}
	led := ledger.New(kv, nil)
	if _, err := led.RecordRevoked(context.Background(), keys[0], ledger.KeyRecord{RequestID: "rec-1", RevokedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	r.publish("rec-1", keys[0])
	res := r.waitResults(1, 20*time.Second)["rec-1"]
	if res.Outcome != events.Revoked || res.RevokedBy != "" {
		t.Errorf("got %s (revoked_by %q): want revoked, the key's record naming this request", res.Outcome, res.RevokedBy)
	}
}

// heldBeats counts each replica's beats on revoker.fleet.held.revoker (not
// its announcements of a delivery just taken), by replica id.
type heldBeats struct {
	t     *testing.T
	mu    sync.Mutex
	beats map[string]int
}

func (r *rig) heldBeats() *heldBeats {
	r.t.Helper()
	h := &heldBeats{t: r.t, beats: make(map[string]int)}
	sub, err := r.nc.Subscribe(budget.FleetSubject+".held.revoker", func(m *nats.Msg) {
		var b struct {
			ID   string `json:"id"`
			Took bool   `json:"took"`
		}
		if json.Unmarshal(m.Data, &b) == nil && !b.Took {
			h.mu.Lock()
			h.beats[b.ID]++
			h.mu.Unlock()
		}
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return h
}

// ids are the replicas heard so far.
func (h *heldBeats) ids() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Collect(maps.Keys(h.beats))
}

// heardEachOther waits for two beats of each of n replicas from now: by
// then each has heard the others.
func (h *heldBeats) heardEachOther(n int) {
	h.t.Helper()
	h.mu.Lock()
	clear(h.beats)
	h.mu.Unlock()
	natstest.WaitFor(h.t, 20*time.Second, "every replica to beat twice", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.beats) == n && !slices.ContainsFunc(slices.Collect(maps.Values(h.beats)), func(c int) bool { return c < 2 })
	})
}

// listingsSince counts the account listings the emulator answered since t0,
// with the first of them and the last DELETE.
func (r *rig) listingsSince(t0 time.Time) (n int, first, last time.Time) {
	for _, c := range r.emu.Calls() {
		switch {
		case c.Arrived.Before(t0):
		case c.Endpoint == emulator.EndpointListKeys:
			n++
			if first.IsZero() {
				first = c.Arrived
			}
		case c.Endpoint == emulator.EndpointDeleteKey:
			last = later(last, c.Arrived)
		}
	}
	return n, first, last
}
