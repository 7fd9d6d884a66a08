package resilience_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker/natstest"
)

// Binaries the tests run, built once per test binary (without -race: they
// are the processes under test, not the test).
var binaries struct {
	mu    sync.Mutex
	dir   string
	built map[string]string // package -> path
}

// TestMain runs the scenarios 4 at a time: they mostly wait (on pauses a
// 429 asked for, hangs, failovers, processes) and each has its own NATS,
// emulator and processes. TestSoak (it measures this process's memory),
// TestFleetPauseProcesses (a 250 ms window on two processes' clocks) and
// TestHealNoBurst (rates against Kalshi's bucket) stay sequential: they
// run first, alone.
func TestMain(m *testing.M) {
	natstest.Parallel(4)
	code := m.Run()
	if binaries.dir != "" {
		_ = os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// revokerBinary is cmd/revoker, the binary under test.
func revokerBinary(t testing.TB) string { return buildBinary(t, "./cmd/revoker", "revoker") }

// natsServerBinary is nats-server itself, from the module's dependency,
// for a NATS that runs outside the test process.
func natsServerBinary(t testing.TB) string {
	return buildBinary(t, "github.com/nats-io/nats-server/v2", "nats-server")
}

func buildBinary(t testing.TB, pkg, name string) string {
	t.Helper()
	binaries.mu.Lock()
	defer binaries.mu.Unlock()
	if path, ok := binaries.built[pkg]; ok {
		return path
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: %q, %v", gomod, err)
	}
	if binaries.dir == "" {
		if binaries.dir, err = os.MkdirTemp("", "revoker-resilience-"); err != nil {
			t.Fatal(err)
		}
		binaries.built = make(map[string]string)
	}
	path := filepath.Join(binaries.dir, name)
	began := time.Now()
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	t.Logf("built %s in %v", pkg, time.Since(began).Round(100*time.Millisecond))
	binaries.built[pkg] = path
	return path
}

// startNATSProcess runs nats-server with JetStream as a subprocess on a free
// loopback port until the test ends, and returns its URL.
func startNATSProcess(t testing.TB) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(natstest.FreeAddr(t))
	cmd := exec.Command(natsServerBinary(t), "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", port, "-n", "resilience")
	logPath := filepath.Join(t.TempDir(), "nats-server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // this process only, by its PID
		<-done
	})
	url := "nats://127.0.0.1:" + port
	if !natstest.Poll(30*time.Second, func() bool {
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false
		}
		_, err = js.AccountInfo(context.Background())
		return err == nil
	}) {
		data, _ := os.ReadFile(logPath)
		t.Fatalf("nats-server not ready within 30s:\n%s", data)
	}
	return url
}

// proc is a "revoker run" subprocess.
type proc struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	httpURL string
	logPath string
	done    chan struct{}
}

// startProc runs "revoker run" against the rig's NATS and emulator and
// waits until /readyz says ready. env adds to or overrides the defaults.
func (r *rig) startProc(name string, env map[string]string) *proc {
	t := r.t
	t.Helper()
	addr := natstest.FreeAddr(t)
	vars := map[string]string{
		"NATS_URL":                r.natsURL,
		"KALSHI_BASE_URL":         r.kalshi,
		"KALSHI_API_KEY_ID":       r.selfID,
		"KALSHI_PRIVATE_KEY_PATH": r.keyPath,
		"REVOKER_HTTP_ADDR":       addr,
		"REVOKER_LOG_FORMAT":      "json",
		"REVOKER_RATE":            "0",
		"REVOKER_ATTEMPT_TIMEOUT": "2s",
		"REVOKER_PROTECTED_KEYS":  strings.Join(r.protect, ","),
	}
	for k, v := range env {
		vars[k] = v
	}
	// The parent's environment minus anything that configures revoker.
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "KALSHI_") && !strings.HasPrefix(kv, "REVOKER_") {
			environ = append(environ, kv)
		}
	}
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}

	p := &proc{t: t, name: name, httpURL: "http://" + addr, done: make(chan struct{})}
	p.logPath = filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(revokerBinary(t), "run")
	p.cmd.Env = environ
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.running() {
			_ = p.cmd.Process.Kill() // this process only, by its PID
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s (pid %d) log, last lines:\n%s", p.name, p.cmd.Process.Pid, p.logTail(40))
		}
	})
	if !natstest.Poll(30*time.Second, func() bool { return !p.running() || p.get("/readyz") == http.StatusOK }) || !p.running() {
		t.Fatalf("%s not ready within 30s (running: %v); log:\n%s", name, p.running(), p.logTail(40))
	}
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) get(path string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(p.httpURL + path)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// kill sends SIGKILL: no drain, no acks, no goodbye.
func (p *proc) kill() {
	p.t.Helper()
	p.signalAndWait(syscall.SIGKILL, 10*time.Second)
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		p.t.Fatalf("%s did not die of SIGKILL: %v", p.name, p.cmd.ProcessState)
	}
}

