package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The shared budget's tests run replicas as goroutines in a synctest
// bubble, against a plan store in memory whose reads and writes take a few
// (fake) milliseconds, so that replicas interleave. Every change of any
// replica's spending is checked at once: the shares of the replicas that
// can spend (running, or cut off from the store but alive) never sum to
// more than 1.

// memShareStore is the plan in memory, with a revision like a KV entry.
type memShareStore struct {
	mu   sync.Mutex
	doc  []byte
	rev  uint64
	rnd  *rand.Rand
	gets int // reads
	puts int // writes that succeeded
}

func (m *memShareStore) latency() {
	m.mu.Lock()
	d := time.Duration(1+m.rnd.IntN(20)) * time.Millisecond
	m.mu.Unlock()
	time.Sleep(d)
}

func (m *memShareStore) get(ctx context.Context) ([]byte, uint64, error) {
	m.latency()
	m.mu.Lock()
	m.gets++
	doc, rev := m.doc, m.rev
	m.mu.Unlock()
	m.latency()
	return doc, rev, ctx.Err()
}

func (m *memShareStore) put(ctx context.Context, doc []byte, rev uint64) (uint64, error) {
	m.latency()
	m.mu.Lock()
	if rev != m.rev || rev == 0 && m.doc != nil {
		m.mu.Unlock()
		return 0, errShareConflict
	}
	m.rev++
	m.puts++
	m.doc, rev = doc, m.rev
	m.mu.Unlock()
	m.latency() // the answer may come late: the write stands anyway
	return rev, nil
}

func (m *memShareStore) remove(ctx context.Context, rev uint64) error {
	m.latency()
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev != m.rev {
		return errShareConflict
	}
	m.rev++
	m.doc = nil
	return nil
}

// replicaStore is one replica's way to the store: cut, it fails.
type replicaStore struct {
	*memShareStore
	cut *bool
	mu  *sync.Mutex
}

var errCut = errors.New("cut off")

func (r replicaStore) isCut() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *r.cut
}

func (r replicaStore) get(ctx context.Context) ([]byte, uint64, error) {
	if r.isCut() {
		time.Sleep(shareOpTime) // a timeout
		return nil, 0, errCut
	}
	return r.memShareStore.get(ctx)
}

func (r replicaStore) put(ctx context.Context, doc []byte, rev uint64) (uint64, error) {
	if r.isCut() {
		time.Sleep(shareOpTime)
		return 0, errCut
	}
	return r.memShareStore.put(ctx, doc, rev)
}

func (r replicaStore) remove(ctx context.Context, rev uint64) error {
	if r.isCut() {
		return errCut
	}
	return r.memShareStore.remove(ctx, rev)
}

// shareWorld is a set of replicas and the invariant checker.
type shareWorld struct {
	t     *testing.T
	store *memShareStore

	mu       sync.Mutex
	replicas map[string]*testReplica
	maxSum   float64
	worst    string
	next     int
}

type testReplica struct {
	id        string
	share     *Share
	cancel    context.CancelFunc
	done      chan struct{}
	cut       bool
	dead      bool // crashed or left: spends nothing
	spending  float64
	changedAt time.Time // when spending last changed
}

func newShareWorld(t *testing.T, seed uint64) *shareWorld {
	return &shareWorld{t: t, store: &memShareStore{rnd: rand.New(rand.NewPCG(seed, 1))},
		replicas: make(map[string]*testReplica)}
}

// apply is a replica's Limiter.SetShare: it checks the invariant.
func (w *shareWorld) apply(r *testReplica, share float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r.dead {
		return // a crashed process spends nothing, whatever it was told
	}
	if r.spending != share {
		r.changedAt = time.Now()
	}
	r.spending = share
	sum := 0.0
	for _, o := range w.replicas {
		if !o.dead {
			sum += o.spending
		}
	}
	if sum > w.maxSum {
		w.maxSum = sum
		w.worst = w.describeLocked()
	}
	if sum > 1+1e-9 {
		w.t.Errorf("at %v the replicas may spend %.4f of the budget: %s", time.Now().Format("15:04:05.000"), sum, w.describeLocked())
	}
}

