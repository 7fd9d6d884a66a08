package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker/natstest"
)

const (
	requestsStream   = "KEY_REVOKE_REQUESTS"
	resultsStream    = "KEY_REVOKE_RESULTS"
	untrustedStream  = "KEY_REVOKE_UNTRUSTED"
	requestsSubject  = "keys.revoke.requests"
	resultsPrefix    = "keys.revoke.results"
	consumerName     = "revoker"
	ledgerBucket     = "REVOKER_LEDGER"
	replicaCount     = 3
	nodeCount        = 3
	replicaReadiness = 45 * time.Second
)

// world is one seed's deployment: the cluster, the emulator, the proxies,
// the replicas, and the test's own NATS connection (straight to the
// nodes, never through a proxy) to publish and to inspect.
type world struct {
	t          *testing.T
	began      time.Time
	bin        string // the built revoker
	nodes      []*natsNode
	emu        *emulator.Emulator
	selfID     string
	keyPath    string
	protected  []string
	bystanders []string
	proxies    *proxies
	replicas   []*replica
	deliveries *deliveryLog
	senders    *senders // who sent each Kalshi call
	nc         *nats.Conn
	js         jetstream.JetStream
	keyCount   int
}

// The account's budget: 120 tokens a second and as many in the bucket,
// 10 a call: 12 deletes a second, 10.8 with REVOKER_RATE=auto. Low enough
// that the workload queues up and every fault meets replicas at work.
const (
	emulatorRefill = 120
	deletesPerSec  = 10.8
)

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, began: time.Now(), deliveries: &deliveryLog{all: make(map[uint64][]delivery), settled: make(map[uint64][]delivery)}}
	w.bin = revokerBinary(t) // build both before anything runs
	w.nodes = startCluster(t, nodeCount)

	w.emu = emulator.New(emulator.Options{Refill: emulatorRefill, Capacity: emulatorRefill, RetryAfter: time.Second})
	if err := w.emu.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.emu.Close() })
	w.selfID = w.emu.AddKey("revoker", &emulatortest.Key().PublicKey, "read", "write")
	w.keyPath = emulatortest.WritePEM(t, emulatortest.Key())
	w.protected = w.addKeys("protected", 2)
	w.bystanders = w.addKeys("bystander", 2)

	urls := make([]string, len(w.nodes))
	for i, n := range w.nodes {
		urls[i] = n.url
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w.nc = nc
	if w.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}

	w.proxies = newProxies()
	w.senders = &senders{}
	for i := range replicaCount {
		r := &replica{w: w, idx: i, name: fmt.Sprintf("replica-%d", i+1), httpAddr: natstest.FreeAddr(t)}
		sniff := registerSniffer(w.deliveries, i, requestsStream, consumerName)
		for _, n := range w.nodes {
			l := w.proxies.open(t, r.name+"-"+n.name, n.addr)
			l.addToxic(t, "sniff", "chaos_sniff", "downstream", map[string]int64{"log": sniff, "acks": sniffDeliveries})
			l.addToxic(t, "sniff-acks", "chaos_sniff", "upstream", map[string]int64{"log": sniff, "acks": sniffAcks})
			r.nats = append(r.nats, l)
		}
		r.kalshi = w.proxies.open(t, r.name+"-kalshi", w.senders.front(t, r.name, w.emu))
		w.replicas = append(w.replicas, r)
	}
	// The first provisions the streams, the consumer and the buckets (R3);
	// the others bind to them.
	for _, r := range w.replicas {
		if err := r.start(); err != nil {
			t.Fatal(err)
		}
	}
	w.logf("deployed: %d nodes, %d replicas, emulator at %s", nodeCount, replicaCount, w.emu.URL())
	return w
}

func (w *world) addKeys(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		w.keyCount++
		ids[i] = w.emu.AddKey(fmt.Sprintf("%s-%d", prefix, w.keyCount), &emulatortest.Key().PublicKey, "read")
	}
	return ids
}

func (w *world) logf(format string, args ...any) {
	w.t.Helper()
	w.t.Logf("[%6.2fs] %s", time.Since(w.began).Seconds(), fmt.Sprintf(format, args...))
}

