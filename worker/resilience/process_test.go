package resilience_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker/natstest"
)

// TestWorkerCrash kills the real binary with SIGKILL mid-batch while it
// holds requests, some of them already deleted at Kalshi with their result
// not stored (Kalshi's answer is held 40 ms after the delete), and starts it
// again. What the dead process held comes back after the 30 s ack wait; a
// key it deleted is found gone (already_revoked), not deleted twice.
func TestWorkerCrash(t *testing.T) {
	skipShort(t)
	t.Parallel()
	srv := natstest.Start(t)
	r := newRig(t, srv.URL(), rigOptions{answerDelay: 40 * time.Millisecond})
	r.emu.SetFaults(emulator.Faults{Latency: 20 * time.Millisecond})
	p := r.plan("crash", 300)
	env := map[string]string{"REVOKER_CONCURRENCY": "4"}

	first := r.startProc("revoker-1", env)
	r.publish(p.reqs)
	natstest.WaitFor(r.t, 30*time.Second, "40 results and a delete done at Kalshi whose result is not stored", func() bool {
		return r.resultCount() >= 40 && len(r.emu.Stats().Deletes) > r.subjectCount(events.ResultSubject(resultsPrefix, events.Revoked))
	})
	first.kill()
	done := r.resultCount()
	if done >= len(p.want)/2 {
		t.Fatalf("%d of %d results before the kill: too late to prove anything", done, len(p.want))
	}
	held := r.ackPending()
	orphans := r.orphans()
	r.logf("SIGKILL after %d results, holding %d requests; %d keys deleted without a stored result", done, held, len(orphans))
	if held == 0 {
		t.Fatal("the killed process held no requests: the crash proves nothing")
	}
	if len(orphans) == 0 {
		t.Log("no delete was caught between Kalshi and the results stream this time")
	}

	second := r.startProc("revoker-2", env)
	r.waitResults(len(p.want), 90*time.Second)
	r.logf("all results stored")
	r.waitDrained(time.Minute)
	second.terminate()
	if n := second.logCount(`"level":"ERROR"`); n != 0 {
		t.Errorf("the restarted process logged %d errors", n)
	}
	r.checkInvariants(p, fmt.Sprintf("1 SIGKILL holding %d requests (%d deleted at Kalshi, result not stored), Kalshi latency 20ms + 40ms", held, len(orphans)))
	byKey := make(map[string]events.Result)
	for _, s := range r.readResults() {
		byKey[s.res.APIKeyID] = s.res
	}
	for _, k := range orphans {
		// Either the killed process recorded its decision (the 2xx) before
		// it died, and that is what was stored, or the ledger knew that
		// its DELETE may have reached Kalshi and the 404 says so.
		res := byKey[k]
		if res.Outcome != events.Revoked || res.Detail == "" && (res.HTTPStatus < 200 || res.HTTPStatus > 299) {
			t.Errorf("key %s, deleted by the killed process, ended %s (%d, %q); want revoked, by its recorded 2xx or saying how it was established",
				k, res.Outcome, res.HTTPStatus, res.Detail)
		}
	}
}

