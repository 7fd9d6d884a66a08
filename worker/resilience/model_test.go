package resilience_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/events/auth"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

var (
	modelSeeds = flag.Int("model.seeds", 3, "how many random seeds TestIdentityModel runs after its regression seeds")
	modelSeed  = flag.Uint64("model.seed", 0, "run TestIdentityModel with this seed only")
)

// modelRegressions are seeds that once broke the model; they run first,
// always.
var modelRegressions = []uint64{
	// A second request with a PEM, under another id, listed the account's
	// keys just after the first deleted the key: leaked_key_not_found.
	1796044961483386850,
	// A worker (started after a kill, or at the start) bound during a
	// results-stream outage, refused the stream (rightly) and stopped: the
	// queue never drained.
	1796574895375170824,
	1796577595414222087,
}

// TestIdentityModel is a seeded, randomized model of everything that can
// befall a request: duplicates, ids shared with other keys, invalid and
// forged requests claiming genuine ids, stale copies, case variants of the
// worker's own and protected keys, leaked PEMs (with and without a hint,
// and of no key), lost responses and 5xx, worker kills and results-stream
// outages, over two or three workers on one NATS server.
// After each run it checks what the service promises (see checkModel).
// Reproduce a failure with -model.seed=N; run more with -model.seeds=N.
func TestIdentityModel(t *testing.T) {
	t.Parallel()
	seeds := append([]uint64(nil), modelRegressions...)
	if *modelSeed != 0 {
		seeds = []uint64{*modelSeed}
	} else {
		base := uint64(time.Now().UnixNano())
		for i := range *modelSeeds {
			seeds = append(seeds, base+uint64(i))
		}
	}
	// Each seed has its own NATS, emulator and workers: they run in
	// parallel, and the summary once all have ended.
	var mu sync.Mutex
	var passed []uint64
	t.Cleanup(func() {
		slices.Sort(passed)
		t.Logf("MODEL passed %d of %d runs, seeds %v", len(passed), len(seeds), passed)
	})
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			runModel(t, seed)
			if !t.Failed() {
				mu.Lock()
				passed = append(passed, seed)
				mu.Unlock()
			}
		})
	}
}

// modelRequest is one message of a model run and what it is.
type modelRequest struct {
	msg     *nats.Msg
	trusted string // the request id that only this kind of message may settle; "" for untrusted
	key     string // canonical key it names, when trusted; for a leaked PEM, its key ("" when none)
	leaked  []byte // the leaked PEM it carries, if any
}

func runModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t.Logf("seed %d (rerun with -model.seed=%d)", seed, seed)
	srv := natstest.Start(t)
	r := newRig(t, srv.URL(), rigOptions{})
	signer, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := signer.PublicKey()
	stranger, _ := nkeys.CreateUser()

	cfg := r.workerConfig()
	cfg.Policy = &auth.Policy{TrustedSigners: []string{pub}}
	cfg.AckWait = 3 * time.Second
	cfg.CredentialRetry = 50 * time.Millisecond
	cfg.DrainTimeout = 200 * time.Millisecond
	cfg.RequeueDelay = 100 * time.Millisecond
	cfg.PullWait = 200 * time.Millisecond
	r.provision(cfg)

	targets := r.addKeys("target", 12+rng.IntN(12))
	r.victims = r.addKeys("victim", 3)

	var reqs []modelRequest
	now := time.Now()
	signedBody := func(body []byte, s nkeys.KeyPair) *nats.Msg {
		signerPub, sig, err := auth.SignWith(s, body)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(requestsSubject)
		m.Data = body
		m.Header.Set(auth.HeaderSigner, signerPub)
		m.Header.Set(auth.HeaderSignature, sig)
		return m
	}
	signed := func(id, key string, at time.Time, s nkeys.KeyPair) *nats.Msg {
		body, _ := json.Marshal(map[string]string{"id": id, "api_key_id": key, "requested_at": at.UTC().Format(time.RFC3339Nano)})
		return signedBody(body, s)
	}
	raw := func(body string) *nats.Msg {
		m := nats.NewMsg(requestsSubject)
		m.Data = []byte(body)
		return m
	}
	spell := func(k string) string { // a case variant Kalshi takes for the same key
		switch rng.IntN(3) {
		case 0:
			return strings.ToUpper(k)
		case 1:
			return strings.ToUpper(k[:1]) + k[1:]
		}
		return k
	}
	var genuineIDs []string
	for i, k := range targets {
		id := fmt.Sprintf("inc-%d", i)
		genuineIDs = append(genuineIDs, id)
		m := signed(id, spell(k), now, signer)
		reqs = append(reqs, modelRequest{msg: m, trusted: id, key: k})
		if rng.IntN(4) == 0 { // published twice, no Nats-Msg-Id
			reqs = append(reqs, modelRequest{msg: signed(id, spell(k), now, signer), trusted: id, key: k})
		}
	}
	// An id shared with another key: whichever request claims it first is
	// carried out; the other is conflicting_request_id.
	for range 1 + rng.IntN(3) {
		id := genuineIDs[rng.IntN(len(genuineIDs))]
		other := r.addKeys("shared", 1)[0]
		reqs = append(reqs, modelRequest{msg: signed(id, other, now, signer), trusted: id, key: other})
	}
	// Hostile and absurd messages, each claiming a genuine id.
	for range 6 + rng.IntN(10) {
		id := genuineIDs[rng.IntN(len(genuineIDs))]
		victim := r.victims[rng.IntN(len(r.victims))]
		var m *nats.Msg
		switch rng.IntN(6) {
		case 0:
			m = raw(`{"id":"` + id + `","api_key_id":"not a key"}`)
		case 1:
			m = raw(`{"id":"` + id + `","api_key_id":`)
		case 2: // unsigned
			m = raw(`{"id":"` + id + `","api_key_id":"` + victim + `"}`)
		case 3: // signed by a stranger
			m = signed(id, victim, now, stranger)
		case 4: // a stale copy of a genuine request
			m = signed(id, victim, now.Add(-time.Hour), signer)
		case 5:
			m = raw(`{"id":"` + id + `","api_key_id":"` + victim + `","requested_at":"0000-01-01T00:00:00+01:00"}`)
		}
		reqs = append(reqs, modelRequest{msg: m})
	}
	// Leaked PEMs of keys with key pairs of their own, some with a hint in
	// any spelling, some published twice, some again under another id; and
	// PEMs of no key, with a victim as their hint.
	leaky, pems := r.addLeakyKeys(2 + rng.IntN(4))
	_, stray1 := emulatortest.NewKeyPEM(t, emulatortest.PKCS8Ed25519)
	_, stray2 := emulatortest.NewKeyPEM(t, emulatortest.PKCS8Ed25519)
	strays := [][]byte{stray1, stray2}
	leak := func(id string, p []byte, hint string) *nats.Msg {
		fields := map[string]string{"id": id, "leaked_private_key": string(p), "requested_at": now.UTC().Format(time.RFC3339Nano)}
		if hint != "" {
			fields["api_key_id"] = hint
		}
		body, _ := json.Marshal(fields)
		return signedBody(body, signer)
	}
	for i, k := range leaky {
		id := fmt.Sprintf("leak-%d", i)
		hint := ""
		if rng.IntN(2) == 0 {
			hint = spell(k)
		}
		for range 1 + rng.IntN(2) {
			reqs = append(reqs, modelRequest{msg: leak(id, pems[i], hint), trusted: id, key: k, leaked: pems[i]})
		}
		if rng.IntN(3) == 0 { // the same PEM again under another id: found although gone
			again := id + "-again"
			reqs = append(reqs, modelRequest{msg: leak(again, pems[i], ""), trusted: again, key: k, leaked: pems[i]})
		}
	}
	for i, p := range strays {
		id := fmt.Sprintf("stray-%d", i)
		reqs = append(reqs, modelRequest{msg: leak(id, p, r.victims[i%len(r.victims)]), trusted: id, leaked: p})
	}
	// Case variants of the keys that must never be deleted, signed.
	for i, k := range append([]string{r.selfID}, r.protect...) {
		id := fmt.Sprintf("guarded-%d", i)
		reqs = append(reqs, modelRequest{msg: signed(id, spell(k), now, signer), trusted: id, key: k})
	}
	rng.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })

	r.emu.SetFaults(emulator.Faults{Seed: int64(seed), LostResponse: 0.1, ServerError: 0.1})
	nWorkers := 2 + rng.IntN(2)
	workers := make([]*inproc, nWorkers)
	for i := range workers {
		workers[i] = r.startWorker(cfg, "")
		// Ready before any outage: a worker that binds during one rightly
		// refuses a results stream that takes no results, and stops.
		natstest.WaitFor(t, 20*time.Second, "a worker ready", func() bool { return workers[i].w.Ready() == nil })
	}
	kills, outages := 0, 0
	ctx := context.Background()
	for i, q := range reqs {
		if _, err := r.js.PublishMsg(ctx, q.msg); err != nil {
			t.Fatalf("publishing request %d: %v", i, err)
		}
		switch rng.IntN(20) {
		case 0: // a worker dies with whatever it holds, and another starts
			w := rng.IntN(nWorkers)
			workers[w].nc.Close()
			go func(p *inproc) { _ = p.stop() }(workers[w])
			workers[w] = r.startWorker(cfg, "")
			natstest.WaitFor(t, 20*time.Second, "the new worker ready", func() bool { return workers[w].w.Ready() == nil })
			kills++
		case 1: // the results stream cannot be reached for a while
			r.resultsOutage(cfg, true)
			time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond) // the outage's length
			r.resultsOutage(cfg, false)
			outages++
		}
	}
	r.waitDrained(90 * time.Second)
	for _, w := range workers {
		_ = w.stop()
	}
	checkModel(t, r, reqs)
	st := r.emu.Stats()
	t.Logf("seed %d: %d messages, %d workers, %d kills, %d results-stream outages, %d lost responses, %d DELETEs",
		seed, len(reqs), nWorkers, kills, outages, st.LostResponses, sum(st.DeleteAttempts))
}

