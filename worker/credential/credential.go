// Package credential holds whether Kalshi accepts the worker's credential
// at the base URL it was given, and whether this replica reaches Kalshi at
// all. The worker takes requests only while the [Gate] is open: with a
// wrong base URL every DELETE would answer 404 (already_revoked, the key
// left live), with a refused key every request would fail, and a replica
// cut off from Kalshi leaves its requests to the others (egress.go). Proof
// is a signed GET /api_keys answered with a key list.
//
// It knows the worker only through its [Config]: the listing call, the
// delete budget, and hooks. Package worker imports this package, never the
// reverse.
package credential

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/budget"
)

// Config is what the gate needs of the worker.
type Config struct {
	Recheck        time.Duration // how often the credential is checked again
	Retry          time.Duration // how soon after a failed check
	AttemptTimeout time.Duration // one check's

	// List is the check: GET /api_keys signed with the worker's credential.
	List func(ctx context.Context) ([]kalshi.APIKey, error)
	// Limiter is the delete budget: a 429's pause holds the checks, and a
	// replica cut off counts each against the burst. RateChanged is called
	// when an answer changed it.
	Limiter     *budget.Limiter
	RateChanged func()
	// Changed is called when the gate may have opened or closed (the
	// worker's readiness follows it).
	Changed func()
	Logger  *slog.Logger
}

// Gate holds why requests are not taken, if anything. Its methods are safe
// for concurrent use.
type Gate struct {
	cfg Config

	mu      sync.Mutex
	err     error         // why requests are not taken; nil once accepted
	changed chan struct{} // closed, and replaced, when err changes
	recheck chan struct{} // a call was refused: check again now

	egress egress
}

// New returns a gate closed until Watch's first check is answered.
func New(cfg Config) *Gate {
	return &Gate{
		cfg:     cfg,
		err:     errors.New("kalshi has not yet accepted the credential"),
		changed: make(chan struct{}),
		recheck: make(chan struct{}, 1),
	}
}

// State returns why requests are not taken (nil: they are) and a channel
// closed when that changes.
func (g *Gate) State() (<-chan struct{}, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed, g.err
}

func (g *Gate) set(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if errorText(err) == errorText(g.err) {
		return
	}
	g.err = err
	close(g.changed)
	g.changed = make(chan struct{})
}

// Watch checks the credential at start, every Config.Recheck, soon after
// a failed check and at once after Refused, until ctx ends.
func (g *Gate) Watch(ctx context.Context) {
	for {
		next := g.cfg.Recheck
		if g.cfg.Limiter.AfterPause(ctx) != nil { // a 429's pause holds the check too
			return
		}
		// Cut off from Kalshi, each check counts against the burst until it
		// is answered, like any attempt: the link may deliver them all at
		// once when it heals.
		end := func(bool) {}
		if g.CutOff() {
			var err error
			if end, err = g.cfg.Limiter.Begin(ctx); err != nil {
				return
			}
		}
		cctx, cancel := context.WithTimeout(ctx, g.cfg.AttemptTimeout)
		keys, err := g.cfg.List(cctx)
		cancel()
		end(answered(err))
		if budget.HeedAnswer(g.cfg.Limiter, err) {
			g.cfg.RateChanged()
		}
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			g.egressRestored()
			_, was := g.State()
			g.set(nil)
			if was != nil {
				g.cfg.Logger.Info("kalshi accepted the credential; taking requests", "keys", len(keys))
			}
		case kalshi.IsTransient(err):
			// A blip keeps what was known; an unknown state stays closed.
			// A replica cut off from Kalshi looks again soon.
			next = g.cfg.Retry
			if g.CutOff() {
				next = min(next, egressRecheck)
			}
			g.cfg.Logger.Warn("cannot check the Kalshi credential; retrying", "err", err, "in", next)
		default:
			next = g.cfg.Retry
			refused := fmt.Errorf("kalshi did not answer GET /api_keys with a key list (check KALSHI_BASE_URL and the key): %w", err)
			if _, was := g.State(); errorText(was) != refused.Error() {
				g.cfg.Logger.Error("not taking requests", "err", refused, "retry_in", next)
			}
			g.set(refused)
		}
		g.cfg.Changed()
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

// Refused asks for a check now: Kalshi refused a call's signature, and the
// credential may have been revoked or rotated.
func (g *Gate) Refused() {
	select {
	case g.recheck <- struct{}{}:
	default:
	}
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// answered reports whether a call got an HTTP answer of any kind.
func answered(err error) bool {
	var apiErr *kalshi.APIError
	return err == nil || errors.As(err, &apiErr)
}