func (w *shareWorld) describeLocked() string {
	var ids []string
	for id := range w.replicas {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	s := ""
	for _, id := range ids {
		r := w.replicas[id]
		state := ""
		switch {
		case r.dead:
			state = " dead"
		case r.cut:
			state = " cut"
		}
		s += fmt.Sprintf("%s=%.3f%s ", id, r.spending, state)
	}
	return s
}

// start runs a new replica (fixed 0: automatic).
func (w *shareWorld) start(fixed float64) *testReplica {
	w.mu.Lock()
	w.next++
	r := &testReplica{id: fmt.Sprintf("r%d", w.next), done: make(chan struct{})}
	w.replicas[r.id] = r
	w.mu.Unlock()
	store := replicaStore{memShareStore: w.store, cut: &r.cut, mu: &w.mu}
	r.share = newShare(store, ShareConfig{ID: r.id, Fixed: fixed}, func(s float64) { w.apply(r, s) })
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { defer close(r.done); r.share.Run(ctx) }()
	return r
}

// stop is a graceful shutdown: Run leaves the plan.
func (w *shareWorld) stop(r *testReplica) {
	r.cancel()
	<-r.done
	w.mu.Lock()
	r.dead = true
	w.mu.Unlock()
}

// crash is SIGKILL: the process spends nothing from now on and never
// writes again.
func (w *shareWorld) crash(r *testReplica) {
	w.mu.Lock()
	r.dead, r.cut = true, true
	w.mu.Unlock()
	r.cancel()
	<-r.done
}

func (w *shareWorld) setCut(r *testReplica, cut bool) {
	w.mu.Lock()
	r.cut = cut
	w.mu.Unlock()
}

func (w *shareWorld) stopAll() {
	for _, r := range w.live() {
		w.stop(r)
	}
}

func (w *shareWorld) live() []*testReplica {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*testReplica
	for _, r := range w.replicas {
		if !r.dead {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// settled waits (fake time) until every replica not cut off spends want,
// and reports how long that took; it fails after within.
func (w *shareWorld) settled(within time.Duration, want float64, rs ...*testReplica) time.Duration {
	w.t.Helper()
	start := time.Now()
	for {
		ok := true
		w.mu.Lock()
		for _, r := range rs {
			if d := r.spending - want; d > 1e-9 || d < -1e-9 {
				ok = false
			}
		}
		state := w.describeLocked()
		w.mu.Unlock()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			w.t.Fatalf("after %v want each of %d replicas at %.4f: %s", within, len(rs), want, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// replanWithin is the bound: a start or a death re-planned within 5s.
const replanWithin = 5 * time.Second

func TestShareJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newShareWorld(t, 1)
		a := w.start(0)
		w.settled(time.Second, 1, a)
		b := w.start(0)
		took := w.settled(replanWithin, 0.5, a, b)
		c := w.start(0)
		took = max(took, w.settled(replanWithin, 1.0/3, a, b, c))
		t.Logf("joins re-planned within %v; peak sum %.4f", took, w.maxSum)
		w.stopAll()
	})
}

// A joiner raises its share as soon as the others have recorded their
// lower ones (it reads the plan every sharePoll while it waits), not at its
// next beat.
func TestShareJoinerRaisesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newShareWorld(t, 7)
		rs := []*testReplica{w.start(0), w.start(0), w.start(0)}
		w.settled(replanWithin, 1.0/3, rs...)
		var lags []time.Duration
		for range 5 {
			time.Sleep(ShareBeat / 3) // another phase against the others' beats
			j := w.start(0)
			all := append(slices.Clone(rs), j)
			w.settled(replanWithin, 0.25, all...)
			w.mu.Lock()
			var lowered time.Time
			for _, r := range rs {
				if r.changedAt.After(lowered) {
					lowered = r.changedAt
				}
			}
			lag := j.changedAt.Sub(lowered)
			w.mu.Unlock()
			lags = append(lags, lag)
			t.Logf("joiner at its share %v after the others lowered theirs", lag)
			w.stop(j)
			w.settled(replanWithin, 1.0/3, rs...)
		}
		// Mostly a poll, and the reads and the write of the step it starts
		// (up to 40 ms each with the store's latencies); a lost
		// compare-and-set costs another read and write now and then. At
		// its next beat it would be up to a beat and that step.
		slices.Sort(lags)
		if med, most := lags[len(lags)/2], sharePoll+3*40*time.Millisecond; med > most || lags[len(lags)-1] > ShareBeat {
			t.Errorf("the joiner raised its share %v after the others lowered theirs, want a median of at most %v and none over %v", lags, most, ShareBeat)
		}
		w.stopAll()
	})
}

// Settled replicas neither read nor write the plan between their beats:
// waking up is what an idle worker spends its CPU on.
func TestShareQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newShareWorld(t, 6)
		rs := []*testReplica{w.start(0), w.start(0), w.start(0)}
		w.settled(replanWithin, 1.0/3, rs...)
		time.Sleep(2 * ShareBeat)
		w.store.mu.Lock()
		gets0, puts0 := w.store.gets, w.store.puts
		w.store.mu.Unlock()
		const quiet = 20 * ShareBeat
		time.Sleep(quiet)
		w.store.mu.Lock()
		gets, puts := w.store.gets-gets0, w.store.puts-puts0
		w.store.mu.Unlock()
		// One beat a second each (a read and a write), a few more for the
		// compare-and-set a beat loses now and then.
		if most := 3 * int(quiet/ShareBeat) * 11 / 10; puts > most || gets > most {
			t.Errorf("%d reads and %d writes of the plan in %v by 3 settled replicas, want at most %d of each", gets, puts, quiet, most)
		}
		t.Logf("%d reads and %d writes in %v", gets, puts, quiet)
		w.settled(0, 1.0/3, rs...)
		w.stopAll()
	})
}

