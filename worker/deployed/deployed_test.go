package deployed_test

// Benchmarks as deployed. Every party is a process of its own:
//
//   - nats-server, built from the module's own dependency;
//   - the Kalshi emulator: this test binary, re-run in the emulator role;
//   - revoker: `go build ./cmd/revoker`, run as `revoker run` (JSON logs to
//     a file, /metrics on loopback);
//   - the bare baseline: this test binary in the bare role, deleting the
//     same number of keys from the same number of goroutines with the same
//     kalshi client, and nothing else;
//   - the floor: `go build ./worker/deployed/internal/floor`, the least the
//     operator contract forces on any implementation (pull, DELETE, store
//     the result, ack);
//   - this process publishes the requests and counts the results.
//
// BenchmarkDeployedThroughput runs rounds of bare, worker and floor in turn
// and prints, per round and as medians: worker/bare, floor/bare,
// worker/floor, and per request the NATS messages of the worker's and the
// floor's connections (in and out), revoker's allocations, the CPU of each
// contestant, nats-server and the emulator, the ledger's writes and time.
// BenchmarkDeployedMassRevocation runs three replicas against a bucket of
// 40 deletes/s and kills one with SIGKILL a third of the way.
// BenchmarkDeployedStartToReady (startup_test.go) times exec to /readyz;
// BenchmarkDeployedDrainRSS (drain_test.go) the peak RSS of draining 50,000
// queued requests. b.N is ignored: each runs a fixed amount of work,
// bounded in time, on free 127.0.0.1 ports, and kills only the processes
// it started.
//
//	go test -run '^$' -bench DeployedThroughput -benchtime 1x -timeout 10m ./worker/deployed/ -args -deployed.key rsa2048
//	go test -run '^$' -bench DeployedMass -benchtime 1x -timeout 10m ./worker/deployed/
//	go test -run '^$' -bench DeployedStartToReady -benchtime 1x -timeout 10m ./worker/deployed/
//	go test -run '^$' -bench DeployedDrainRSS -benchtime 1x -timeout 10m ./worker/deployed/

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker/natstest"
)

var (
	flagRounds  = flag.Int("deployed.rounds", 5, "rounds of bare and worker runs")
	flagN       = flag.Int("deployed.n", 1500, "requests per round")
	flagConc    = flag.Int("deployed.conc", 16, "concurrency of revoker and of the bare loop")
	flagKey     = flag.String("deployed.key", "rsa2048,ed25519", "signing keys to measure: rsa2048, ed25519")
	flagRevoker = flag.String("deployed.revoker", "", "a revoker binary to run instead of building ./cmd/revoker")
	flagMassN   = flag.Int("deployed.mass.n", 1000, "keys of the mass revocation")
)

const roleEnv, specEnv = "REVOKER_DEPLOYED_ROLE", "REVOKER_DEPLOYED_SPEC"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "emulator":
		os.Exit(emulatorRole())
	case "bare":
		os.Exit(bareRole())
	}
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// ---- the emulator process ----

type emuSpec struct {
	Listen   string   `json:"listen"`
	KeyPaths []string `json:"key_paths"` // the signing keys revoker and bare use
	Refill   float64  `json:"refill"`    // tokens/s; negative: unlimited
	Capacity float64  `json:"capacity"`
}

