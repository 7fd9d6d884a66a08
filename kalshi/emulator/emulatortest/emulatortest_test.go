package emulatortest_test

import (
	"context"
	"crypto"
	"encoding/pem"
	"testing"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
)

func TestKeysSignForTheEmulator(t *testing.T) {
	emu := emulatortest.Start(t, emulator.Options{})
	id := emu.AddKey("k", &emulatortest.Key().PublicKey)
	key, err := kalshi.LoadPrivateKey(emulatortest.WritePEM(t, emulatortest.Key()))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := kalshi.New(kalshi.Config{BaseURL: emu.URL(), KeyID: id, PrivateKey: key})
	if _, err := good.ListAPIKeys(context.Background()); err != nil {
		t.Fatalf("the key from its PEM: %v", err)
	}
	bad, _ := kalshi.New(kalshi.Config{BaseURL: emu.URL(), KeyID: id, PrivateKey: emulatortest.OtherKey()})
	if _, err := bad.ListAPIKeys(context.Background()); err == nil {
		t.Fatal("OtherKey signed for Key's ID")
	}
}

// Every PEM form parses as revoker parses a leaked key, to the key made,
// and signs as itself for the emulator.
func TestNewKeyPEM(t *testing.T) {
	emu := emulatortest.Start(t, emulator.Options{})
	for _, form := range emulatortest.PEMForms {
		key, p := emulatortest.NewKeyPEM(t, form)
		wantType := map[emulatortest.PEMForm]string{emulatortest.PKCS1RSA: "RSA PRIVATE KEY"}[form]
		if wantType == "" {
			wantType = "PRIVATE KEY"
		}
		if block, _ := pem.Decode(p); block == nil || block.Type != wantType {
			t.Fatalf("%s: not a %s block", form, wantType)
		}
		parsed, err := kalshi.ParsePrivateKey(p)
		if err != nil || !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(parsed.Public()) {
			t.Fatalf("%s: parsed %v, err %v", form, parsed != nil, err)
		}
		c, err := kalshi.New(kalshi.Config{BaseURL: emu.URL(), KeyID: emu.AddKey(form.String(), key), PrivateKey: parsed})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ListAPIKeys(context.Background()); err != nil {
			t.Errorf("%s: %v", form, err)
		}
	}
}
