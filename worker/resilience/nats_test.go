package resilience_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// TestNATSRestart stops the single NATS server and starts it again (same
// port, same store) twice while requests are in flight: once briefly, once
// for longer than a result's publish may wait, so results decided during
// the outage cannot be stored and must be stored, once, after it.
func TestNATSRestart(t *testing.T) {
	skipShort(t)
	t.Parallel()
	srv := natstest.Start(t)
	r := newRig(t, srv.URL(), rigOptions{})
	r.emu.SetFaults(emulator.Faults{Latency: 50 * time.Millisecond})
	cfg := r.workerConfig()
	cfg.Concurrency = 4
	r.provision(cfg)
	deletes := &gatedDeletes{Kalshi: r.client(), open: make(chan struct{})}
	close(deletes.open)
	wk := r.startWorkerWith(deletes, cfg, "")
	disconnected := func() bool { return wk.nc.Status() != nats.CONNECTED }

	a, b := r.plan("restart-a", 150), r.plan("restart-b", 150)
	r.publish(a.reqs)
	r.waitResults(30, 30*time.Second)
	n := r.resultCount()
	srv.Shutdown()
	r.logf("NATS down after %d results", n)
	natstest.WaitFor(r.t, 10*time.Second, "the worker to lose NATS", disconnected)
	srv.Restart(t)
	r.logf("NATS up again")
	r.waitResults(len(a.want), 90*time.Second)
	r.logf("first batch done")

	r.publish(b.reqs)
	r.waitResults(len(a.want)+20, 30*time.Second)
	// The outage must begin with requests in flight: deletes are held
	// until NATS is gone, so their results are decided during it.
	deletes.hold()
	natstest.WaitFor(r.t, 10*time.Second, "a delete in flight", func() bool { return deletes.held.Load() > 0 })
	n = r.resultCount()
	srv.Shutdown()
	r.logf("NATS down again after %d results", n)
	natstest.WaitFor(r.t, 10*time.Second, "the worker to lose NATS", disconnected)
	deletes.release()
	const unstored = "cannot store result; the request will be delivered again"
	const noLedger = "ledger unavailable; the request will be delivered again"
	natstest.WaitFor(r.t, 20*time.Second, "a request that could not be settled", func() bool {
		return r.logs.count(unstored)+r.logs.count(noLedger) > 0
	})
	srv.Restart(t)
	r.logf("NATS up again after a second outage")

	a.merge(b)
	a.name = "restart"
	r.waitResults(len(a.want), 90*time.Second)
	r.logf("all results stored")
	r.waitDrained(time.Minute)
	if err := wk.stop(); err != nil {
		t.Error(err)
	}
	r.checkInvariants(a, fmt.Sprintf("2 NATS restarts mid-batch; during the second, %d results could not be stored and %d requests not recorded",
		r.logs.count(unstored), r.logs.count(noLedger)))
}

// gatedDeletes holds every DELETE while its gate is shut.
type gatedDeletes struct {
	worker.Kalshi
	mu   sync.Mutex
	open chan struct{} // closed while deletes pass
	held atomic.Int64  // deletes waiting at the gate
}

func (g *gatedDeletes) DeleteAPIKey(ctx context.Context, id string) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	default:
		g.held.Add(1)
		select {
		case <-open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Kalshi.DeleteAPIKey(ctx, id)
}

func (g *gatedDeletes) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

func (g *gatedDeletes) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.open)
}

