package kalshi_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
)

// The expected values were printed by
// openssl pkey -in FILE -pubout -outform DER | sha256sum
func TestFingerprintMatchesOpenSSL(t *testing.T) {
	for file, want := range map[string]string{
		"fingerprint-rsa-pkcs1.pem": "sha256:9af2c4a3e7a4a39813ade579e0fd8ca85795f48dea144e46477eb1612f321e6a",
		"fingerprint-rsa-pkcs8.pem": "sha256:9af2c4a3e7a4a39813ade579e0fd8ca85795f48dea144e46477eb1612f321e6a",
		"fingerprint-ed25519.pem":   "sha256:79d5dd35ea9e6cdf2c525daa058a06d000e84edbd8997181dbc0aafb10c00116",
	} {
		k, err := kalshi.LoadPrivateKey(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range []any{k, k.Public()} {
			got, err := kalshi.Fingerprint(in)
			if err != nil || got != want {
				t.Errorf("Fingerprint(%s, %T) = %q, %v; want %q", file, in, got, err, want)
			}
		}
	}
	if _, err := kalshi.Fingerprint("not a key"); err == nil {
		t.Error("Fingerprint of a string did not fail")
	}
}

// A client As another key signs as that key, over the same connections.
func TestClientAs(t *testing.T) {
	emu := emulatortest.Start(t, emulator.Options{})
	mainID := emu.AddKey("main", emulatortest.Key())
	pemPath := filepath.Join("testdata", "fingerprint-ed25519.pem")
	other, err := kalshi.LoadPrivateKey(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	otherID := emu.AddKey("other", other)
	c, err := kalshi.New(kalshi.Config{BaseURL: emu.URL(), KeyID: mainID, PrivateKey: emulatortest.Key()})
	if err != nil {
		t.Fatal(err)
	}
	as, err := c.As(otherID, other)
	if err != nil {
		t.Fatal(err)
	}
	if as.KeyID() != otherID || as.BaseURL() != c.BaseURL() {
		t.Errorf("As: key %s at %s, want %s at %s", as.KeyID(), as.BaseURL(), otherID, c.BaseURL())
	}
	ctx := context.Background()
	if _, err := as.ListAPIKeys(ctx); err != nil {
		t.Fatalf("the other key's own call: %v", err)
	}
	// The other key with the main key's ID: a wrong signature.
	wrong, err := c.As(mainID, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.ListAPIKeys(ctx); kalshi.IsTransient(err) || err == nil {
		t.Fatalf("a mismatched key and ID: err = %v, want a 401", err)
	}
	if err := as.DeleteAPIKey(ctx, otherID); err != nil {
		t.Fatalf("the other key deleting itself: %v", err)
	}
	if emu.HasKey(otherID) || !emu.HasKey(mainID) {
		t.Error("As deleted the wrong key")
	}
	if _, err := c.As("a/b", other); err == nil {
		t.Error("As accepted an invalid key ID")
	}
	if _, err := c.As(otherID, nil); err == nil {
		t.Error("As accepted a nil key")
	}
}
