package deployed_test

import (
	"flag"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// settleRSS is when BenchmarkDeployedDrainRSS starts sampling the drain's
// own RSS: the start is over (ready in well under a second).
const settleRSS = 2 * time.Second

var (
	flagDrainN   = flag.Int("deployed.drain.n", 50_000, "requests BenchmarkDeployedDrainRSS queues")
	flagDrainKey = flag.String("deployed.drain.key", "rsa2048", "signing key of BenchmarkDeployedDrainRSS: rsa2048 or ed25519")
)

// BenchmarkDeployedDrainRSS queues 50,000 requests (the emulator
// unlimited), then starts `revoker run` with REVOKER_RATE=0 and otherwise
// the default settings (concurrency 8), and waits until every result is
// stored. It reports the revoker process's peak RSS (VmHWM, read before it
// stops), the peak of VmRSS sampled every 100 ms from settleRSS after the
// exec to the end and of its Go heap in use (from /metrics every second),
// the elapsed time from the exec to the last result and the drain rate. It
// fails if the drain takes longer than 170 s.
//
// Every GET /api_keys answers with every key of the account, and the
// emulator's account holds the keys to delete (at first 50,000, a list of
// some 5 MB that the kalshi client decodes whole): the credential check at
// start lists them, and so does each round that confirms revoked keys dead
// (worker/confirm.go). The figures from settleRSS on leave out the start.
//
//	go test -run '^$' -bench DeployedDrainRSS -benchtime 1x -timeout 10m ./worker/deployed/
func BenchmarkDeployedDrainRSS(b *testing.B) {
	began := time.Now()
	n := *flagDrainN
	key := writeKey(b, *flagDrainKey)
	w := newWorld(b, []signingKey{key}, -1, 0)
	// Provision with a revoker stopped at once, then queue the requests.
	w.startRevoker("provision", key).signal(syscall.SIGTERM)
	keys := w.seed(n)
	o, stopObserving := w.observe(n, nil)
	defer stopObserving()
	if err := w.publish("drain", keys); err != nil {
		b.Fatal(err)
	}
	queued := time.Since(began)

	rev := w.startRevoker("revoker", key, "REVOKER_RATE=0")
	var mu sync.Mutex
	var peakRSS, peakHeap float64 // kB, bytes; from settleRSS on
	stop := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			var rss, heap float64
			if time.Since(rev.began) >= settleRSS {
				rss = float64(rev.rssKB("VmRSS"))
				if i%10 == 0 {
					heap = rev.metric("go_memstats_heap_inuse_bytes")
				}
			}
			mu.Lock()
			peakRSS, peakHeap = max(peakRSS, rss), max(peakHeap, heap)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	last := o.wait(b, 170*time.Second)
	hwm := rev.rssKB("VmHWM")
	finalRSS := rev.rssKB("VmRSS")
	close(stop)
	sampling.Wait()
	o.mu.Lock()
	outcomes := fmt.Sprint(o.outcomes)
	revoked := o.outcomes["revoked"]
	o.mu.Unlock()
	rev.signal(syscall.SIGTERM)
	if revoked != n {
		b.Fatalf("outcomes %s, want %d revoked", outcomes, n)
	}
	elapsed := last.Sub(rev.began)
	b.Logf("DRAIN %d queued requests, %s, concurrency 8 (the default), REVOKER_RATE=0: peak RSS %.1f MB (VmHWM, with the start's key listing); from %v after the exec: VmRSS peak %.1f MB, %.1f MB at the end, Go heap in use peak %.1f MB; elapsed %.1f s from the exec to the last result = %.0f req/s (ready in %v; queueing took %v) | %v in all",
		n, *flagDrainKey, float64(hwm)/1024, settleRSS, peakRSS/1024, float64(finalRSS)/1024, peakHeap/(1<<20),
		elapsed.Seconds(), float64(n)/elapsed.Seconds(), rev.readyIn.Round(time.Millisecond), queued.Round(time.Second), time.Since(began).Round(time.Second))
	b.ReportMetric(float64(hwm)/1024, "peak-RSS-MB")
	b.ReportMetric(peakRSS/1024, "drain-RSS-MB")
	b.ReportMetric(peakHeap/(1<<20), "peak-heap-MB")
	b.ReportMetric(elapsed.Seconds(), "elapsed-s")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "req/s")
	b.ReportMetric(0, "ns/op")
}
