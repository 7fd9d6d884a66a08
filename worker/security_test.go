package worker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/events/auth"
	"github.com/revoker/revoker/worker/metrics"
	"github.com/revoker/revoker/worker/natstest"
)

// signedRequest is a request body signed by kp, with its headers.
func signedRequest(t *testing.T, kp nkeys.KeyPair, id, keyID string, requestedAt time.Time) *nats.Msg {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"id": id, "api_key_id": keyID, "source": "incident-response",
		"requested_at": requestedAt.UTC().Format(time.RFC3339Nano)})
	signer, sig, err := auth.SignWith(kp, body)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("keys.revoke.requests")
	m.Data = body
	m.Header.Set(auth.HeaderSigner, signer)
	m.Header.Set(auth.HeaderSignature, sig)
	return m
}

func (r *rig) publishMsg(m *nats.Msg) {
	r.t.Helper()
	if _, err := r.js.PublishMsg(r.t.Context(), m); err != nil {
		r.t.Fatal(err)
	}
}

func newUser(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return kp, pub
}

func TestRequestAuthentication(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(6)
	trusted, trustedPub := newUser(t)
	stranger, _ := newUser(t)
	cfg := r.config()
	cfg.Policy = &auth.Policy{TrustedSigners: []string{trustedPub}, AllowedSources: []string{"incident-response"}}
	cfg.Metrics = metrics.New(nil)
	_, _ = r.start(cfg)
	now := time.Now()

	r.publishMsg(signedRequest(t, trusted, "good", keys[0], now))
	forged := signedRequest(t, trusted, "forged", keys[1], now)
	forged.Data = []byte(string(forged.Data[:len(forged.Data)-1]) + ` ,"reason":"x"}`)
	r.publishMsg(forged)
	r.publishMsg(signedRequest(t, stranger, "stranger", keys[2], now))
	r.publishMsg(signedRequest(t, trusted, "stale", keys[3], now.Add(-10*time.Minute)))
	r.publishMsg(signedRequest(t, trusted, "future", keys[4], now.Add(5*time.Minute)))
	r.publish("unsigned", keys[5])

	got := r.waitResults(6, 20*time.Second)
	if got["good"].Outcome != events.Revoked {
		t.Errorf("a trusted signed request: %+v", got["good"])
	}
	for _, id := range []string{"forged", "stranger", "stale", "future", "unsigned"} {
		res := got[id]
		if res.Outcome != events.Rejected || res.Error == nil || res.Error.Code != events.CodeUnauthorizedRequest {
			t.Errorf("%s: got %s %+v, want rejected/unauthorized_request", id, res.Outcome, res.Error)
		}
	}
	for _, k := range keys[1:] {
		if !r.emu.HasKey(k) || r.emu.Stats().DeleteAttempts[k] != 0 {
			t.Errorf("key %s was touched by an unauthorized request", k)
		}
	}
}

func TestReplayedSignedRequest(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	kp, pub := newUser(t)
	cfg := r.config()
	cfg.Policy = &auth.Policy{TrustedSigners: []string{pub}}
	cfg.Metrics = metrics.New(nil)
	_, _ = r.start(cfg)

	// The same signed body, three times: as sent, replayed without a
	// Nats-Msg-Id, and replayed after its result's duplicates window.
	m := signedRequest(t, kp, "once", keys[0], time.Now())
	r.publishMsg(m)
	r.waitResults(1, 10*time.Second)
	replay := nats.NewMsg(m.Subject)
	replay.Data, replay.Header = m.Data, m.Header
	r.publishMsg(replay)
	r.waitQueueEmpty()
	old := signedRequest(t, kp, "ancient", keys[0], time.Now().Add(-2*time.Hour))
	r.publishMsg(old)
	r.waitQueueEmpty()

	// The first replay is a duplicate of the stored result. The late one
	// is stale: rejected under a message id of its own, so it neither
	// deletes nor gives the request id a second result.
	got := r.stored()
	byMsgID := map[string]events.Result{}
	for _, s := range got {
		byMsgID[s.MsgID] = s.Result
	}
	if len(got) != 2 || byMsgID["once"].Outcome != events.Revoked {
		t.Fatalf("results %+v: want the original's and one rejection", got)
	}
	for id, res := range byMsgID {
		if id != "once" && (!strings.HasPrefix(id, events.UntrustedIDPrefix) || res.Error == nil || res.Error.Code != events.CodeUnauthorizedRequest) {
			t.Errorf("result under %s: %+v, want a rejection under an untrusted- id", id, res)
		}
	}
	if n := r.emu.Stats().DeleteAttempts[keys[0]]; n > 2 {
		t.Errorf("%d DELETEs", n)
	}
	if n := r.emu.Stats().Deletes[keys[0]]; n != 1 {
		t.Errorf("deleted %d times", n)
	}
}

// A forger who claims a genuine request's id cannot make the genuine
// result a dropped duplicate.
func TestForgedIDDoesNotHideTheGenuineResult(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(1)
	kp, pub := newUser(t)
	cfg := r.config()
	cfg.Policy = &auth.Policy{TrustedSigners: []string{pub}}
	_, _ = r.start(cfg)

	r.publish("inc-1", keys[0]) // unsigned, first
	r.waitQueueEmpty()
	m := signedRequest(t, kp, "inc-1", keys[0], time.Now())
	m.Header.Set(jetstream.MsgIDHeader, "genuine-inc-1")
	r.publishMsg(m)
	got := r.results()
	natstest.WaitFor(t, 10*time.Second, "two results", func() bool { got = r.results(); return len(got) == 2 })
	outcomes := map[events.Outcome]bool{}
	for _, res := range got {
		outcomes[res.Outcome] = true
	}
	if !outcomes[events.Rejected] || !outcomes[events.Revoked] || r.emu.HasKey(keys[0]) {
		t.Errorf("results %+v: want the forgery rejected and the genuine request revoked", got)
	}
}