// TestNATSNodeLoss runs R3 streams on a three-node cluster and shuts down
// the node that leads the requests stream, which is also the node the
// worker is connected to, mid-batch; more requests are published during the
// failover. Then the node comes back and the new leader is shut down in turn
// (a rolling restart losing the leader twice).
func TestNATSNodeLoss(t *testing.T) {
	skipShort(t)
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	r := newRig(t, c.URLs(), rigOptions{})
	r.emu.SetFaults(emulator.Faults{Latency: 30 * time.Millisecond})
	cfg := r.workerConfig()
	cfg.Replicas = 3
	cfg.Concurrency = 4
	r.provision(cfg)

	leader := c.WaitStreamLeader(t, "$G", requestsStream)
	urls := []string{leader.URL()}
	for _, s := range c.Servers() {
		if s != leader {
			urls = append(urls, s.URL())
		}
	}
	wk := r.startWorker(cfg, strings.Join(urls, ","), nats.DontRandomize())
	natstest.WaitFor(r.t, 10*time.Second, "the worker on the leader", func() bool { return wk.nc.ConnectedUrl() == leader.URL() })

	all := plan{name: "nodeloss"}
	a, b, d := r.plan("nodeloss-a", 200), r.plan("nodeloss-b", 100), r.plan("nodeloss-c", 100)
	r.publish(a.reqs)
	r.waitResults(30, 30*time.Second)
	n := r.resultCount()
	if n >= len(a.want)/2 {
		t.Fatalf("%d of %d results before the node loss: too late to prove anything", n, len(a.want))
	}
	leader.Shutdown()
	r.logf("shut down %s, leader of %s and the worker's server, after %d results", leader.Name(), requestsStream, n)
	r.publish(b.reqs)
	all.merge(a)
	all.merge(b)
	r.waitResults(len(all.want)-50, 90*time.Second)

	leader.Restart(t)
	c.WaitReady(t)
	second := c.WaitStreamLeader(t, "$G", requestsStream)
	n = r.resultCount()
	second.Shutdown()
	r.logf("%s back; shut down %s, the new leader, after %d results (the worker is on %s)",
		leader.Name(), second.Name(), n, wk.nc.ConnectedServerName())
	r.publish(d.reqs)
	all.merge(d)
	r.waitResults(len(all.want), 90*time.Second)
	r.logf("all results stored; the worker is on %s", wk.nc.ConnectedServerName())
	r.waitDrained(time.Minute)
	if now := c.StreamLeader("$G", requestsStream); now == nil || now == second {
		t.Errorf("requests stream leader after the second loss: %v", now)
	}
	if err := wk.stop(); err != nil {
		t.Error(err)
	}
	r.checkInvariants(all, "2 stream leaders shut down mid-batch (the first also the worker's server), R3, publishing through the failovers")
}

// TestNATSNodeCrash is TestNATSNodeLoss with a crash instead of a
// shutdown: three nats-server processes, R3 streams, and the node leading
// the requests stream (the worker's server too) killed with SIGKILL
// mid-batch, so nothing is handed off and the cluster must notice and elect
// a new leader on its own.
func TestNATSNodeCrash(t *testing.T) {
	skipShort(t)
	t.Parallel()
	nodes := startNATSCluster(t, 3)
	r := newRig(t, clusterURLs(nodes), rigOptions{})
	r.emu.SetFaults(emulator.Faults{Latency: 30 * time.Millisecond})
	cfg := r.workerConfig()
	cfg.Concurrency = 4
	cfg = r.provisionR3(cfg)
	leader := r.streamLeader(nodes)
	ordered := []string{leader.url}
	for _, n := range nodes {
		if n != leader {
			ordered = append(ordered, n.url)
		}
	}
	wk := r.startWorker(cfg, strings.Join(ordered, ","), nats.DontRandomize())
	natstest.WaitFor(r.t, 10*time.Second, "the worker on the leader", func() bool { return wk.nc.ConnectedUrl() == leader.url })

	a, b := r.plan("nodecrash-a", 200), r.plan("nodecrash-b", 100)
	r.publish(a.reqs)
	r.waitResults(30, 30*time.Second)
	n := r.resultCount()
	if n >= len(a.want)/2 {
		t.Fatalf("%d of %d results before the crash: too late to prove anything", n, len(a.want))
	}
	leader.kill(t)
	r.logf("SIGKILL of %s, leader of %s and the worker's server, after %d results", leader.name, requestsStream, n)
	r.publish(b.reqs)
	r.logf("second batch published")
	a.merge(b)
	a.name = "nodecrash"
	r.waitResults(len(a.want), 2*time.Minute)
	r.logf("all results stored; the worker is on %s; %s leads %s now", wk.nc.ConnectedServerName(), r.streamLeader(nodes).name, requestsStream)
	r.waitDrained(time.Minute)
	if err := wk.stop(); err != nil {
		t.Error(err)
	}
	r.checkInvariants(a, "SIGKILL of the stream leader (and the worker's server) mid-batch, R3, publishing through the election")
}

