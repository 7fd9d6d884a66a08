// Package emulatortest starts the Kalshi emulator for tests and hands out
// the RSA keys they sign with, and fresh keys in every PEM form a leak may
// hold (NewKeyPEM).
//
//	emu := emulatortest.Start(t, emulator.Options{})
//	self := emu.AddKey("revoker", &emulatortest.Key().PublicKey)
//	path := emulatortest.WritePEM(t, emulatortest.Key())
//
// RSA-2048 generation takes a noticeable time under the race detector, so
// each test binary generates Key and OtherKey once.
package emulatortest

import (
	"crypto"
	"crypto/ed25519"
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

// PEMForm is one way a private key is written as PEM, as a leak may hold it.
type PEMForm int

// The forms Kalshi's keys come in.
const (
	PKCS1RSA     PEMForm = iota // "RSA PRIVATE KEY": what Kalshi's web UI hands out
	PKCS8RSA                    // "PRIVATE KEY" holding an RSA key
	PKCS8Ed25519                // "PRIVATE KEY" holding an Ed25519 key
)

// PEMForms lists every PEMForm.
var PEMForms = []PEMForm{PKCS1RSA, PKCS8RSA, PKCS8Ed25519}

func (f PEMForm) String() string {
	return [...]string{"pkcs1-rsa", "pkcs8-rsa", "pkcs8-ed25519"}[f]
}

// NewKeyPEM makes a fresh private key, each call another, and returns it
// with its PEM in form f. RSA keys have 1024 bits: quick to make, and they
// sign exactly as longer ones do.
func NewKeyPEM(t testing.TB, f PEMForm) (crypto.Signer, []byte) {
	t.Helper()
	var k crypto.Signer
	var err error
	if f == PKCS8Ed25519 {
		_, k, err = ed25519.GenerateKey(rand.Reader)
	} else {
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	}
	if err != nil {
		t.Fatalf("emulatortest: %v", err)
	}
	block := &pem.Block{Type: "PRIVATE KEY"}
	if f == PKCS1RSA {
		block.Type, block.Bytes = "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey))
	} else if block.Bytes, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
		t.Fatalf("emulatortest: %v", err)
	}
	return k, pem.EncodeToMemory(block)
}
