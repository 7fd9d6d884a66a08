package kalshi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
)

// This example deletes a leaked key from a local emulator, then shows that
// a second delete reports the key as already gone.
func Example() {
	emu := emulator.New(emulator.Options{})
	if err := emu.Start(""); err != nil {
		log.Fatal(err)
	}
	defer emu.Close()

	// The signing key, as the PEM file Kalshi's web UI hands out.
	keyID, keyPEM, err := emu.GenerateKey("revoker")
	if err != nil {
		log.Fatal(err)
	}
	key, err := kalshi.ParsePrivateKey(keyPEM)
	if err != nil {
		log.Fatal(err)
	}
	leakedPub, _, _ := ed25519.GenerateKey(rand.Reader)
	leaked := emu.AddKey("leaked in a gist", leakedPub)

	client, err := kalshi.New(kalshi.Config{BaseURL: emu.URL(), KeyID: keyID, PrivateKey: key})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	fmt.Println("delete:", client.DeleteAPIKey(ctx, leaked))

	err = client.DeleteAPIKey(ctx, leaked)
	fmt.Println("again, already gone:", kalshi.IsNotFound(err), "retry:", kalshi.IsTransient(err))

	keys, err := client.ListAPIKeys(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range keys {
		fmt.Println("left:", k.Name)
	}
	// Output:
	// delete: <nil>
	// again, already gone: true retry: false
	// left: revoker
}