// emulatorRole serves the emulator and answers on stdin/stdout:
// "seed N FILE" adds N keys and writes their IDs to FILE ("seeded");
// "limits R C" refills the bucket ("ok"); "stats" prints "stats 429s".
func emulatorRole() int {
	var spec emuSpec
	if err := json.Unmarshal([]byte(os.Getenv(specEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	emu := emulator.New(emulator.Options{Refill: spec.Refill, Capacity: spec.Capacity, MaxSignatures: -1})
	if err := emu.Start(spec.Listen); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var seedPub crypto.PublicKey
	for _, p := range spec.KeyPaths {
		k, err := kalshi.LoadPrivateKey(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		seedPub = k.Public()
		fmt.Printf("self %s %s\n", p, emu.AddKey("revoker", k.Public(), "read", "write"))
	}
	fmt.Printf("url %s\n", emu.URL())
	in := bufio.NewScanner(os.Stdin)
	seeded := 0
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 3 && f[0] == "seed":
			n, _ := strconv.Atoi(f[1])
			var sb strings.Builder
			for i := range n {
				sb.WriteString(emu.AddKey("k"+strconv.Itoa(seeded+i), seedPub))
				sb.WriteByte('\n')
			}
			seeded += n
			if err := os.WriteFile(f[2], []byte(sb.String()), 0o600); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			fmt.Println("seeded")
		case len(f) == 3 && f[0] == "limits":
			r, _ := strconv.ParseFloat(f[1], 64)
			c, _ := strconv.ParseFloat(f[2], 64)
			emu.SetLimits(r, c)
			fmt.Println("ok")
		case len(f) == 1 && f[0] == "stats":
			fmt.Printf("stats %d\n", emu.Stats().TooMany)
		case len(f) == 2 && f[0] == "calls":
			// "calls SINCE_UNIX_NANO": calls by endpoint since then, and
			// the DELETEs of each second after the first.
			since, _ := strconv.ParseInt(f[1], 10, 64)
			fmt.Println("calls " + callSummary(emu.Calls(), time.Unix(0, since)))
		}
	}
	_ = emu.Close()
	return 0
}

// callSummary counts calls arrived since t by endpoint, and DELETEs per
// second from the first one.
func callSummary(calls []emulator.Call, t time.Time) string {
	by := map[string]int{}
	var first time.Time
	var perSecond []int
	for _, c := range calls {
		if c.Arrived.Before(t) {
			continue
		}
		by[strings.ReplaceAll(c.Endpoint, " ", "_")]++
		if c.Endpoint != emulator.EndpointDeleteKey {
			continue
		}
		if first.IsZero() {
			first = c.Arrived
		}
		i := int(c.Arrived.Sub(first) / time.Second)
		for len(perSecond) <= i {
			perSecond = append(perSecond, 0)
		}
		perSecond[i]++
	}
	var sb strings.Builder
	for _, k := range slices.Sorted(maps.Keys(by)) {
		fmt.Fprintf(&sb, "%s=%d ", k, by[k])
	}
	fmt.Fprintf(&sb, "deletes/s=%v", perSecond)
	return sb.String()
}

// ---- the bare process ----

type bareSpec struct {
	URL, KeyID, KeyPath, KeysFile string
	Conc                          int
}

// bareRole deletes the keys of KeysFile from Conc goroutines and prints
// "elapsed NANOSECONDS" for the loop alone.
func bareRole() int {
	var spec bareSpec
	if err := json.Unmarshal([]byte(os.Getenv(specEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	key, err := kalshi.LoadPrivateKey(spec.KeyPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := kalshi.New(kalshi.Config{BaseURL: spec.URL, KeyID: spec.KeyID, PrivateKey: key})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	data, err := os.ReadFile(spec.KeysFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	keys := strings.Fields(string(data))
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range spec.Conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				if err := c.DeleteAPIKey(context.Background(), keys[i]); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	fmt.Printf("elapsed %d\n", time.Since(start).Nanoseconds())
	if failed.Load() > 0 {
		fmt.Fprintf(os.Stderr, "%d deletes failed\n", failed.Load())
		return 1
	}
	return 0
}

// ---- binaries ----

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

func binary(b *testing.B, pkg, name string) string {
	b.Helper()
	if name == "revoker" && *flagRevoker != "" {
		return *flagRevoker
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		b.Fatalf("go env GOMOD: %q, %v", gomod, err)
	}
	if buildDir == "" {
		if buildDir, err = os.MkdirTemp("", "revoker-deployed-"); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(buildDir, name)
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = path
	return path
}

// ---- processes ----

type process struct {
	b      *testing.B
	name   string
	cmd    *exec.Cmd
	log    string
	stdin  io.WriteCloser
	lines  chan string
	done   chan struct{}
	killed bool
}

// start runs a process until the benchmark ends; with talk, its stdout
// lines arrive on p.lines and p.stdin writes to it, else stdout and stderr
// go to a log file.
func start(b *testing.B, name string, env []string, talk bool, path string, args ...string) *process {
	b.Helper()
	p := &process{b: b, name: name, done: make(chan struct{}), lines: make(chan string, 64)}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = env
	p.log = filepath.Join(b.TempDir(), name+".log")
	logFile, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	p.cmd.Stderr = logFile
	var stdout io.ReadCloser
	if talk {
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			b.Fatal(err)
		}
		if stdout, err = p.cmd.StdoutPipe(); err != nil {
			b.Fatal(err)
		}
	} else {
		p.cmd.Stdout = logFile
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		if stdout != nil {
			s := bufio.NewScanner(stdout)
			for s.Scan() {
				p.lines <- s.Text()
			}
		}
		_ = p.cmd.Wait()
		_ = logFile.Close()
		close(p.lines)
		close(p.done)
	}()
	b.Cleanup(func() {
		if p.running() {
			_ = p.cmd.Process.Kill() // this process only, by its PID
			<-p.done
		}
	})
	return p
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *process) say(line string) {
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.b.Fatalf("%s: %v", p.name, err)
	}
}

func (p *process) expect(prefix string) string {
	p.b.Helper()
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				data, _ := os.ReadFile(p.log)
				p.b.Fatalf("%s ended; its log:\n%s", p.name, data)
			}
			if strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix)
			}
		case <-t.C:
			p.b.Fatalf("%s: no %q within 60s", p.name, prefix)
		}
	}
}

func (p *process) signal(sig syscall.Signal) {
	p.b.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(40 * time.Second):
		p.b.Fatalf("%s still running 40s after %v", p.name, sig)
	}
}

