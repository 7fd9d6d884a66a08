package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker/natstest"
)

// TestSecretsNeverLogged runs the worker at debug level through every
// outcome and a storm of faults, with signed requests, and looks for the
// private key, every signature Kalshi received and the signer's seed in
// everything the program printed.
func TestSecretsNeverLogged(t *testing.T) {
	w := newWorld(t)
	keys := w.seed(4)
	signer, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := signer.Seed()
	pub, _ := signer.PublicKey()
	seedPath := filepath.Join(t.TempDir(), "signer.nk")
	if err := os.WriteFile(seedPath, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	w.env["REVOKER_LOG_LEVEL"] = "debug"
	w.env["REVOKER_TRUSTED_SIGNERS"] = pub
	w.env["REVOKER_PROTECTED_KEYS"] = keys[3]
	w.env["REVOKER_MAX_RETRY"] = "8s"
	w.env["REVOKER_SIGNER_SEED"] = seedPath
	w.emu.SetFaults(emulator.Faults{Seed: 11, ServerError: 0.2, TooMany: 0.1, RetryAfter: time.Second, LostResponse: 0.2})
	_, logs := w.startRun()

	var printed strings.Builder
	say := func(args ...string) {
		out, _ := w.cli(args...)
		printed.WriteString(out)
	}
	say("revoke", keys[0], keys[1], "00000000-0000-4000-8000-00000000beef", w.selfID, keys[3])
	say("revoke", "--json", keys[2])
	// Unsigned: refused by the policy.
	nc := natstest.Connect(t, w.nats.URL())
	if err := nc.Publish("keys.revoke.requests", []byte(`{"id":"unsigned","api_key_id":"`+keys[2]+`"}`)); err != nil {
		t.Fatal(err)
	}
	// Kalshi failing for good: retries exhausted.
	w.emu.SetFaults(emulator.Faults{Seed: 12, ServerError: 1})
	say("revoke", "--timeout", "20s", w.emu.AddKey("doomed", &emulatortest.Key().PublicKey))
	say("keys")
	say("check")

	all := logs.String() + printed.String()
	for _, want := range []string{"revoked", "already_revoked", "self_revocation_refused", "protected_key", "unauthorized_request", "retries_exhausted"} {
		if !strings.Contains(all, want) {
			t.Errorf("the run never reached %s; the test covers less than it claims", want)
		}
	}
	sigs := w.emu.Signatures()
	if len(sigs) < 10 {
		t.Fatalf("only %d signatures reached the emulator", len(sigs))
	}
	for _, s := range sigs {
		if strings.Contains(all, s) {
			t.Fatalf("a signature Kalshi received appears in the output")
		}
	}
	pemText, err := os.ReadFile(w.env["KALSHI_PRIVATE_KEY_PATH"])
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(pemText), "\n") {
		if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(all, line) {
			t.Fatal("a line of the private key appears in the output")
		}
	}
	if strings.Contains(all, string(seed)) {
		t.Fatal("the signer's seed appears in the output")
	}
	if strings.Contains(strings.ToUpper(all), "KALSHI-ACCESS-SIGNATURE:") {
		t.Fatal("a signed header appears in the output")
	}
	t.Logf("checked %d bytes of output against %d signatures, the PEM and the seed", len(all), len(sigs))
}
