package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/events/auth"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
)

// ed25519PEM is a fresh Ed25519 key, its PKCS#8 PEM and its fingerprint.
func ed25519PEM(t *testing.T) (crypto.Signer, []byte, string) {
	t.Helper()
	key, p := emulatortest.NewKeyPEM(t, emulatortest.PKCS8Ed25519)
	return key, p, fingerprintOf(t, key)
}

func fingerprintOf(t *testing.T, key any) string {
	t.Helper()
	fp, err := kalshi.Fingerprint(key)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// secretLines are the lines of a PEM that are secret: all but the
// -----BEGIN and -----END markers.
func secretLines(pemText []byte) []string {
	var lines []string
	for _, l := range strings.Split(string(pemText), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	return lines
}

// revoke --leaked-key publishes one signed request that carries the
// private key block alone (not the text around it in the file) and the
// hint, and prints the outcome under the key the result names, with the
// fingerprint; a result that names no key is printed under the
// fingerprint. The worker is played here.
func TestRevokeLeakedKeyRequest(t *testing.T) {
	t.Parallel()
	f := newFakeWorker(t)
	_, pemText, fp := ed25519PEM(t)
	leak := writeTemp(t, "leak.env", []byte("# pasted in ticket 4711\nAWS_SECRET_ACCESS_KEY=do-not-send-me\n"+string(pemText)+"trailing words\n"))
	seed, _ := newUserSeedFile(t, t.TempDir())

	wait := f.cli(nil, "", "revoke", "--leaked-key", leak, "--signer-seed", seed, "--reason", "leaked in a ticket", "--timeout", "10s", "k-Hint")
	m := f.request(1)
	var body map[string]string
	if err := json.Unmarshal(m.Data, &body); err != nil {
		t.Fatal(err)
	}
	if body["leaked_private_key"] != string(pemText) || body["api_key_id"] != "k-Hint" || body["reason"] != "leaked in a ticket" ||
		body["source"] != "revoker-cli" || body["requested_at"] == "" || !strings.HasPrefix(body["id"], "revoker-cli-") || len(body) != 7 {
		t.Errorf("the request: %q", body)
	}
	if strings.Contains(string(m.Data), "do-not-send-me") || strings.Contains(string(m.Data), "trailing") {
		t.Error("the request carries the text around the key")
	}
	sig := m.Header.Get(auth.HeaderSignature)
	if sum := sha256.Sum256([]byte(sig)); sig == "" || m.Header.Get(jetstream.MsgIDHeader) != hex.EncodeToString(sum[:]) {
		t.Errorf("the request is not signed as revoke signs (signature %q, Nats-Msg-Id %q)", sig, m.Header.Get(jetstream.MsgIDHeader))
	}
	req, err := events.DecodeRequest(m.Header, m.Data, "KEY_REVOKE_REQUESTS-1")
	if err != nil || string(req.LeakedKey.PEM()) != string(pemText) || req.APIKeyID != "k-hint" {
		t.Errorf("the worker would decode %+v, %v", req, err)
	}
	f.result(1, events.Result{APIKeyID: "k-7", LeakedKeyFingerprint: fp, Outcome: events.Revoked})
	f.record("k-7", body["id"], m.Time)
	out, stderr, code := wait()
	want := "k-7 revoked\nk-7 leaked_key_fingerprint=" + fp + "\nk-7 confirmed\n"
	if out != want || code != 0 || stderr != "" {
		t.Errorf("revoke --leaked-key: exit %d\n%s\nwant\n%s\nstderr %q", code, out, want, stderr)
	}

	// From standard input, without a hint: no api_key_id. The result names
	// no key.
	wait = f.cli(nil, string(pemText), "revoke", "--leaked-key", "-", "--timeout", "10s")
	body = nil
	if err := json.Unmarshal(f.request(2).Data, &body); err != nil {
		t.Fatal(err)
	}
	if _, ok := body["api_key_id"]; ok || body["leaked_private_key"] != string(pemText) {
		t.Errorf("the request from standard input: %q", body)
	}
	f.result(2, events.Result{LeakedKeyFingerprint: fp, Outcome: events.Rejected, Error: &events.Error{Code: events.CodeLeakedKeyNotFound, Message: "no key of the account matches the leaked private key"}})
	out, _, code = wait()
	if want := fp + " rejected leaked_key_not_found: no key of the account matches the leaked private key\n"; out != want || code != exitFailed {
		t.Errorf("a leaked key no key matches: exit %d\n%s\nwant\n%s", code, out, want)
	}

	// --json: the result document, nothing else.
	wait = f.cli(nil, "", "revoke", "--json", "--leaked-key", leak, "--timeout", "10s")
	f.result(3, events.Result{APIKeyID: "k-8", LeakedKeyFingerprint: fp, Outcome: events.AlreadyRevoked, RevokedBy: "earlier"})
	out, _, code = wait()
	res, err := events.ParseResult([]byte(strings.TrimSpace(out)))
	if code != 0 || err != nil || res.APIKeyID != "k-8" || res.LeakedKeyFingerprint != fp || strings.Count(out, "\n") != 1 {
		t.Errorf("revoke --json --leaked-key: exit %d %q", code, out)
	}
}

// A file that holds no usable private key sends nothing, exits 2 and says
// why without quoting it.
func TestRevokeLeakedKeyRefusesBadFiles(t *testing.T) {
	t.Parallel()
	f := newFakeWorker(t)
	_, good, _ := ed25519PEM(t)
	block, _ := pem.Decode(good)
	block.Bytes[len(block.Bytes)-40] ^= 0xff // the DER no longer parses
	block.Bytes = block.Bytes[:len(block.Bytes)-3]
	corrupt := pem.EncodeToMemory(block)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})

	for _, c := range []struct {
		name, file, stdin, want string
	}{
		{"corrupt", writeTemp(t, "corrupt.pem", corrupt), "", "private key: invalid PKCS#8 key"},
		{"no PEM", writeTemp(t, "notes.txt", []byte("just notes\n")), "", "private key: no PEM block found"},
		{"EC", writeTemp(t, "ec.pem", ecPEM), "", "EC (ECDSA) keys are not supported"},
		{"missing", filepath.Join(t.TempDir(), "missing.pem"), "", "no such file or directory"},
		{"directory", t.TempDir(), "", "is a directory"},
		{"empty stdin", "-", "", "--leaked-key - (standard input): private key: empty input"},
		{"huge stdin", "-", strings.Repeat("x", maxSecretFile+1), "--leaked-key - (standard input): more than 1024 KiB"},
		{"corrupt stdin", "-", string(corrupt), "private key: invalid PKCS#8 key"},
	} {
		_, stderr, code := f.cli(nil, c.stdin, "revoke", "--leaked-key", c.file)()
		if code != exitConfig || !strings.Contains(stderr, "revoker revoke: nothing was sent: --leaked-key ") || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", c.name, code, stderr, c.want)
		}
		for _, l := range append(secretLines(corrupt), secretLines(ecPEM)...) {
			if strings.Contains(stderr, l) {
				t.Errorf("%s: stderr quotes the key: %q", c.name, stderr)
			}
		}
	}
	if n := f.storedRequests(); n != 0 {
		t.Errorf("refused files stored %d requests", n)
	}
}