// TestSeveralReplicas runs three binaries on the one durable consumer and
// kills one with SIGKILL while it holds requests, then stops another with
// SIGTERM mid-batch and starts a fourth (a rolling restart). The others
// finish everything, including what the killed one held (after the ack
// wait) and what the stopped one handed back.
func TestSeveralReplicas(t *testing.T) {
	skipShort(t)
	t.Parallel()
	srv := natstest.Start(t)
	r := newRig(t, srv.URL(), rigOptions{})
	r.emu.SetFaults(emulator.Faults{Latency: 50 * time.Millisecond})
	p := r.plan("replicas", 300)
	env := map[string]string{"REVOKER_CONCURRENCY": "2"}

	var procs []*proc
	for i := range 3 {
		procs = append(procs, r.startProc(fmt.Sprintf("replica-%d", i+1), env))
	}
	r.publish(p.reqs)
	killed, stopped := procs[0], procs[1]
	var held float64
	natstest.WaitFor(r.t, 30*time.Second, "50 results and the victim holding requests", func() bool {
		held = killed.metric("revoker_in_flight")
		return r.resultCount() >= 50 && held >= 1
	})
	killedDone := killed.metric("revoker_results_total")
	killed.kill()
	done := r.resultCount()
	if done >= len(p.want)/2 {
		t.Fatalf("%d of %d results before the kill: too late to prove anything", done, len(p.want))
	}
	r.logf("SIGKILL of %s after %d results (%v of them its own), holding %v", killed.name, done, killedDone, held)
	if killedDone < 1 {
		t.Errorf("%s stored no result before the kill: the replicas did not share the work", killed.name)
	}

	natstest.WaitFor(r.t, 30*time.Second, "100 results and the next victim busy", func() bool {
		return r.resultCount() >= 100 && stopped.metric("revoker_in_flight") >= 1
	})
	began := time.Now()
	stopped.terminate()
	r.logf("SIGTERM of %s after %d results: exited 0 in %v", stopped.name, r.resultCount(), time.Since(began).Round(time.Millisecond))
	if n := r.resultCount(); n >= len(p.want)-20 {
		t.Fatalf("%d of %d results before the SIGTERM: too late to prove anything", n, len(p.want))
	}
	procs = append(procs, r.startProc("replica-4", env))

	r.waitResults(len(p.want), 90*time.Second)
	r.logf("all results stored")
	r.waitDrained(time.Minute)
	for _, s := range procs[2:] {
		n := s.metric("revoker_results_total")
		r.logf("%s stored %v results", s.name, n)
		if n < 1 {
			t.Errorf("%s stored no result: the replicas did not share the work", s.name)
		}
		s.terminate()
	}
	r.checkInvariants(p, fmt.Sprintf("3 replicas + 1 started later; 1 SIGKILL holding %v requests, 1 SIGTERM mid-batch; Kalshi latency 50ms", held))
}

// subjectCount is how many results are stored on subject.
func (r *rig) subjectCount(subject string) int {
	ctx, cancel := contextTimeout(5 * time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, resultsStream)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return -1
	}
	return int(info.State.Subjects[subject])
}

// orphans are the keys deleted at Kalshi for which no result is stored.
func (r *rig) orphans() []string {
	stored := make(map[string]bool)
	for _, s := range r.readResults() {
		stored[s.res.APIKeyID] = true
	}
	var out []string
	for k := range r.emu.Stats().Deletes {
		if !stored[k] {
			out = append(out, k)
		}
	}
	return out
}

// ackPending is how many requests the consumer has delivered and not yet
// seen acknowledged.
func (r *rig) ackPending() int {
	ctx, cancel := contextTimeout(5 * time.Second)
	defer cancel()
	c, err := r.js.Consumer(ctx, requestsStream, consumerName)
	if err != nil {
		return -1
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return -1
	}
	return ci.NumAckPending
}

// TestFailover: with two "revoker run" processes, the requests held by
// one killed with SIGKILL are delivered again and completed by the other,
// each with one result. How long they wait (the contract says within 15 s;
// the consumer's ack wait, 10 s as provisioned, bounds it) is
// BenchmarkFailover's figure: a test asserts no wall-clock time, which a
// loaded machine breaks.
func TestFailover(t *testing.T) {
	skipShort(t)
	t.Parallel()
	failover(t, false)
}

// BenchmarkFailover reports TestFailover's figure, from the kill to the
// last of the killed process's requests stored by the other, in seconds.
//
//	go test -run '^$' -bench BenchmarkFailover -benchtime 3x ./worker/resilience
func BenchmarkFailover(b *testing.B) {
	var total time.Duration
	for b.Loop() {
		total += failover(b, false)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "failover-s")
}

// TestFailoverWithNodeLoss is TestFailover on a three-node cluster (R3)
// with the node leading the consumer killed with SIGKILL at the same moment
// as the replica: the survivor's NAKs on the dead replica's behalf must
// outlast the consumer's leader election, or its requests wait out their
// ack wait. The figure is the contract's "8 s when a NATS node dies at the
// same time"; the consumer cannot redeliver before its new leader is
// elected, 4-9 s after the kill (nats-server's raft election timeout).
// The test holds the mechanism, not a time: every delivery the killed
// replica announced and the survivor took again was NAKed first, as
// JetStream's NAK advisories show (with one NAK attempt only, the NAK is
// lost to the election and the redelivery waits out the ack wait).
func TestFailoverWithNodeLoss(t *testing.T) {
	skipShort(t)
	t.Parallel()
	failover(t, true)
}

