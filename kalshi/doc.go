// Package kalshi is a small client for the parts of the Kalshi Trade API v2
// that revoker needs: deleting and listing API keys, reading the account's
// rate limits and endpoint costs, and cancelling the resting orders a
// deleted key could have placed ([Client.CancelOrders]).
//
// # Authentication
//
// Every request is signed by an [http.RoundTripper] installed on the
// client's *http.Client, so every attempt, including a retry, carries a fresh
// millisecond timestamp and signature. The signed text is
//
//	timestamp + METHOD + path
//
// where path is the URL path as sent, including the /trade-api/v2 prefix and
// without the query string. RSA keys sign with RSA-PSS, SHA-256 and a salt
// of 32 bytes (the digest length); Ed25519 keys sign the text directly. The
// signature travels base64-encoded (standard alphabet, padded) in
// KALSHI-ACCESS-SIGNATURE, next to KALSHI-ACCESS-KEY and
// KALSHI-ACCESS-TIMESTAMP.
//
// Private keys are read from PEM with [ParsePrivateKey] or [LoadPrivateKey]:
// PKCS#1 ("RSA PRIVATE KEY") or PKCS#8 ("PRIVATE KEY", RSA or Ed25519).
//
// # Errors
//
// [CheckResponse] turns every non-2xx response into an [*APIError] carrying
// the status, Kalshi's code, message and details, and any Retry-After hint.
// It understands every body shape Kalshi is known to send and never fails on
// an unexpected one. [IsNotFound], [IsTransient], [IsPermanent] and
// [RetryAfter] classify any error a [Client] method returns; a caller's retry
// policy needs nothing else. The client itself never retries.
//
// # Rate limits
//
// [DeleteBudget] turns [Limits] and [Costs] into the account's delete
// budget (deletes per second and burst), [BudgetFraction] of what the read
// bucket allows; [FallbackDeleteBudget] is the basic tier's while the
// limits are unknown. [CancelBudget] is the same for order cancels, which
// spend the write bucket. Spending the budget, and splitting it between
// replicas, is the worker's limiter's job.
//
// # Secrets
//
// No error string or log value produced by this package contains private
// key material, a signature or the signed headers. [Config] prints its
// private key as REDACTED.
//
// A faithful local server for tests lives in the emulator sub-package.
package kalshi