// clusterURLs is the client URL list of a cluster's nodes.
func clusterURLs(nodes []*natsNode) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url
	}
	return strings.Join(urls, ",")
}

// provisionR3 provisions cfg's streams with three replicas, once the
// cluster can place them (it may still be placing its first R3 assets),
// and returns cfg as provisioned.
func (r *rig) provisionR3(cfg worker.Config) worker.Config {
	r.t.Helper()
	cfg.Replicas = 3
	var err error
	if !natstest.Poll(30*time.Second, func() bool {
		ctx, cancel := contextTimeout(10 * time.Second)
		defer cancel()
		err = provision.Ensure(ctx, r.js, cfg.Provisioning())
		return err == nil
	}) {
		r.t.Fatalf("provisioning R3 streams: %v", err)
	}
	return cfg
}

// streamLeader is the node leading the requests stream.
func (r *rig) streamLeader(nodes []*natsNode) *natsNode {
	return r.leaderOf(nodes, requestsStream, func(ctx context.Context) (*jetstream.ClusterInfo, error) {
		st, err := r.js.Stream(ctx, requestsStream)
		if err != nil {
			return nil, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, err
		}
		return info.Cluster, nil
	})
}

// leaderOf waits for what to have a leader among nodes, as cluster says.
func (r *rig) leaderOf(nodes []*natsNode, what string, cluster func(context.Context) (*jetstream.ClusterInfo, error)) *natsNode {
	r.t.Helper()
	var leader *natsNode
	natstest.WaitFor(r.t, 30*time.Second, "a leader of "+what, func() bool {
		ctx, cancel := contextTimeout(5 * time.Second)
		defer cancel()
		ci, err := cluster(ctx)
		if err != nil || ci == nil {
			return false
		}
		for _, n := range nodes {
			if n.name == ci.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// TestLostConsumer deletes the durable consumer while the worker is
// disconnected (NATS restarted, the worker's reconnect not yet due) and
// requests are in flight; the worker recreates it and loses nothing.
func TestLostConsumer(t *testing.T) {
	skipShort(t)
	t.Parallel()
	srv := natstest.Start(t)
	r := newRig(t, srv.URL(), rigOptions{})
	r.emu.SetFaults(emulator.Faults{Latency: 50 * time.Millisecond})
	cfg := r.workerConfig()
	cfg.Concurrency = 4
	r.provision(cfg)
	wk := r.startWorker(cfg, "", nats.ReconnectWait(5*time.Second), nats.ReconnectJitter(0, 0))

	a, b := r.plan("lostconsumer-a", 200), r.plan("lostconsumer-b", 50)
	r.publish(a.reqs)
	r.waitResults(30, 30*time.Second)
	n, held := r.resultCount(), r.ackPending()
	srv.Shutdown()
	r.logf("NATS down after %d results, %d requests unacknowledged", n, held)
	natstest.WaitFor(r.t, 10*time.Second, "the worker to lose NATS", func() bool { return wk.nc.Status() != nats.CONNECTED })
	srv.Restart(t)
	natstest.WaitFor(r.t, 10*time.Second, "the test's connection back", r.nc.IsConnected)
	ctx, cancel := contextTimeout(10 * time.Second)
	defer cancel()
	if err := r.js.DeleteConsumer(ctx, requestsStream, consumerName); err != nil {
		t.Fatal(err)
	}
	if wk.nc.IsConnected() {
		t.Fatal("the worker reconnected before the consumer was deleted: the scenario did not happen")
	}
	r.logf("NATS up, consumer deleted, the worker still disconnected")
	r.publish(b.reqs)
	a.merge(b)
	a.name = "lostconsumer"
	r.waitResults(len(a.want), 90*time.Second)
	r.waitDrained(time.Minute)
	r.logf("all results stored")
	natstest.WaitFor(r.t, 20*time.Second, "the worker ready again", func() bool { return wk.w.Ready() == nil })
	if err := wk.stop(); err != nil {
		t.Error(err)
	}
	r.checkInvariants(a, "consumer deleted while the worker was disconnected mid-batch")
}
