package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/revoker/revoker/kalshi/emulator"
)

// faultKind is one kind of fault the schedule draws.
type faultKind int

const (
	faultKill      faultKind = iota // SIGKILL a replica, restart it
	faultStop                       // SIGSTOP a replica, SIGCONT it later
	faultNodeKill                   // SIGKILL a NATS node (the stream leader half the time), restart it
	faultCutNATS                    // a replica's NATS links refuse
	faultCutKalshi                  // a replica's Kalshi link refuses or blackholes
	faultLatency                    // latency on a replica's NATS or Kalshi link
	faultStorm                      // Kalshi answers 5xx, 429 with Retry-After, and loses answers
	faultKinds
)

func (k faultKind) String() string {
	return [...]string{"kill", "stop", "node-kill", "cut-nats", "cut-kalshi", "latency", "storm"}[k]
}

// fault is one scheduled fault.
type fault struct {
	kind    faultKind
	at      time.Duration // after the first publish
	dur     time.Duration // how long it lasts
	replica int           // kill, stop, cut, latency
	leader  bool          // node-kill: the requests stream's leader
	node    int           // node-kill: otherwise this node
	onNATS  bool          // latency: on the NATS links (else Kalshi)
	hole    bool          // cut-kalshi: blackhole instead of refusing
	latency time.Duration // latency
	storm   emulator.Faults
}

func (f fault) String() string {
	s := fmt.Sprintf("%s@%.1fs for %.1fs", f.kind, f.at.Seconds(), f.dur.Seconds())
	switch f.kind {
	case faultKill, faultStop, faultCutNATS:
		s += fmt.Sprintf(" replica-%d", f.replica+1)
	case faultCutKalshi:
		s += fmt.Sprintf(" replica-%d blackhole=%v", f.replica+1, f.hole)
	case faultLatency:
		s += fmt.Sprintf(" replica-%d nats=%v %v", f.replica+1, f.onNATS, f.latency)
	case faultNodeKill:
		if f.leader {
			s += " stream-leader"
		} else {
			s += fmt.Sprintf(" node-%d", f.node+1)
		}
	case faultStorm:
		s += fmt.Sprintf(" 5xx=%.2f 429=%.2f(Retry-After %v) lost=%.2f", f.storm.ServerError, f.storm.TooMany, f.storm.RetryAfter, f.storm.LostResponse)
	}
	return s
}

// schedule draws a seed's faults within window: every kind once, in a
// random order at random times, then a few more of the cheap kinds. At most
// one NATS node is down at a time (R3 keeps a quorum).
func schedule(rng *rand.Rand, window time.Duration) []fault {
	dur := func(lo, hi float64) time.Duration {
		return time.Duration((lo + rng.Float64()*(hi-lo)) * float64(time.Second))
	}
	draw := func(k faultKind) fault {
		f := fault{kind: k, at: dur(0.5, window.Seconds()), replica: rng.IntN(replicaCount)}
		switch k {
		case faultKill:
			f.dur = dur(1, 3) // until the restart
		case faultStop:
			f.dur = dur(4, 14)
		case faultNodeKill:
			f.dur = dur(2, 6)
			f.leader = rng.IntN(2) == 0
			f.node = rng.IntN(nodeCount)
		case faultCutNATS:
			f.dur = dur(2, 6)
		case faultCutKalshi:
			f.dur = dur(2, 8)
			f.hole = rng.IntN(2) == 0
		case faultLatency:
			f.dur = dur(3, 8)
			f.onNATS = rng.IntN(2) == 0
			f.latency = time.Duration(50+rng.IntN(250)) * time.Millisecond
		case faultStorm:
			f.dur = dur(3, 6)
			f.storm = emulator.Faults{
				Seed:         rng.Int64(),
				ServerError:  0.1 + 0.3*rng.Float64(),
				TooMany:      0.05 + 0.15*rng.Float64(),
				RetryAfter:   time.Duration(1+rng.IntN(2)) * time.Second,
				LostResponse: 0.05 + 0.15*rng.Float64(),
			}
		}
		return f
	}
	var fs []fault
	for _, k := range rng.Perm(int(faultKinds)) {
		fs = append(fs, draw(faultKind(k)))
	}
	for range 1 + rng.IntN(3) {
		extra := []faultKind{faultKill, faultStop, faultCutKalshi, faultLatency, faultStorm}
		fs = append(fs, draw(extra[rng.IntN(len(extra))]))
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].at < fs[j].at })
	return fs
}

// outage is when a fault was in force, as it happened (faults on one
// replica wait for each other, so they can start late).
type outage struct {
	f          fault
	start, end time.Time
	replica    int
}

