package auth_test

import (
	"fmt"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/events/auth"
)

// A publisher signs the exact body it publishes; the worker trusts the publisher's
// public key and authorizes each request it decodes.
func Example() {
	// The publisher's nkey. In production the seed lives in a file only the publisher
	// reads (auth.LoadSeed); the worker is told the public key alone.
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	public, _ := kp.PublicKey()

	body := []byte(`{"id":"inc-4711-1","api_key_id":"a952bcbe-0d1f","reason":"leaked in a public gist",` +
		`"source":"incident-response","requested_at":"2026-11-25T10:00:00Z"}`)
	signer, signature, err := auth.Sign(seed, body)
	if err != nil {
		fmt.Println(err)
		return
	}
	header := map[string][]string{auth.HeaderSigner: {signer}, auth.HeaderSignature: {signature}}

	// The worker's side.
	policy := &auth.Policy{
		TrustedSigners: []string{public},
		AllowedSources: []string{"incident-response"},
	}
	if err := policy.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	req, err := events.DecodeRequest(header, body, "KEY_REVOKE_REQUESTS-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	stored := time.Date(2026, 11, 25, 10, 0, 2, 0, time.UTC) // when JetStream stored it
	fmt.Println("on time:", policy.AuthorizeAt(header, body, req, stored))

	// The same bytes, captured and published again twelve minutes later.
	replayed := time.Date(2026, 11, 25, 10, 12, 0, 0, time.UTC)
	fmt.Println("replayed:", policy.AuthorizeAt(header, body, req, replayed))

	// Without its headers, the request is not signed.
	fmt.Println("unsigned:", policy.AuthorizeAt(nil, body, req, stored))
	// Output:
	// on time: <nil>
	// replayed: requested_at 2026-11-25T10:00:00Z is 12m0s old; at most 5m0s is accepted
	// unsigned: request is not signed: no Revoker-Signer or Revoker-Signature header
}