// signalAndWait sends sig and waits for the process to end, at most within.
func (p *proc) signalAndWait(sig syscall.Signal, within time.Duration) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%v to %s: %v", sig, p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(within):
		p.t.Fatalf("%s still running %v after %v", p.name, within, sig)
	}
}

// terminate sends SIGTERM and expects a graceful exit 0 within 40 s.
func (p *proc) terminate() {
	p.t.Helper()
	p.signalAndWait(syscall.SIGTERM, 40*time.Second)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Errorf("%s exited with %d after SIGTERM, want 0", p.name, code)
	}
}

// metric sums the samples of a Prometheus metric on /metrics (all label
// sets); -1 if it cannot be read.
func (p *proc) metric(name string) float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(p.httpURL + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

func (p *proc) logTail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logContains counts log lines containing s.
func (p *proc) logCount(s string) int {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return 0
	}
	return strings.Count(string(data), s)
}

// natsNode is one nats-server process of a cluster.
type natsNode struct {
	name, url string
	cmd       *exec.Cmd
	done      chan struct{}
}

// startNATSCluster runs an n-node JetStream cluster of nats-server
// processes on loopback until the test ends, and waits until JetStream
// answers through every node.
func startNATSCluster(t testing.TB, n int) []*natsNode {
	t.Helper()
	bin := natsServerBinary(t)
	routes := make([]string, n)
	clusterPorts := make([]string, n)
	for i := range n {
		_, clusterPorts[i], _ = net.SplitHostPort(natstest.FreeAddr(t))
		routes[i] = "nats://127.0.0.1:" + clusterPorts[i]
	}
	var nodes []*natsNode
	for i := range n {
		_, port, _ := net.SplitHostPort(natstest.FreeAddr(t))
		node := &natsNode{name: fmt.Sprintf("crashnode-%d", i+1), url: "nats://127.0.0.1:" + port, done: make(chan struct{})}
		node.cmd = exec.Command(bin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", port, "-n", node.name,
			"--cluster_name", "resilience", "--cluster", "nats://127.0.0.1:"+clusterPorts[i], "--routes", strings.Join(routes, ","))
		logFile, err := os.Create(filepath.Join(t.TempDir(), node.name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		node.cmd.Stdout, node.cmd.Stderr = logFile, logFile
		if err := node.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = node.cmd.Wait(); _ = logFile.Close(); close(node.done) }()
		t.Cleanup(func() {
			_ = node.cmd.Process.Kill() // this process only, by its PID
			<-node.done
		})
		nodes = append(nodes, node)
	}
	for _, node := range nodes {
		if !natstest.Poll(60*time.Second, func() bool { return jetStreamAnswers(node.url) }) {
			t.Fatalf("%s: JetStream not ready within 60s", node.name)
		}
	}
	return nodes
}

func jetStreamAnswers(url string) bool {
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
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

// kill sends SIGKILL to the node: no leadership hand-off, no goodbye.
func (n *natsNode) kill(t testing.TB) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", n.name, err)
	}
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still running 10s after SIGKILL", n.name)
	}
}
