package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker/natstest"
)

// natsNode is one nats-server process of the cluster. A restart reuses its
// port, its store and its arguments.
type natsNode struct {
	name, url, addr string
	args            []string
	logPath         string
	cmd             *exec.Cmd
	done            chan struct{}
}

// startCluster runs an n-node JetStream cluster of nats-server processes.
// Clients are not told the nodes' own addresses (--no_advertise), so a
// replica reaches NATS only through its proxies.
func startCluster(t *testing.T, n int) []*natsNode {
	t.Helper()
	bin := natsServerBinary(t)
	routes := make([]string, n)
	clusterPorts := make([]string, n)
	for i := range n {
		_, clusterPorts[i], _ = net.SplitHostPort(natstest.FreeAddr(t))
		routes[i] = "nats://127.0.0.1:" + clusterPorts[i]
	}
	// A cluster name and server names of its own: with seeds run side by side,
	// a port one cluster freed may be another's next, and a route between
	// the two must be refused, not merge them.
	cluster := fmt.Sprintf("chaos-%x", rand.Uint32())
	var nodes []*natsNode
	for i := range n {
		addr := natstest.FreeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		node := &natsNode{name: fmt.Sprintf("%s-n%d", cluster, i+1), url: "nats://" + addr, addr: addr}
		node.args = []string{bin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", port, "-n", node.name,
			"--cluster_name", cluster, "--cluster", "nats://127.0.0.1:" + clusterPorts[i],
			"--routes", strings.Join(routes, ","), "--no_advertise"}
		node.logPath = filepath.Join(t.TempDir(), node.name+".log")
		if err := node.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(node.stop)
		nodes = append(nodes, node)
	}
	for _, node := range nodes {
		if err := node.waitReady(60 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// start runs the node; it may run on a fault's goroutine, so it reports
// a failure rather than ending the test.
func (n *natsNode) start() error {
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	n.cmd = exec.Command(n.args[0], n.args[1:]...)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	if err := n.cmd.Start(); err != nil {
		_ = logFile.Close()
		return err
	}
	done := make(chan struct{})
	n.done = done
	cmd := n.cmd
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(done) }()
	return nil
}

// stop kills the node, if it runs; this process only, by its PID.
func (n *natsNode) stop() {
	if n.cmd != nil && n.running() {
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

func (n *natsNode) running() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL: no leadership hand-off, no goodbye.
func (n *natsNode) kill(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Errorf("kill %s: %v", n.name, err)
	}
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s still running 10s after SIGKILL", n.name)
	}
}

func (n *natsNode) waitReady(within time.Duration) error {
	if !natstest.Poll(within, func() bool { return jetStreamAnswers(n.url) }) {
		data, _ := os.ReadFile(n.logPath)
		return fmt.Errorf("%s: JetStream not ready within %v; log tail:\n%s", n.name, within, tail(string(data), 20))
	}
	return nil
}

func jetStreamAnswers(url string) bool {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err == nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
