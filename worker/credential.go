package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/budget"
)

// credentialGate holds whether Kalshi accepts the worker's credential at
// the base URL it was given. Requests are taken only while it does: with a
// wrong base URL every DELETE would answer 404 (already_revoked, the key
// left live), with a refused key every request would fail. Proof is a signed
// GET /api_keys answered with a key list.
type credentialGate struct {
	mu      sync.Mutex
	err     error         // why requests are not taken; nil once accepted
	changed chan struct{} // closed, and replaced, when err changes
	recheck chan struct{} // a DELETE was refused: check again now
}

func newCredentialGate() *credentialGate {
	return &credentialGate{
		err:     errors.New("kalshi has not yet accepted the credential"),
		changed: make(chan struct{}),
		recheck: make(chan struct{}, 1),
	}
}

// state returns why requests are not taken (nil: they are) and a channel
// closed when that changes.
func (g *credentialGate) state() (<-chan struct{}, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed, g.err
}

func (g *credentialGate) set(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if errorText(err) == errorText(g.err) {
		return
	}
	g.err = err
	close(g.changed)
	g.changed = make(chan struct{})
}

// watchCredential checks the credential at start, every
// Config.CredentialRecheck, soon after a failed check and at once after a
// DELETE was refused with 401 or 403, until ctx ends.
func (w *Worker) watchCredential(ctx context.Context) {
	g := w.cred
	for {
		next := w.cfg.CredentialRecheck
		if w.cfg.Limiter.AfterPause(ctx) != nil { // a 429's pause holds the check too
			return
		}
		// Cut off from Kalshi, each check counts against the burst until it
		// is answered, like any attempt: the link may deliver them all at
		// once when it heals.
		end := func(bool) {}
		if w.egress.down.Load() {
			var err error
			if end, err = w.cfg.Limiter.Begin(ctx); err != nil {
				return
			}
		}
		cctx, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
		keys, err := w.del.ListAPIKeys(cctx)
		cancel()
		end(httpStatus(err) != 0)
		if budget.HeedAnswer(w.cfg.Limiter, err) {
			w.reportRate()
		}
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			w.egressRestored()
			_, was := g.state()
			g.set(nil)
			if was != nil {
				w.cfg.Logger.Info("kalshi accepted the credential; taking requests", "keys", len(keys))
			}
		case kalshi.IsTransient(err):
			// A blip keeps what was known; an unknown state stays closed.
			// A replica cut off from Kalshi looks again soon.
			next = w.cfg.CredentialRetry
			if w.egress.down.Load() {
				next = min(next, egressRecheck)
			}
			w.cfg.Logger.Warn("cannot check the Kalshi credential; retrying", "err", err, "in", next)
		default:
			next = w.cfg.CredentialRetry
			refused := fmt.Errorf("kalshi did not answer GET /api_keys with a key list (check KALSHI_BASE_URL and the key): %w", err)
			if _, was := g.state(); errorText(was) != refused.Error() {
				w.cfg.Logger.Error("not taking requests", "err", refused, "retry_in", next)
			}
			g.set(refused)
		}
		w.setBound(w.bound.Load())
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-g.recheck:
			t.Stop()
		case <-t.C:
		}
	}
}

// credentialRefused asks for a check now: Kalshi refused a DELETE's
// signature, and the credential may have been revoked or rotated.
func (w *Worker) credentialRefused(err error) {
	w.cfg.Logger.Warn("kalshi refused a delete's credential; checking it again", "err", err)
	select {
	case w.cred.recheck <- struct{}{}:
	default:
	}
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// CredentialState is what the operator console (package worker/console)
// reads of it: nil while Kalshi accepts the worker's credential, otherwise
// why requests are not taken.
func (w *Worker) CredentialState() error {
	_, err := w.cred.state()
	return err
}
