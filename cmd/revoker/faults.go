package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/revoker/revoker/kalshi/emulator"
)

// sandboxFaults is "revoker sandbox --faults": the failures the Kalshi
// emulator injects, to rehearse an incident against a Kalshi that misbehaves.
// The zero value injects nothing.
type sandboxFaults struct {
	spec       string  // as given, for the banner
	serverErr  float64 // 5xx=FRACTION: answered 500, 502, 503 or 504
	tooMany    float64 // 429=FRACTION: answered 429
	lost       float64 // lost=FRACTION: deletes carried out whose answer is lost
	hang       float64 // hang=FRACTION: requests that stall until the client gives up
	latencyMin time.Duration
	latencyMax time.Duration // latency=D or latency=MIN-MAX: added before every answer
	seed       int64         // seed=N: the same faults in the same order on every run
}

// parseFaults reads a comma-separated list of NAME=VALUE, such as
// "5xx=0.2,429=0.1,latency=50ms-300ms,lost=0.05", and says what is wrong
// with it, every problem at once.
func parseFaults(spec string) (sandboxFaults, []string) {
	f := sandboxFaults{spec: spec}
	var problems []string
	fraction := func(name, v string) float64 {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || !(x >= 0 && x <= 1) {
			problems = append(problems, fmt.Sprintf("%s=%s: want a fraction from 0 to 1", name, v))
			return 0
		}
		return x
	}
	seen := map[string]bool{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, v, ok := strings.Cut(item, "=")
		name, v = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(v)
		if !ok || v == "" {
			problems = append(problems, fmt.Sprintf("%q: want NAME=VALUE", item))
			continue
		}
		if seen[name] {
			problems = append(problems, fmt.Sprintf("%s is given twice", name))
		}
		seen[name] = true
		switch name {
		case "5xx":
			f.serverErr = fraction(name, v)
		case "429":
			f.tooMany = fraction(name, v)
		case "lost":
			f.lost = fraction(name, v)
		case "hang":
			f.hang = fraction(name, v)
		case "latency":
			lo, hi, ranged := strings.Cut(v, "-")
			if !ranged {
				hi = lo
			}
			a, errA := time.ParseDuration(lo)
			b, errB := time.ParseDuration(hi)
			switch {
			case errA != nil || errB != nil:
				problems = append(problems, fmt.Sprintf("latency=%s: want a duration (50ms) or a range (50ms-300ms)", v))
			case a < 0 || b < a || b > time.Minute:
				problems = append(problems, fmt.Sprintf("latency=%s: want 0 <= MIN <= MAX <= 1m", v))
			default:
				f.latencyMin, f.latencyMax = a, b
			}
		case "seed":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				problems = append(problems, fmt.Sprintf("seed=%s: want a whole number", v))
			}
			f.seed = n
		default:
			problems = append(problems, fmt.Sprintf("%q is not a fault: 5xx, 429, lost, hang, latency or seed", name))
		}
	}
	return f, problems
}

// active reports whether any fault is injected.
func (f sandboxFaults) active() bool {
	return f.serverErr > 0 || f.tooMany > 0 || f.lost > 0 || f.hang > 0 || f.latencyMax > 0
}

// emulatorFaults are the faults the emulator draws itself; the random part
// of a latency range is added by withLatency.
func (f sandboxFaults) emulatorFaults() emulator.Faults {
	return emulator.Faults{
		Seed:         f.seed,
		ServerError:  f.serverErr,
		TooMany:      f.tooMany,
		LostResponse: f.lost,
		Hang:         f.hang,
		Latency:      f.latencyMin,
	}
}

// withLatency delays each request to h by a duration drawn evenly from
// [0, f.latencyMax-f.latencyMin], on top of the emulator's fixed latency.
// The emulator's own handler answers, so a lost response can still take
// over the connection.
func (f sandboxFaults) withLatency(h http.Handler) http.Handler {
	spread := f.latencyMax - f.latencyMin
	if spread <= 0 {
		return h
	}
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(uint64(f.seed), 0x5eed))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		d := time.Duration(rng.Int64N(int64(spread) + 1))
		mu.Unlock()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		h.ServeHTTP(w, r)
	})
}

// String describes the faults for the banner.
func (f sandboxFaults) String() string {
	if !f.active() {
		return "none"
	}
	var parts []string
	pct := func(name string, x float64) {
		if x > 0 {
			parts = append(parts, fmt.Sprintf("%s %g%%", name, x*100))
		}
	}
	pct("5xx", f.serverErr)
	pct("429", f.tooMany)
	pct("lost responses", f.lost)
	pct("hangs", f.hang)
	switch {
	case f.latencyMax == 0:
	case f.latencyMin == f.latencyMax:
		parts = append(parts, "latency "+f.latencyMin.String())
	default:
		parts = append(parts, "latency "+f.latencyMin.String()+"-"+f.latencyMax.String())
	}
	return strings.Join(parts, ", ")
}
