package worker_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// leakedKeys registers ten keys of ten key pairs, in every PEM form, and
// returns their IDs and PEMs.
func (r *rig) leakedKeys(n int) (ids []string, pems [][]byte) {
	r.t.Helper()
	for i := range n {
		signer, p := emulatortest.NewKeyPEM(r.t, emulatortest.PEMForms[i%len(emulatortest.PEMForms)])
		ids = append(ids, r.emu.AddKey(fmt.Sprintf("leaky-%d", i), signer))
		pems = append(pems, p)
	}
	return ids, pems
}

// publishLeaked sends a request carrying a leaked PEM, with an optional hint.
func (r *rig) publishLeaked(id string, p []byte, hint string) {
	r.t.Helper()
	body := map[string]string{"id": id, "leaked_private_key": string(p)}
	if hint != "" {
		body["api_key_id"] = hint
	}
	data, err := json.Marshal(body)
	if err != nil {
		r.t.Fatal(err)
	}
	r.publishRaw(id, data)
}

func fingerprintOf(t *testing.T, p []byte) string {
	t.Helper()
	k, err := kalshi.ParsePrivateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := kalshi.Fingerprint(k)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// answered counts, per signing key, the calls Kalshi answered other than
// with 429, since before.
func answered(before, after emulator.Stats) map[string]int {
	out := make(map[string]int)
	for id, byStatus := range after.BySigner {
		for status, n := range byStatus {
			if status != 429 {
				out[id] += n - before.BySigner[id][status]
			}
		}
	}
	return out
}

// probes counts, per signing key other than the worker's own, the calls to
// GET /api_keys (how identification tries a key) that Kalshi answered other
// than with 429, among the calls after the first from. Confirming a leaked
// key's revocation signs with it too: tests that count probes keep
// confirmations out of the window (noConfirm).
func (r *rig) probes(from int) map[string]int {
	out := make(map[string]int)
	for _, c := range r.emu.Calls()[from:] {
		if c.Endpoint == emulator.EndpointListKeys && c.Signer != "" && c.Signer != r.selfID && c.Status != 0 && c.Status != 429 {
			out[c.Signer]++
		}
	}
	return out
}

// noConfirm puts the first check of a revocation an hour away: its call
// signed with the leaked key cannot land among the probes a test counts.
func noConfirm(cfg worker.Config) worker.Config {
	cfg.ConfirmDelay = time.Hour
	return cfg
}

// Each PEM form finds its key, and only that key is deleted; finding it
// asks each listed key at most once.
func TestLeakedKeyIdentifiesItsKey(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(10)
	r.start(noConfirm(r.config()))
	deleted := map[string]bool{}
	for i, target := range []int{7, 2, 9, 0} { // every form, and the first and last listed keys
		before := len(r.emu.Calls())
		reqID := fmt.Sprintf("leak-%d", i)
		r.publishLeaked(reqID, pems[target], "")
		res := r.waitResults(i+1, 20*time.Second)[reqID]
		if res.Outcome != events.Revoked || res.APIKeyID != ids[target] {
			t.Fatalf("%s (%s): %s for %q, want revoked for %s (%+v)", reqID, emulatortest.PEMForms[target%3], res.Outcome, res.APIKeyID, ids[target], res.Error)
		}
		if want := fingerprintOf(t, pems[target]); res.LeakedKeyFingerprint != want {
			t.Errorf("fingerprint %q, want %q", res.LeakedKeyFingerprint, want)
		}
		deleted[ids[target]] = true
		for _, id := range append(ids, r.selfID) {
			if r.emu.HasKey(id) == deleted[id] {
				t.Errorf("after %s: key %s exists %v, want %v", reqID, id, r.emu.HasKey(id), !deleted[id])
			}
		}
		for id, n := range r.probes(before) {
			if n > 1 {
				t.Errorf("%s: %d answered calls signed as %s, want at most 1", reqID, n, id)
			}
		}
	}
}

// A PEM of no key of the account deletes nothing; every listed key was
// asked exactly once.
func TestLeakedKeyForeignPEMNotFound(t *testing.T) {
	r := newRig(t)
	ids, _ := r.leakedKeys(10)
	_, foreign := emulatortest.NewKeyPEM(t, emulatortest.PKCS1RSA)
	r.start(r.config())
	from := len(r.emu.Calls())
	r.publishLeaked("foreign", foreign, "")
	res := r.waitResults(1, 20*time.Second)["foreign"]
	if res.Outcome != events.Rejected || res.Error == nil || res.Error.Code != events.CodeLeakedKeyNotFound {
		t.Fatalf("%s %+v, want rejected/leaked_key_not_found", res.Outcome, res.Error)
	}
	if res.LeakedKeyFingerprint != fingerprintOf(t, foreign) || res.APIKeyID != "" {
		t.Errorf("result names key %q, fingerprint %q", res.APIKeyID, res.LeakedKeyFingerprint)
	}
	after := r.emu.Stats()
	if len(after.Deletes) != 0 {
		t.Errorf("deleted %v", after.Deletes)
	}
	calls := r.probes(from)
	for _, id := range ids {
		if calls[id] != 1 {
			t.Errorf("%d calls signed as %s, want exactly 1", calls[id], id)
		}
	}
	r.waitQueueEmpty()
}

// Under 429s, identification still makes one answered call per listed key,
// waits as the limiter says, and tells the limiter of the 429s.
func TestLeakedKeyRespectsLimiterUnder429(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(10)
	cfg := r.config()
	const rate = 50
	cfg.Limiter = budget.NewLimiter(rate, 1)
	r.start(noConfirm(cfg))
	r.emu.SetFaults(emulator.Faults{Seed: 7, TooMany: 0.5}) // draws are shared with other calls: none must be unlikely
	before, from := r.emu.Stats(), len(r.emu.Calls())
	began := time.Now()
	// The search probes keys in id order: the last one costs every probe,
	// so that some call surely draws a 429.
	last := 0
	for i, id := range ids {
		if strings.ToLower(id) > strings.ToLower(ids[last]) {
			last = i
		}
	}
	r.publishLeaked("busy", pems[last], "")
	res := r.waitResults(1, 30*time.Second)["busy"]
	elapsed := time.Since(began)
	r.emu.SetFaults(emulator.Faults{})
	if res.Outcome != events.Revoked || res.APIKeyID != ids[last] {
		t.Fatalf("%s for %q (%+v), want revoked for %s", res.Outcome, res.APIKeyID, res.Error, ids[last])
	}
	after := r.emu.Stats()
	for id, n := range r.probes(from) {
		if n > 1 {
			t.Errorf("%d answered calls signed as %s, want at most 1", n, id)
		}
	}
	tooMany := after.TooMany - before.TooMany
	if tooMany == 0 {
		t.Fatal("no 429 was injected: the test proves nothing")
	}
	// The probes and the delete, each 429's retry included, at most rate
	// per second after the first: a lower bound the limiter guarantees,
	// whatever the load. Only the request's own calls count (a credential
	// check does not wait for the limiter).
	calls := 0
	for _, c := range r.emu.Calls()[from:] {
		probe := c.Endpoint == emulator.EndpointListKeys && c.Signer != "" && c.Signer != r.selfID
		if probe || c.Endpoint == emulator.EndpointDeleteKey {
			calls++
		}
	}
	if min := time.Duration(calls-1) * time.Second / rate; elapsed < min {
		t.Errorf("%d calls in %v: faster than the limiter's %d/s allows (%v)", calls, elapsed, rate, min)
	}
	if got := cfg.Limiter.Rate(); got >= rate {
		t.Errorf("limiter rate %v after %d 429s, want it throttled below %d", got, tooMany, rate)
	}
}

// A leaked key that is the worker's own is refused unless self-revocation
// is allowed.
func TestLeakedKeyOfTheWorker(t *testing.T) {
	ownPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(emulatortest.Key())})
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow=%v", allow), func(t *testing.T) {
			r := newRig(t)
			r.leakedKeys(3)
			cfg := r.config()
			cfg.AllowSelfRevoke = allow
			r.start(cfg)
			r.publishLeaked("own", ownPEM, "")
			res := r.waitResults(1, 20*time.Second)["own"]
			switch {
			case !allow && (res.Outcome != events.Rejected || res.Error == nil || res.Error.Code != events.CodeSelfRevocationRefused):
				t.Errorf("%s %+v, want rejected/self_revocation_refused", res.Outcome, res.Error)
			case allow && res.Outcome != events.Revoked:
				t.Errorf("%s %+v, want revoked", res.Outcome, res.Error)
			}
			if res.APIKeyID != r.selfID || r.emu.HasKey(r.selfID) == allow {
				t.Errorf("result for %q; own key exists %v", res.APIKeyID, r.emu.HasKey(r.selfID))
			}
			if allow { // its own key gone, the worker can list no more: that 401 confirms it
				led, err := ledger.Open(context.Background(), r.js)
				if err != nil {
					t.Fatal(err)
				}
				natstest.WaitFor(t, 10*time.Second, "the own key's revocation confirmed", func() bool {
					rec, err := led.Lookup(context.Background(), r.selfID)
					return err == nil && rec != nil && !rec.ConfirmedAt.IsZero()
				})
			}
		})
	}
}