// With the worker: a leaked PEM (PKCS#1 in a file, PKCS#8 Ed25519 on
// standard input) revokes the key it belongs to and no other, and is
// confirmed; a PEM of no key of the account is leaked_key_not_found and
// deletes nothing. At debug level, no line of any output (the CLI's
// stdout and stderr, the worker's log) holds a line of a PEM.
//
// This needs the worker's identification (worker/leaked.go) and
// confirmation (worker/confirm.go).
func TestRevokeLeakedKeyWithWorker(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.env["REVOKER_LOG_LEVEL"] = "debug"
	rsaID, rsaPEM, err := w.emu.GenerateKey("ci-deploy")
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := kalshi.ParsePrivateKey(rsaPEM)
	if err != nil {
		t.Fatal(err)
	}
	edKey, edPEM, edFP := ed25519PEM(t)
	edID := w.emu.AddKey("laptop", edKey.Public())
	_, foreignPEM, foreignFP := ed25519PEM(t)
	others := w.seed(2)
	_, logs := w.startRun()
	w.env["REVOKER_LOG_FORMAT"] = "text"
	var printed strings.Builder
	say := func(stdin string, args ...string) (string, int) {
		out, stderr, code := w.run2(stdin, args...)
		printed.WriteString(out + stderr)
		return out, code
	}

	out, code := say("", "revoke", "--leaked-key", writeTemp(t, "id_rsa", rsaPEM))
	if want := rsaID + " revoked\n" + rsaID + " leaked_key_fingerprint=" + fingerprintOf(t, rsaKey) + "\n" + rsaID + " confirmed\n"; code != 0 || out != want {
		t.Errorf("--leaked-key PKCS#1 file: exit %d\n%s\nwant\n%s", code, out, want)
	}
	out, code = say(string(edPEM), "revoke", "--leaked-key", "-", "--json")
	res, err := events.ParseResult([]byte(strings.TrimSpace(out)))
	if code != 0 || err != nil || res.APIKeyID != edID || res.LeakedKeyFingerprint != edFP || res.Outcome != events.Revoked {
		t.Errorf("--leaked-key - (PKCS#8 Ed25519) --json: exit %d %q", code, out)
	}
	out, code = say("", "revoke", "--leaked-key", writeTemp(t, "foreign.pem", foreignPEM))
	if !strings.HasPrefix(out, foreignFP+" rejected leaked_key_not_found: ") || code != exitFailed {
		t.Errorf("a foreign PEM: exit %d %q", code, out)
	}
	say("", "status", rsaID, edID)
	say("", "results")

	for _, k := range []string{rsaID, edID} {
		if w.emu.HasKey(k) {
			t.Errorf("%s is still live", k)
		}
	}
	for _, k := range append(others, w.selfID) {
		if !w.emu.HasKey(k) {
			t.Errorf("%s was deleted", k)
		}
	}
	all := printed.String() + logs.String()
	if !strings.Contains(all, "DBG") {
		t.Error("nothing was logged at debug: the test proves less than it claims")
	}
	for _, l := range slices.Concat(secretLines(rsaPEM), secretLines(edPEM), secretLines(foreignPEM)) {
		if strings.Contains(all, l) {
			t.Fatalf("a line of a leaked PEM was printed or logged: %q", l)
		}
	}
}

// The text around a key block is never sent: privateKeyPEM takes the
// block alone, also from text whose line breaks are written \n (a JSON
// or .env value copied out).
func TestPrivateKeyPEM(t *testing.T) {
	t.Parallel()
	_, pemText, _ := ed25519PEM(t)
	escaped := strings.ReplaceAll(string(pemText), "\n", `\n`)
	for name, in := range map[string]string{
		"alone":      string(pemText),
		"among text": "before\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" + string(pemText) + "after\n",
		"escaped":    escaped + "\n",
	} {
		if got := privateKeyPEM([]byte(in)); string(got) != string(pemText) {
			t.Errorf("%s: got %q, want the key block", name, got)
		}
	}
	if got := privateKeyPEM([]byte("no key here")); got != nil {
		t.Errorf("no key: %q", got)
	}
	body := withLeakedKey([]byte(`{"id":"x"}`), pemText)
	var v map[string]string
	if err := json.Unmarshal(body, &v); err != nil || v["leaked_private_key"] != string(pemText) || v["id"] != "x" {
		t.Errorf("withLeakedKey: %s (%v)", body, err)
	}
}
