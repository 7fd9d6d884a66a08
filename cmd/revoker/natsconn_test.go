package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/worker/natstest"
)

// testPKI is a throwaway CA with a server and a client certificate, as
// PEM files in a temporary directory.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newECKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "revoker test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{ca: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.ca, "CERTIFICATE", caDER, 0o644)

	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (certFile, keyFile string) {
		key := newECKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writePEM(t, certFile, "CERTIFICATE", der, 0o644)
		writePEM(t, keyFile, "PRIVATE KEY", keyDER, 0o600)
		return certFile, keyFile
	}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
}

// newUserSeedFile writes a fresh NATS user nkey seed file; it returns the
// file and the public key.
func newUserSeedFile(t *testing.T, dir string) (path, public string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	public, err = kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, public[:8]+".nk")
	writeFile(t, path, append(seed, '\n'), 0o600)
	return path, public
}

// testOperator is an operator-mode trust chain: an operator, an account
// signed by it, and a creds file for a user of that account.
type testOperator struct {
	operator          *jwt.OperatorClaims
	accountPub        string
	accountJWT        string
	credsFile         string
	otherAccountCreds string // a user of an account the server does not know
}

func newTestOperator(t *testing.T, dir string) testOperator {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(opub)
	_, err = oc.Encode(okp)
	must(err)

	creds := func(name string) (accountPub, accountJWT, file string) {
		akp, err := nkeys.CreateAccount()
		must(err)
		apub, err := akp.PublicKey()
		must(err)
		ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
		must(err)
		ukp, err := nkeys.CreateUser()
		must(err)
		upub, err := ukp.PublicKey()
		must(err)
		useed, err := ukp.Seed()
		must(err)
		ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
		must(err)
		data, err := jwt.FormatUserConfig(ujwt, useed)
		must(err)
		file = filepath.Join(dir, name+".creds")
		writeFile(t, file, data, 0o600)
		return apub, ajwt, file
	}
	op := testOperator{operator: oc}
	op.accountPub, op.accountJWT, op.credsFile = creds("user")
	_, _, op.otherAccountCreds = creds("stranger")
	return op
}

// startServer runs an in-process nats-server on 127.0.0.1 and a free port.
func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host = "127.0.0.1"
	if opts.Port == 0 {
		opts.Port = -1 // a free port
	}
	opts.NoLog, opts.NoSigs = true, true
	opts.ServerName = "test"
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// applyOptions applies opts as nats.Connect would, without connecting.
func applyOptions(t *testing.T, opts []nats.Option) nats.Options {
	t.Helper()
	o := nats.GetDefaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			t.Fatalf("applying option: %v", err)
		}
	}
	return o
}

func TestNATSOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := newTestPKI(t)
	seed, public := newUserSeedFile(t, dir)
	op := newTestOperator(t, dir)

	tests := []struct {
		name  string
		cfg   Config
		check func(t *testing.T, o nats.Options)
	}{
		{"no auth", Config{}, func(t *testing.T, o nats.Options) {
			if o.Nkey != "" || o.UserJWT != nil || o.Secure {
				t.Errorf("unexpected auth or TLS: nkey=%q jwt=%v secure=%v", o.Nkey, o.UserJWT != nil, o.Secure)
			}
		}},
		{"creds", Config{NATSCreds: op.credsFile}, func(t *testing.T, o nats.Options) {
			if o.UserJWT == nil || o.SignatureCB == nil {
				t.Error("creds file did not set the user JWT and signature callbacks")
			}
		}},
		{"nkey seed", Config{NATSNkeySeed: seed}, func(t *testing.T, o nats.Options) {
			if o.Nkey != public || o.SignatureCB == nil {
				t.Errorf("nkey = %q, want %q with a signature callback", o.Nkey, public)
			}
		}},
		{"tls ca", Config{NATSTLSCA: pki.ca}, func(t *testing.T, o nats.Options) {
			if !o.Secure || o.RootCAsCB == nil || o.TLSCertCB != nil {
				t.Errorf("secure=%v rootCAs=%v cert=%v, want CA only", o.Secure, o.RootCAsCB != nil, o.TLSCertCB != nil)
			}
		}},
		{"tls client cert", Config{NATSTLSCA: pki.ca, NATSTLSCert: pki.clientCert, NATSTLSKey: pki.clientKey}, func(t *testing.T, o nats.Options) {
			if !o.Secure || o.RootCAsCB == nil || o.TLSCertCB == nil {
				t.Errorf("secure=%v rootCAs=%v cert=%v, want all", o.Secure, o.RootCAsCB != nil, o.TLSCertCB != nil)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := natsOptions(tt.cfg, "revoker-test", nil)
			if err != nil {
				t.Fatal(err)
			}
			o := applyOptions(t, opts)
			if o.Name != "revoker-test" {
				t.Errorf("name = %q", o.Name)
			}
			if o.MaxReconnect != -1 || !o.AllowReconnect {
				t.Errorf("max reconnect = %d, allow = %v; want unlimited", o.MaxReconnect, o.AllowReconnect)
			}
			if o.ReconnectWait <= 0 || o.ReconnectJitter <= 0 || o.ReconnectJitterTLS <= 0 {
				t.Errorf("reconnect wait %v, jitter %v/%v; want all > 0", o.ReconnectWait, o.ReconnectJitter, o.ReconnectJitterTLS)
			}
			if o.DisconnectedErrCB == nil || o.ReconnectedCB == nil || o.ClosedCB == nil || o.AsyncErrorCB == nil {
				t.Error("a connection event handler is missing")
			}
			if o.RetryOnFailedConnect {
				t.Error("natsOptions must leave RetryOnFailedConnect to connectNATS")
			}
			tt.check(t, o)
		})
	}
}

func TestNATSOptionsErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := newTestPKI(t)
	seed, _ := newUserSeedFile(t, dir)
	missing := filepath.Join(dir, "missing")
	notCreds := filepath.Join(dir, "not.creds")
	writeFile(t, notCreds, []byte("hello\n"), 0o600)
	accountSeed := filepath.Join(dir, "account.nk")
	akp, _ := nkeys.CreateAccount()
	aseed, _ := akp.Seed()
	writeFile(t, accountSeed, aseed, 0o600)

	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing seed", Config{NATSNkeySeed: missing}, "no such file"},
		{"account seed", Config{NATSNkeySeed: accountSeed}, "Not a valid nkey user seed"},
		{"both", Config{NATSCreds: notCreds, NATSNkeySeed: seed}, "use one"},
		{"missing ca", Config{NATSTLSCA: missing}, missing},
		{"ca not a certificate", Config{NATSTLSCA: pki.clientKey}, pki.clientKey},
		{"missing client cert", Config{NATSTLSCert: missing, NATSTLSKey: pki.clientKey}, missing},
		{"cert without key", Config{NATSTLSCert: pki.clientCert}, "needs both"},
		{"mismatched key", Config{NATSTLSCert: pki.clientCert, NATSTLSKey: pki.serverKey}, "client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := natsOptions(tt.cfg, "x", nil)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), string(aseed)) {
				t.Error("error contains a seed")
			}
		})
	}
}

func TestConnectNATSNkey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	seed, public := newUserSeedFile(t, dir)
	otherSeed, _ := newUserSeedFile(t, dir)
	s := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: public}}})
	ctx := t.Context()

	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nc, err := connectNATS(ctx, Config{Command: "check", NATSURLs: []string{s.ClientURL()}, NATSNkeySeed: seed}, "revoker-test", logger)
	if err != nil {
		t.Fatalf("connect with the seed: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish("x", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 5*time.Second, `"msg":"connected to NATS" in the log`, func() bool { return strings.Contains(logs.String(), `"msg":"connected to NATS"`) })

	for name, cfg := range map[string]Config{
		"no seed":    {Command: "check", NATSURLs: []string{s.ClientURL()}},
		"wrong seed": {Command: "check", NATSURLs: []string{s.ClientURL()}, NATSNkeySeed: otherSeed},
	} {
		nc, err := connectNATS(ctx, cfg, "revoker-test", nil)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected, want an authorization error", name)
			continue
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: error %q, want an authorization violation", name, err)
		}
	}
}