// A hint naming another account's key: the leaked key deletes itself.
// Without the hint, nothing of the account matches.
func TestLeakedKeyForeignHint(t *testing.T) {
	r := newRig(t)
	ours, _ := r.leakedKeys(3)
	signer, p := emulatortest.NewKeyPEM(t, emulatortest.PKCS8Ed25519)
	theirs := r.emu.AddKeyIn("other", "theirs", signer)
	r.start(r.config())

	r.publishLeaked("no-hint", p, "")
	if res := r.waitResults(1, 20*time.Second)["no-hint"]; res.Outcome != events.Rejected || res.Error.Code != events.CodeLeakedKeyNotFound {
		t.Fatalf("without a hint: %s %+v, want leaked_key_not_found", res.Outcome, res.Error)
	}
	r.publishLeaked("hint", p, strings.ToUpper(theirs))
	res := r.waitResults(2, 20*time.Second)["hint"]
	if res.Outcome != events.Revoked || res.APIKeyID != theirs || !strings.Contains(res.Detail, "deleted itself") {
		t.Fatalf("with the hint: %s for %q (%+v, %q), want revoked for %s", res.Outcome, res.APIKeyID, res.Error, res.Detail, theirs)
	}
	if r.emu.HasKey(theirs) {
		t.Error("the foreign key still exists")
	}
	for _, id := range append(ours, r.selfID) {
		if !r.emu.HasKey(id) {
			t.Errorf("our key %s was deleted", id)
		}
	}
	// A wrong hint of another account's key that the PEM does not sign for.
	_, stray := emulatortest.NewKeyPEM(t, emulatortest.PKCS1RSA)
	r.publishLeaked("wrong-hint", stray, ours[0])
	if res := r.waitResults(3, 20*time.Second)["wrong-hint"]; res.Outcome != events.Rejected || res.Error.Code != events.CodeLeakedKeyNotFound {
		t.Fatalf("a wrong hint: %s %+v, want leaked_key_not_found", res.Outcome, res.Error)
	}
	if !r.emu.HasKey(ours[0]) {
		t.Error("a wrong hint deleted the key it named")
	}
}

