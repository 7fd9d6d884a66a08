package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// newPrivateKeyPEM returns a fresh PKCS#8 PEM private key.
func newPrivateKeyPEM(t *testing.T) []byte {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// writeKeyFile writes a fresh PEM private key with the given mode.
func writeKeyFile(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	writeFile(t, path, newPrivateKeyPEM(t), mode)
	return path
}

// getenv turns a map into the getenv parseConfig takes.
func getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// withEnv returns base with extra's entries set.
func withEnv(base map[string]string, extra map[string]string) map[string]string {
	env := maps.Clone(base)
	maps.Copy(env, extra)
	return env
}

// kalshiEnv is the least environment "run" accepts: the Kalshi settings.
func kalshiEnv(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{
		"KALSHI_API_KEY_ID":       "a952bcbe-ec3b-4b5b-b8f9-11dae589608c",
		"KALSHI_PRIVATE_KEY_PATH": writeKeyFile(t, t.TempDir(), "kalshi.pem", 0o600),
	}
}

func mustParse(t *testing.T, cmd string, args []string, env map[string]string) (Config, []string) {
	t.Helper()
	cfg, rest, err := parseConfig(cmd, args, getenv(env))
	if err != nil {
		t.Fatalf("parseConfig(%q, %q): %v", cmd, args, err)
	}
	return cfg, rest
}

func problems(t *testing.T, err error) []string {
	t.Helper()
	var ce *configError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *configError", err, err)
	}
	return ce.Problems
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	env := kalshiEnv(t)
	cfg, rest := mustParse(t, "run", nil, env)
	if len(rest) != 0 {
		t.Errorf("positional args %q", rest)
	}
	if len(cfg.KalshiPrivateKey) == 0 {
		t.Error("private key not loaded")
	}
	cfg.KalshiPrivateKey = nil
	want := Config{
		Command:              "run",
		NATSURLs:             []string{"nats://127.0.0.1:4222"},
		NATSInboxPrefix:      "_INBOX.worker",
		KalshiBaseURL:        "https://external-api.kalshi.com/trade-api/v2",
		KalshiKeyID:          env["KALSHI_API_KEY_ID"],
		KalshiPrivateKeyPath: env["KALSHI_PRIVATE_KEY_PATH"],
		RequestsSubject:      "keys.revoke.requests",
		ResultsSubject:       "keys.revoke.results",
		RequestsStream:       "KEY_REVOKE_REQUESTS",
		ResultsStream:        "KEY_REVOKE_RESULTS",
		Consumer:             "revoker",
		StreamReplicas:       1,
		Concurrency:          8,
		Rate:                 Rate{Auto: true},
		RateShare:            0, // auto
		MaxRetry:             15 * time.Minute,
		MaxSchedule:          30 * 24 * time.Hour,
		AttemptTimeout:       10 * time.Second,
		MaxRequestAge:        5 * time.Minute,
		ResultsMode:          events.Structured,
		CancelOrders:         "off",
		HTTPAddr:             "127.0.0.1:9464",
		LogFormat:            "auto",
		LogLevel:             slog.LevelInfo,
		Source:               "revoker-cli",
		Timeout:              30 * time.Second,
		NATSListen:           "127.0.0.1:4222",
		KalshiListen:         "127.0.0.1:0",
		SandboxKeys:          5,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestDefaultsOtherCommands(t *testing.T) {
	t.Parallel()
	cfg, rest := mustParse(t, "revoke", []string{"key-1"}, nil)
	if !reflect.DeepEqual(rest, []string{"key-1"}) {
		t.Errorf("revoke args %q", rest)
	}
	if cfg.Source != "revoker-cli" || cfg.Timeout != 30*time.Second || cfg.JSON || cfg.Reason != "" || cfg.RequestedBy != "" || cfg.SignerSeed != "" {
		t.Errorf("revoke defaults: %+v", cfg)
	}
	if cfg.KalshiKeyID != "" || len(cfg.KalshiPrivateKey) != 0 {
		t.Error("revoke requires no Kalshi key")
	}

	cfg, _ = mustParse(t, "sandbox", nil, nil)
	if cfg.NATSListen != "127.0.0.1:4222" || cfg.KalshiListen != "127.0.0.1:0" || cfg.HTTPAddr != "127.0.0.1:9464" || cfg.SandboxDir != "" {
		t.Errorf("sandbox defaults: %+v", cfg)
	}
	mustParse(t, "version", nil, nil)
	mustParse(t, "keys", nil, kalshiEnv(t))
	mustParse(t, "check", nil, kalshiEnv(t))
}

func TestCommandsIgnoreSettingsTheyDoNotTake(t *testing.T) {
	t.Parallel()
	// revoke takes no Kalshi or worker settings: their environment is not
	// read (a broken value there is no problem) and they keep defaults.
	env := map[string]string{"KALSHI_PRIVATE_KEY_PATH": "/nonexistent", "REVOKER_CONCURRENCY": "0", "NATS_URL": "nats://n:4222"}
	cfg, _ := mustParse(t, "revoke", []string{"k"}, env)
	if cfg.Concurrency != 8 || !reflect.DeepEqual(cfg.NATSURLs, []string{"nats://n:4222"}) {
		t.Errorf("concurrency %d, urls %q", cfg.Concurrency, cfg.NATSURLs)
	}
	if _, _, err := parseConfig("revoke", []string{"--concurrency", "3", "k"}, nil); err == nil {
		t.Error("revoke accepted --concurrency")
	}
	// keys takes no worker settings (it asks the worker's console).
	cfg, _ = mustParse(t, "keys", nil, withEnv(kalshiEnv(t), map[string]string{"REVOKER_CONCURRENCY": "0"}))
	if cfg.Concurrency != 8 {
		t.Errorf("keys read REVOKER_CONCURRENCY: %d", cfg.Concurrency)
	}
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := newTestPKI(t)
	pki2 := newTestPKI(t)
	seedA, pubA := newUserSeedFile(t, dir)
	seedB, pubB := newUserSeedFile(t, dir)
	op := newTestOperator(t, dir)
	keyA := writeKeyFile(t, dir, "a.pem", 0o600)
	keyB := writeKeyFile(t, dir, "b.pem", 0o600)

	tests := []struct {
		cmd       string
		flag      string // name; the value follows as "--flag=value"
		env       string
		envVal    string
		flagVal   string
		get       func(Config) any
		wantEnv   any
		wantFlag  any
		extraEnv  map[string]string
		extraArgs []string // both runs
		flagExtra []string // the flag run only
	}{
		{"run", "nats-url", "NATS_URL", "nats://a:4222", "nats://b:4222, tls://c:4443", func(c Config) any { return c.NATSURLs }, []string{"nats://a:4222"}, []string{"nats://b:4222", "tls://c:4443"}, nil, nil, nil},
		{"run", "nats-creds", "NATS_CREDS", op.credsFile, op.otherAccountCreds, func(c Config) any { return c.NATSCreds }, op.credsFile, op.otherAccountCreds, nil, nil, nil},
		{"run", "nats-nkey", "NATS_NKEY_SEED", seedA, seedB, func(c Config) any { return c.NATSNkeySeed }, seedA, seedB, nil, nil, nil},
		{"run", "nats-tls-ca", "NATS_TLS_CA", pki.ca, pki2.ca, func(c Config) any { return c.NATSTLSCA }, pki.ca, pki2.ca, nil, nil, nil},
		{"run", "nats-tls-cert", "NATS_TLS_CERT", pki.clientCert, pki.serverCert, func(c Config) any { return c.NATSTLSCert }, pki.clientCert, pki.serverCert,
			map[string]string{"NATS_TLS_KEY": pki.clientKey}, nil, []string{"--nats-tls-key", pki.serverKey}},
		{"run", "nats-tls-key", "NATS_TLS_KEY", pki.clientKey, pki.serverKey, func(c Config) any { return c.NATSTLSKey }, pki.clientKey, pki.serverKey,
			map[string]string{"NATS_TLS_CERT": pki.clientCert}, nil, []string{"--nats-tls-cert", pki.serverCert}},
		{"run", "kalshi-base-url", "KALSHI_BASE_URL", "demo", "https://kalshi.example/trade-api/v2/", func(c Config) any { return c.KalshiBaseURL }, "https://external-api.demo.kalshi.co/trade-api/v2", "https://kalshi.example/trade-api/v2", nil, nil, nil},
		{"keys", "kalshi-key-id", "KALSHI_API_KEY_ID", "env-key", "flag-key", func(c Config) any { return c.KalshiKeyID }, "env-key", "flag-key", nil, nil, nil},
		{"check", "kalshi-private-key", "KALSHI_PRIVATE_KEY_PATH", keyA, keyB, func(c Config) any { return c.KalshiPrivateKeyPath }, keyA, keyB, nil, nil, nil},
		{"run", "requests-subject", "REVOKER_REQUESTS_SUBJECT", "env.req", "flag.req", func(c Config) any { return c.RequestsSubject }, "env.req", "flag.req", nil, nil, nil},
		{"run", "results-subject", "REVOKER_RESULTS_SUBJECT", "env.res", "flag.res", func(c Config) any { return c.ResultsSubject }, "env.res", "flag.res", nil, nil, nil},
		{"run", "requests-stream", "REVOKER_REQUESTS_STREAM", "ENV_REQ", "FLAG_REQ", func(c Config) any { return c.RequestsStream }, "ENV_REQ", "FLAG_REQ", nil, nil, nil},
		{"run", "results-stream", "REVOKER_RESULTS_STREAM", "ENV_RES", "FLAG_RES", func(c Config) any { return c.ResultsStream }, "ENV_RES", "FLAG_RES", nil, nil, nil},
		{"run", "consumer", "REVOKER_CONSUMER", "env-c", "flag-c", func(c Config) any { return c.Consumer }, "env-c", "flag-c", nil, nil, nil},
		{"run", "stream-replicas", "REVOKER_STREAM_REPLICAS", "3", "5", func(c Config) any { return c.StreamReplicas }, 3, 5, nil, nil, nil},
		{"run", "no-provision", "REVOKER_NO_PROVISION", "true", "false", func(c Config) any { return c.NoProvision }, true, false, nil, nil, nil},
		{"run", "concurrency", "REVOKER_CONCURRENCY", "16", "1024", func(c Config) any { return c.Concurrency }, 16, 1024, nil, nil, nil},
		{"run", "rate", "REVOKER_RATE", "0", "12.5", func(c Config) any { return c.Rate }, Rate{}, Rate{PerSecond: 12.5}, nil, nil, nil},
		{"run", "rate-share", "REVOKER_RATE_SHARE", "0.5", "0.25", func(c Config) any { return c.RateShare }, 0.5, 0.25, nil, nil, nil},
		{"run", "max-retry", "REVOKER_MAX_RETRY", "1h", "90s", func(c Config) any { return c.MaxRetry }, time.Hour, 90 * time.Second, nil, nil, nil},
		{"run", "attempt-timeout", "REVOKER_ATTEMPT_TIMEOUT", "3s", "500ms", func(c Config) any { return c.AttemptTimeout }, 3 * time.Second, 500 * time.Millisecond, nil, nil, nil},
		{"run", "allow-self-revoke", "REVOKER_ALLOW_SELF_REVOKE", "false", "true", func(c Config) any { return c.AllowSelfRevoke }, false, true, nil, nil, nil},
		{"run", "protected-keys", "REVOKER_PROTECTED_KEYS", "k1, k2,", "k3", func(c Config) any { return c.ProtectedKeys }, []string{"k1", "k2"}, []string{"k3"}, nil, nil, nil},
		{"run", "trusted-signers", "REVOKER_TRUSTED_SIGNERS", pubA + "," + pubB, pubB, func(c Config) any { return c.TrustedSigners }, []string{pubA, pubB}, []string{pubB}, nil, nil, nil},
		{"run", "max-request-age", "REVOKER_MAX_REQUEST_AGE", "1m", "30s", func(c Config) any { return c.MaxRequestAge }, time.Minute, 30 * time.Second, nil, nil, nil},
		{"run", "allowed-sources", "REVOKER_ALLOWED_SOURCES", "ir, rotation", "ir", func(c Config) any { return c.AllowedSources }, []string{"ir", "rotation"}, []string{"ir"}, nil, nil, nil},
		{"run", "results-mode", "REVOKER_RESULTS_MODE", "binary", "Structured", func(c Config) any { return c.ResultsMode }, events.Binary, events.Structured, nil, nil, nil},
		{"run", "http-addr", "REVOKER_HTTP_ADDR", "off", ":9000", func(c Config) any { return c.HTTPAddr }, "", ":9000", nil, nil, nil},
		{"run", "log-format", "REVOKER_LOG_FORMAT", "json", "text", func(c Config) any { return c.LogFormat }, "json", "text", nil, nil, nil},
		{"run", "log-level", "REVOKER_LOG_LEVEL", "debug", "error", func(c Config) any { return c.LogLevel }, slog.LevelDebug, slog.LevelError, nil, nil, nil},
		{"revoke", "signer-seed", "REVOKER_SIGNER_SEED", seedA, seedB, func(c Config) any { return c.SignerSeed }, seedA, seedB, nil, []string{"key-1"}, nil},
		{"sandbox", "http-addr", "REVOKER_HTTP_ADDR", "127.0.0.1:1", "off", func(c Config) any { return c.HTTPAddr }, "127.0.0.1:1", "", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.cmd+"/"+tt.flag, func(t *testing.T) {
			base := map[string]string{}
			if commands[tt.cmd].needKalshi || tt.cmd == "keys" || tt.cmd == "check" { // the Kalshi settings go together
				base = kalshiEnv(t)
			}
			env := withEnv(withEnv(base, tt.extraEnv), map[string]string{tt.env: tt.envVal})

			cfg, _ := mustParse(t, tt.cmd, tt.extraArgs, env)
			if got := tt.get(cfg); !reflect.DeepEqual(got, tt.wantEnv) {
				t.Errorf("from %s=%q: got %#v, want %#v", tt.env, tt.envVal, got, tt.wantEnv)
			}
			args := append([]string{"--" + tt.flag + "=" + tt.flagVal}, tt.flagExtra...)
			args = append(args, tt.extraArgs...)
			cfg, _ = mustParse(t, tt.cmd, args, env)
			if got := tt.get(cfg); !reflect.DeepEqual(got, tt.wantFlag) {
				t.Errorf("from --%s=%q over the environment: got %#v, want %#v", tt.flag, tt.flagVal, got, tt.wantFlag)
			}
		})
	}
}

func TestFlagOnlySettings(t *testing.T) {
	t.Parallel()
	cfg, rest := mustParse(t, "revoke", []string{
		"k1", "--reason", "leaked in a gist", "--requested-by=alice", "k2",
		"--source", "ir", "--timeout", "2m", "--json", "--", "--k3",
	}, nil)
	if cfg.Reason != "leaked in a gist" || cfg.RequestedBy != "alice" || cfg.Source != "ir" || cfg.Timeout != 2*time.Minute || !cfg.JSON {
		t.Errorf("revoke flags: %+v", cfg)
	}
	if want := []string{"k1", "k2", "--k3"}; !reflect.DeepEqual(rest, want) {
		t.Errorf("positional %q, want %q", rest, want)
	}

	dir := t.TempDir()
	cfg, _ = mustParse(t, "sandbox", []string{"--dir", dir, "--nats-listen", "127.0.0.1:0", "--kalshi-listen", "localhost:8080", "--concurrency=2"}, nil)
	if cfg.SandboxDir != dir || cfg.NATSListen != "127.0.0.1:0" || cfg.KalshiListen != "localhost:8080" || cfg.Concurrency != 2 {
		t.Errorf("sandbox flags: %+v", cfg)
	}
}

func TestEmptyEnvironmentMeansUnset(t *testing.T) {
	t.Parallel()
	env := withEnv(kalshiEnv(t), map[string]string{"REVOKER_CONCURRENCY": "", "NATS_URL": ""})
	cfg, _ := mustParse(t, "run", nil, env)
	if cfg.Concurrency != 8 || len(cfg.NATSURLs) != 1 {
		t.Errorf("empty variables were not ignored: %d %q", cfg.Concurrency, cfg.NATSURLs)
	}
	// An empty flag is a value: it overrides the environment.
	cfg, _ = mustParse(t, "run", []string{"--nats-creds="}, withEnv(env, map[string]string{"NATS_CREDS": "/nonexistent"}))
	if cfg.NATSCreds != "" {
		t.Errorf("NATSCreds = %q", cfg.NATSCreds)
	}
}

func TestValidationMessages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := newTestPKI(t)
	seed, public := newUserSeedFile(t, dir)
	op := newTestOperator(t, dir)
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not a key\n"), 0o600)
	publicPEM := filepath.Join(dir, "public.pem")
	writePEM(t, publicPEM, "PUBLIC KEY", []byte{1, 2, 3}, 0o600)
	encrypted := filepath.Join(dir, "encrypted.pem")
	writePEM(t, encrypted, "ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}, 0o600)
	accountSeed := filepath.Join(dir, "account.nk")
	akp, _ := nkeys.CreateAccount()
	aseed, _ := akp.Seed()
	writeFile(t, accountSeed, aseed, 0o600)
	signers := filepath.Join(dir, "signers")
	writeFile(t, signers, []byte("# none yet\n\n"), 0o644)
	badSigners := filepath.Join(dir, "bad-signers")
	writeFile(t, badSigners, []byte("# ops\n"+public+"\n\nUBAD\n"), 0o644)
	worldKey := writeKeyFile(t, dir, "world.pem", 0o644)
	ecKey := filepath.Join(dir, "ec.pem")
	ecDER, _ := x509.MarshalPKCS8PrivateKey(newECKey(t))
	writePEM(t, ecKey, "PRIVATE KEY", ecDER, 0o600)
	// A seed and the marker of a user JWT, but no JWT signed by an account.
	forgedCreds := filepath.Join(dir, "forged.creds")
	userSeed, _ := os.ReadFile(seed)
	writeFile(t, forgedCreds, []byte("-----BEGIN NATS USER JWT-----\nnot.a.jwt\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n"+strings.TrimSpace(string(userSeed))+"\n------END USER NKEY SEED------\n"), 0o600)

	tests := []struct {
		name string
		cmd  string
		args []string
		env  map[string]string // on top of kalshiEnv for commands that need Kalshi
		want string
	}{
		{"key id required", "run", nil, map[string]string{"KALSHI_API_KEY_ID": ""}, `KALSHI_API_KEY_ID (--kalshi-key-id) is required for "revoker run"`},
		{"key id and key go together for keys", "keys", nil, map[string]string{"KALSHI_API_KEY_ID": "k"}, `KALSHI_API_KEY_ID (--kalshi-key-id) and KALSHI_PRIVATE_KEY_PATH (--kalshi-private-key) (or KALSHI_PRIVATE_KEY) go together`},
		{"key id format", "run", []string{"--kalshi-key-id", "a/b"}, nil, `KALSHI_API_KEY_ID (--kalshi-key-id): "a/b" is not a Kalshi API key ID`},
		{"private key required", "run", nil, map[string]string{"KALSHI_PRIVATE_KEY_PATH": ""}, `KALSHI_PRIVATE_KEY_PATH (--kalshi-private-key) or KALSHI_PRIVATE_KEY is required for "revoker run"`},
		{"private key missing", "run", nil, map[string]string{"KALSHI_PRIVATE_KEY_PATH": missing}, "KALSHI_PRIVATE_KEY_PATH (--kalshi-private-key): cannot read " + missing + ": no such file or directory"},
		{"private key is a directory", "run", nil, map[string]string{"KALSHI_PRIVATE_KEY_PATH": dir}, dir + " is a directory"},
		{"private key not PEM", "run", nil, map[string]string{"KALSHI_PRIVATE_KEY_PATH": garbage}, garbage + ": private key: no PEM block found"},
		{"private key is public", "run", nil, map[string]string{"KALSHI_PRIVATE_KEY_PATH": publicPEM}, `unsupported PEM block type "PUBLIC KEY"`},
		{"private key encrypted", "run", nil, map[string]string{"KALSHI_PRIVATE_KEY_PATH": encrypted}, "encrypted PEM is not supported"},
		{"private key EC", "run", nil, map[string]string{"KALSHI_PRIVATE_KEY_PATH": ecKey}, ecKey + ": private key: EC (ECDSA) keys are not supported"},
		{"private key world-readable", "run", nil, map[string]string{"KALSHI_PRIVATE_KEY_PATH": worldKey}, "KALSHI_PRIVATE_KEY_PATH (--kalshi-private-key): " + worldKey + " is readable by every user (mode 0644); run chmod 600 " + worldKey},
		{"private key path and content", "run", nil, map[string]string{"KALSHI_PRIVATE_KEY": "x"}, "KALSHI_PRIVATE_KEY_PATH (--kalshi-private-key) and KALSHI_PRIVATE_KEY are both set; set only one"},
		{"private key content not PEM", "run", nil, map[string]string{"KALSHI_PRIVATE_KEY_PATH": "", "KALSHI_PRIVATE_KEY": "hunter2"}, "KALSHI_PRIVATE_KEY: private key: no PEM block found"},
		{"base url scheme", "run", nil, map[string]string{"KALSHI_BASE_URL": "ftp://kalshi.example"}, `KALSHI_BASE_URL (--kalshi-base-url): base url "ftp://kalshi.example": want prod, demo or an http(s) URL`},
		{"base url word", "run", []string{"--kalshi-base-url", "staging"}, nil, `KALSHI_BASE_URL (--kalshi-base-url): base url "staging": want prod, demo or an http(s) URL`},
		{"base url plain http", "run", nil, map[string]string{"KALSHI_BASE_URL": "http://api.elections.kalshi.com/trade-api/v2"}, `KALSHI_BASE_URL (--kalshi-base-url): base url "http://api.elections.kalshi.com/trade-api/v2": plain http is allowed only to a loopback host`},
		{"base url query", "run", []string{"--kalshi-base-url", "https://k.example/v2?x=1"}, nil, "must not have a query"},
		{"nats url", "run", nil, map[string]string{"NATS_URL": "http://nats.example:4222"}, `NATS_URL (--nats-url): "http://nats.example:4222" is not a NATS server URL`},
		{"nats url empty", "revoke", []string{"--nats-url=", "k"}, nil, "NATS_URL (--nats-url) must not be empty"},
		{"creds and nkey", "run", nil, map[string]string{"NATS_CREDS": op.credsFile, "NATS_NKEY_SEED": seed}, "NATS_CREDS (--nats-creds) and NATS_NKEY_SEED (--nats-nkey) are both set; use one of them"},
		{"creds missing", "run", nil, map[string]string{"NATS_CREDS": missing}, "NATS_CREDS (--nats-creds): cannot read " + missing},
		{"creds invalid", "run", nil, map[string]string{"NATS_CREDS": garbage}, "NATS_CREDS (--nats-creds): " + garbage + " is not a NATS user credentials file"},
		{"creds without a valid JWT", "run", nil, map[string]string{"NATS_CREDS": forgedCreds}, "NATS_CREDS (--nats-creds): " + forgedCreds + " is not a NATS user credentials file"},
		{"creds that are a seed", "run", nil, map[string]string{"NATS_CREDS": seed}, "NATS_CREDS (--nats-creds): " + seed + " is not a NATS user credentials file"},
		{"nkey not a user seed", "run", nil, map[string]string{"NATS_NKEY_SEED": accountSeed}, "NATS_NKEY_SEED (--nats-nkey): " + accountSeed + " holds no NATS user nkey seed"},
		{"tls cert without key", "run", nil, map[string]string{"NATS_TLS_CERT": pki.clientCert}, "NATS_TLS_CERT (--nats-tls-cert) is set but NATS_TLS_KEY (--nats-tls-key) is not"},
		{"tls key without cert", "run", nil, map[string]string{"NATS_TLS_KEY": pki.clientKey}, "NATS_TLS_KEY (--nats-tls-key) is set but NATS_TLS_CERT (--nats-tls-cert) is not"},
		{"tls ca not a certificate", "run", nil, map[string]string{"NATS_TLS_CA": garbage}, "NATS_TLS_CA (--nats-tls-ca): " + garbage + " holds no PEM certificate"},
		{"tls ca missing", "run", nil, map[string]string{"NATS_TLS_CA": missing}, "NATS_TLS_CA (--nats-tls-ca): cannot read " + missing},
		{"tls key mismatch", "run", nil, map[string]string{"NATS_TLS_CERT": pki.clientCert, "NATS_TLS_KEY": pki.serverKey}, "NATS_TLS_CERT (--nats-tls-cert) and NATS_TLS_KEY (--nats-tls-key) do not make a certificate"},
		{"max retry not a duration", "run", nil, map[string]string{"REVOKER_MAX_RETRY": "15x"}, `REVOKER_MAX_RETRY (--max-retry): "15x" is not a duration (examples: 90s, 15m, 1h)`},
		{"max retry bare number", "run", []string{"--max-retry", "900"}, nil, `REVOKER_MAX_RETRY (--max-retry): "900" is not a duration`},
		{"max retry negative", "run", nil, map[string]string{"REVOKER_MAX_RETRY": "-1m"}, `REVOKER_MAX_RETRY (--max-retry) must be greater than 0, got "-1m"`},
		{"attempt timeout zero", "run", nil, map[string]string{"REVOKER_ATTEMPT_TIMEOUT": "0s"}, `REVOKER_ATTEMPT_TIMEOUT (--attempt-timeout) must be greater than 0`},
		{"max request age zero", "run", nil, map[string]string{"REVOKER_MAX_REQUEST_AGE": "0"}, `REVOKER_MAX_REQUEST_AGE (--max-request-age) must be greater than 0`},
		{"max request age beyond the policy's limit", "run", nil, map[string]string{"REVOKER_MAX_REQUEST_AGE": "48h", "REVOKER_TRUSTED_SIGNERS": public}, "request authentication: max request age 48h0m0s plus clock skew 30s is 48h0m30s; at most 30m0s"},
		{"max request age beyond the limit without signers", "check", nil, map[string]string{"REVOKER_MAX_REQUEST_AGE": "30m"}, "request authentication: max request age 30m0s plus clock skew"},
		{"concurrency zero", "run", nil, map[string]string{"REVOKER_CONCURRENCY": "0"}, "REVOKER_CONCURRENCY (--concurrency) must be between 1 and 1024, got 0"},
		{"concurrency too high", "run", []string{"--concurrency=2000"}, nil, "REVOKER_CONCURRENCY (--concurrency) must be between 1 and 1024, got 2000"},
		{"concurrency not a number", "run", nil, map[string]string{"REVOKER_CONCURRENCY": "lots"}, `REVOKER_CONCURRENCY (--concurrency): "lots" is not a whole number`},
		{"replicas", "run", nil, map[string]string{"REVOKER_STREAM_REPLICAS": "6"}, "REVOKER_STREAM_REPLICAS (--stream-replicas) must be between 1 and 5, got 6"},
		{"no-provision", "run", []string{"--no-provision=maybe"}, nil, `REVOKER_NO_PROVISION (--no-provision): "maybe" is not true or false`},
		{"allow self revoke", "run", nil, map[string]string{"REVOKER_ALLOW_SELF_REVOKE": "yes please"}, `REVOKER_ALLOW_SELF_REVOKE (--allow-self-revoke): "yes please" is not true or false`},
		{"rate negative", "run", nil, map[string]string{"REVOKER_RATE": "-1"}, `REVOKER_RATE (--rate) must be auto, a number of deletes per second, or 0 for unlimited, got "-1"`},
		{"rate word", "run", nil, map[string]string{"REVOKER_RATE": "fast"}, `REVOKER_RATE (--rate) must be auto`},
		{"rate share zero", "run", nil, map[string]string{"REVOKER_RATE_SHARE": "0"}, `REVOKER_RATE_SHARE (--rate-share) must be in (0, 1], got "0"`},
		{"rate share above one", "run", nil, map[string]string{"REVOKER_RATE_SHARE": "1.5"}, `REVOKER_RATE_SHARE (--rate-share) must be in (0, 1]`},
		{"rate share NaN", "run", nil, map[string]string{"REVOKER_RATE_SHARE": "NaN"}, `REVOKER_RATE_SHARE (--rate-share) must be in (0, 1]`},
		{"rate share word", "run", nil, map[string]string{"REVOKER_RATE_SHARE": "half"}, `REVOKER_RATE_SHARE (--rate-share): "half" is not a number`},
		{"http addr no port", "run", nil, map[string]string{"REVOKER_HTTP_ADDR": "9464"}, `REVOKER_HTTP_ADDR (--http-addr): "9464" is not host:port or off (example: 127.0.0.1:9464)`},
		{"http addr bad port", "sandbox", []string{"--http-addr", "localhost:99999"}, nil, `REVOKER_HTTP_ADDR (--http-addr): "localhost:99999" is not host:port or off`},
		{"log level", "run", nil, map[string]string{"REVOKER_LOG_LEVEL": "verbose"}, `REVOKER_LOG_LEVEL (--log-level): "verbose" is not a log level (debug, info, warn or error)`},
		{"log format", "revoke", []string{"--log-format", "xml", "k"}, nil, `REVOKER_LOG_FORMAT (--log-format): "xml" is not auto, text or json`},
		{"results mode", "run", nil, map[string]string{"REVOKER_RESULTS_MODE": "batch"}, `REVOKER_RESULTS_MODE (--results-mode): "batch" is not structured or binary`},
		{"stream name space", "run", nil, map[string]string{"REVOKER_REQUESTS_STREAM": "KEY REVOKE"}, `REVOKER_REQUESTS_STREAM (--requests-stream): "KEY REVOKE" must not contain spaces, '.', '*', '>', '/' or '\'`},
		{"stream name dot", "run", nil, map[string]string{"REVOKER_RESULTS_STREAM": "a.b"}, `REVOKER_RESULTS_STREAM (--results-stream): "a.b" must not contain`},
		{"stream name slash", "run", nil, map[string]string{"REVOKER_RESULTS_STREAM": "a/b"}, `REVOKER_RESULTS_STREAM (--results-stream): "a/b" must not contain`},
		{"consumer wildcard", "run", nil, map[string]string{"REVOKER_CONSUMER": "rev*"}, `REVOKER_CONSUMER (--consumer): "rev*" must not contain`},
		{"consumer backslash", "run", []string{`--consumer=a\b`}, nil, `REVOKER_CONSUMER (--consumer): "a\\b" must not contain`},
		{"consumer empty", "run", []string{"--consumer="}, nil, "REVOKER_CONSUMER (--consumer) must not be empty"},
		{"same streams", "run", nil, map[string]string{"REVOKER_REQUESTS_STREAM": "S", "REVOKER_RESULTS_STREAM": "S"}, "must name different streams"},
		{"subject empty token", "run", nil, map[string]string{"REVOKER_REQUESTS_SUBJECT": "keys..revoke"}, `REVOKER_REQUESTS_SUBJECT (--requests-subject): "keys..revoke" has an empty token`},
		{"subject space", "run", nil, map[string]string{"REVOKER_REQUESTS_SUBJECT": "keys.revoke requests"}, `REVOKER_REQUESTS_SUBJECT (--requests-subject): "keys.revoke requests" must not contain spaces`},
		{"subject empty", "run", []string{"--requests-subject="}, nil, "REVOKER_REQUESTS_SUBJECT (--requests-subject) must not be empty"},
		{"subject gt not last", "run", nil, map[string]string{"REVOKER_REQUESTS_SUBJECT": "keys.>.x"}, `has '>' before the last token`},
		{"subject star inside token", "run", nil, map[string]string{"REVOKER_REQUESTS_SUBJECT": "keys.re*"}, `has '*' or '>' inside a token`},
		{"results wildcard", "run", nil, map[string]string{"REVOKER_RESULTS_SUBJECT": "keys.*.results"}, `REVOKER_RESULTS_SUBJECT (--results-subject): "keys.*.results" must not contain wildcards`},
		{"revoke requests wildcard", "revoke", []string{"k"}, map[string]string{"REVOKER_REQUESTS_SUBJECT": "keys.revoke.>"}, `REVOKER_REQUESTS_SUBJECT (--requests-subject): "keys.revoke.>" must not contain wildcards`},
		{"subjects overlap", "run", nil, map[string]string{"REVOKER_RESULTS_SUBJECT": "keys.revoke"}, `REVOKER_RESULTS_SUBJECT (--results-subject) "keys.revoke" overlaps REVOKER_REQUESTS_SUBJECT (--requests-subject) "keys.revoke.requests"`},
		{"trusted signer invalid", "run", nil, map[string]string{"REVOKER_TRUSTED_SIGNERS": public + ",UNOTAKEY"}, `REVOKER_TRUSTED_SIGNERS (--trusted-signers): entry 2 "UNOTAKEY" is not a NATS user public key`},
		{"trusted signer account key", "run", nil, map[string]string{"REVOKER_TRUSTED_SIGNERS": mustPublic(t, akp)}, "entry 1"},
		{"trusted signer seed", "run", nil, map[string]string{"REVOKER_TRUSTED_SIGNERS": string(aseed)}, "REVOKER_TRUSTED_SIGNERS (--trusted-signers): entry 1 looks like an nkey seed, which is secret"},
		{"trusted signers file missing", "run", []string{"--trusted-signers", "@" + missing}, nil, "REVOKER_TRUSTED_SIGNERS (--trusted-signers): cannot read " + missing},
		{"trusted signers file empty", "run", nil, map[string]string{"REVOKER_TRUSTED_SIGNERS": "@" + signers}, "REVOKER_TRUSTED_SIGNERS (--trusted-signers): " + signers + " lists no keys"},
		{"trusted signers file bad line", "run", nil, map[string]string{"REVOKER_TRUSTED_SIGNERS": "@" + badSigners}, `line 4 of ` + badSigners + ` "UBAD" is not a NATS user public key`},
		{"trusted signers at nothing", "run", nil, map[string]string{"REVOKER_TRUSTED_SIGNERS": "@"}, "names no file"},
		{"protected key", "run", nil, map[string]string{"REVOKER_PROTECTED_KEYS": "ok-1,bad key"}, `REVOKER_PROTECTED_KEYS (--protected-keys): "bad key" is not a Kalshi API key ID`},
		{"signer seed missing", "revoke", []string{"k"}, map[string]string{"REVOKER_SIGNER_SEED": missing}, "REVOKER_SIGNER_SEED (--signer-seed): cannot read " + missing},
		{"signer seed invalid", "revoke", []string{"--signer-seed", garbage, "k"}, nil, "REVOKER_SIGNER_SEED (--signer-seed): " + garbage + " holds no NATS user nkey seed"},
		{"revoke needs keys", "revoke", nil, nil, `"revoker revoke" needs at least one KEY_ID`},
		{"revoke key format", "revoke", []string{"ok", "../api_keys"}, nil, `"../api_keys" is not a Kalshi API key ID`},
		{"revoke reason too long", "revoke", []string{"--reason", strings.Repeat("x", 1025), "k"}, nil, "--reason is longer than 1 KiB (1025 bytes)"},
		{"revoke timeout", "revoke", []string{"--timeout", "0s", "k"}, nil, "--timeout must be greater than 0"},
		{"revoke json", "revoke", []string{"--json=sometimes", "k"}, nil, `--json: "sometimes" is not true or false`},
		{"run takes no args", "run", []string{"extra"}, nil, `"revoker run" takes no arguments, got "extra"`},
		{"sandbox listen", "sandbox", []string{"--nats-listen", "nowhere"}, nil, `--nats-listen: "nowhere" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := map[string]string{}
			if commands[tt.cmd].needKalshi {
				base = kalshiEnv(t)
			}
			_, _, err := parseConfig(tt.cmd, tt.args, getenv(withEnv(base, tt.env)))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			ps := problems(t, err)
			if len(ps) != 1 {
				t.Errorf("want exactly one problem, got %d:\n%s", len(ps), err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n  %s\ndoes not contain\n  %s", err, tt.want)
			}
		})
	}
}

func mustPublic(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAllProblemsReportedTogether(t *testing.T) {
	t.Parallel()
	env := withEnv(kalshiEnv(t), map[string]string{
		"KALSHI_API_KEY_ID":   "",
		"REVOKER_MAX_RETRY":   "15x",
		"REVOKER_CONCURRENCY": "0",
	})
	_, _, err := parseConfig("run", []string{"--log-level", "loud"}, getenv(env))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines, one per problem, got %d:\n%s", len(lines), err)
	}
	for i, want := range []string{"KALSHI_API_KEY_ID", "REVOKER_CONCURRENCY", "REVOKER_MAX_RETRY", "REVOKER_LOG_LEVEL"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q does not name %s", i+1, lines[i], want)
		}
	}
	if !reflect.DeepEqual(problems(t, err), lines) {
		t.Error("Problems and the error's lines differ")
	}
}

func TestPrivateKeyContentNeverInErrors(t *testing.T) {
	t.Parallel()
	good := newPrivateKeyPEM(t)
	body := string(good[strings.Index(string(good), "\n")+1 : strings.Index(string(good), "\n-----END")])
	notAKey := strings.ReplaceAll(string(good), "PRIVATE KEY", "PRIVATE KEY CERT")
	encrypted := strings.ReplaceAll(string(good), "PRIVATE KEY", "ENCRYPTED PRIVATE KEY")

	for name, env := range map[string]map[string]string{
		"not PEM":        {"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": body},
		"wrong type":     {"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": notAKey},
		"encrypted":      {"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": encrypted},
		"path too":       {"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": string(good), "KALSHI_PRIVATE_KEY_PATH": "/nonexistent"},
		"other problems": {"KALSHI_API_KEY_ID": "", "KALSHI_PRIVATE_KEY": string(good), "REVOKER_RATE": "fast"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := parseConfig("run", nil, getenv(env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, line := range strings.Split(body, "\n") {
				if len(line) > 16 && strings.Contains(err.Error(), line[:16]) {
					t.Fatalf("error contains private key material:\n%s", err)
				}
			}
		})
	}
}

func TestPrivateKeyFromEnvironment(t *testing.T) {
	t.Parallel()
	good := newPrivateKeyPEM(t)
	cfg, _ := mustParse(t, "run", nil, map[string]string{"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": string(good)})
	if !bytes.Equal(cfg.KalshiPrivateKey, good) || cfg.KalshiPrivateKeyPath != "" {
		t.Errorf("key from KALSHI_PRIVATE_KEY not loaded (path %q)", cfg.KalshiPrivateKeyPath)
	}
	// Squeezed onto one line with literal \n, as some secret stores do.
	oneLine := strings.ReplaceAll(strings.TrimSpace(string(good)), "\n", `\n`)
	cfg, _ = mustParse(t, "run", nil, map[string]string{"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": oneLine})
	if _, err := kalshi.ParsePrivateKey(cfg.KalshiPrivateKey); err != nil {
		t.Errorf("one-line PEM with literal \\n: %v", err)
	}
	// A path given as a flag beats KALSHI_PRIVATE_KEY, with a warning.
	keyFile := writeKeyFile(t, t.TempDir(), "k.pem", 0o600)
	cfg, _ = mustParse(t, "run", []string{"--kalshi-private-key", keyFile}, map[string]string{"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": string(good)})
	if cfg.KalshiPrivateKeyPath != keyFile || bytes.Equal(cfg.KalshiPrivateKey, good) {
		t.Error("the --kalshi-private-key file did not win over KALSHI_PRIVATE_KEY")
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "KALSHI_PRIVATE_KEY is ignored") {
		t.Errorf("warnings %q", cfg.Warnings)
	}
}

// TestSecretFileModes holds every secret file to one rule: refused when
// every user may read it, warned about when its group or every user may
// write it, accepted in silence when only its group may read it (0440 is
// how Kubernetes mounts a Secret for the pod's fsGroup).
func TestSecretFileModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := newTestPKI(t)
	op := newTestOperator(t, dir)
	for _, tt := range []struct {
		env  string
		cmd  string
		args []string
		file func(name string) string // a fresh, valid file
		more map[string]string
	}{
		{"KALSHI_PRIVATE_KEY_PATH", "run", nil, func(name string) string { return writeKeyFile(t, dir, name, 0o600) }, nil},
		{"NATS_NKEY_SEED", "run", nil, func(string) string { path, _ := newUserSeedFile(t, t.TempDir()); return path }, nil},
		{"NATS_CREDS", "run", nil, func(name string) string { return copyFile(t, op.credsFile, filepath.Join(dir, name)) }, nil},
		{"NATS_TLS_KEY", "run", nil, func(name string) string { return copyFile(t, pki.clientKey, filepath.Join(dir, name)) }, map[string]string{"NATS_TLS_CERT": pki.clientCert}},
		{"REVOKER_SIGNER_SEED", "revoke", []string{"k"}, func(string) string { path, _ := newUserSeedFile(t, t.TempDir()); return path }, nil},
	} {
		for _, mode := range []os.FileMode{0o600, 0o400, 0o440, 0o640, 0o660, 0o602, 0o604, 0o644} {
			t.Run(fmt.Sprintf("%s %04o", tt.env, mode), func(t *testing.T) {
				path := tt.file(fmt.Sprintf("%s-%o", tt.env, mode))
				if err := os.Chmod(path, mode); err != nil {
					t.Fatal(err)
				}
				env := map[string]string{tt.env: path}
				maps.Copy(env, tt.more)
				if commands[tt.cmd].needKalshi {
					env = withEnv(kalshiEnv(t), env)
				}
				cfg, _, err := parseConfig(tt.cmd, tt.args, getenv(env))
				switch {
				case mode&0o004 != 0:
					want := fmt.Sprintf("%s is readable by every user (mode %04o); run chmod 600 %s", path, mode, path)
					if ps := problems(t, err); len(ps) != 1 || !strings.Contains(ps[0], want) {
						t.Fatalf("problems %q, want one with %q", ps, want)
					}
				case err != nil:
					t.Fatal(err)
				case mode&0o022 != 0:
					want := fmt.Sprintf("%s is writable by every user (mode %04o); run chmod 600 %s", path, mode, path)
					if mode&0o002 == 0 {
						want = fmt.Sprintf("%s is writable by its group (mode %04o); run chmod g-w %s", path, mode, path)
					}
					if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], want) {
						t.Errorf("warnings %q, want %q", cfg.Warnings, want)
					}
				case len(cfg.Warnings) > 0:
					t.Errorf("unexpected warnings %q", cfg.Warnings)
				}
			})
		}
	}
}

// copyFile copies src to dst, mode 0600, and returns dst.
func copyFile(t *testing.T, src, dst string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, data, 0o600)
	return dst
}

// TestKeyIDsCanonical checks that the worker's own key and the protected
// keys are compared in their canonical form, whatever case they were given in.
func TestKeyIDsCanonical(t *testing.T) {
	t.Parallel()
	env := withEnv(kalshiEnv(t), map[string]string{
		"KALSHI_API_KEY_ID":      "A952BCBE-EC3B-4B5B-B8F9-11DAE589608C",
		"REVOKER_PROTECTED_KEYS": "0E7C6A4D-1B2C-4D5E-8F90-ABCDEF012345, already-lower",
	})
	cfg, _ := mustParse(t, "run", nil, env)
	if cfg.KalshiKeyID != "a952bcbe-ec3b-4b5b-b8f9-11dae589608c" {
		t.Errorf("KalshiKeyID = %q", cfg.KalshiKeyID)
	}
	if want := []string{"0e7c6a4d-1b2c-4d5e-8f90-abcdef012345", "already-lower"}; !reflect.DeepEqual(cfg.ProtectedKeys, want) {
		t.Errorf("ProtectedKeys = %q, want %q", cfg.ProtectedKeys, want)
	}
}

func TestUnreadablePrivateKey(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	path := writeKeyFile(t, t.TempDir(), "k.pem", 0o000)
	_, _, err := parseConfig("run", nil, getenv(map[string]string{"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY_PATH": path}))
	if err == nil || !strings.Contains(err.Error(), "cannot read "+path+": permission denied") {
		t.Fatalf("error %v", err)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	good := newPrivateKeyPEM(t)
	cfg, _ := mustParse(t, "run", nil, map[string]string{"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": string(good)})
	marker := string(good[30:60])

	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "cfg", cfg, "key", cfg.KalshiPrivateKey)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", cfg, "key", cfg.KalshiPrivateKey)
	newLogger(&logs, "text", slog.LevelInfo).Info("config", "cfg", cfg, "key", cfg.KalshiPrivateKey)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	printed := []string{
		logs.String(), string(js),
		fmt.Sprintf("%v %+v %#v %s %x %q %d", cfg, cfg, cfg, cfg.KalshiPrivateKey, cfg.KalshiPrivateKey, cfg.KalshiPrivateKey, cfg.KalshiPrivateKey),
	}
	for _, out := range printed {
		if strings.Contains(out, marker) || strings.Contains(out, fmt.Sprintf("%x", good[30:60])) {
			t.Fatalf("private key printed: %s", out)
		}
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("no REDACTED in %s", out)
		}
	}
}

func TestTrustedSignersFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, a := newUserSeedFile(t, dir)
	_, b := newUserSeedFile(t, dir)
	file := filepath.Join(dir, "signers")
	writeFile(t, file, []byte("# incident response\n"+a+"\n\n  "+b+"  \n# rotation\n"+a+"\n"), 0o644)
	cfg, _ := mustParse(t, "run", []string{"--trusted-signers", "@" + file}, kalshiEnv(t))
	if want := []string{a, b}; !reflect.DeepEqual(cfg.TrustedSigners, want) {
		t.Errorf("signers %q, want %q", cfg.TrustedSigners, want)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings %q", cfg.Warnings)
	}
	// Without signers, a max request age is pointless: warned, not refused.
	cfg, _ = mustParse(t, "run", []string{"--max-request-age", "1m"}, kalshiEnv(t))
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "has no effect without REVOKER_TRUSTED_SIGNERS") {
		t.Errorf("warnings %q", cfg.Warnings)
	}
}

func TestTrustedSignerSeedNotEchoed(t *testing.T) {
	t.Parallel()
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	_, _, err := parseConfig("run", nil, getenv(withEnv(kalshiEnv(t), map[string]string{"REVOKER_TRUSTED_SIGNERS": string(seed)})))
	if err == nil {
		t.Fatal("a seed was accepted as a trusted signer")
	}
	if strings.Contains(err.Error(), string(seed[:10])) {
		t.Fatalf("error echoes the seed: %s", err)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"run", "check", "keys", "revoke", "sandbox", "version"} {
		for _, arg := range []string{"-h", "--help", "-help"} {
			if _, _, err := parseConfig(cmd, []string{arg}, nil); !errors.Is(err, flag.ErrHelp) {
				t.Errorf("%s %s: error %v, want flag.ErrHelp", cmd, arg, err)
			}
		}
	}

	run := usage("run")
	for _, s := range catalogue() {
		if !oneOf(s.group, commands["run"].groups...) {
			continue
		}
		if s.flag != "" && !strings.Contains(run, "--"+s.flag) {
			t.Errorf("run usage lacks --%s", s.flag)
		}
		if s.env != "" && !strings.Contains(run, s.env) {
			t.Errorf("run usage lacks %s", s.env)
		}
		if s.def != "" && s.def != "false" && !strings.Contains(run, "default "+s.def) {
			t.Errorf("run usage lacks the default of --%s", s.flag)
		}
	}
	if !strings.Contains(run, "--concurrency N\n        deletes in flight per process, 1 to 1024 [env REVOKER_CONCURRENCY, default 8]") {
		t.Errorf("run usage line format changed:\n%s", run)
	}
	if strings.Contains(run, "--reason") {
		t.Error("run usage lists revoke's flags")
	}
	revoke := usage("revoke")
	for _, want := range []string{"Usage: revoker revoke [flags] KEY_ID...", "--reason", "--signer-seed FILE", "REVOKER_SIGNER_SEED", "default revoker-cli", "--nats-url"} {
		if !strings.Contains(revoke, want) {
			t.Errorf("revoke usage lacks %q", want)
		}
	}
	top := usage("")
	for _, cmd := range commandOrder {
		if !strings.Contains(top, "\n  "+cmd+" ") {
			t.Errorf("top-level usage lacks %s", cmd)
		}
	}
}

func TestUnknownFlagAndCommand(t *testing.T) {
	t.Parallel()
	_, _, err := parseConfig("run", []string{"--bogus"}, nil)
	if err == nil || !strings.Contains(err.Error(), "flag provided but not defined: --bogus") || !strings.Contains(err.Error(), `"revoker run -h"`) {
		t.Errorf("unknown flag: %v", err)
	}
	_, _, err = parseConfig("frobnicate", nil, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %v", err)
	}
}

func TestSubjectsOverlap(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"keys.revoke.requests", "keys.revoke.results.>", false},
		{"keys.revoke.requests", "keys.revoke.>", true},
		{"keys.revoke.requests", "keys.*.requests", true},
		{"keys.revoke", "keys.revoke.>", false},
		{"keys.revoke.requests.>", "keys.revoke.>", true},
		{"a.b", "a.b", true},
		{"a.b", "a.b.c", false},
		{"a.*", "b.>", false},
	} {
		if got := subjectsOverlap(tt.a, tt.b); got != tt.want {
			t.Errorf("subjectsOverlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestNATSURLPasswordNotEchoed(t *testing.T) {
	t.Parallel()
	for _, url := range []string{
		"http://user:s3cr3t@nats.example:4222",
		"http://s3cr3t@nats.example:4222",
		"nats://s3cr3t@nats.example:bad",
		"nats://us%er:s3cr3t@nats.example:4222",
		"user:s3cr3t@nats.example:bad",
	} {
		_, _, err := parseConfig("revoke", []string{"k"}, getenv(map[string]string{"NATS_URL": url}))
		if err == nil {
			t.Fatalf("%s accepted", redactURL(url))
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("error echoes the credentials: %s", err)
		}
	}
	cfg, _ := mustParse(t, "revoke", []string{"k"}, map[string]string{"NATS_URL": "nats://user:s3cr3t@nats.example:4222, nats-2:4222"})
	if len(cfg.NATSURLs) != 2 {
		t.Errorf("urls %q", cfg.NATSURLs)
	}
}
