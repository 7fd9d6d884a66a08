package worker_test

// Benchmarks of the whole worker: an embedded NATS server with JetStream,
// the Kalshi emulator and the worker, in this process (the drain benchmark
// runs the worker in a child process, so that the memory and CPU it
// reports are the worker's alone). Every figure is reported with
// b.ReportMetric; run them with
//
//	go test -run '^$' -bench . -benchtime 2000x -count 5 ./worker/
//
// Environment knobs:
//
//	REVOKER_BENCH_BARE=0        BenchmarkThroughput skips its bare baseline (to profile the worker alone)
//	REVOKER_BENCH_LATENCY_N=500 requests BenchmarkLatency sends at 100/s
//	REVOKER_BENCH_QUEUED=50000  requests BenchmarkQueuedDrainMemory queues before the worker starts
//	REVOKER_BENCH_IDLE=30s      idle period BenchmarkQueuedDrainMemory measures CPU over; 0 skips it
//
// BenchmarkLatency and BenchmarkQueuedDrainMemory run for a fixed time
// (5 s; the drain and the idle period) whatever b.N is, and -short skips
// them. Every benchmark bounds its work and fails after a deadline rather
// than hanging.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// benchMaxN bounds the requests of one BenchmarkThroughput run.
const benchMaxN = 100_000