// At debug level, nothing revoker writes (log, results, ledger) holds a
// line of a leaked PEM, whatever became of the request.
func TestLeakedKeyNeverWritten(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(3)
	var logs lockedBuffer
	cfg := r.config()
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.ConfirmDelay, cfg.ConfirmInterval = 10*time.Millisecond, 50*time.Millisecond
	r.start(cfg)
	_, foreign := emulatortest.NewKeyPEM(t, emulatortest.PKCS8RSA)
	broken := bytes.Replace(pems[1], []byte("\n"), []byte("\nAAAA"), 3) // still a PEM block, no longer a key
	r.publishLeaked("found", pems[0], "")
	r.publishLeaked("foreign", foreign, "")
	r.publishLeaked("broken", broken, "")
	r.publishLeaked("hinted", pems[2], ids[1])
	res := r.waitResults(4, 20*time.Second)
	if res["found"].Outcome != events.Revoked || res["hinted"].APIKeyID != ids[2] || res["broken"].Outcome != events.Rejected {
		t.Fatalf("unexpected results: %+v", res)
	}
	if !r.emu.HasKey(ids[1]) {
		t.Errorf("the wrong hint %s was deleted", ids[1])
	}
	if b := res["broken"]; b.Error.Code != events.CodeInvalidRequest || !strings.Contains(b.Error.Message, "leaked_private_key") {
		t.Errorf("broken PEM: %+v, want invalid_request naming leaked_private_key", b.Error)
	}
	natstest.WaitFor(t, 10*time.Second, "the revocations confirmed", func() bool {
		return strings.Count(logs.String(), "revocation confirmed") >= 2
	})

	var written bytes.Buffer
	written.WriteString(logs.String())
	for _, s := range r.stored() {
		doc, _ := s.MarshalEvent()
		written.Write(doc)
	}
	kv, err := r.js.KeyValue(context.Background(), ledger.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		e, err := kv.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		written.Write(e.Value())
	}
	for _, p := range [][]byte{pems[0], pems[1], pems[2], foreign, broken} {
		for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
			if strings.HasPrefix(line, "-----") {
				continue // BEGIN and END markers are no secret
			}
			if bytes.Contains(written.Bytes(), []byte(line)) {
				t.Fatalf("a line of a leaked PEM was written: %q", line)
			}
		}
	}
	r.waitQueueEmpty()
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A worker that dies after deleting the key a leaked PEM belongs to: the
// redelivery cannot find the key any more (the account no longer lists
// it), so it must take it from the ledger, and end revoked.
func TestLeakedKeyRedeliveredAfterTheDelete(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(4)
	cfg := r.config()
	cfg.AckWait = 3 * time.Second
	die := r.launchDying(cfg)
	r.publishLeaked("died", pems[3], "")
	die()
	r.start(cfg)
	res := r.waitResults(1, 20*time.Second)["died"]
	if res.Outcome != events.Revoked || res.APIKeyID != ids[3] || res.Deliveries < 2 {
		t.Errorf("got %s for %q after %d deliveries (%+v), want revoked for %s on a redelivery",
			res.Outcome, res.APIKeyID, res.Deliveries, res.Error, ids[3])
	}
}

