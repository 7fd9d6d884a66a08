// Package confirm checks that the keys the worker revoked are dead, and
// records in the ledger (package worker/ledger) that they are, or, after
// Config.GiveUp, that they could not be shown to be.
//
// Keys wait in [Revocations] and are checked in rounds: one GET /api_keys
// (the fleet's listing when one recent enough is at hand, package
// worker/fleet) serves every key due, so confirming costs one call per round
// however many keys wait, and the delete budget is barely touched. A key the
// account no longer lists is dead; a leaked key's API key must also refuse
// a call signed with the leaked key, as signed by a key Kalshi does not know.
//
// It knows the worker only through its [Config]: the listings, the ledger,
// the Kalshi client's As, the limiter and a few hooks. Package worker
// imports this package, never the reverse.
package confirm

import (
	"context"
	"crypto"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/ledger"
)

// Config is what confirmations need of the worker.
type Config struct {
	SelfKeyID      string        // the worker's own key: revoked, its listing's refusal proves it dead
	Delay          time.Duration // from a revocation to its first check
	Interval       time.Duration // at least this long between two rounds
	GiveUp         time.Duration // after this long from a revocation, a key is recorded unconfirmed and forgotten
	AttemptTimeout time.Duration // one call's

	// SharedKeys is the fleet's listing asked for at notBefore or later,
	// without a call of this replica's (fleet.Replica.SharedKeys); Keys
	// lists the account, sharing the call with the requests in flight
	// (fleet.Replica.Keys), within about one attempt's time: a round is
	// no request, and the next one tries again.
	SharedKeys func(ctx context.Context, storedAt, notBefore time.Time, keys []string) (map[string]kalshi.APIKey, time.Time, bool)
	Keys       func(ctx context.Context, notBefore time.Time) (map[string]kalshi.APIKey, time.Time, error)
	// ListFailed hears why Keys failed (the worker checks its credential
	// again when Kalshi refused it).
	ListFailed func(error)

	// Ledger is the worker's ledger, opened before any key is added.
	Ledger func() *ledger.Ledger
	// As is the Kalshi API signed with another key (kalshi.Client.As): the
	// leaked key's own call.
	As func(keyID string, key crypto.Signer) (*kalshi.Client, error)
	// Limiter is the delete budget the leaked key's call waits for;
	// RateChanged is called when an answer changed it.
	Limiter     *budget.Limiter
	RateChanged func()

	Unconfirmed prometheus.Gauge // keys a check found alive
	Logger      *slog.Logger
}

// maxUnconfirmed bounds the keys waiting for confirmation in one process.
const maxUnconfirmed = 100_000

// maxRecheck is the longest wait before a key found alive is checked again.
const maxRecheck = 30 * time.Second

// Revocations holds the keys this process revoked and has not yet seen
// dead; Run checks them. A key not confirmed within Config.GiveUp of its
// revocation is recorded as unconfirmed, with why, and forgotten: checks do
// not spend the budget, nor hold a leaked key in memory, forever.
type Revocations struct {
	cfg Config

	mu      sync.Mutex
	pending map[string]*unconfirmed
	wake    chan struct{} // a key due before planned was added
	planned time.Time     // the earliest due the loop waits for; zero: it waits for a key
}

// Revoked is a key revoked, to be confirmed dead.
type Revoked struct {
	ID     string           // canonical key ID
	Record ledger.KeyRecord // the ledger's record, in case the revocation's own write was lost
	Rev    uint64           // the record's revision as written, 0 when unknown
	Leaked crypto.Signer    // the request's leaked key, if any: its own call must be refused too; never printed
	// Foreign: another account's key, which only its own call can show dead.
	Foreign bool
}

// unconfirmed is one key waiting to be seen dead.
type unconfirmed struct {
	Revoked
	alive int // checks that found it alive
	due   time.Time
	since time.Time // when it was revoked, in this process's clock
}

// New returns an empty set of revocations to confirm.
func New(cfg Config) *Revocations {
	return &Revocations{cfg: cfg, pending: make(map[string]*unconfirmed), wake: make(chan struct{}, 1)}
}

// Add queues the key k. It reports false when too many wait.
func (c *Revocations) Add(k Revoked) bool {
	now := time.Now()
	u := &unconfirmed{Revoked: k, due: now.Add(c.cfg.Delay), since: now}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pending[k.ID]; !ok && len(c.pending) >= maxUnconfirmed {
		return false
	}
	c.pending[k.ID] = u
	if c.planned.IsZero() || u.due.Before(c.planned) { // else the loop wakes first anyway
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// next returns when the earliest key is due, which the loop then waits
// for; ok is false when none waits.
func (c *Revocations) next() (at time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.pending {
		if !ok || u.due.Before(at) {
			at, ok = u.due, true
		}
	}
	c.planned = at
	return at, ok
}

// dueAt returns copies of the keys due at now.
func (c *Revocations) dueAt(now time.Time) map[string]unconfirmed {
	c.mu.Lock()
	defer c.mu.Unlock()
	due := make(map[string]unconfirmed)
	for id, u := range c.pending {
		if !u.due.After(now) {
			due[id] = *u
		}
	}
	return due
}

// settle records what a check found of one key: dead or given up
// (removed, its leaked key with it), alive (checked again later, less often
// each time), or unknown (checked again after retry).
func (c *Revocations) settle(id string, dead, alive bool, retry time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.pending[id]
	switch {
	case u == nil:
	case dead:
		delete(c.pending, id)
	case alive:
		u.alive++
		u.due = time.Now().Add(min(retry<<min(u.alive-1, 10), maxRecheck))
	default:
		u.due = time.Now().Add(retry)
	}
}

// stillAlive counts the keys a check after their delete found alive.
func (c *Revocations) stillAlive() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, u := range c.pending {
		if u.alive > 0 {
			n++
		}
	}
	return n
}