func TestConnectNATSCreds(t *testing.T) {
	t.Parallel()
	op := newTestOperator(t, t.TempDir())
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(op.accountPub, op.accountJWT); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{op.operator}, AccountResolver: resolver})

	nc, err := connectNATS(t.Context(), Config{Command: "check", NATSURLs: []string{s.ClientURL()}, NATSCreds: op.credsFile}, "revoker-test", nil)
	if err != nil {
		t.Fatalf("connect with creds: %v", err)
	}
	nc.Close()

	nc, err = connectNATS(t.Context(), Config{Command: "check", NATSURLs: []string{s.ClientURL()}, NATSCreds: op.otherAccountCreds}, "revoker-test", nil)
	if err == nil {
		nc.Close()
		t.Fatal("connected with a user of an unknown account")
	}
}

func TestConnectNATSTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: pki.serverCert, KeyFile: pki.serverKey, CaFile: pki.ca, Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, &server.Options{TLSConfig: tlsConfig, TLSVerify: true, TLSTimeout: 5})
	url := s.ClientURL()

	nc, err := connectNATS(t.Context(), Config{
		Command: "check", NATSURLs: []string{url},
		NATSTLSCA: pki.ca, NATSTLSCert: pki.clientCert, NATSTLSKey: pki.clientKey,
	}, "revoker-test", nil)
	if err != nil {
		t.Fatalf("connect with a client certificate: %v", err)
	}
	if !nc.IsConnected() {
		t.Error("not connected")
	}
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Errorf("connection is not TLS: %v", err)
	}
	nc.Close()

	for name, cfg := range map[string]Config{
		"no client certificate": {Command: "check", NATSURLs: []string{url}, NATSTLSCA: pki.ca},
		"no CA":                 {Command: "check", NATSURLs: []string{url}, NATSTLSCert: pki.clientCert, NATSTLSKey: pki.clientKey},
	} {
		nc, err := connectNATS(t.Context(), cfg, "revoker-test", nil)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected, want a TLS failure", name)
		}
	}
}

func TestConnectNATSRetriesForRun(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: take a free one and release it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	url := "nats://" + addr

	if nc, err := connectNATS(t.Context(), Config{Command: "revoke", NATSURLs: []string{url}}, "x", nil); err == nil {
		nc.Close()
		t.Fatal("revoke: connected to nothing")
	}

	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	nc, err := connectNATS(t.Context(), Config{Command: "run", NATSURLs: []string{url}}, "x", logger)
	if err != nil {
		t.Fatalf("run: %v, want a connection that keeps retrying", err)
	}
	defer nc.Close()
	if nc.IsConnected() {
		t.Fatal("connected to nothing")
	}
	if nc.Status() != nats.RECONNECTING {
		t.Errorf("status %v, want RECONNECTING", nc.Status())
	}
	if !strings.Contains(logs.String(), "not reachable yet") {
		t.Errorf("no log about retrying in %q", logs.String())
	}

	// The server comes up on that address: the connection finds it.
	port := l.Addr().(*net.TCPAddr).Port
	startServer(t, &server.Options{Port: port})
	natstest.WaitFor(t, 15*time.Second, "the client to connect", nc.IsConnected)
	natstest.WaitFor(t, 5*time.Second, `connected to NATS" in the log`, func() bool { return strings.Contains(logs.String(), "connected to NATS\"") })
}

func TestConnectNATSContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if nc, err := connectNATS(ctx, Config{Command: "check", NATSURLs: []string{"nats://127.0.0.1:1"}}, "x", nil); err == nil {
		nc.Close()
		t.Fatal("connected with a cancelled context")
	}
}

