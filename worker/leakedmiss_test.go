package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// calls counts the requests Kalshi received since before.
func calls(before, after emulator.Stats) int { return after.Requests - before.Requests }

// notFound waits for the result of request id and checks it is a
// leaked_key_not_found that says nothing of the account.
func (r *rig) notFound(id string, n int) events.Result {
	r.t.Helper()
	res := r.waitResults(n, 20*time.Second)[id]
	if res.Outcome != events.Rejected || res.Error == nil || res.Error.Code != events.CodeLeakedKeyNotFound {
		r.t.Fatalf("%s: %s %+v, want rejected/leaked_key_not_found", id, res.Outcome, res.Error)
	}
	return res
}

// A leaked PEM that matched no key is remembered: repeats cost no Kalshi call
// (a new hint costs one call, as that key), and the refusal names neither the
// account's key count nor whether a hint is listed.
func TestLeakedKeyMissRemembered(t *testing.T) {
	r := newRig(t)
	ours, _ := r.leakedKeys(10)
	_, foreign := emulatortest.NewKeyPEM(t, emulatortest.PKCS1RSA)
	r.start(r.config())

	before := r.emu.Stats()
	r.publishLeaked("miss-1", foreign, "")
	first := r.notFound("miss-1", 1)
	if n := calls(before, r.emu.Stats()); n != 12 { // one list, one call per listed key (the worker's own too)
		t.Errorf("the first search made %d calls, want 12", n)
	}
	before = r.emu.Stats()
	for i := 2; i <= 5; i++ {
		r.publishLeaked(fmt.Sprintf("miss-%d", i), foreign, "")
		r.notFound(fmt.Sprintf("miss-%d", i), i)
	}
	if n := calls(before, r.emu.Stats()); n != 0 {
		t.Errorf("4 repeats of the PEM made %d Kalshi calls, want 0", n)
	}

	// A hint the account lists and one it does not: one call each, as
	// that key, and the same refusal.
	before = r.emu.Stats()
	r.publishLeaked("listed-hint", foreign, ours[3])
	listed := r.notFound("listed-hint", 6)
	r.publishLeaked("unlisted-hint", foreign, "0badc0de-0000-4000-8000-000000000000")
	unlisted := r.notFound("unlisted-hint", 7)
	after := r.emu.Stats()
	if n := calls(before, after); n != 2 {
		t.Errorf("two new hints made %d calls, want 2", n)
	}
	if n := answered(before, after)[ours[3]]; n != 1 {
		t.Errorf("%d calls signed as the listed hint, want 1", n)
	}
	for _, res := range []events.Result{first, listed, unlisted} {
		msg := res.Error.Message
		if msg != first.Error.Message {
			t.Errorf("refusals differ: %q and %q", msg, first.Error.Message)
		}
		// Apart from the fingerprint, no number and no word of listing.
		rest := strings.ReplaceAll(msg, fingerprintOf(t, foreign), "")
		if strings.ContainsAny(rest, "0123456789") || strings.Contains(rest, "list") || strings.Contains(rest, "hint") {
			t.Errorf("the refusal tells of the account: %q", msg)
		}
	}
}

// Without per-message TTL in the bucket, the entry carries its time and a
// reader ignores it once it is older than LeakedMissTTL: then a repeat
// searches again.
func TestLeakedKeyMissExpires(t *testing.T) {
	r := newRig(t)
	r.leakedKeys(2)
	_, foreign := emulatortest.NewKeyPEM(t, emulatortest.PKCS8Ed25519)
	cfg := r.config()
	cfg.LeakedMissTTL = 2 * time.Second
	r.start(cfg)
	r.publishLeaked("m-1", foreign, "")
	r.notFound("m-1", 1)
	searched := time.Now()

	kv, err := r.js.KeyValue(context.Background(), ledger.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	key := "miss." + strings.TrimPrefix(fingerprintOf(t, foreign), "sha256:")
	e, err := kv.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("no ledger entry %s: %v", key, err)
	}
	var entry struct {
		At time.Time `json:"at"`
	}
	if err := json.Unmarshal(e.Value(), &entry); err != nil || entry.At.IsZero() {
		t.Fatalf("entry %s = %s (%v), want its time", key, e.Value(), err)
	}

	before := r.emu.Stats()
	r.publishLeaked("m-2", foreign, "")
	r.notFound("m-2", 2)
	if n := calls(before, r.emu.Stats()); n != 0 {
		t.Errorf("a repeat within the TTL made %d calls", n)
	}
	natstest.WaitFor(t, 10*time.Second, "the TTL to pass", func() bool { return time.Since(searched) > 2500*time.Millisecond })
	before = r.emu.Stats()
	r.publishLeaked("m-3", foreign, "")
	r.notFound("m-3", 3)
	if n := calls(before, r.emu.Stats()); n != 4 {
		t.Errorf("a repeat after the TTL made %d calls, want a search again (4)", n)
	}
}

// In a bucket that allows per-message TTL, the entry is written with
// LeakedMissTTL and the server removes it.
func TestLeakedKeyMissPerMessageTTL(t *testing.T) {
	r := newRig(t)
	r.leakedKeys(1)
	_, foreign := emulatortest.NewKeyPEM(t, emulatortest.PKCS1RSA)
	cfg := r.config()
	cfg.LeakedMissTTL = time.Second
	kc := provision.LedgerConfig(cfg.Provisioning())
	kc.LimitMarkerTTL = time.Second
	ctx := context.Background()
	kv, err := r.js.CreateKeyValue(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	r.start(cfg)
	r.publishLeaked("t-1", foreign, "")
	r.notFound("t-1", 1)

	key := "miss." + strings.TrimPrefix(fingerprintOf(t, foreign), "sha256:")
	s, err := r.js.Stream(ctx, ledger.Stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "$KV."+ledger.Bucket+"."+key)
	if err != nil {
		t.Fatalf("no ledger entry %s: %v", key, err)
	}
	if ttl := m.Header.Get("Nats-TTL"); ttl != "1s" {
		t.Errorf("entry %s has Nats-TTL %q, want 1s", key, ttl)
	}
	natstest.WaitFor(t, 10*time.Second, "the server to expire the entry", func() bool {
		_, err := kv.Get(ctx, key)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
}