// failover runs TestFailover's scenario: it kills one of two replicas while
// it holds requests (and, with nodeLoss, on a three-node cluster, the node
// leading the consumer at the same moment), checks that every request still
// ends with one result, and returns the time from the kill to the last of
// the killed process's requests stored.
func failover(tb testing.TB, nodeLoss bool) time.Duration {
	tb.Helper()
	env := map[string]string{"REVOKER_CONCURRENCY": "4"}
	var r *rig
	var nodes []*natsNode
	if nodeLoss {
		nodes = startNATSCluster(tb, 3)
		r = newRig(tb, clusterURLs(nodes), rigOptions{})
		cfg := r.workerConfig()
		r.provisionR3(cfg)
		env["REVOKER_NO_PROVISION"], env["REVOKER_MAX_RETRY"] = "true", cfg.MaxRetry.String()
	} else {
		r = newRig(tb, natstest.Start(tb).URL(), rigOptions{})
	}
	r.emu.SetFaults(emulator.Faults{Latency: 150 * time.Millisecond})
	p := r.plan("failover", 120)
	watch := []*nats.Conn{r.nc}
	if nodeLoss {
		watch = []*nats.Conn{natstest.Connect(tb, nodes[0].url), natstest.Connect(tb, nodes[1].url)}
	}
	fw := watchFleet(tb, watch, requestsStream, consumerName)
	victim := r.startProc("failover-1", env)
	victimID := fw.replica(tb, 1)
	survivor := r.startProc("failover-2", env)
	survivorID := fw.replica(tb, 2)
	r.publish(p.reqs)
	var held float64
	natstest.WaitFor(r.t, 30*time.Second, "20 results and the victim holding requests", func() bool {
		held = victim.metric("revoker_in_flight")
		return r.resultCount() >= 20 && held >= 2
	})
	fault := fmt.Sprintf("1 SIGKILL holding %v requests; Kalshi latency 150ms", held)
	var dead []delivery
	if nodeLoss {
		leader := r.consumerLeader(nodes)
		victim.kill()
		dead = fw.holding(victimID)
		leader.kill(tb)
		fault = fmt.Sprintf("1 replica holding %v requests and %s, the consumer's leader node, SIGKILLed together; R3", held, leader.name)
	} else {
		victim.kill()
		dead = fw.holding(victimID)
	}
	killedAt := time.Now()
	r.waitResults(len(p.want), 90*time.Second)
	r.waitDrained(time.Minute)
	survivor.terminate()
	r.checkInvariants(p, fault)
	// The survivor NAKed what the dead replica held, before its ack wait
	// ran out (with a node lost: until the consumer's new leader took it).
	n := fw.checkNAKedForDead(tb, dead, survivorID)
	if n == 0 {
		tb.Errorf("none of the %d deliveries the killed replica announced was taken again: the kill proves nothing", len(dead))
	}
	tb.Logf("%d of the %d deliveries the killed replica announced were taken again by the survivor", n, len(dead))

	// The killed process's requests are the ones delivered twice.
	var last time.Time
	taken := 0
	for _, s := range r.readResults() {
		if s.res.Deliveries > 1 {
			taken++
			if s.res.CompletedAt.After(last) {
				last = s.res.CompletedAt
			}
		}
	}
	if taken == 0 {
		// The survivor took deliveries again (checked above), but the
		// killed replica had stored their results before it died: they
		// were stored again as duplicates, and no result is the
		// failover's. Nothing to time.
		tb.Logf("FIGURE failover (node loss %v): %s -> the killed replica had stored the results of all it held; no failover time", nodeLoss, fault)
		return 0
	}
	d := last.Sub(killedAt)
	tb.Logf("FIGURE failover (node loss %v): %s -> last of its %d requests stored %.1fs later (ack wait 10s; contract: within 5s, 8s with a NATS node lost)",
		nodeLoss, fault, taken, d.Seconds())
	return d
}

// consumerLeader is the node leading the durable consumer.
func (r *rig) consumerLeader(nodes []*natsNode) *natsNode {
	return r.leaderOf(nodes, "the consumer", func(ctx context.Context) (*jetstream.ClusterInfo, error) {
		c, err := r.js.Consumer(ctx, requestsStream, "revoker") // the default consumer of "revoker run"
		if err != nil {
			return nil, err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return nil, err
		}
		return info.Cluster, nil
	})
}