// cpu is the process's CPU time so far (user and system), from /proc.
func (p *process) cpu() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	var ticks int64
	for _, x := range f[11:13] {
		v, _ := strconv.ParseInt(x, 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func (p *process) rssKB(field string) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// cleanEnv is the environment minus anything that configures revoker.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "KALSHI_") && !strings.HasPrefix(kv, "REVOKER_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// ---- the world ----

type world struct {
	b       *testing.B
	nats    *process
	natsURL string
	monURL  string
	emu     *process
	emuURL  string
	selfIDs map[string]string // key path -> key ID
	nc      *nats.Conn
	js      jetstream.JetStream
	seq     int
}

type signingKey struct {
	name, path string
}

func writeKey(b *testing.B, name string) signingKey {
	b.Helper()
	var k crypto.Signer
	var err error
	switch name {
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		b.Fatalf("unknown key %q", name)
	}
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), name+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	return signingKey{name, path}
}

func newWorld(b *testing.B, keys []signingKey, refill, capacity float64) *world {
	b.Helper()
	w := &world{b: b, selfIDs: map[string]string{}}
	w.nats, w.natsURL, w.monURL = startNATS(b)
	var paths []string
	for _, k := range keys {
		paths = append(paths, k.path)
	}
	spec, _ := json.Marshal(emuSpec{Listen: "127.0.0.1:0", KeyPaths: paths, Refill: refill, Capacity: capacity})
	w.emu = start(b, "emulator", cleanEnv(roleEnv+"=emulator", specEnv+"="+string(spec)), true, os.Args[0])
	for range keys {
		f := strings.Fields(w.emu.expect("self "))
		w.selfIDs[f[0]] = f[1]
	}
	w.emuURL = w.emu.expect("url ")
	w.connect()
	return w
}

// startNATS runs a nats-server process with JetStream and an empty store on
// free loopback ports, and returns it with its client and monitoring URLs.
func startNATS(b *testing.B) (p *process, url, monURL string) {
	b.Helper()
	natsAddr, monAddr := natstest.FreeAddr(b), natstest.FreeAddr(b)
	p = start(b, "nats-server", cleanEnv(), false, binary(b, "github.com/nats-io/nats-server/v2", "nats-server"),
		"-js", "-sd", b.TempDir(), "-a", "127.0.0.1", "-p", port(natsAddr), "-m", port(monAddr), "-n", "deployed")
	return p, "nats://" + natsAddr, "http://" + monAddr
}

// connect connects this process to w.natsURL, once JetStream answers.
func (w *world) connect() {
	b := w.b
	b.Helper()
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for {
		var nc *nats.Conn
		if nc, err = nats.Connect(w.natsURL, nats.Name("bench")); err == nil {
			if w.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256)); err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err = w.js.AccountInfo(ctx)
				cancel()
			}
			if err == nil {
				w.nc = nc
				break
			}
			nc.Close()
		}
		if time.Now().After(deadline) {
			b.Fatalf("nats-server not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	nc := w.nc
	b.Cleanup(nc.Close)
}

// seed adds n keys to the emulator and returns their IDs.
func (w *world) seed(n int) []string {
	file := filepath.Join(w.b.TempDir(), fmt.Sprintf("keys-%d", w.seq))
	w.seq++
	w.emu.say(fmt.Sprintf("seed %d %s", n, file))
	w.emu.expect("seeded")
	data, err := os.ReadFile(file)
	if err != nil {
		w.b.Fatal(err)
	}
	return strings.Fields(string(data))
}

func (w *world) tooMany() int {
	w.emu.say("stats")
	n, _ := strconv.Atoi(w.emu.expect("stats "))
	return n
}

type revoker struct {
	*process
	http    string
	began   time.Time // the exec
	readyIn time.Duration
}

// startRevoker runs `revoker run` with key and extra environment, and
// waits until /readyz answers 200.
func (w *world) startRevoker(name string, key signingKey, extra ...string) *revoker {
	w.b.Helper()
	addr := natstest.FreeAddr(w.b)
	env := cleanEnv(append([]string{
		"NATS_URL=" + w.natsURL, "KALSHI_BASE_URL=" + w.emuURL,
		"KALSHI_API_KEY_ID=" + w.selfIDs[key.path], "KALSHI_PRIVATE_KEY_PATH=" + key.path,
		"REVOKER_HTTP_ADDR=" + addr, "REVOKER_LOG_FORMAT=json",
	}, extra...)...)
	bin := binary(w.b, "./cmd/revoker", "revoker") // built before the clock starts
	began := time.Now()
	r := &revoker{process: start(w.b, name, env, false, bin, "run"), http: "http://" + addr, began: began}
	c := http.Client{Timeout: time.Second}
	for {
		if resp, err := c.Get(r.http + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if !r.running() || time.Since(began) > 30*time.Second {
			data, _ := os.ReadFile(r.log)
			w.b.Fatalf("%s not ready within 30s; log:\n%s", name, data)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.readyIn = time.Since(began)
	return r
}

// metric reads one unlabelled sample (or the sum over labels) of /metrics.
func (r *revoker) metric(name string) float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(r.http + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum := 0.0
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		l := s.Text()
		rest, ok := strings.CutPrefix(l, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// connMsgs is what nats-server counted for the connection named name:
// messages from the client (in) and to it (out).
func (w *world) connMsgs(name string) (in, out int64) {
	resp, err := http.Get(w.monURL + "/connz?limit=4096")
	if err != nil {
		w.b.Fatal(err)
	}
	defer resp.Body.Close()
	var cz struct {
		Connections []struct {
			Name    string `json:"name"`
			InMsgs  int64  `json:"in_msgs"`
			OutMsgs int64  `json:"out_msgs"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cz); err != nil {
		w.b.Fatal(err)
	}
	for _, c := range cz.Connections {
		if c.Name == name {
			in, out = in+c.InMsgs, out+c.OutMsgs
		}
	}
	return in, out
}

func (w *world) ledgerSeq() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := w.js.Stream(ctx, "KV_REVOKER_LEDGER")
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.LastSeq
}

// results counts results by request id on a core subscription.
type results struct {
	mu         sync.Mutex
	want       int
	arrived    map[string]time.Time
	redeliv    []time.Time // arrivals of results whose request was delivered more than once
	outcomes   map[string]int
	last       time.Time
	done       chan struct{}
	doneClosed bool
	onCount    func(int)
}

func (w *world) observe(want int, onCount func(int)) (*results, func()) {
	o := &results{want: want, arrived: map[string]time.Time{}, outcomes: map[string]int{}, done: make(chan struct{}), onCount: onCount}
	sub, err := w.nc.Subscribe("keys.revoke.results.>", func(m *nats.Msg) {
		now := time.Now()
		var doc struct {
			Data struct {
				Deliveries int `json:"deliveries"`
			} `json:"data"`
		}
		_ = json.Unmarshal(m.Data, &doc)
		o.mu.Lock()
		defer o.mu.Unlock()
		id := m.Header.Get(jetstream.MsgIDHeader)
		if _, seen := o.arrived[id]; seen {
			return
		}
		o.arrived[id] = now
		o.outcomes[strings.TrimPrefix(m.Subject, "keys.revoke.results.")]++
		if doc.Data.Deliveries > 1 {
			o.redeliv = append(o.redeliv, now)
		}
		o.last = now
		if o.onCount != nil {
			o.onCount(len(o.arrived))
		}
		if len(o.arrived) >= o.want && !o.doneClosed {
			o.doneClosed = true
			close(o.done)
		}
	})
	if err != nil {
		w.b.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	_ = w.nc.Flush()
	return o, func() { _ = sub.Unsubscribe() }
}

func (o *results) wait(b *testing.B, within time.Duration) time.Time {
	b.Helper()
	select {
	case <-o.done:
	case <-time.After(within):
		o.mu.Lock()
		defer o.mu.Unlock()
		b.Fatalf("%d of %d results within %v", len(o.arrived), o.want, within)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// publish stores one request per key; it may run in its own goroutine.
func (w *world) publish(prefix string, keys []string) error {
	for i, k := range keys {
		id := fmt.Sprintf("%s-%d", prefix, i)
		m := nats.NewMsg("keys.revoke.requests")
		m.Data = fmt.Appendf(nil, `{"id":%q,"api_key_id":%q,"reason":"benchmark","requested_by":"bench","source":"bench"}`, id, k)
		m.Header.Set(jetstream.MsgIDHeader, id)
		if _, err := w.js.PublishMsgAsync(m, jetstream.WithStallWait(10*time.Second)); err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
	}
	select {
	case <-w.js.PublishAsyncComplete():
		return nil
	case <-time.After(60 * time.Second):
		return errors.New("requests not stored within 60s")
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ---- throughput ----

// carried is what one round measured of a process that takes requests from
// the stream (revoker or the floor): its rate, and per request the NATS
// messages of its connection and the CPU (µs) of it, nats-server, the
// emulator and this process (publishing the requests, counting results).
type carried struct {
	rate, in, out                   float64
	cpu, cpuNATS, cpuEmul, cpuBench float64
}

// total is the CPU of every process per request.
func (c carried) total() float64 { return c.cpu + c.cpuNATS + c.cpuEmul + c.cpuBench }

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type round struct {
	bare                      float64 // req/s
	cpuBare, cpuBareEmu       float64 // µs per request, bare run
	worker, floor             carried
	allocs                    float64 // per request, revoker
	ledgerWrites, ledgerCalls float64 // per request
	ledgerMS                  float64 // per request, all calls (the decision's runs beside the result's publish)
	ready                     time.Duration
}

// BenchmarkDeployedThroughput measures, per key, rounds of three
// contestants in turn, each against the same emulator with the same
// concurrency: the bare loop (sign and DELETE, nothing else); revoker; and
// the floor (internal/floor), the least the operator contract forces on any
// implementation: pull from the same work-queue consumer, one DELETE,
// one result stored under its Nats-Msg-Id with its ack awaited, the ack.
// floor/bare is the ceiling of worker/bare on this machine. revoker and
// the floor share the consumer, so each runs only for its turn: started,
// warmed up with 100 requests, measured, stopped.
func BenchmarkDeployedThroughput(b *testing.B) {
	for _, name := range strings.Split(*flagKey, ",") {
		b.Run("key="+name, func(b *testing.B) { deployedThroughput(b, name) })
	}
}

// warmUp carries n requests through whoever takes them: connections, the
// first allocations of every path.
func (w *world) warmUp(prefix string, n int) {
	keys := w.seed(n)
	o, stop := w.observe(len(keys), nil)
	defer stop()
	if err := w.publish(prefix, keys); err != nil {
		w.b.Fatal(err)
	}
	o.wait(w.b, time.Minute)
}

// carry publishes n requests for fresh keys and waits until p, whose NATS
// connection is named conn, has stored a revoked result for each.
func (w *world) carry(p *process, conn, prefix string, n int) carried {
	b := w.b
	b.Helper()
	keys := w.seed(n)
	o, stop := w.observe(n, nil)
	defer stop()
	in0, out0 := w.connMsgs(conn)
	c0, cn0, ce0, cb0 := p.cpu(), w.nats.cpu(), w.emu.cpu(), selfCPU()
	t0 := time.Now()
	if err := w.publish(prefix, keys); err != nil {
		b.Fatal(err)
	}
	last := o.wait(b, 2*time.Minute)
	c1, cn1, ce1, cb1 := p.cpu(), w.nats.cpu(), w.emu.cpu(), selfCPU()
	time.Sleep(200 * time.Millisecond) // the last acks
	in1, out1 := w.connMsgs(conn)
	if o.outcomes["revoked"] != n {
		b.Fatalf("%s: outcomes %v, want %d revoked", prefix, o.outcomes, n)
	}
	fn := float64(n)
	return carried{
		rate: fn / last.Sub(t0).Seconds(),
		in:   float64(in1-in0) / fn, out: float64(out1-out0) / fn,
		cpu:      float64((c1 - c0).Microseconds()) / fn,
		cpuNATS:  float64((cn1 - cn0).Microseconds()) / fn,
		cpuEmul:  float64((ce1 - ce0).Microseconds()) / fn,
		cpuBench: float64((cb1 - cb0).Microseconds()) / fn,
	}
}

// startFloor runs the floor process (internal/floor) with key and
// concurrency conc, and waits until it is bound to the consumer.
func (w *world) startFloor(key signingKey, conc int) *process {
	w.b.Helper()
	env := cleanEnv("NATS_URL="+w.natsURL, "KALSHI_BASE_URL="+w.emuURL,
		"KALSHI_API_KEY_ID="+w.selfIDs[key.path], "KALSHI_PRIVATE_KEY_PATH="+key.path,
		"REVOKER_CONCURRENCY="+strconv.Itoa(conc))
	p := start(w.b, "floor", env, true, binary(w.b, "./worker/deployed/internal/floor", "floor"))
	p.expect("ready")
	return p
}

// describe prints a round's figures, or (with a median for f) all
// rounds'. The CPU of every process per request ("all") is what bounds the
// rate when the machine's cores are saturated: bare's over a contestant's
// estimates its rate over bare's, noise aside.
func describe(f func(func(round) float64) float64) string {
	return fmt.Sprintf("worker %.0f, floor %.0f, bare %.0f req/s; worker/bare %.3f, floor/bare %.3f, worker/floor %.3f"+
		" | cpu µs per request, process + nats-server + emulator + publisher = all: worker %.0f + %.0f + %.0f + %.0f = %.0f, floor %.0f + %.0f + %.0f + %.0f = %.0f, bare %.0f + 0 + %.0f + 0 = %.0f; bare's all / all: worker %.3f, floor %.3f"+
		" | nats msgs per request in/out: worker %.2f/%.2f, floor %.2f/%.2f | revoker allocs %.0f, ledger writes %.2f, calls %.2f taking %.2f ms",
		f(func(r round) float64 { return r.worker.rate }), f(func(r round) float64 { return r.floor.rate }), f(func(r round) float64 { return r.bare }),
		f(func(r round) float64 { return r.worker.rate / r.bare }), f(func(r round) float64 { return r.floor.rate / r.bare }), f(func(r round) float64 { return r.worker.rate / r.floor.rate }),
		f(func(r round) float64 { return r.worker.cpu }), f(func(r round) float64 { return r.worker.cpuNATS }), f(func(r round) float64 { return r.worker.cpuEmul }), f(func(r round) float64 { return r.worker.cpuBench }), f(func(r round) float64 { return r.worker.total() }),
		f(func(r round) float64 { return r.floor.cpu }), f(func(r round) float64 { return r.floor.cpuNATS }), f(func(r round) float64 { return r.floor.cpuEmul }), f(func(r round) float64 { return r.floor.cpuBench }), f(func(r round) float64 { return r.floor.total() }),
		f(func(r round) float64 { return r.cpuBare }), f(func(r round) float64 { return r.cpuBareEmu }), f(func(r round) float64 { return r.cpuBare + r.cpuBareEmu }),
		f(func(r round) float64 { return (r.cpuBare + r.cpuBareEmu) / r.worker.total() }), f(func(r round) float64 { return (r.cpuBare + r.cpuBareEmu) / r.floor.total() }),
		f(func(r round) float64 { return r.worker.in }), f(func(r round) float64 { return r.worker.out }), f(func(r round) float64 { return r.floor.in }), f(func(r round) float64 { return r.floor.out }),
		f(func(r round) float64 { return r.allocs }), f(func(r round) float64 { return r.ledgerWrites }), f(func(r round) float64 { return r.ledgerCalls }), f(func(r round) float64 { return r.ledgerMS }))
}

func deployedThroughput(b *testing.B, keyName string) {
	began := time.Now()
	key := writeKey(b, keyName)
	w := newWorld(b, []signingKey{key}, -1, 0)
	n, conc := *flagN, *flagConc
	bareBin := os.Args[0]

	var rounds []round
	for i := range *flagRounds {
		var r round
		// Bare.
		keys := w.seed(n)
		file := filepath.Join(b.TempDir(), "bare-keys")
		if err := os.WriteFile(file, []byte(strings.Join(keys, "\n")), 0o600); err != nil {
			b.Fatal(err)
		}
		spec, _ := json.Marshal(bareSpec{URL: w.emuURL, KeyID: w.selfIDs[key.path], KeyPath: key.path, KeysFile: file, Conc: conc})
		emu0 := w.emu.cpu()
		bp := start(b, "bare", cleanEnv(roleEnv+"=bare", specEnv+"="+string(spec)), true, bareBin)
		ns, _ := strconv.ParseInt(bp.expect("elapsed "), 10, 64)
		<-bp.done
		r.bare = float64(n) / (float64(ns) / 1e9)
		st := bp.cmd.ProcessState
		r.cpuBare = float64((st.UserTime() + st.SystemTime()).Microseconds()) / float64(n)
		r.cpuBareEmu = float64((w.emu.cpu() - emu0).Microseconds()) / float64(n)

		// Worker. The first start provisions the streams, the consumer and
		// the ledger.
		rev := w.startRevoker("revoker", key, "REVOKER_RATE=0", "REVOKER_CONCURRENCY="+strconv.Itoa(conc))
		r.ready = rev.readyIn
		w.warmUp(fmt.Sprintf("warm-r%d", i), 100)
		allocs0 := rev.metric("go_memstats_mallocs_total")
		led0, ledCalls0, ledSum0 := w.ledgerSeq(), rev.metric("revoker_ledger_seconds_count"), rev.metric("revoker_ledger_seconds_sum")
		r.worker = w.carry(rev.process, "revoker", fmt.Sprintf("r%d", i), n)
		fn := float64(n)
		r.allocs = (rev.metric("go_memstats_mallocs_total") - allocs0) / fn
		r.ledgerWrites = float64(w.ledgerSeq()-led0) / fn
		r.ledgerCalls = (rev.metric("revoker_ledger_seconds_count") - ledCalls0) / fn
		r.ledgerMS = (rev.metric("revoker_ledger_seconds_sum") - ledSum0) * 1000 / fn
		rev.signal(syscall.SIGTERM)

		// Floor.
		fp := w.startFloor(key, conc)
		w.warmUp(fmt.Sprintf("warm-f%d", i), 100)
		r.floor = w.carry(fp, "floor", fmt.Sprintf("f%d", i), n)
		fp.signal(syscall.SIGTERM)

		rounds = append(rounds, r)
		b.Logf("round %d %s: %s | ready in %v", i+1, keyName, describe(func(f func(round) float64) float64 { return f(r) }), r.ready.Round(time.Millisecond))
	}
	col := func(f func(round) float64) float64 {
		var xs []float64
		for _, r := range rounds {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	ratio := col(func(r round) float64 { return r.worker.rate / r.bare })
	floorRatio := col(func(r round) float64 { return r.floor.rate / r.bare })
	b.Logf("MEDIAN %s over %d rounds of %d requests, concurrency %d: %s | start to ready %v | %v in all",
		keyName, len(rounds), n, conc, describe(col),
		time.Duration(col(func(r round) float64 { return float64(r.ready) })).Round(time.Millisecond), time.Since(began).Round(time.Second))
	b.ReportMetric(ratio, "worker/bare")
	b.ReportMetric(floorRatio, "floor/bare")
	b.ReportMetric(col(func(r round) float64 { return r.worker.rate }), "req/s")
	b.ReportMetric(col(func(r round) float64 { return r.floor.rate }), "floor-req/s")
	b.ReportMetric(col(func(r round) float64 { return r.bare }), "bare-req/s")
	b.ReportMetric(col(func(r round) float64 { return r.worker.in + r.worker.out }), "nats-msgs/req")
	b.ReportMetric(col(func(r round) float64 { return r.allocs }), "allocs/req")
	b.ReportMetric(0, "ns/op")
}

// ---- mass revocation with three replicas, one killed ----

// BenchmarkDeployedMassRevocation revokes 1,000 keys against a bucket of
// 40 deletes/s (400 tokens/s, 400 tokens, 10 a delete) with three
// replicas (REVOKER_RATE=auto, REVOKER_RATE_SHARE=auto), and kills one with
// SIGKILL once a third of the results are stored. It reports the elapsed
// time (first publish to last result) against the ideal 1000 / 40 = 25 s,
// the 429s, and the failover: from the kill to the last result of a
// request delivered more than once (the killed replica's).
func BenchmarkDeployedMassRevocation(b *testing.B) {
	began := time.Now()
	const refill, capacity, cost = 400.0, 400.0, 10.0
	n := *flagMassN
	key := writeKey(b, "rsa2048")
	w := newWorld(b, []signingKey{key}, refill, capacity)
	var reps []*revoker
	for i := range 3 {
		reps = append(reps, w.startRevoker(fmt.Sprintf("revoker-%d", i+1), key, "REVOKER_RATE=auto", "REVOKER_RATE_SHARE=auto"))
	}
	// Wait for the plan: each replica at a third of 0.9 x 40 deletes/s.
	want := refill / cost * 0.9 / 3
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, r := range reps {
			if v := r.metric("revoker_rate_limit_tokens_per_second"); v < want-1e-6 || v > want+1e-6 {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the replicas did not settle at %.1f deletes/s each", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	settled := time.Since(began)
	keys := w.seed(n)
	w.emu.say(fmt.Sprintf("limits %g %g", refill, capacity)) // full again: reading the limits spent tokens
	w.emu.expect("ok")
	tooMany0 := w.tooMany()

	var killedAt time.Time
	kill := make(chan struct{})
	var once sync.Once
	o, stop := w.observe(n, func(got int) {
		if got >= n/3 {
			once.Do(func() { close(kill) })
		}
	})
	defer stop()
	t0 := time.Now()
	published := make(chan error, 1)
	go func() { published <- w.publish("mass", keys) }()
	select {
	case <-kill:
	case <-time.After(2 * time.Minute):
		b.Fatal("a third of the results not within 2 minutes")
	}
	killedAt = time.Now()
	reps[2].killed = true
	reps[2].signal(syscall.SIGKILL)
	last := o.wait(b, 2*time.Minute)
	if err := <-published; err != nil {
		b.Fatal(err)
	}
	elapsed := last.Sub(t0).Seconds()
	o.mu.Lock()
	var failover float64
	for _, t := range o.redeliv {
		failover = max(failover, t.Sub(killedAt).Seconds())
	}
	redelivered := len(o.redeliv)
	outcomes := fmt.Sprint(o.outcomes)
	o.mu.Unlock()
	tooMany := w.tooMany() - tooMany0
	w.emu.say(fmt.Sprintf("calls %d", t0.UnixNano()))
	b.Logf("MASS Kalshi %s", w.emu.expect("calls "))
	ideal := float64(n) / (refill / cost)
	var peakRSS []int64
	for _, r := range reps[:2] {
		peakRSS = append(peakRSS, r.rssKB("VmHWM")/1024)
	}
	b.Logf("MASS %d keys at %.0f deletes/s, 3 replicas (settled %v after start), one SIGKILLed after %d results: elapsed %.2f s = %.3f x the ideal %.0f s, 429s %d, failover %.1f s (%d redelivered requests), outcomes %s, peak RSS of the survivors %v MB, %v in all",
		n, refill/cost, settled.Round(time.Millisecond), n/3, elapsed, elapsed/ideal, ideal, tooMany, failover, redelivered, outcomes, peakRSS, time.Since(began).Round(time.Second))
	b.ReportMetric(elapsed, "elapsed-s")
	b.ReportMetric(elapsed/ideal, "elapsed/ideal")
	b.ReportMetric(float64(tooMany), "429s")
	b.ReportMetric(failover, "failover-s")
	b.ReportMetric(0, "ns/op")
	if tooMany != 0 {
		b.Errorf("%d 429s, want none", tooMany)
	}
}
