package worker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/revoker/revoker/kalshi"
)

// egress notices that this replica cannot reach Kalshi while others may:
// after egressUnanswered attempts in a row got no answer at all, the replica
// releases what it holds (each request goes back to the stream for another
// replica) and the credential gate takes no new work until a check of the
// credential is answered again. An answer of any kind, a 5xx included,
// proves the link.
type egress struct {
	unanswered atomic.Int32
	down       atomic.Bool
}

const egressUnanswered = 5

// errReleased is call's answer once the replica has given up reaching
// Kalshi: the request goes back undecided, like on shutdown.
var errReleased = fmt.Errorf("%w: Kalshi has not answered this replica %d times in a row; released to the others", errStopped, egressUnanswered)

// observeEgress hears the answer (or none) to one Kalshi call.
func (w *Worker) observeEgress(err error) {
	if err != nil && httpStatus(err) == 0 && kalshi.IsTransient(err) && !errors.Is(err, context.Canceled) {
		if w.egress.unanswered.Add(1) >= egressUnanswered && w.egress.down.CompareAndSwap(false, true) {
			w.cfg.Logger.Warn("kalshi does not answer this replica: releasing its requests to the others until it does",
				"unanswered", egressUnanswered, "err", err)
			w.cred.set(errors.New("kalshi does not answer this replica; requests are left to the others until it does"))
			w.setBound(w.bound.Load())
			select {
			case w.cred.recheck <- struct{}{}:
			default:
			}
		}
		return
	}
	w.egress.unanswered.Store(0)
}

// egressRestored is called when a credential check was answered.
func (w *Worker) egressRestored() {
	w.egress.unanswered.Store(0)
	if w.egress.down.CompareAndSwap(true, false) {
		w.cfg.Logger.Info("kalshi answers this replica again")
	}
}

// egressRecheck is how often a replica cut off from Kalshi checks again.
const egressRecheck = time.Second
