// Package auth decides whether a decoded "revoke key" request may act: it checks the
// request's signature, its freshness and its source. It knows nothing of NATS or
// Kalshi: the worker hands it the message header, the body and the [events.Request]
// decoded from them, and gets back nil or an error whose text says, in plain words, why
// the request is refused. The worker turns that error into a rejected result with the
// code unauthorized_request.
//
// # Threat model, in short
//
// Anyone allowed to publish on the requests subject can ask revoker to delete any key of
// the account (except its own and the protected ones). Without request authentication
// that NATS publish permission is the only gate, and the request's fields, its id
// included, are whatever the publisher wrote. NATS does not tell a subscriber who
// published a message, so the worker cannot check the publisher itself; signatures let it.
//
// With [Policy.TrustedSigners] set, a request acts only when it carries
//
//	Revoker-Signer:    the public nkey of a trusted NATS user (U...)
//	Revoker-Signature: the Ed25519 signature of that nkey over the exact body bytes,
//	                   base64url (RFC 4648 section 5), with or without "=" padding
//
// (header names in any case) and when the signed body holds the request's id and a
// requested_at no older than [Policy.MaxAge] (default 5 minutes) and no further in the
// future than [Policy.Skew] (default 30 seconds). A client with publish permission but
// without a trusted seed can then delete nothing: a forged, tampered or unsigned request
// ends as rejected/unauthorized_request. What signing does not give:
//
//   - Secrecy: every subscriber of the requests stream reads the bodies.
//   - Authenticated headers: Nats-Msg-Id and the CloudEvents ce-* headers are outside the
//     signature. For a binary CloudEvent (ce-* headers, plain JSON body) the signature
//     covers the body only, so a signed request must carry its id and requested_at in
//     the body; one whose id is only in ce-id, or whose time is only in ce-time, is
//     refused. ce-source and ce-type stay unauthenticated: with [Policy.AllowedSources]
//     set, the source of a signed request must be in the body too.
//   - Ownership of an id: a forger cannot make a request act, but it can send an
//     unsigned request claiming any id, and the rejected result carries that id. The
//     worker stores such a result under a Nats-Msg-Id of its own (the stream
//     sequence), so it cannot make the results stream drop the genuine request's
//     result as a duplicate.
//   - Protection from a stolen seed: whoever holds a trusted seed signs anything until
//     its public key is removed from the list. The worker needs only public keys; keep
//     each seed with the one system that publishes with it.
//
// [Policy.AllowedSources] is independent of signing: when set, only requests whose
// source is listed (exactly, case-sensitively) act. Without signing it is a guard
// against misrouted or misconfigured publishers, not a security boundary, since a
// publisher writes its own source.
//
// # Replays
//
// A captured signed request can be published again, byte for byte, under a Nats-Msg-Id
// of the replayer's choosing. Three windows together make sure it never deletes a key
// twice nor yields a second result, as long as it comes within the results stream's
// duplicates window:
//
//  1. The requests stream drops a message whose Nats-Msg-Id it stored in the last hour.
//     That stops honest re-publishes, not a replayer, who can pick a new Nats-Msg-Id.
//  2. A replay stored within MaxAge of its requested_at is authorized like the original
//     and asks to delete the same key under the same (signed) id. A Kalshi key id names
//     one key forever, so whichever copy is second finds it gone (404,
//     already_revoked), and its result, published with Nats-Msg-Id set to the request
//     id, is dropped by the results stream, whose duplicates window is the retry budget
//     plus one hour (1h15m by default).
//  3. A replay stored more than MaxAge after its requested_at is refused as stale
//     ([*StaleError]) and deletes nothing. Its rejected result carries the original's
//     id, so the same results window drops it, as long as it comes within that window
//     of the original result.
//
// Hence MaxAge (plus Skew) must stay well below the results stream's duplicates window
// less the retry budget, which is what [MaxAgeLimit] enforces: every copy the policy
// lets act is then stored close enough to the others for the results stream to keep
// one result. A replay arriving after the results window has closed deletes nothing;
// the worker recognises it by [StaleError.Age] and publishes no second result, only
// logs and counts it (revoker_replays_dropped_total).
//
// Age is measured at the time passed to [Policy.AuthorizeAt], which the worker should
// set to the time JetStream stored the message: a replay is stored anew, so it is
// measured at its own arrival, while a backlog or a redelivery of a genuine request
// does not turn it stale half-way through. [Policy.Authorize] measures at
// [Policy.Now].
//
// # Signing
//
// A publisher signs with [Sign] (or [SignWith] and a key pair from [LoadSeed]) and sets
// the two headers [HeaderSigner] and [HeaderSignature] on the message; `revoker revoke`
// does this when given a signer seed. The body must then be published exactly as
// signed: re-encoding the JSON, even re-ordering its keys, breaks the signature.
package auth
