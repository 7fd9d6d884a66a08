package emulatortest_test

import (
	"context"
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