// replica is one `revoker run` process and its links. Its process is
// replaced on a restart; its address and links stay.
type replica struct {
	w        *world
	idx      int
	name     string
	httpAddr string
	nats     []*link // one per node
	kalshi   *link

	mu      sync.Mutex // one process fault at a time
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
	starts  int
}

func (r *replica) env() []string {
	w := r.w
	urls := make([]string, len(r.nats))
	for i, l := range r.nats {
		urls[i] = "nats://" + l.addr()
	}
	vars := map[string]string{
		"NATS_URL":                strings.Join(urls, ","),
		"KALSHI_BASE_URL":         "http://" + r.kalshi.addr() + emulator.BasePath,
		"KALSHI_API_KEY_ID":       w.selfID,
		"KALSHI_PRIVATE_KEY_PATH": w.keyPath,
		"REVOKER_HTTP_ADDR":       r.httpAddr,
		"REVOKER_LOG_FORMAT":      "json",
		"REVOKER_RATE":            "auto",
		"REVOKER_RATE_SHARE":      "auto",
		"REVOKER_CONCURRENCY":     "4",
		"REVOKER_ATTEMPT_TIMEOUT": "2s",
		"REVOKER_MAX_RETRY":       "3m",
		"REVOKER_STREAM_REPLICAS": "3",
		"REVOKER_PROTECTED_KEYS":  strings.Join(w.protected, ","),
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "KALSHI_") && !strings.HasPrefix(kv, "REVOKER_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// start runs the process and waits until /readyz answers 200. It may run
// on a fault's goroutine, so it reports a failure rather than ending the
// test.
func (r *replica) start() error {
	t := r.w.t
	r.starts++
	r.logPath = filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d.log", r.name, r.starts))
	logFile, err := os.Create(r.logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.w.bin, "run")
	cmd.Env = r.env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(done) }()
	r.cmd, r.done = cmd, done
	logPath := r.logPath
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill() // this process only, by its PID
		<-done
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("%s (pid %d) log, last lines:\n%s", r.name, cmd.Process.Pid, tail(string(data), 5))
			if *chaosLogs != "" {
				keep := filepath.Join(*chaosLogs, fmt.Sprintf("%s-%d.log", r.name, cmd.Process.Pid))
				_ = os.WriteFile(keep, data, 0o600)
			}
		}
	})
	if !natstest.Poll(replicaReadiness, func() bool { return !r.running() || r.get("/readyz") == http.StatusOK }) || !r.running() {
		data, _ := os.ReadFile(logPath)
		return fmt.Errorf("%s not ready within %v (running: %v); log:\n%s", r.name, replicaReadiness, r.running(), tail(string(data), 30))
	}
	return nil
}

func (r *replica) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func (r *replica) get(path string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + r.httpAddr + path)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// signal sends sig to the current process, by its PID.
func (r *replica) signal(sig syscall.Signal) {
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.w.t.Errorf("%v to %s: %v", sig, r.name, err)
	}
}

// kill sends SIGKILL and waits for the process to end.
func (r *replica) kill() {
	r.signal(syscall.SIGKILL)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.w.t.Errorf("%s still running 10s after SIGKILL", r.name)
	}
}

// terminate sends SIGTERM and waits at most 40 s for a graceful exit.
func (r *replica) terminate() {
	if !r.running() {
		return
	}
	r.signal(syscall.SIGTERM)
	select {
	case <-r.done:
		if code := r.cmd.ProcessState.ExitCode(); code != 0 {
			r.w.t.Errorf("%s exited with %d after SIGTERM, want 0", r.name, code)
		}
	case <-time.After(40 * time.Second):
		r.w.t.Errorf("%s still running 40s after SIGTERM", r.name)
	}
}

// streamInfo reads a stream's info through the test's connection; nil if
// it cannot be read now.
func (w *world) streamInfo(name string) *jetstream.StreamInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := w.js.Stream(ctx, name)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil
	}
	return info
}

// consumerState is the shared consumer's pending and unacknowledged
// counts; ok is false if they cannot be read now.
func (w *world) consumerState() (pending, ackPending uint64, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := w.js.Consumer(ctx, requestsStream, consumerName)
	if err != nil {
		return 0, 0, false
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return 0, 0, false
	}
	return ci.NumPending, uint64(ci.NumAckPending), true
}
