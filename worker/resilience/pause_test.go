package resilience_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/worker/natstest"
)

// TestFleetPauseProcesses runs two "revoker run" binaries on one embedded
// nats-server and one emulator; each reaches the emulator through a front
// of its own, so the log says which replica sent each DELETE. The front
// answers one DELETE 429 with Retry-After: 2. No DELETE from either replica
// may arrive inside that window once 250 ms have passed since the replica
// heard of it (its log says when), and every request
// still ends with one result. Before the fleet's pauses, the other replica
// kept deleting through the whole window.
func TestFleetPauseProcesses(t *testing.T) {
	skipShort(t)
	srv := natstest.Start(t)
	r := newRig(t, srv.URL(), rigOptions{})
	r.emu.SetFaults(emulator.Faults{Latency: 20 * time.Millisecond})
	p := r.plan("fleetpause", 150)
	log := &deleteLog{tooManyAt: 40}
	env := map[string]string{"REVOKER_CONCURRENCY": "2"}
	var procs []*proc
	for _, name := range []string{"replica-a", "replica-b"} {
		env["KALSHI_BASE_URL"] = serveHTTP(t, log.front(name, r.emu)) + emulator.BasePath
		procs = append(procs, r.startProc(name, env))
	}
	r.publish(p.reqs)
	r.waitResults(len(p.want), 90*time.Second)
	r.waitDrained(time.Minute)
	for _, pr := range procs {
		pr.terminate()
	}
	r.checkInvariants(p, "two processes; one DELETE answered 429 Retry-After 2s")

	dels := log.all()
	var hit *deleteEntry
	for i := range dels {
		if dels[i].status == http.StatusTooManyRequests {
			hit = &dels[i]
		}
	}
	if hit == nil {
		t.Fatalf("no DELETE was answered 429 (%d DELETEs)", len(dels))
	}
	// When the other replica heard of it: its log's time, the same clock.
	// How soon is the figure; a loaded machine may make it late, so the
	// window a replica must keep quiet starts 250ms after it heard (after
	// the 429 for the replica that got it), when a DELETE already past its
	// limiter has surely arrived.
	from := map[string]time.Time{hit.replica: hit.answered.Add(250 * time.Millisecond)}
	for _, pr := range procs {
		if pr.name == hit.replica {
			continue
		}
		heard, ok := firstLogTime(pr, "paused by another replica's Retry-After")
		if !ok {
			t.Errorf("%s never logged the other's pause", pr.name)
			continue
		}
		d := heard.Sub(hit.answered)
		r.logf("FIGURE pause propagation between processes: %s paused %v after the 429 was answered to %s", pr.name, d.Round(time.Microsecond), hit.replica)
		from[pr.name] = later(heard, hit.answered).Add(250 * time.Millisecond)
	}
	to := hit.answered.Add(2*time.Second - 20*time.Millisecond)
	var inside []string
	lastOther, firstAfter := time.Duration(-1), time.Duration(-1)
	before, after := map[string]int{}, map[string]int{}
	for _, d := range dels {
		rel := d.arrived.Sub(hit.answered)
		if f, ok := from[d.replica]; ok && d.arrived.After(f) && d.arrived.Before(to) {
			inside = append(inside, fmt.Sprintf("%s at +%v", d.replica, rel.Round(time.Millisecond)))
		}
		switch {
		case d.arrived.Before(hit.arrived):
			before[d.replica]++
		case d.arrived.After(to):
			after[d.replica]++
			if firstAfter < 0 {
				firstAfter = rel
			}
		case d.replica != hit.replica && rel > lastOther:
			lastOther = rel
		}
	}
	last := "none"
	if lastOther >= 0 {
		last = "+" + lastOther.Round(time.Microsecond).String()
	}
	r.logf("429 Retry-After 2s to %s; DELETEs before it %v, after the pause %v; the other replica's last DELETE after the 429 arrived: %s; the first after the pause at +%v",
		hit.replica, before, after, last, firstAfter.Round(time.Millisecond))
	if len(inside) > 0 {
		t.Errorf("%d DELETEs arrived inside another replica's Retry-After (from 250ms after the replica heard of it to 2s after the 429): %s", len(inside), head(inside, 10))
	}
	for _, name := range []string{"replica-a", "replica-b"} {
		if before[name] == 0 || after[name] == 0 {
			t.Errorf("%s sent %d DELETEs before the 429 and %d after the pause: both must work on both sides for the test to mean anything", name, before[name], after[name])
		}
	}
}

