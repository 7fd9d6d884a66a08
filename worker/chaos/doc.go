// Package chaos holds the fleet chaos test: revoker as deployed (three
// nats-server processes in an R3 cluster, three `revoker run` processes of
// the built binary, the Kalshi emulator), with a TCP proxy from
// github.com/Shopify/toxiproxy/v2 between each replica and each NATS node
// and between each replica and Kalshi, broken by a seeded schedule of
// faults: replica SIGKILL and SIGSTOP/SIGCONT, NATS node kills (stream
// leaders included), a replica cut from NATS only or from Kalshi only,
// latency, and Kalshi 5xx/429/lost-answer storms.
//
// A checker then judges from the outside only (the results streams, the
// emulator's call log and stats, the ledger bucket, the consumer): one
// result per request id; every key the emulator deleted named by exactly
// one revoked; no revoked for a key never deleted; every already_revoked of
// a key revoker deleted names the request that did; guarded keys
// untouched; the queue empty; no DELETE during a Retry-After (unless the
// replica that got the 429 was killed, stopped or cut off before it could
// pass it on); the ledger's decisions equal the stored results. Each
// replica's Kalshi link ends at a front of its own, so a broken invariant
// names the replica that sent the call.
//
// The suite runs the CI seed and every regression (-short skips them), two
// seeds at a time, each with its own deployment; more seeds, or one, with
//
//	go test -count=1 -v -run TestChaos ./worker/chaos/                        # CI seed and regressions
//	go test -count=1 -v -run TestChaos ./worker/chaos/ -args -chaos.seeds=10
//	go test -count=1 -v -run TestChaos ./worker/chaos/ -args -chaos.seed=N
//
// -chaos.parallel=N runs N seeds at a time (1: one after another).
//
// It is a test-only package: this file holds only its documentation.
package chaos
