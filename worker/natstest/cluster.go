package natstest

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a JetStream cluster of embedded servers on loopback.
type Cluster struct {
	name    string
	servers []*Server
}

// StartCluster runs an n-node JetStream cluster (n >= 2; use 3 for R3
// streams) on 127.0.0.1, each node with a free client port and its own store
// in t.TempDir(). It returns once a meta leader is elected and every node is
// JetStream-ready, and shuts the cluster down when the test ends.
//
// That usually takes well under a second, but now and then the nodes split
// the first meta leader vote and wait out raft's election timeout (4 to 9
// seconds, which only the server's own tests can shorten) before voting
// again. Raft groups a node leads are handed off when it shuts down, so a
// Shutdown of a leader fails over in milliseconds.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 2 {
		t.Fatalf("natstest: a cluster needs at least 2 nodes, got %d", n)
	}
	// Every node lists every route (itself included, which the server
	// skips), so the route ports must be known before any node starts.
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		ports[i] = FreePort(t)
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i])
	}
	c := &Cluster{name: uniqueName("cluster")}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("%s-n%d", c.name, i+1),
			Host:       "127.0.0.1",
			Port:       FreePort(t),
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster: server.ClusterOpts{
				Name: c.name,
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		c.servers = append(c.servers, newServer(o))
	}
	t.Cleanup(c.shutdown)
	// No node can be JetStream-ready before a quorum is up, so start them
	// all first and wait for the cluster as a whole.
	for _, s := range c.servers {
		s.start(t, false)
	}
	c.WaitReady(t)
	return c
}

// shutdown stops all nodes at once: one after the other, the last ones
// would first try to hand raft leadership to nodes already gone.
func (c *Cluster) shutdown() {
	var wg sync.WaitGroup
	for _, s := range c.servers {
		wg.Go(s.Shutdown)
	}
	wg.Wait()
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Servers are the nodes, in a fixed order; restarting one keeps its place.
func (c *Cluster) Servers() []*Server {
	return append([]*Server(nil), c.servers...)
}

// URLs is the comma-separated list of the nodes' client URLs, as
// nats.Connect and NATS_URL take it.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.servers))
	for i, s := range c.servers {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// WaitReady waits until the running nodes have a meta leader that sees all
// of them and every one of them is caught up with it, as after StartCluster.
// Use it after a node loss or a restart; it fails the test if that does not
// happen within 30 seconds (for instance because a majority is down).
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	ready := Poll(readyTimeout, func() bool {
		var running []*server.Server
		for _, s := range c.servers {
			if srv := s.Server(); srv != nil && srv.Running() {
				running = append(running, srv)
			}
		}
		var leader *server.Server
		for _, srv := range running {
			if !srv.JetStreamIsCurrent() {
				return false
			}
			if srv.JetStreamIsLeader() {
				leader = srv
			}
		}
		return leader != nil && len(leader.JetStreamClusterPeers()) == len(running)
	})
	if !ready {
		t.Fatalf("natstest: cluster %s: no meta leader with all running nodes current after %v",
			c.name, readyTimeout)
	}
}

// StreamLeader is the running node that leads stream in account right now,
// or nil if none does (during an election, say). Without authentication
// the account is server.DEFAULT_GLOBAL_ACCOUNT ("$G").
func (c *Cluster) StreamLeader(account, stream string) *Server {
	for _, s := range c.servers {
		if srv := s.Server(); srv != nil && srv.Running() && srv.JetStreamIsStreamLeader(account, stream) {
			return s
		}
	}
	return nil
}

// WaitStreamLeader waits until a running node leads stream in account and
// returns it; it fails the test after 30 seconds.
func (c *Cluster) WaitStreamLeader(t testing.TB, account, stream string) *Server {
	t.Helper()
	var leader *Server
	if !Poll(readyTimeout, func() bool {
		leader = c.StreamLeader(account, stream)
		return leader != nil
	}) {
		t.Fatalf("natstest: cluster %s: no leader for stream %q in account %q after %v",
			c.name, stream, account, readyTimeout)
	}
	return leader
}
