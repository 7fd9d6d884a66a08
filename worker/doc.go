// Package worker turns "revoke key" requests on a JetStream work queue into
// exactly one stored outcome each.
//
// A [Worker] pulls from one durable consumer that every replica shares, never
// holding more messages than it has free slots ([Config.Concurrency]), and
// only while Kalshi accepts its credential and answers this replica (package
// worker/credential). For each request it decodes and
// validates the message (package events) and applies the request policy; a
// request whose id cannot be trusted is rejected under a message id of its
// own, in [provision.UntrustedStream]. A trusted request is decided once for every
// replica in the ledger, a JetStream KV bucket that package worker/ledger
// reads and writes ([ledger.Bucket]): its id names
// one key, one request at a time may attempt a key (its attempt entry, taken
// before the first DELETE, with whether a fresh account listing showed the
// key), and the decision is recorded before its result is stored. The worker
// applies the guards (its own key, protected keys), deletes the key through
// [Kalshi] with exponential backoff while keeping the message alive, stores
// the result with Nats-Msg-Id set to the request id, and only then
// acknowledges. A leaked private key's API key is found first (package
// worker/leaked); a request with cancel_orders cancels the deleted key's
// resting orders (package worker/contain); a stored revocation is then
// confirmed dead (package worker/confirm). Its counters are package
// worker/metrics. Replicas tell each other what they hold (a silent one's
// deliveries are NAKed at once) and share one account listing (package
// worker/fleet), and a 429's pause (package worker/budget). Everything that
// can go wrong in between leaves the request in the stream to be delivered
// again, later: a crash, a shutdown, a result that could not be stored.
//
// With [Config.Provision] the worker creates the three streams, the consumer
// and the buckets when they are missing; with provisioning off it only binds
// to what an operator created. Either way it refuses settings that break a
// guarantee: package worker/provision.
//
// Every Kalshi call waits for the account's rate budget, which the replicas
// share: package worker/budget.
package worker