var benchEd25519Key = sync.OnceValue(func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

type benchKey struct {
	name   string
	signer crypto.Signer
}

func benchKeys() []benchKey {
	return []benchKey{{"rsa2048", emulatortest.Key()}, {"ed25519", benchEd25519Key()}}
}

// BenchmarkThroughput measures requests per second from publishing a
// request to its result being stored, with an unlimited Kalshi, and next to
// it the rate of bare goroutines that only sign and send the same DELETEs
// with the kalshi client (bare-req/s), and the ratio of the two. ns/op and
// allocs/op are the worker run's, for the whole process (NATS server and
// emulator included).
func BenchmarkThroughput(b *testing.B) {
	for _, k := range benchKeys() {
		for _, conc := range []int{1, 8, 16, 64} {
			b.Run(fmt.Sprintf("key=%s/conc=%d", k.name, conc), func(b *testing.B) {
				benchThroughput(b, k, conc)
			})
		}
	}
}

func benchThroughput(b *testing.B, k benchKey, conc int) {
	if b.N > benchMaxN {
		b.Fatalf("b.N = %d: at most %d requests per run (use -benchtime Nx)", b.N, benchMaxN)
	}
	r := newBenchRig(b, k.signer, emulator.Options{Refill: -1, MaxSignatures: -1})
	ctx, cancel := context.WithTimeout(context.Background(), benchDeadline(b.N))
	defer cancel()

	var bare float64
	if os.Getenv("REVOKER_BENCH_BARE") != "0" {
		bare = r.bare(ctx, r.seed(b.N), conc)
	}

	keys := r.seed(b.N)
	obs := r.observe(b.N)
	r.startWorker(r.workerConfig(conc))

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	published := make(chan error, 1)
	go func() { published <- r.publishAll(ctx, "tput", keys) }()
	last, err := obs.wait(ctx)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if err := <-published; err != nil {
		b.Fatal(err)
	}
	obs.expect(b, events.Revoked, b.N)
	rps := float64(b.N) / last.Sub(start).Seconds()
	b.ReportMetric(rps, "req/s")
	if bare > 0 {
		b.ReportMetric(bare, "bare-req/s")
		b.ReportMetric(rps/bare, "ratio")
	}
}

// BenchmarkLimiterWait is the cost the limiter adds to every delete, from
// all CPUs at once: unlimited, and limited far above what is asked of it.
func BenchmarkLimiterWait(b *testing.B) {
	for _, bc := range []struct {
		name      string
		perSecond float64
	}{{"unlimited", 0}, {"limited", 1e12}} {
		b.Run(bc.name, func(b *testing.B) {
			l := budget.NewLimiter(bc.perSecond, 1<<20)
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.Wait(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLatency measures publish -> stored result at a steady 100
// requests per second (RSA-2048, default concurrency): the time from just
// before a request's JetStream publish to its result reaching a core
// subscriber of the results subject.
func BenchmarkLatency(b *testing.B) {
	if testing.Short() {
		b.Skip("runs for a fixed time; not with -short")
	}
	const perSecond, warmUp = 100, 20
	n := benchEnvInt(b, "REVOKER_BENCH_LATENCY_N", 500)
	r := newBenchRig(b, emulatortest.Key(), emulator.Options{Refill: -1, MaxSignatures: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+time.Duration(n)*20*time.Millisecond)
	defer cancel()
	keys := r.seed(warmUp + n)
	obs := r.observe(warmUp + n)
	r.startWorker(r.workerConfig(0))

	sent := make([]time.Time, len(keys))
	tick := time.NewTicker(time.Second / perSecond)
	defer tick.Stop()
	b.ResetTimer()
	for i, key := range keys {
		if i == warmUp { // the first requests open connections; they are not counted
			if err := obs.waitCount(ctx, warmUp); err != nil {
				b.Fatal(err)
			}
			tick.Reset(time.Second / perSecond)
		}
		<-tick.C
		sent[i] = time.Now()
		if _, err := r.pub.PublishMsg(ctx, benchRequest("lat", i, key)); err != nil {
			b.Fatalf("publishing request %d: %v", i, err)
		}
	}
	if _, err := obs.wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	obs.expect(b, events.Revoked, len(keys))

	lat := make([]time.Duration, 0, n)
	for i := warmUp; i < len(keys); i++ {
		lat = append(lat, obs.arrival(benchID("lat", i)).Sub(sent[i]))
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(0, "ns/op")
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// BenchmarkRateLimitedMassRevocation revokes 400 keys against a Kalshi
// whose read bucket allows 40 deletes per second (400 tokens/s, 400 tokens,
// 10 a delete), with the worker's limiter set by DeleteBudget from the
// emulator's GET /account/limits and /account/endpoint_costs (36/s, burst
// 36). Elapsed runs from the first publish to the last result. Two ideals:
//
//   - budget-ideal-s = (400 - 36) / 36 s = 10.1 s: the fastest the
//     contract's 90% budget allows (36 at once, then 36 per second); the
//     target is elapsed <= 1.10 x this;
//   - rate-ideal-s = 400 / 40 s = 10 s: the keys at the bucket's rate, the
//     plain reading of "400 keys against 40 deletes/s";
//   - bucket-ideal-s = (400 - 40) / 40 s = 9.0 s: the fastest Kalshi's bucket
//     allows at all (a full bucket of 40 deletes, then 40 per second); the
//     90% rule alone makes elapsed >= 1.11 x this.
//
// 429s counts the emulator's 429 answers; the target is none.
func BenchmarkRateLimitedMassRevocation(b *testing.B) {
	const (
		n        = 400
		refill   = 400.0 // tokens per second
		capacity = 400.0 // tokens
		cost     = 10.0  // tokens per delete
	)
	r := newBenchRig(b, emulatortest.Key(), emulator.Options{Refill: refill, Capacity: capacity, MaxSignatures: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	c := r.client()
	limits, err := c.AccountLimits(ctx)
	if err != nil {
		b.Fatal(err)
	}
	costs, err := c.EndpointCosts(ctx)
	if err != nil {
		b.Fatal(err)
	}
	perSecond, burst := kalshi.DeleteBudget(limits, costs)
	r.emu.SetLimits(refill, capacity) // full again: reading the limits spent 10 tokens
	tooMany := r.emu.Stats().TooMany

	keys := r.seed(n)
	obs := r.observe(n)
	cfg := r.workerConfig(0)
	cfg.Limiter = budget.NewLimiter(perSecond, burst)
	r.startWorker(cfg)

	b.ResetTimer()
	start := time.Now()
	if err := r.publishAll(ctx, "mass", keys); err != nil {
		b.Fatal(err)
	}
	last, err := obs.wait(ctx)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	obs.expect(b, events.Revoked, n)
	elapsed := last.Sub(start).Seconds()
	budgetIdeal := (n - float64(burst)) / perSecond
	bucketIdeal := (n - capacity/cost) / (refill / cost)
	b.ReportMetric(elapsed, "elapsed-s")
	b.ReportMetric(budgetIdeal, "budget-ideal-s")
	b.ReportMetric(elapsed/budgetIdeal, "elapsed/budget-ideal")
	b.ReportMetric(elapsed/(n/(refill/cost)), "elapsed/rate-ideal")
	b.ReportMetric(elapsed/bucketIdeal, "elapsed/bucket-ideal")
	b.ReportMetric(float64(r.emu.Stats().TooMany-tooMany), "429s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkQueuedDrainMemory queues 50 000 requests (RSA-2048 signing key),
// then starts the worker with the default configuration in a child process
// (this test binary, running TestBenchDrainWorkerProcess) and lets it drain
// them. It reports the worker process's peak heap (sampled every 5 ms
// during the drain), its peak RSS (VmHWM), the drain rate, and then its CPU
// use while idle over REVOKER_BENCH_IDLE (default 30s), starting 2 s after
// the last result.
func BenchmarkQueuedDrainMemory(b *testing.B) {
	if testing.Short() {
		b.Skip("runs for a fixed time; not with -short")
	}
	if runtime.GOOS != "linux" {
		b.Skip("reads the child's memory and CPU from /proc")
	}
	n := benchEnvInt(b, "REVOKER_BENCH_QUEUED", 50_000)
	idle := benchEnvDuration(b, "REVOKER_BENCH_IDLE", 30*time.Second)
	r := newBenchRig(b, emulatortest.Key(), emulator.Options{Refill: -1, MaxSignatures: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute+time.Duration(n)*5*time.Millisecond+idle)
	defer cancel()

	keys := r.seed(n)
	if err := r.publishAll(ctx, "drain", keys); err != nil {
		b.Fatal(err)
	}
	obs := r.observe(n)

	b.ResetTimer()
	child := r.startChild(ctx, benchChildSpec{Concurrency: 0})
	if err := child.expect(ctx, "ready"); err != nil {
		b.Fatal(err)
	}
	last, err := obs.wait(ctx)
	if err != nil {
		b.Fatal(err)
	}
	drain := last.Sub(child.started)
	rss := child.procStatusKB("VmHWM")
	child.send("idle") // stops the heap sampler, which would cost CPU
	heapLine, err := child.expectPrefix(ctx, "peak-heap ")
	if err != nil {
		b.Fatal(err)
	}
	peakHeap, err := strconv.ParseUint(strings.TrimPrefix(heapLine, "peak-heap "), 10, 64)
	if err != nil {
		b.Fatalf("child reported %q: %v", heapLine, err)
	}
	var idleCPU float64
	if idle > 0 {
		benchPause(ctx, 2*time.Second) // acks and the last results settle
		cpu0, t0 := child.cpu(), time.Now()
		benchPause(ctx, idle)
		idleCPU = (child.cpu() - cpu0).Seconds() / time.Since(t0).Seconds() * 100
	}
	child.stop(ctx)
	b.StopTimer()
	obs.expect(b, events.Revoked, n)
	if left := r.streamMsgs("KEY_REVOKE_REQUESTS"); left != 0 {
		b.Errorf("%d requests left in the queue after the drain", left)
	}

	const mb = 1 << 20
	b.ReportMetric(float64(peakHeap)/mb, "peak-heap-MB")
	b.ReportMetric(float64(rss)*1024/mb, "peak-rss-MB")
	b.ReportMetric(drain.Seconds(), "drain-s")
	b.ReportMetric(float64(n)/drain.Seconds(), "req/s")
	if idle > 0 {
		b.ReportMetric(idleCPU, "idle-cpu-%")
	}
	b.ReportMetric(0, "ns/op")
}

// benchChildEnv carries the JSON benchChildSpec to the worker process.
const benchChildEnv = "REVOKER_BENCH_WORKER_PROCESS"

type benchChildSpec struct {
	NATSURL     string `json:"nats_url"`
	KalshiURL   string `json:"kalshi_url"`
	KeyID       string `json:"key_id"`
	KeyPath     string `json:"key_path"`
	Concurrency int    `json:"concurrency"` // 0: the worker's default
}

// TestBenchDrainWorkerProcess is the worker process of
// BenchmarkQueuedDrainMemory, not a test: it runs only when that benchmark
// starts it. It runs a worker as `revoker run` would (default
// configuration, JSON logs at info, discarded) and talks over stdin and
// stdout: it prints "ready" once bound; on the line "idle" it stops
// sampling the heap and prints "peak-heap BYTES"; at the end of stdin it
// shuts the worker down and prints "stopped".
func TestBenchDrainWorkerProcess(t *testing.T) {
	raw := os.Getenv(benchChildEnv)
	if raw == "" {
		t.Skip("the worker process of BenchmarkQueuedDrainMemory; only that benchmark runs it")
	}
	var spec benchChildSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	say := func(line string) { fmt.Fprintln(os.Stdout, "benchchild:", line) }

	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	key, err := kalshi.LoadPrivateKey(spec.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kalshi.New(kalshi.Config{BaseURL: spec.KalshiURL, KeyID: spec.KeyID, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(spec.NATSURL, nats.Name("revoker-bench"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(js, client, worker.Config{
		SelfKeyID:   spec.KeyID,
		Concurrency: spec.Concurrency,
		Logger:      slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	natstest.WaitFor(t, 30*time.Second, "the worker to bind", func() bool { return w.Ready() == nil })
	say("ready")

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "idle" {
			close(stopSampling)
			<-sampled
			say(fmt.Sprintf("peak-heap %d", peak.Load()))
		}
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	say("stopped")
}

// benchRig is an embedded NATS server with the streams and consumer
// provisioned, a publisher and an observer connection, and the emulator.
type benchRig struct {
	b       *testing.B
	srv     *natstest.Server
	js      jetstream.JetStream // the worker's connection
	pub     jetstream.JetStream // the publisher's
	pubErrs atomic.Int64
	obsConn *nats.Conn
	emu     *emulator.Emulator
	key     crypto.Signer
	selfID  string
	seeded  int
}

func newBenchRig(b *testing.B, key crypto.Signer, opts emulator.Options) *benchRig {
	b.Helper()
	r := &benchRig{b: b, key: key}
	r.srv = natstest.Start(b)
	var err error
	if r.js, err = jetstream.New(natstest.Connect(b, r.srv.URL(), nats.Name("worker"))); err != nil {
		b.Fatal(err)
	}
	r.pub, err = jetstream.New(natstest.Connect(b, r.srv.URL(), nats.Name("publisher")),
		jetstream.WithPublishAsyncMaxPending(256),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { r.pubErrs.Add(1) }))
	if err != nil {
		b.Fatal(err)
	}
	r.obsConn = natstest.Connect(b, r.srv.URL(), nats.Name("observer"))
	r.emu = emulator.New(opts)
	if err := r.emu.Start(""); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.emu.Close() })
	r.selfID = r.emu.AddKey("revoker", key.Public(), "read", "write")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := provision.Ensure(ctx, r.js, r.workerConfig(0).Provisioning()); err != nil {
		b.Fatal(err)
	}
	return r
}

// workerConfig is the production configuration (every default) with the
// given concurrency (0: the default), logging JSON at info to nowhere.
func (r *benchRig) workerConfig(conc int) worker.Config {
	return worker.Config{
		Provision:   true,
		SelfKeyID:   r.selfID,
		Concurrency: conc,
		Logger:      slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
}

func (r *benchRig) client() *kalshi.Client {
	r.b.Helper()
	c, err := kalshi.New(kalshi.Config{BaseURL: r.emu.URL(), KeyID: r.selfID, PrivateKey: r.key})
	if err != nil {
		r.b.Fatal(err)
	}
	return c
}

// seed registers n new keys in the emulator.
func (r *benchRig) seed(n int) []string {
	keys := make([]string, n)
	pub := r.key.Public()
	for i := range keys {
		keys[i] = r.emu.AddKey("k"+strconv.Itoa(r.seeded+i), pub)
	}
	r.seeded += n
	return keys
}

// startWorker runs a worker until the benchmark ends; it returns once the
// worker is bound to its consumer.
func (r *benchRig) startWorker(cfg worker.Config) {
	r.b.Helper()
	w, err := worker.New(r.js, r.client(), cfg)
	if err != nil {
		r.b.Fatal(err)
	}
	stop, _ := natstest.Go(r.b, 30*time.Second, "the worker did not stop within 30s", w.Run)
	r.b.Cleanup(func() {
		if err := stop(); err != nil {
			r.b.Error(err)
		}
	})
	natstest.WaitFor(r.b, 30*time.Second, "the worker to bind", func() bool { return w.Ready() == nil })
}

// bare deletes keys from conc goroutines with a kalshi client and returns
// the rate.
func (r *benchRig) bare(ctx context.Context, keys []string, conc int) float64 {
	r.b.Helper()
	c := r.client()
	var next atomic.Int64
	errs := make(chan error, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				if err := c.DeleteAPIKey(ctx, keys[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		r.b.Fatalf("bare delete: %v", err)
	}
	return float64(len(keys)) / elapsed.Seconds()
}

func benchID(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }

// benchRequest is a plain request for key with Nats-Msg-Id set to its id.
func benchRequest(prefix string, i int, key string) *nats.Msg {
	id := benchID(prefix, i)
	m := nats.NewMsg("keys.revoke.requests")
	m.Data = fmt.Appendf(nil, `{"id":%q,"api_key_id":%q,"reason":"benchmark","requested_by":"bench","source":"bench"}`, id, key)
	m.Header.Set(jetstream.MsgIDHeader, id)
	return m
}

// publishAll publishes one request per key, up to 256 unacknowledged at a
// time, and returns once JetStream stored them all.
func (r *benchRig) publishAll(ctx context.Context, prefix string, keys []string) error {
	for i, k := range keys {
		if _, err := r.pub.PublishMsgAsync(benchRequest(prefix, i, k), jetstream.WithStallWait(10*time.Second)); err != nil {
			return fmt.Errorf("publishing request %d: %w", i, err)
		}
	}
	select {
	case <-r.pub.PublishAsyncComplete():
	case <-ctx.Done():
		return fmt.Errorf("waiting for the requests to be stored: %w", ctx.Err())
	}
	if n := r.pubErrs.Load(); n > 0 {
		return fmt.Errorf("%d requests could not be published", n)
	}
	return nil
}

func (r *benchRig) streamMsgs(name string) uint64 {
	r.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, name)
	if err != nil {
		r.b.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		r.b.Fatal(err)
	}
	return info.State.Msgs
}

// benchObserver counts results on a core subscription of the results
// subjects, by request id (the Nats-Msg-Id header), noting when each first
// arrived.
type benchObserver struct {
	want int

	mu        sync.Mutex
	arrived   map[string]time.Time
	bySubject map[string]int
	extra     int // results for a request id seen before
	last      time.Time
	notify    chan struct{} // closed and replaced on every new result
}

func (r *benchRig) observe(want int) *benchObserver {
	r.b.Helper()
	o := &benchObserver{want: want, arrived: make(map[string]time.Time, want),
		bySubject: make(map[string]int), notify: make(chan struct{})}
	sub, err := r.obsConn.Subscribe("keys.revoke.results.>", func(m *nats.Msg) {
		now := time.Now()
		id := m.Header.Get(jetstream.MsgIDHeader)
		o.mu.Lock()
		defer o.mu.Unlock()
		if _, seen := o.arrived[id]; seen {
			o.extra++
			return
		}
		o.arrived[id] = now
		o.bySubject[m.Subject]++
		o.last = now
		close(o.notify)
		o.notify = make(chan struct{})
	})
	if err != nil {
		r.b.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		r.b.Fatal(err)
	}
	if err := r.obsConn.Flush(); err != nil {
		r.b.Fatal(err)
	}
	r.b.Cleanup(func() { _ = sub.Unsubscribe() })
	return o
}

// waitCount waits until n results arrived, or ctx ends.
func (o *benchObserver) waitCount(ctx context.Context, n int) error {
	for {
		o.mu.Lock()
		got, notify := len(o.arrived), o.notify
		o.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d results after the deadline: %w", got, n, ctx.Err())
		}
	}
}

// wait waits for every wanted result and returns when the last arrived.
func (o *benchObserver) wait(ctx context.Context) (time.Time, error) {
	if err := o.waitCount(ctx, o.want); err != nil {
		return time.Time{}, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last, nil
}

func (o *benchObserver) arrival(id string) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.arrived[id]
}

// expect fails the benchmark unless exactly n results arrived, all with
// outcome, and none twice.
func (o *benchObserver) expect(b *testing.B, outcome events.Outcome, n int) {
	b.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	subject := events.ResultSubject("keys.revoke.results", outcome)
	if len(o.arrived) != n || o.bySubject[subject] != n || o.extra != 0 {
		b.Fatalf("results: %d distinct (%d repeated), by subject %v; want %d on %s",
			len(o.arrived), o.extra, o.bySubject, n, subject)
	}
}

// benchChild is the worker process of BenchmarkQueuedDrainMemory.
type benchChild struct {
	b       *testing.B
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string
	stderr  *bytes.Buffer
	started time.Time
}

func (r *benchRig) startChild(ctx context.Context, spec benchChildSpec) *benchChild {
	r.b.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(r.key)
	if err != nil {
		r.b.Fatal(err)
	}
	spec.KeyPath = filepath.Join(r.b.TempDir(), "key.pem")
	if err := os.WriteFile(spec.KeyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		r.b.Fatal(err)
	}
	spec.NATSURL, spec.KalshiURL, spec.KeyID = r.srv.URL(), r.emu.URL(), r.selfID
	raw, err := json.Marshal(spec)
	if err != nil {
		r.b.Fatal(err)
	}
	c := &benchChild{b: r.b, lines: make(chan string, 16), stderr: new(bytes.Buffer)}
	c.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBenchDrainWorkerProcess$", "-test.count=1")
	c.cmd.Env = append(os.Environ(), benchChildEnv+"="+string(raw))
	c.cmd.Stderr = c.stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		r.b.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		r.b.Fatal(err)
	}
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		r.b.Fatal(err)
	}
	go func() {
		defer close(c.lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if line, ok := strings.CutPrefix(s.Text(), "benchchild: "); ok {
				c.lines <- line
			}
		}
	}()
	r.b.Cleanup(func() {
		if c.cmd.ProcessState == nil { // still running: the benchmark failed
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	return c
}

func (c *benchChild) send(line string) {
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		c.b.Fatalf("writing to the worker process: %v", err)
	}
}

func (c *benchChild) expect(ctx context.Context, want string) error {
	_, err := c.next(ctx, func(line string) bool { return line == want })
	return err
}

func (c *benchChild) expectPrefix(ctx context.Context, prefix string) (string, error) {
	return c.next(ctx, func(line string) bool { return strings.HasPrefix(line, prefix) })
}

func (c *benchChild) next(ctx context.Context, match func(string) bool) (string, error) {
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				return "", fmt.Errorf("the worker process ended early; its stderr:\n%s", c.stderr)
			}
			if match(line) {
				return line, nil
			}
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for the worker process: %w", ctx.Err())
		}
	}
}

// stop ends stdin, waits for the worker to shut down and the process to exit.
func (c *benchChild) stop(ctx context.Context) {
	c.b.Helper()
	_ = c.stdin.Close()
	if err := c.expect(ctx, "stopped"); err != nil {
		c.b.Fatal(err)
	}
	for range c.lines { // the scanner ends with the process's stdout
	}
	if err := c.cmd.Wait(); err != nil {
		c.b.Fatalf("worker process: %v; its stderr:\n%s", err, c.stderr)
	}
}

// procStatusKB reads a "kB" field of /proc/PID/status.
func (c *benchChild) procStatusKB(field string) uint64 {
	c.b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		c.b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				c.b.Fatalf("%s: %v", field, err)
			}
			return kb
		}
	}
	c.b.Fatalf("no %s in /proc/%d/status", field, c.cmd.Process.Pid)
	return 0
}

// cpu is the CPU time (user and system) the process has used, from
// /proc/PID/stat in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func (c *benchChild) cpu() time.Duration {
	c.b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		c.b.Fatal(err)
	}
	// The fields after the command name, which may hold spaces: state is
	// field 3, utime 14 and stime 15.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		c.b.Fatalf("cannot parse /proc/%d/stat", c.cmd.Process.Pid)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			c.b.Fatal(err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// benchPause lets d pass: a measurement window, not a wait for a condition.
func benchPause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// benchDeadline bounds one run of n requests generously (RSA-2048 at
// concurrency 1 under the race detector is the slowest case).
func benchDeadline(n int) time.Duration {
	return 2*time.Minute + time.Duration(n)*20*time.Millisecond
}

func benchEnvInt(b *testing.B, name string, def int) int {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > 1_000_000 {
		b.Fatalf("%s=%q: want a whole number from 1 to 1000000", name, s)
	}
	return v
}

func benchEnvDuration(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	if s == "0" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > time.Hour {
		b.Fatalf("%s=%q: want a duration from 0 to 1h", name, s)
	}
	return d
}
