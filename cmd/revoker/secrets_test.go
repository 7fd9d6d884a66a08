package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker/natstest"
)

// TestSecretsNeverLogged runs the worker at debug level through every
// outcome, a storm of faults and a NATS restart, with signed requests, and
// looks for every secret in everything the program printed: the Kalshi
// PEM, every signature Kalshi received, the signer's seed, the NATS token,
// user and password of the server URLs, the nkey seed, the .creds seed and
// the TLS client key.
//
// The NATS server checks the credentials (see credentialsAuth) and a
// client certificate.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(5)
	dir := t.TempDir()
	signerSeed, signerPub := newUserSeedFile(t, dir)
	natsSeed, natsPub := newUserSeedFile(t, dir)
	op := newTestOperator(t, dir)
	pki := newTestPKI(t)
	auth := &credentialsAuth{token: "tok-9f8e7d6c5b4a", user: "alice-3c2b1a", password: "pw-7a6b5c4d3e", nkey: natsPub, credsUser: userOf(t, op.credsFile)}
	nats := startAuthServer(t, pki, auth)

	tlsEnv := map[string]string{"NATS_TLS_CA": pki.ca, "NATS_TLS_CERT": pki.clientCert, "NATS_TLS_KEY": pki.clientKey}
	w.env = withEnv(w.env, tlsEnv)
	w.env["NATS_URL"] = fmt.Sprintf("nats://%s@127.0.0.1:%d", auth.token, nats.port)
	w.env["NATS_CREDS"] = op.credsFile
	w.env["REVOKER_LOG_LEVEL"] = "debug"
	w.env["REVOKER_TRUSTED_SIGNERS"] = signerPub
	w.env["REVOKER_PROTECTED_KEYS"] = keys[3]
	w.env["REVOKER_MAX_RETRY"] = "8s"
	cliEnv := withEnv(w.env, map[string]string{
		"NATS_URL":            fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", auth.user, auth.password, nats.port),
		"NATS_CREDS":          "",
		"NATS_NKEY_SEED":      natsSeed,
		"REVOKER_SIGNER_SEED": signerSeed,
	})
	w.emu.SetFaults(emulator.Faults{Seed: 11, ServerError: 0.2, TooMany: 0.1, RetryAfter: time.Second, LostResponse: 0.2})
	stop, logs := w.startRun()

	// Everything the CLI prints, stdout and stderr, goes here and not to
	// the test's log.
	var printed syncBuffer
	say := func(env map[string]string, args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = run(ctx, args, getenv(env), nil, &printed, &printed)
	}
	say(cliEnv, "revoke", keys[0], keys[1], w.selfID, keys[3])

	// Unsigned: refused by the policy.
	cliCfg, _, err := parseConfig("check", nil, getenv(cliEnv))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := connectNATS(t.Context(), cliCfg, "unsigned", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("keys.revoke.requests", []byte(`{"id":"unsigned","api_key_id":"`+keys[2]+`"}`)); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 20*time.Second, "the unsigned request's rejection", func() bool { return strings.Contains(logs.String(), "unauthorized_request") })

	// NATS restarts: the worker reconnects and carries on.
	nats.restart(t)
	natstest.WaitFor(t, 20*time.Second, "the worker to reconnect", func() bool {
		return strings.Contains(logs.String(), "reconnected to NATS") && w.get("/readyz") == http.StatusOK
	})
	// Without faults, so that no attempt can have deleted the unknown key.
	w.emu.SetFaults(emulator.Faults{})
	say(cliEnv, "revoke", "--json", keys[4], "00000000-0000-4000-8000-00000000beef")

	// Kalshi failing for good: retries exhausted.
	w.emu.SetFaults(emulator.Faults{Seed: 12, ServerError: 1})
	say(cliEnv, "revoke", "--timeout", "20s", w.emu.AddKey("doomed", &emulatortest.Key().PublicKey))
	say(cliEnv, "keys")
	say(cliEnv, "check")
	say(withEnv(cliEnv, map[string]string{"NATS_URL": fmt.Sprintf("nats://127.0.0.1:%d", nats.port)}), "check") // the nkey seed alone
	say(withEnv(cliEnv, map[string]string{"NATS_URL": fmt.Sprintf("nats://%s:%s@127.0.0.1:1", auth.user, auth.password)}), "check")
	if err := stop(); err != nil {
		t.Errorf("run returned %v", err)
	}

	all := logs.String() + printed.String()
	for _, want := range []string{"revoked", "already_revoked", "self_revocation_refused", "protected_key", "unauthorized_request", "retries_exhausted",
		"connected to NATS", "disconnected from NATS", "reconnected to NATS", "NATS connection closed", "nats reachable: nats://REDACTED@127.0.0.1:", "FAIL  nats reachable"} {
		if !strings.Contains(all, want) {
			t.Errorf("the run never reached %q; the test covers less than it claims", want)
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
	for name, secret := range map[string]string{"NATS token": auth.token, "NATS user": auth.user, "NATS password": auth.password} {
		if strings.Contains(all, secret) {
			t.Errorf("the %s appears in the output", name)
		}
	}
	for name, path := range map[string]string{"Kalshi private key": w.env["KALSHI_PRIVATE_KEY_PATH"], "TLS client key": pki.clientKey} {
		pemText, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(pemText), "\n") {
			if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(all, line) {
				t.Errorf("a line of the %s appears in the output", name)
			}
		}
	}
	for name, path := range map[string]string{"signer's seed": signerSeed, "NATS nkey seed": natsSeed, ".creds seed": op.credsFile} {
		if seed := seedOf(t, path); strings.Contains(all, seed) || strings.Contains(all, seed[2:30]) {
			t.Errorf("the %s appears in the output", name)
		}
	}
	if strings.Contains(strings.ToUpper(all), "KALSHI-ACCESS-SIGNATURE:") {
		t.Error("a signed header appears in the output")
	}
	t.Logf("checked %d bytes of output against %d signatures, the PEMs, the seeds and the NATS credentials", len(all), len(sigs))
}

