// Package emulatortest starts the Kalshi emulator for tests and hands out
// the RSA keys they sign with.
//
//	emu := emulatortest.Start(t, emulator.Options{})
//	self := emu.AddKey("revoker", &emulatortest.Key().PublicKey)
//	path := emulatortest.WritePEM(t, emulatortest.Key())
//
// RSA-2048 generation takes a noticeable time under the race detector, so
// each test binary generates Key and OtherKey once.
package emulatortest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/revoker/revoker/kalshi/emulator"
)

// Start runs an emulator on a free 127.0.0.1 port until the test ends.
func Start(t testing.TB, opts emulator.Options) *emulator.Emulator {
	t.Helper()
	emu := emulator.New(opts)
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("emulatortest: %v", err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	return emu
}

var (
	key   = sync.OnceValue(newKey)
	other = sync.OnceValue(newKey)
)

// Key is an RSA-2048 key, the same for the whole test binary.
func Key() *rsa.PrivateKey { return key() }

// OtherKey is a second RSA-2048 key, for signatures that must not verify.
func OtherKey() *rsa.PrivateKey { return other() }

func newKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// WritePEM writes k as PKCS#1 PEM ("RSA PRIVATE KEY", what Kalshi's web UI
// hands out) to a mode-0600 file in a temporary directory and returns its
// path.
func WritePEM(t testing.TB, k *rsa.PrivateKey) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kalshi.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("emulatortest: %v", err)
	}
	return path
}
