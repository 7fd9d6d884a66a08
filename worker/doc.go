// Package worker turns "revoke key" requests on a JetStream work queue into
// exactly one stored outcome each.
//
// A [Worker] pulls from one durable consumer that every replica shares, never
// holding more messages than it has free slots ([Config.Concurrency]). For
// each request it decodes and validates the message (package events), applies
// the guards (request policy, the worker's own key, protected keys), deletes
// the key through a [Deleter] with exponential backoff while keeping the
// message alive, publishes the result with Nats-Msg-Id set to the request id,
// and only then acknowledges. Everything that can go wrong in between leaves
// the request in the stream to be delivered again, later: a crash, a
// shutdown, a result that could not be stored.
//
// [Provision] creates the two streams and the consumer when they are
// missing; with provisioning off the worker only binds to what an operator
// created.
package worker
