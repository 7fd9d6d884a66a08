// Package console is the operator console the worker serves over NATS: a
// NATS micro service (name "revoker"; "nats micro ls" finds it) whose
// endpoints answer what an operator used to ask Kalshi directly, with the
// worker's own Kalshi client, budget and guards, so that the Kalshi
// private key stays with the worker:
//
//   - revoker.console.keys: the account's API keys, the worker's own marked;
//   - revoker.console.plan: the plan of a dry run (would_revoke, not_found,
//     refused with the guard's code) or of "revoke --all";
//   - revoker.console.status: per key, the ledger's record and whether the
//     account lists it;
//   - revoker.console.health: the answering replica's readiness, whether
//     Kalshi accepts the credential, and the replica plan's members.
//
// Every Kalshi call waits for the worker's budget (budget.Limiter). An
// answer comes from an account listing that began after its request
// arrived, never an older one; requests waiting together share a listing,
// and listings begin at most one per ListingInterval on average (bursts of
// ListingBurst), so no number of console requests spends more than one
// Kalshi call per interval.
// Requests are bounded (MaxKeys, MaxRequestBytes); refusals are micro
// errors with a code (400, 503, 500) and a one-line message. No answer
// carries a secret: key IDs, names and scopes, ledger records and settings
// that are not secret.
//
// [Start] serves it beside the worker; [Client] asks it (the CLI). Imports
// go one way: console uses worker, kalshi and events; worker does not use
// console.
package console
