package emulator

import (
	"math/rand/v2"
	"time"
)

// Faults are failures the emulator injects into its answers. Which request
// gets which fault is drawn from a generator seeded with Seed, so a
// sequence of requests meets the same faults on every run. Fractions are
// between 0 (never) and 1 (always).
type Faults struct {
	Seed int64
	// ServerError is the fraction of requests answered 500, 502, 503 or
	// 504 (with a nested JSON, HTML, bare {"msg"} and empty body
	// respectively) without being processed.
	ServerError float64
	// TooMany is the fraction of requests answered 429 without being
	// processed, with Retry-After from RetryAfter or Options.RetryAfter.
	TooMany    float64
	RetryAfter time.Duration
	// Latency is added before every answer.
	Latency time.Duration
	// Hang is the fraction of requests that stall for HangFor before being
	// processed normally, or, when HangFor is 0, until the client gives up.
	Hang    float64
	HangFor time.Duration
	// LostResponse is the fraction of DELETE requests that are processed
	// (the key deleted) and then get no answer: the connection is closed
	// (or, where it cannot be taken over, answered 502).
	LostResponse float64
}

func (f Faults) active() bool {
	return f.ServerError > 0 || f.TooMany > 0 || f.Latency > 0 || f.Hang > 0 || f.LostResponse > 0
}

// SetFaults replaces the injected faults and reseeds their generator. The
// zero Faults turns injection off.
func (e *Emulator) SetFaults(f Faults) {
	e.faultMu.Lock()
	e.faults = f
	e.rng = newRand(f.Seed)
	e.faultMu.Unlock()
	e.faultsOn.Store(f.active())
}

func newRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
}

// fault is what one request gets.
type fault struct {
	delay      time.Duration // <0: until the client gives up
	status     int           // injected 5xx, or 0
	tooMany    bool
	retryAfter time.Duration
	lost       bool
}

var faultStatuses = [...]int{500, 502, 503, 504}

// drawFault draws the faults of one request: always the same number of
// draws, so the sequence depends on the seed and the request order only.
func (e *Emulator) drawFault() fault {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	f := e.faults
	hang, srv, which, many, lost := e.rng.Float64(), e.rng.Float64(), e.rng.IntN(len(faultStatuses)), e.rng.Float64(), e.rng.Float64()
	d := fault{delay: f.Latency, lost: lost < f.LostResponse}
	if hang < f.Hang {
		if f.HangFor > 0 {
			d.delay += f.HangFor
		} else {
			d.delay = -1
		}
	}
	if srv < f.ServerError {
		d.status = faultStatuses[which]
	} else if many < f.TooMany {
		d.tooMany = true
		d.retryAfter = f.RetryAfter
	}
	return d
}
