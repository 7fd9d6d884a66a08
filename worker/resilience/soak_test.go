package resilience_test

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revoker/revoker/kalshi/emulator"
)

// TestSoak sends ten thousand requests (plus 400 repeats) through one
// in-process worker, sampling the process's heap and RSS every 100 ms, and
// checks that memory stays flat: the second half of the run may not need
// notably more than the first. NATS runs as a separate nats-server process
// so that it does not blur the figures.
func TestSoak(t *testing.T) {
	skipShort(t)
	const n = 10_000
	// NATS runs in its own process here, so that this process's memory is
	// the worker's (and the emulator's, and the test's).
	r := newRig(t, startNATSProcess(t), rigOptions{emu: emulator.Options{MaxSignatures: -1}})
	p := r.plan("soak", n)
	cfg := r.workerConfig()
	r.provision(cfg)

	var done atomic.Int64
	s := startSampler(&done)
	wk := r.startWorker(cfg, "")
	r.publish(p.reqs)
	deadline := time.Now().Add(4 * time.Minute)
	var liveHalf, liveEnd uint64
	for int(done.Load()) < len(p.want) && time.Now().Before(deadline) {
		if c := r.resultCount(); c >= 0 {
			done.Store(int64(c))
		}
		if liveHalf == 0 && done.Load() >= int64(len(p.want)/2) {
			liveHalf = liveHeap()
		}
		time.Sleep(100 * time.Millisecond) // poll period; the loop ends at the deadline above
	}
	r.waitDrained(time.Minute)
	liveEnd = liveHeap()
	samples := s.stop()
	if err := wk.stop(); err != nil {
		t.Error(err)
	}
	if int(done.Load()) < len(p.want) {
		t.Errorf("only %d of %d results after 4 minutes", done.Load(), len(p.want))
	}

	// Halves by progress: before and after half the results were stored.
	var first, second peaks
	for _, x := range samples {
		if x.done < int64(len(p.want)/2) {
			first.add(x)
		} else if x.done < int64(len(p.want)) {
			second.add(x)
		}
	}
	elapsed := samples[len(samples)-1].at
	t.Logf("%d samples over %v (%.0f results/s); first half: %s; second half: %s",
		len(samples), elapsed.Round(time.Second), float64(done.Load())/elapsed.Seconds(), first, second)
	if first.n < 5 || second.n < 5 {
		t.Fatalf("too few samples per half (%d, %d) to judge memory", first.n, second.n)
	}
	// What the bounds allow for. NATS runs in its own process; the Kalshi
	// emulator and the test itself share this one and grow a little with
	// the run (the emulator keeps stats per deleted key): about 0.5 MiB of
	// live heap between the half-way mark and the end, with nothing growing
	// in the worker (heap profiles of this test).
	//   - Live heap (after a forced GC) at the end may exceed the half-way
	//     mark by 3 MiB: a leak of 512 bytes per request (2.5 MiB more over
	//     the second half) goes over it.
	//   - Peak heap in use follows the live heap times the GC's growth
	//     factor (GOGC=100: up to twice), and when the GC runs: it is only
	//     logged (without -race it grew 6-11 MiB with a flat live heap).
	//   - RSS moves in coarse steps (the runtime returns pages late, and
	//     under -race the detector's shadow memory grows with every new heap
	//     page: measured, RSS grew 12 MiB for 1.5 MiB of peak heap): 32 MiB.
	//     It is the backstop for what the heap does not show, such as
	//     goroutine stacks; goroutines are also counted.
	// Checked by injecting leaks into the Deleter: 512 bytes kept per
	// request fails the live bound, 1 KiB the RSS bound too.
	const liveSlack, rssSlack = 3 << 20, 32 << 20
	t.Logf("live heap after GC: %s at half way, %s at the end", mib(liveHalf), mib(liveEnd))
	if liveEnd > liveHalf+liveSlack {
		t.Errorf("live heap grew from %s half way to %s at the end", mib(liveHalf), mib(liveEnd))
	}
	if second.rss > first.rss+rssSlack {
		t.Errorf("RSS peaked at %s in the second half, %s in the first: it grows", mib(second.rss), mib(first.rss))
	}
	if second.goroutines > first.goroutines+50 {
		t.Errorf("goroutines peaked at %d in the second half, %d in the first: they leak", second.goroutines, first.goroutines)
	}
	r.checkInvariants(p, fmt.Sprintf("none; first half -> second half: heap peak %s -> %s, RSS peak %s -> %s; live heap %s -> %s",
		mib(first.heap), mib(second.heap), mib(first.rss), mib(second.rss), mib(liveHalf), mib(liveEnd)))
}

type sample struct {
	at         time.Duration
	done       int64
	heap       uint64 // runtime.MemStats.HeapInuse
	rss        uint64 // VmRSS
	goroutines int
}

type peaks struct {
	n          int
	heap, rss  uint64
	goroutines int
}

func (p *peaks) add(s sample) {
	p.n++
	p.heap, p.rss, p.goroutines = max(p.heap, s.heap), max(p.rss, s.rss), max(p.goroutines, s.goroutines)
}

func (p peaks) String() string {
	return fmt.Sprintf("peak heap in use %s, RSS %s, %d goroutines (%d samples)", mib(p.heap), mib(p.rss), p.goroutines, p.n)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

type sampler struct {
	quit    chan struct{}
	wg      sync.WaitGroup
	samples []sample
}

func startSampler(done *atomic.Int64) *sampler {
	s := &sampler{quit: make(chan struct{})}
	start := time.Now()
	s.wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			s.samples = append(s.samples, sample{
				at: time.Since(start), done: done.Load(), heap: ms.HeapInuse, rss: vmRSS(), goroutines: runtime.NumGoroutine(),
			})
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
		}
	})
	return s
}

func (s *sampler) stop() []sample {
	close(s.quit)
	s.wg.Wait()
	return s.samples
}

// vmRSS is the process's resident set size from /proc/self/status, 0
// where there is none.
func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest) // "123456 kB"
			if len(fields) == 2 && fields[1] == "kB" {
				kb, err := strconv.ParseUint(fields[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}

// liveHeap is the heap still reachable: HeapAlloc right after a GC.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