// faultLog is what the fault runner did.
type faultLog struct {
	mu      sync.Mutex
	outages []outage
}

func (l *faultLog) add(o outage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.outages = append(l.outages, o)
}

func (l *faultLog) all() []outage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]outage(nil), l.outages...)
}

// runner carries out a schedule on a world and logs what it did.
type runner struct {
	w       *world
	log     faultLog
	nodeMu  sync.Mutex // one NATS node down at a time: R3 keeps its quorum
	stormMu sync.Mutex // one Kalshi storm at a time
}

// run carries out the schedule from t0 and returns when every fault has
// ended and every replica and node runs again.
func (rn *runner) run(t0 time.Time, fs []fault) {
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Go(func() {
			waitUntil(rn.w.t.Context(), t0.Add(f.at))
			rn.apply(i, f)
		})
	}
	wg.Wait()
}

func (rn *runner) apply(i int, f fault) {
	w := rn.w
	t := w.t
	o := outage{f: f, replica: f.replica}
	hold := func() { waitUntil(t.Context(), time.Now().Add(f.dur)) }
	switch f.kind {
	case faultKill:
		r := w.replicas[f.replica]
		r.mu.Lock()
		defer r.mu.Unlock()
		o.start = time.Now()
		r.kill()
		w.logf("fault %s: SIGKILL", f)
		hold()
		if err := r.start(); err != nil {
			t.Errorf("fault %s: restart: %v", f, err)
		}
		o.end = time.Now()
		w.logf("fault %s: restarted, ready", f)
	case faultStop:
		r := w.replicas[f.replica]
		r.mu.Lock()
		defer r.mu.Unlock()
		o.start = time.Now()
		r.signal(syscall.SIGSTOP)
		w.logf("fault %s: SIGSTOP", f)
		hold()
		r.signal(syscall.SIGCONT)
		o.end = time.Now()
		w.logf("fault %s: SIGCONT", f)
	case faultNodeKill:
		rn.nodeMu.Lock()
		defer rn.nodeMu.Unlock()
		n := w.nodes[f.node]
		if f.leader {
			if info := w.streamInfo(requestsStream); info != nil && info.Cluster != nil {
				for _, m := range w.nodes {
					if m.name == info.Cluster.Leader {
						n = m
					}
				}
			}
		}
		o.start = time.Now()
		n.kill(t)
		w.logf("fault %s: SIGKILL %s", f, n.name)
		hold()
		if err := n.start(); err != nil {
			t.Errorf("fault %s: restart %s: %v", f, n.name, err)
		} else if err := n.waitReady(60 * time.Second); err != nil {
			t.Errorf("fault %s: %v", f, err)
		}
		o.end = time.Now()
		w.logf("fault %s: %s back", f, n.name)
	case faultCutNATS:
		r := w.replicas[f.replica]
		o.start = time.Now()
		for _, l := range r.nats {
			l.cut()
		}
		w.logf("fault %s: cut", f)
		hold()
		for _, l := range r.nats {
			l.restore(t)
		}
		o.end = time.Now()
	case faultCutKalshi:
		r := w.replicas[f.replica]
		name := fmt.Sprintf("hole-%d", i)
		o.start = time.Now()
		if f.hole {
			r.kalshi.addToxic(t, name+"-up", "timeout", "upstream", map[string]int64{"timeout": 0})
			r.kalshi.addToxic(t, name+"-down", "timeout", "downstream", map[string]int64{"timeout": 0})
		} else {
			r.kalshi.cut()
		}
		w.logf("fault %s: cut", f)
		hold()
		if f.hole {
			r.kalshi.removeToxic(t, name+"-up")
			r.kalshi.removeToxic(t, name+"-down")
		} else {
			r.kalshi.restore(t)
		}
		o.end = time.Now()
	case faultLatency:
		r := w.replicas[f.replica]
		links := []*link{r.kalshi}
		if f.onNATS {
			links = r.nats
		}
		name := fmt.Sprintf("latency-%d", i)
		ms := f.latency.Milliseconds()
		o.start = time.Now()
		for _, l := range links {
			l.addToxic(t, name, "latency", "downstream", map[string]int64{"latency": ms, "jitter": ms / 4})
		}
		hold()
		for _, l := range links {
			l.removeToxic(t, name)
		}
		o.end = time.Now()
	case faultStorm:
		rn.stormMu.Lock()
		defer rn.stormMu.Unlock()
		o.start = time.Now()
		w.emu.SetFaults(f.storm)
		w.logf("fault %s: on", f)
		hold()
		w.emu.SetFaults(emulator.Faults{})
		o.end = time.Now()
	}
	rn.log.add(o)
}