// A leaked PEM of a protected key is refused like the key itself, in any
// spelling REVOKER_PROTECTED_KEYS gives it.
func TestLeakedKeyOfAProtectedKey(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(3)
	cfg := r.config()
	cfg.ProtectedKeys = []string{strings.ToUpper(ids[1])}
	r.start(cfg)
	r.publishLeaked("protected", pems[1], "")
	res := r.waitResults(1, 20*time.Second)["protected"]
	if res.Outcome != events.Rejected || res.Error.Code != events.CodeProtectedKey || res.APIKeyID != ids[1] {
		t.Fatalf("%s %+v for %q, want rejected/protected_key for %s", res.Outcome, res.Error, res.APIKeyID, ids[1])
	}
	if n := r.emu.Stats().DeleteAttempts[ids[1]]; n != 0 || !r.emu.HasKey(ids[1]) {
		t.Errorf("the protected key got %d DELETEs", n)
	}
}

// A second request with the same PEM, under another id, comes after the
// key is gone, when no listed key is it: the ledger remembers which key
// the PEM is, so it ends already_revoked, naming the request that did it,
// and asks no listed key again.
func TestLeakedKeyAgainUnderAnotherID(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(4)
	r.start(noConfirm(r.config()))
	r.publishLeaked("first", pems[2], "")
	if res := r.waitResults(1, 20*time.Second)["first"]; res.Outcome != events.Revoked || res.APIKeyID != ids[2] {
		t.Fatalf("first: %s for %q (%+v)", res.Outcome, res.APIKeyID, res.Error)
	}
	before := len(r.emu.Calls())
	r.publishLeaked("second", pems[2], "")
	res := r.waitResults(2, 20*time.Second)["second"]
	if res.Outcome != events.AlreadyRevoked || res.APIKeyID != ids[2] || res.RevokedBy != "first" {
		t.Fatalf("second: %s for %q revoked by %q (%+v), want already_revoked for %s revoked by first",
			res.Outcome, res.APIKeyID, res.RevokedBy, res.Error, ids[2])
	}
	for id, n := range r.probes(before) {
		if n > 0 {
			t.Errorf("%d calls signed as %s: the key was known, none was needed", n, id)
		}
	}
}

