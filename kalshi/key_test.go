package kalshi

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testRSA is generated once: RSA key generation is slow under -race.
var testRSA = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func testEd25519(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

func TestParsePrivateKey(t *testing.T) {
	rk := testRSA()
	ek := testEd25519(t)
	pkcs1 := pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	for _, tt := range []struct {
		name string
		in   []byte
		want any
	}{
		{"pkcs1 rsa", pkcs1, rk},
		{"pkcs8 rsa", pkcs8(t, rk), rk},
		{"pkcs8 ed25519", pkcs8(t, ek), ek},
		{"text before the block", append([]byte("Bag Attributes\n  friendlyName: kalshi\n"), pkcs1...), rk},
		{"escaped newlines", []byte(strings.ReplaceAll(string(pkcs8(t, ek)), "\n", `\n`)), ek},
		{"pkcs8 labelled pkcs1", pemOf("RSA PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(rk))), rk},
		{"pkcs1 labelled pkcs8", pemOf("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), rk},
		{"parameters block first", append(pemOf("EC PARAMETERS", []byte{6, 5, 43, 129, 4, 0, 34}), pkcs1...), rk},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePrivateKey(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tt.want.(crypto.Signer).Public()) {
				t.Fatalf("got a different key (%T)", k)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestParsePrivateKeyErrors(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER := x509.MarshalPKCS1PrivateKey(testRSA())
	encrypted := pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   rsaDER[:len(rsaDER)/16*16], // stands in for the ciphertext
	})
	garbage := make([]byte, 300)
	_, _ = rand.Read(garbage)
	truncated := pemOf("RSA PRIVATE KEY", rsaDER[:len(rsaDER)/2])
	pub := pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(testRSA().Public())))

	for _, tt := range []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", nil, "empty input"},
		{"blank", []byte(" \n\t\n"), "empty input"},
		{"encrypted pem", encrypted, "encrypted PEM is not supported"},
		{"encrypted pkcs8", pemOf("ENCRYPTED PRIVATE KEY", rsaDER), "encrypted PEM is not supported"},
		{"sec1 ec", pemOf("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(ec))), "EC (ECDSA) keys are not supported"},
		{"pkcs8 ec", pkcs8(t, ec), "EC (ECDSA) keys are not supported"},
		{"garbage", garbage, "no PEM block found"},
		{"garbage with escapes", []byte(`abc\ndef`), "no PEM block found"},
		{"garbage der", pemOf("RSA PRIVATE KEY", garbage), "invalid PKCS#1 RSA key"},
		{"garbage pkcs8 der", pemOf("PRIVATE KEY", garbage), "invalid PKCS#8 key"},
		{"truncated", truncated, "invalid PKCS#1 RSA key"},
		{"public key", pub, `unsupported PEM block type "PUBLIC KEY"`},
		{"openssh", pemOf("OPENSSH PRIVATE KEY", garbage), "OpenSSH key format is not supported"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePrivateKey(tt.in)
			if err == nil {
				t.Fatalf("got a %T, want an error", k)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
			assertNoKeyBytes(t, err.Error(), tt.in)
			assertNoKeyBytes(t, err.Error(), pemOf("X", rsaDER))
		})
	}
}

// assertNoKeyBytes fails if msg holds any 12-character piece of a PEM
// body (its base64 lines) or raw input.
func assertNoKeyBytes(t *testing.T, msg string, in []byte) {
	t.Helper()
	var body strings.Builder
	for _, line := range strings.Split(string(in), "\n") {
		if !strings.HasPrefix(line, "-----") && !strings.Contains(line, ":") {
			body.WriteString(strings.TrimSpace(line))
		}
	}
	for _, src := range []string{body.String(), string(in)} {
		for i := 0; i+12 <= len(src); i++ {
			if piece := src[i : i+12]; strings.TrimSpace(piece) == piece && strings.Contains(msg, piece) {
				t.Fatalf("error %q contains input bytes %q", msg, piece)
			}
		}
	}
}

func TestLoadPrivateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(path, pkcs8(t, testEd25519(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(filepath.Join(dir, "missing.pem")); err == nil || !os.IsNotExist(errorsUnwrapAll(err)) {
		t.Fatalf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "no PEM block") {
		t.Fatalf("bad file: %v", err)
	}
}

func errorsUnwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

func TestConfigRedacts(t *testing.T) {
	ek := testEd25519(t)
	cfg := Config{KeyID: "abc", PrivateKey: ek}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", cfg)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg)
	if !strings.Contains(out, "REDACTED") || !strings.Contains(out, "abc") {
		t.Fatalf("config printed as %s", out)
	}
	for _, leak := range []string{fmt.Sprint([]byte(ek)), fmt.Sprintf("%x", []byte(ek)[:8]), fmt.Sprint(int(ek[0])) + " " + fmt.Sprint(int(ek[1]))} {
		if strings.Contains(out, leak) {
			t.Fatalf("config output %s contains key bytes", out)
		}
	}
}