func TestNATSHandlersLog(t *testing.T) {
	t.Parallel()
	s := startServer(t, &server.Options{})
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	nc, err := connectNATS(t.Context(), Config{Command: "run", NATSURLs: []string{s.ClientURL()}}, "x", logger)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s.Shutdown()
	natstest.WaitFor(t, 10*time.Second, "disconnected from NATS in the log", func() bool { return strings.Contains(logs.String(), "disconnected from NATS") })
	nc.Close()
	natstest.WaitFor(t, 10*time.Second, "NATS connection closed in the log", func() bool { return strings.Contains(logs.String(), "NATS connection closed") })
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"nats://s3cr3t@127.0.0.1:4222", "nats://REDACTED@127.0.0.1:4222"},
		{"nats://alice:s3cr3t@nats.example:4222", "nats://REDACTED@nats.example:4222"},
		{"tls://alice@nats.example", "tls://REDACTED@nats.example"},
		{"wss://alice:s3@cr3t@nats.example:443", "wss://REDACTED@nats.example:443"},
		{"nats://alice:s3cr3t@nats.example:bad", "nats://REDACTED@nats.example:bad"},
		{"s3cr3t@nats.example:4222", "REDACTED@nats.example:4222"},
		{"nats://nats.example:4222", "nats://nats.example:4222"},
		{"nats.example", "nats.example"},
	} {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestConnectNATSRedactsCredentials connects with a token and with a user
// and password in the URL, through a connect, a server restart and a close,
// and with wrong or unusable URLs: neither the token, nor the user, nor the
// password may appear in a log line or an error.
func TestConnectNATSRedactsCredentials(t *testing.T) {
	t.Parallel()
	const token, user, password = "tok-5e6f7a8b9c", "alice-4d3c", "pw-0a1b2c3d"
	for _, tt := range []struct {
		name       string
		opts       func() *server.Options
		good, bad  string // userinfo that the server accepts, and one it refuses
		unparsable string // a URL nats.go cannot use
	}{
		{"token", func() *server.Options { return &server.Options{Authorization: token} }, token, "x" + token, "nats://" + token + "@127.0.0.1:port"},
		{"user and password", func() *server.Options { return &server.Options{Username: user, Password: password} }, user + ":" + password, user + ":x" + password, "nats://" + user + ":" + password + "@127.0.0.1:port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.opts())
			port := s.Addr().(*net.TCPAddr).Port
			url := func(cred string) string { return fmt.Sprintf("nats://%s@127.0.0.1:%d", cred, port) }
			logs := &syncBuffer{}
			logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			var printed strings.Builder

			nc, err := connectNATS(t.Context(), Config{Command: "run", NATSURLs: []string{url(tt.good)}}, "x", logger)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			natstest.WaitFor(t, 5*time.Second, "connected to NATS in the log", func() bool { return strings.Contains(logs.String(), "connected to NATS") })
			s.Shutdown()
			s.WaitForShutdown()
			natstest.WaitFor(t, 10*time.Second, "cannot reach NATS in the log", func() bool { return strings.Contains(logs.String(), "cannot reach NATS") })
			opts := tt.opts()
			opts.Port = port
			startServer(t, opts)
			natstest.WaitFor(t, 15*time.Second, "reconnected to NATS in the log", func() bool { return strings.Contains(logs.String(), "reconnected to NATS") })
			nc.Close()
			natstest.WaitFor(t, 5*time.Second, "NATS connection closed in the log", func() bool { return strings.Contains(logs.String(), "NATS connection closed") })

			for _, urls := range [][]string{{url(tt.bad)}, {tt.unparsable}, {url(tt.bad), tt.unparsable}} {
				nc, err := connectNATS(t.Context(), Config{Command: "check", NATSURLs: urls}, "x", logger)
				if err == nil {
					nc.Close()
					t.Fatalf("connected with %s", redactURLs(urls))
				}
				printed.WriteString(err.Error() + "\n")
			}
			out := logs.String() + printed.String()
			if !strings.Contains(out, "nats://REDACTED@127.0.0.1:") {
				t.Errorf("no redacted URL in the output:\n%s", out)
			}
			for _, secret := range []string{token, user, password} {
				if strings.Contains(out, secret) {
					t.Fatalf("a credential appears in the output")
				}
			}
		})
	}
}