// What the ledger says a leaked PEM is (written by anyone allowed to write
// the ledger) still passes the key's guards: a PEM whose entry names the
// worker's own key, or a protected key, deletes nothing.
func TestLeakedKeyLedgerEntryStillGuarded(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(2)
	cfg := r.config()
	cfg.ProtectedKeys = []string{ids[1]}
	if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	kv, err := r.js.KeyValue(context.Background(), ledger.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	for i, target := range []string{r.selfID, ids[1]} {
		fp := strings.TrimPrefix(fingerprintOf(t, pems[i]), "sha256:")
		if _, err := kv.Put(context.Background(), "leaked."+fp, []byte(`{"key":"`+target+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	r.start(cfg)
	r.publishLeaked("to-self", pems[0], "")
	r.publishLeaked("to-protected", pems[1], "")
	res := r.waitResults(2, 20*time.Second)
	for id, want := range map[string]events.Code{"to-self": events.CodeSelfRevocationRefused, "to-protected": events.CodeProtectedKey} {
		if got := res[id]; got.Outcome != events.Rejected || got.Error == nil || got.Error.Code != want {
			t.Errorf("%s: %s %+v, want rejected/%s", id, got.Outcome, got.Error, want)
		}
	}
	if st := r.emu.Stats(); len(st.DeleteAttempts) != 0 {
		t.Errorf("DELETEs: %v", st.DeleteAttempts)
	}
}

// 5xx answers to the probes are retried, never taken for a refusal: the
// PEM still finds its key and only it. When Kalshi fails for longer than
// the retry budget, the request fails as retries_exhausted (not
// leaked_key_not_found) and deletes nothing.
func TestLeakedKeyUnder5xx(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(10)
	cfg := r.config()
	r.start(cfg)
	r.emu.SetFaults(emulator.Faults{Seed: 5, ServerError: 0.3})
	r.publishLeaked("flaky", pems[8], "")
	res := r.waitResults(1, 30*time.Second)["flaky"]
	r.emu.SetFaults(emulator.Faults{})
	if res.Outcome != events.Revoked || res.APIKeyID != ids[8] {
		t.Fatalf("%s for %q (%+v), want revoked for %s", res.Outcome, res.APIKeyID, res.Error, ids[8])
	}
	for i, id := range ids {
		if r.emu.HasKey(id) == (i == 8) {
			t.Errorf("key %d exists %v", i, r.emu.HasKey(id))
		}
	}

	r2 := newRig(t)
	ids, pems = r2.leakedKeys(3)
	cfg = r2.config()
	cfg.MaxRetry = 500 * time.Millisecond
	r2.start(cfg)
	r2.emu.SetFaults(emulator.Faults{Seed: 6, ServerError: 1})
	r2.publishLeaked("down", pems[1], "")
	res = r2.waitResults(1, 30*time.Second)["down"]
	r2.emu.SetFaults(emulator.Faults{})
	if res.Outcome != events.Failed || res.Error == nil || res.Error.Code != events.CodeRetriesExhausted {
		t.Fatalf("%s %+v, want failed/retries_exhausted", res.Outcome, res.Error)
	}
	if n := len(r2.emu.Stats().DeleteAttempts); n != 0 || !r2.emu.HasKey(ids[1]) {
		t.Errorf("%d keys got DELETEs while Kalshi was down", n)
	}
}