// resultsOutage makes the results and untrusted streams unreachable
// without losing what they hold (no stream listens on their subjects), or
// ends that.
func (r *rig) resultsOutage(cfg worker.Config, on bool) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, sc := range []jetstream.StreamConfig{provision.ResultsStreamConfig(cfg.Provisioning()), provision.UntrustedStreamConfig(cfg.Provisioning())} {
		if on {
			sc.Subjects = []string{"offline." + sc.Name + ".>"}
		}
		if _, err := r.js.UpdateStream(ctx, sc); err != nil {
			r.t.Fatal(err)
		}
	}
}

// checkModel checks a model run once every request settled:
//   - every key the emulator deleted has a stored revoked result naming it,
//     under a trusted request id;
//   - no already_revoked for a deleted key unless another request's result
//     says revoked for it; no rejected or failed from a request whose key
//     was deleted and that no other request revoked;
//   - the worker's own key, the protected keys and the victims of hostile
//     requests never received a DELETE;
//   - each trusted id has exactly one stored result, and results under
//     untrusted message ids are rejections;
//   - a leaked PEM's request revoked the PEM's key and no other, or ended
//     leaked_key_not_found for a PEM of no key; no result holds the PEM;
//   - the requests stream is empty.
func checkModel(t *testing.T, r *rig, reqs []modelRequest) {
	t.Helper()
	trusted := map[string]bool{}
	for _, q := range reqs {
		if q.trusted != "" {
			trusted[q.trusted] = true
		}
	}
	results := r.readResults()
	byID := map[string][]events.Result{}
	revokedBy := map[string][]string{}
	for _, s := range results {
		if strings.HasPrefix(s.msgID, events.UntrustedIDPrefix) {
			if s.res.Outcome != events.Rejected {
				t.Errorf("untrusted result %s is %s, want rejected: %+v", s.msgID, s.res.Outcome, s.res)
			}
			continue
		}
		if !trusted[s.msgID] {
			t.Errorf("result stored under %q, an id no genuine request has: %+v", s.msgID, s.res)
			continue
		}
		byID[s.msgID] = append(byID[s.msgID], s.res)
		if s.res.Outcome == events.Revoked {
			revokedBy[s.res.APIKeyID] = append(revokedBy[s.res.APIKeyID], s.msgID)
		}
	}
	for id := range trusted {
		if n := len(byID[id]); n != 1 {
			t.Errorf("trusted id %s has %d stored results, want 1: %+v", id, n, byID[id])
		}
	}
	st := r.emu.Stats()
	for k := range st.Deletes {
		if len(revokedBy[k]) == 0 {
			t.Errorf("key %s was deleted but no stored result says revoked for it", k)
		}
	}
	for id, rs := range byID {
		for _, res := range rs {
			if st.Deletes[res.APIKeyID] == 0 || len(revokedBy[res.APIKeyID]) > 0 {
				continue
			}
			t.Errorf("request %s: %s for key %s, which was deleted and which no result says revoked", id, res.Outcome, res.APIKeyID)
		}
	}
	for _, q := range reqs {
		if q.leaked == nil {
			continue
		}
		for _, res := range byID[q.trusted] {
			switch {
			case q.key != "" && !res.Outcome.Succeeded():
				t.Errorf("request %s: the PEM of key %s ended %s %+v, want it revoked", q.trusted, q.key, res.Outcome, res.Error)
			case res.Outcome.Succeeded() && res.APIKeyID != q.key:
				t.Errorf("request %s: %s for key %s, but its leaked PEM is the key %q", q.trusted, res.Outcome, res.APIKeyID, q.key)
			case q.key == "" && (res.Outcome != events.Rejected || res.Error.Code != events.CodeLeakedKeyNotFound):
				t.Errorf("request %s: a PEM of no key ended %s %+v, want leaked_key_not_found", q.trusted, res.Outcome, res.Error)
			case res.LeakedKeyFingerprint == "":
				t.Errorf("request %s: no leaked_key_fingerprint in %+v", q.trusted, res)
			}
		}
		for _, s := range results {
			for _, line := range strings.Split(string(q.leaked), "\n") {
				if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(s.doc, line) {
					t.Errorf("result %s holds a line of a leaked PEM", s.msgID)
				}
			}
		}
	}
	for _, k := range append(append([]string{r.selfID}, r.protect...), r.victims...) {
		if n := st.DeleteAttempts[k]; n != 0 || !r.emu.HasKey(k) {
			t.Errorf("key %s must never be asked for: %d DELETEs, exists %v", k, n, r.emu.HasKey(k))
		}
	}
	if n := r.streamMsgs(requestsStream); n != 0 {
		t.Errorf("the requests stream still holds %d messages", n)
	}
}

// addLeakyKeys registers n keys, each with a key pair of its own, and
// returns their IDs and PEMs.
func (r *rig) addLeakyKeys(n int) (ids []string, pems [][]byte) {
	for range n {
		k, p := emulatortest.NewKeyPEM(r.t, emulatortest.PKCS8Ed25519)
		r.keyCount++
		ids = append(ids, r.emu.AddKey(fmt.Sprintf("leaky-%d", r.keyCount), k))
		pems = append(pems, p)
	}
	return ids, pems
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