// credentialsAuth admits the test's clients, each by every credential it
// sends: the worker by the token and a signature of the server's nonce by
// the .creds user (outside operator mode the server drops the JWT itself),
// the CLI by the user and password, or by the nkey and its signature.
type credentialsAuth struct {
	token, user, password string
	nkey, credsUser       string // public keys
}

func (a *credentialsAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	signedBy := func(pub string) bool {
		kp, err := nkeys.FromPublicKey(pub)
		if err != nil {
			return false
		}
		sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
		return err == nil && kp.Verify(c.GetNonce(), sig) == nil
	}
	switch {
	case o.Token != "":
		return o.Token == a.token && signedBy(a.credsUser)
	case o.Username != "":
		return o.Username == a.user && o.Password == a.password
	case o.Nkey != "":
		return o.Nkey == a.nkey && signedBy(a.nkey)
	}
	return false
}

// authServer is a JetStream server that requires a client certificate and
// the credentials auth admits, and that can be restarted on its port with
// its store.
type authServer struct {
	opts func() *server.Options
	srv  *server.Server
	port int
}

func startAuthServer(t *testing.T, pki testPKI, auth server.Authentication) *authServer {
	t.Helper()
	store := t.TempDir()
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.serverCert, KeyFile: pki.serverKey, CaFile: pki.ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &authServer{opts: func() *server.Options {
		return &server.Options{
			JetStream: true, StoreDir: store,
			TLSConfig: tlsConfig.Clone(), TLSVerify: true, TLSTimeout: 5,
			CustomClientAuthentication: auth, AlwaysEnableNonce: true,
		}
	}}
	s.srv = startServer(t, s.opts())
	s.port = s.srv.Addr().(*net.TCPAddr).Port
	return s
}

// restart shuts the server down and starts it again on the same port.
func (s *authServer) restart(t *testing.T) {
	t.Helper()
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	opts := s.opts()
	opts.Port = s.port
	s.srv = startServer(t, opts)
}

// userOf is the user public key of a .creds file.
func userOf(t *testing.T, creds string) string {
	t.Helper()
	data, err := os.ReadFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	token, err := nkeys.ParseDecoratedJWT(data)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	return claims.Subject
}

// seedOf is the nkey seed in a seed or .creds file.
func seedOf(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(data)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return string(seed)
}
