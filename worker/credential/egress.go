package credential

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/revoker/revoker/kalshi"
)

// egress notices that this replica cannot reach Kalshi while others may:
// after Unanswered attempts in a row got no answer at all, the replica
// releases what it holds (each request goes back to the stream for another
// replica) and the gate takes no new work until a check of the credential
// is answered again. An answer of any kind, a 5xx included, proves the
// link.
type egress struct {
	unanswered atomic.Int32
	down       atomic.Bool
}

// Unanswered is how many attempts in a row without an answer cut a replica
// off.
const Unanswered = 5

// egressRecheck is how often a replica cut off from Kalshi checks again.
const egressRecheck = time.Second

// CutOff reports whether this replica has given up reaching Kalshi: its
// calls are to release their requests to the others.
func (g *Gate) CutOff() bool { return g.egress.down.Load() }

// Heard hears the answer (or none) to one Kalshi call.
func (g *Gate) Heard(err error) {
	if err != nil && !answered(err) && kalshi.IsTransient(err) && !errors.Is(err, context.Canceled) {
		if g.egress.unanswered.Add(1) >= Unanswered && g.egress.down.CompareAndSwap(false, true) {
			g.cfg.Logger.Warn("kalshi does not answer this replica: releasing its requests to the others until it does",
				"unanswered", Unanswered, "err", err)
			g.set(errors.New("kalshi does not answer this replica; requests are left to the others until it does"))
			g.cfg.Changed()
			g.Refused()
		}
		return
	}
	g.egress.unanswered.Store(0)
}

// egressRestored is called when a credential check was answered.
func (g *Gate) egressRestored() {
	g.egress.unanswered.Store(0)
	if g.egress.down.CompareAndSwap(true, false) {
		g.cfg.Logger.Info("kalshi answers this replica again")
	}
}