func TestShareLeave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newShareWorld(t, 2)
		a, b, c := w.start(0), w.start(0), w.start(0)
		w.settled(replanWithin, 1.0/3, a, b, c)
		w.stop(c)
		took := w.settled(2*ShareBeat, 0.5, a, b)
		w.stop(b)
		took = max(took, w.settled(2*ShareBeat, 1, a))
		t.Logf("a leave re-planned within %v", took)
		w.stopAll()
		if w.store.doc != nil {
			t.Errorf("plan left behind by the last replica: %s", w.store.doc)
		}
	})
}

func TestShareCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newShareWorld(t, 3)
		a, b, c := w.start(0), w.start(0), w.start(0)
		w.settled(replanWithin, 1.0/3, a, b, c)
		w.crash(c)
		took := w.settled(replanWithin, 0.5, a, b)
		t.Logf("a crash re-planned within %v", took)
		// A replica that starts after every one crashed waits for nobody.
		w.crash(a)
		w.crash(b)
		time.Sleep(replicasTTL) // the bucket's TTL drops the plan
		w.store.mu.Lock()
		w.store.doc, w.store.rev = nil, w.store.rev+1
		w.store.mu.Unlock()
		d := w.start(0)
		if took := w.settled(time.Second, 1, d); took > ShareBeat {
			t.Errorf("a lone replica took %v to spend the budget", took)
		}
		w.stopAll()
	})
}

// A replica cut off from the plan, but alive, stops spending before the
// others may strike it and take its share.
func TestSharePartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newShareWorld(t, 4)
		a, b, c := w.start(0), w.start(0), w.start(0)
		w.settled(replanWithin, 1.0/3, a, b, c)
		w.setCut(c, true)
		w.settled(shareLease+ShareBeat, 0, c)
		w.settled(replanWithin, 0.5, a, b)
		w.setCut(c, false)
		w.settled(replanWithin, 1.0/3, a, b, c)
		w.stopAll()
	})
}

func TestShareFixedOverride(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newShareWorld(t, 5)
		// A fixed share is spent from the start, whatever the plan says: it
		// is the operator's word. Recorded, the automatic ones leave it room.
		f := w.start(0.5)
		time.Sleep(ShareBeat)
		a, b := w.start(0), w.start(0)
		w.settled(replanWithin, 0.25, a, b)
		w.settled(0, 0.5, f)
		w.stop(f)
		w.settled(replanWithin, 0.5, a, b)
		w.stopAll()
	})
}

