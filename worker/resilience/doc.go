// Package resilience proves that revoker survives what production does to
// it: a worker killed mid-batch, NATS restarting, a cluster node (the stream
// leader) lost, several replicas with one killed, Kalshi answering with
// storms of 5xx, 429s, hangs and lost responses, the durable consumer
// deleted while the worker is away, hostile requests, and ten thousand
// requests through one worker with its memory sampled.
//
// The package holds only tests. Every scenario ends with the same
// invariants: each request has exactly one result in the results stream
// (counted over every stored message, so a duplicate shows), every key that
// was to be revoked is gone, the requests stream is empty, and no key that
// should live (protected, never requested, the worker's own) was deleted or
// even asked to be.
//
// Each scenario logs one line starting with FIGURE: requests, faults
// injected, results, duplicates, lost. The worker crash and replica
// scenarios build and run the real binary (cmd/revoker) and kill it with
// SIGKILL; the others run the worker in process.
//
//	go test -race -count=1 -v ./worker/resilience/ | grep FIGURE
//
// -short skips the long scenarios.
package resilience