// TestHealNoBurst cuts a replica's link to Kalshi (a TCP proxy that holds
// every byte while cut and delivers it on heal, also the bytes of attempts
// the replica gave up on) while it deletes at 9/s with a burst of 9 against
// a Kalshi of 10/s and 12 at once. What the cut held arrives together on
// heal; Kalshi must answer none of the run's requests 429. Before, the
// bucket refilled during the cut and added a full burst to what the link
// delivered, and retries of timed-out attempts added theirs.
func TestHealNoBurst(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name           string
		cut, attemptTO time.Duration
	}{
		{"attempts held", 3 * time.Second, 10 * time.Second},
		{"attempts timed out and retried", 6 * time.Second, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // with each other only: the test itself is not parallel
			srv := natstest.Start(t)
			r := newRig(t, srv.URL(), rigOptions{emu: emulator.Options{Refill: 100, Capacity: 120}}) // 10 deletes/s, 12 at once
			px := startHoldingProxy(t, strings.TrimSuffix(strings.TrimPrefix(r.kalshi, "http://"), emulator.BasePath))
			p := r.plan("heal", 100)
			pr := r.startProc("replica", map[string]string{
				"KALSHI_BASE_URL":         "http://" + px.addr + emulator.BasePath,
				"REVOKER_RATE":            "9", // burst 9
				"REVOKER_ATTEMPT_TIMEOUT": tc.attemptTO.String(),
			})
			r.publish(p.reqs)
			natstest.WaitFor(t, 30*time.Second, "20 results", func() bool { return r.resultCount() >= 20 })
			px.cut()
			r.logf("link cut after %d results", r.resultCount())
			time.Sleep(tc.cut) // the cut itself: the scenario's duration, not a wait for a condition
			held := px.heal()
			r.logf("link healed after %v: %d requests held by the cut delivered at once", tc.cut, held)
			if held < 4 {
				t.Errorf("only %d requests were held by the cut: the scenario did not load the link", held)
			}
			r.waitResults(len(p.want), 90*time.Second)
			r.waitDrained(time.Minute)
			pr.terminate()
			r.checkInvariants(p, fmt.Sprintf("Kalshi link cut for %v, attempt timeout %v, budget 9/s burst 9, Kalshi 10/s burst 12", tc.cut, tc.attemptTO))
			if n := r.emu.Stats().TooMany; n != 0 {
				t.Errorf("Kalshi answered %d requests 429: the heal burst over its bucket", n)
			}
		})
	}
}

// firstLogTime is the time of the first line of p's JSON log that holds msg.
func firstLogTime(p *proc, msg string) (time.Time, bool) {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		var l struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == msg {
			return l.Time, true
		}
	}
	return time.Time{}, false
}

// deleteLog fronts the emulator for named replicas and records every
// DELETE: who sent it, when it arrived and was answered, and the status.
// The tooManyAt-th DELETE is answered 429 with Retry-After: 2 without
// reaching the emulator.
type deleteLog struct {
	tooManyAt int
	mu        sync.Mutex
	n         int
	entries   []deleteEntry
}

type deleteEntry struct {
	replica           string
	arrived, answered time.Time
	status            int
}

func (l *deleteLog) front(replica string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodDelete {
			next.ServeHTTP(w, r)
			return
		}
		e := deleteEntry{replica: replica, arrived: time.Now()}
		l.mu.Lock()
		l.n++
		tooMany := l.n == l.tooManyAt
		l.mu.Unlock()
		if tooMany {
			w.Header().Set("Retry-After", "2")
			w.Header().Set("Content-Type", "application/json")
			e.answered = time.Now()
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":"too many requests"}`)
			e.status = http.StatusTooManyRequests
		} else {
			rw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(rw, r)
			e.status, e.answered = rw.status, time.Now()
		}
		l.mu.Lock()
		l.entries = append(l.entries, e)
		l.mu.Unlock()
	})
}

func (l *deleteLog) all() []deleteEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]deleteEntry(nil), l.entries...)
	sort.Slice(out, func(i, j int) bool { return out[i].arrived.Before(out[j].arrived) })
	return out
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// holdingProxy forwards TCP to an upstream. Cut, it reads on but holds
// every chunk, both ways, until heal: what a partition does to the bytes
// a TCP stack retransmits once the link is back.
type holdingProxy struct {
	addr string
	mu   sync.Mutex
	open chan struct{} // closed while the link is up
	held atomic.Int64  // upstream-bound chunks held by the current cut
}

func startHoldingProxy(t *testing.T, upstream string) *holdingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &holdingProxy{addr: ln.Addr().String(), open: make(chan struct{})}
	close(px.open)
	var conns sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		px.heal()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			conns.Add(2)
			go func() { defer conns.Done(); px.pump(up, c, true) }()
			go func() { defer conns.Done(); px.pump(c, up, false) }()
		}
	}()
	return px
}

// pump copies src to dst, holding each chunk while the link is cut.
func (px *holdingProxy) pump(dst, src net.Conn, toUpstream bool) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			px.mu.Lock()
			open := px.open
			px.mu.Unlock()
			select {
			case <-open:
			default:
				if toUpstream {
					px.held.Add(1)
				}
				<-open
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (px *holdingProxy) cut() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.held.Store(0)
	px.open = make(chan struct{})
}

// heal delivers what the cut held and reports how many upstream-bound
// chunks (requests) that was.
func (px *holdingProxy) heal() int {
	px.mu.Lock()
	defer px.mu.Unlock()
	select {
	case <-px.open:
	default:
		close(px.open)
	}
	return int(px.held.Load())
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