// Replicas start, stop, crash and get cut off at random for ten (fake)
// minutes; whenever things stay still for replanWithin, every replica
// spends 1/N.
func TestShareFlapping(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newShareWorld(t, seed)
				rnd := rand.New(rand.NewPCG(seed, 99))
				w.start(0)
				for round := range 120 {
					live := w.live()
					switch op := rnd.IntN(10); {
					case op < 3 || len(live) == 0:
						w.start(0)
					case op < 5 && len(live) > 1:
						w.stop(live[rnd.IntN(len(live))])
					case op < 7 && len(live) > 1:
						w.crash(live[rnd.IntN(len(live))])
					case op < 8:
						r := live[rnd.IntN(len(live))]
						w.setCut(r, !r.cut)
					}
					time.Sleep(time.Duration(rnd.IntN(2500)) * time.Millisecond)
					if round%10 == 9 { // hold still: the plan must settle
						for _, r := range w.live() {
							w.setCut(r, false)
						}
						live = w.live()
						w.settled(replanWithin, 1/float64(len(live)), live...)
					}
				}
				w.stopAll()
				t.Logf("peak sum %.6f", w.maxSum)
			})
		})
	}
}

// A replica that missed a pause's broadcast (it was reconnecting, or the
// message was lost: chaos seed 391272) holds its calls all the same once
// it reads the plan, where the paused replica records what is left of its
// pause; and a pause read there is not recorded again, so no two replicas
// lengthen each other's.
func TestSharePauseReachesAReplicaThatMissedItsBroadcast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memShareStore{rnd: rand.New(rand.NewPCG(11, 1))}
		la, lb := NewLimiter(10, 10), NewLimiter(10, 10)
		ctx, cancel := context.WithCancel(context.Background())
		var done sync.WaitGroup
		for _, r := range []struct {
			id  string
			lim *Limiter
		}{{"a", la}, {"b", lb}} {
			sh := newShare(store, ShareConfig{ID: r.id, Limiter: r.lim}, r.lim.SetShare)
			done.Go(func() { sh.Run(ctx) })
		}
		time.Sleep(10 * ShareBeat) // the plan settles
		la.Pause(3 * time.Second)  // no broadcast: neither joined a Fleet
		until := la.PausedUntil()
		for deadline := time.Now().Add(3 * ShareBeat); time.Now().Before(deadline) && !lb.PausedUntil().After(until.Add(-ShareBeat)); {
			time.Sleep(ShareBeat / 10)
		}
		if got := lb.PausedUntil(); got.Before(until) || got.After(until.Add(3*ShareBeat)) {
			t.Errorf("the other replica is paused until %v, want from %v to %v (3 beats later at most)", got, until, until.Add(3*ShareBeat))
		}
		time.Sleep(10 * ShareBeat)
		if got := la.PausedUntil(); !got.Equal(until) {
			t.Errorf("the paused replica's own pause moved from %v to %v: the other recorded it back", until, got)
		}
		cancel()
		done.Wait()
	})
}

// During a rolling upgrade a replica of the previous version beats every
// second and spends its share until its beat is 2 s old: this version,
// which beats every ShareBeat, must not strike it between its beats and
// take its share while it spends it.
func TestShareKeepsAPreviousVersionsReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memShareStore{rnd: rand.New(rand.NewPCG(12, 1))}
		ctx, cancel := context.WithCancel(context.Background())
		var done sync.WaitGroup
		// The previous version's replica, settled at half: its entry
		// without beat_ms, its beat bumped every second.
		done.Go(func() {
			for beat := uint64(1); ctx.Err() == nil; beat++ {
				for ctx.Err() == nil {
					doc, rev, _ := store.get(ctx)
					plan := sharePlan{Members: map[string]shareMember{}}
					if doc != nil {
						_ = json.Unmarshal(doc, &plan)
					}
					plan.Members["old"] = shareMember{Share: 0.5, Beat: beat}
					out, _ := json.Marshal(plan)
					if _, err := store.put(ctx, out, rev); err == nil {
						break
					}
				}
				time.Sleep(time.Second)
			}
		})
		time.Sleep(100 * time.Millisecond) // the old replica's entry is there first
		var mu sync.Mutex
		most := 0.0
		sh := newShare(store, ShareConfig{ID: "new"}, func(f float64) {
			mu.Lock()
			most = max(most, f)
			mu.Unlock()
		})
		done.Go(func() { sh.Run(ctx) })
		time.Sleep(20 * time.Second)
		mu.Lock()
		if most > 0.5+1e-9 {
			t.Errorf("this version's replica spent up to %.3f beside the previous version's 0.5", most)
		}
		mu.Unlock()
		cancel()
		done.Wait()
	})
}
