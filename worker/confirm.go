package worker

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/ledger"
)

// maxUnconfirmed bounds the keys waiting for confirmation in one process.
const maxUnconfirmed = 100_000

// maxRecheck is the longest wait before a key found alive is checked again.
const maxRecheck = 30 * time.Second

// confirmations holds the keys this process revoked and has not yet seen
// dead. The loop in confirmLoop checks them in rounds: one GET /api_keys
// serves every key due, so confirming costs one call per round however many
// keys wait, and the delete budget is barely touched. A key not confirmed
// within Config.ConfirmGiveUp of its revocation is recorded as unconfirmed,
// with why, and forgotten: checks do not spend the budget, nor hold a leaked
// key in memory, forever.
type confirmations struct {
	mu      sync.Mutex
	pending map[string]*unconfirmed
	wake    chan struct{} // a key due before planned was added
	planned time.Time     // the earliest due the loop waits for; zero: it waits for a key
	delay   time.Duration // from a revocation to its first check
}

// unconfirmed is one key waiting to be seen dead.
type unconfirmed struct {
	record  ledger.KeyRecord // the ledger's record, in case the revocation's own write was lost
	rev     uint64           // the record's revision as written, 0 when unknown
	leaked  crypto.Signer    // the request's leaked key: its own call must be refused too
	foreign bool             // another account's key: only its own call can tell
	alive   int              // checks that found it alive
	due     time.Time
	since   time.Time // when it was revoked, in this process's clock
	why     string    // what the last check found, for the record if it gives up
}

func newConfirmations(delay time.Duration) *confirmations {
	return &confirmations{pending: make(map[string]*unconfirmed), wake: make(chan struct{}, 1), delay: delay}
}

// add queues the key res revoked, whose ledger record was written at
// revision rev (0: unknown). It reports false when too many wait.
func (c *confirmations) add(res *events.Result, leaked *leakedKey, foreign bool, rev uint64) bool {
	now := time.Now()
	u := &unconfirmed{record: keyRecordOf(res), rev: rev, foreign: foreign, due: now.Add(c.delay), since: now}
	if leaked != nil {
		u.leaked = leaked.signer
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pending[res.APIKeyID]; !ok && len(c.pending) >= maxUnconfirmed {
		return false
	}
	c.pending[res.APIKeyID] = u
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
func (c *confirmations) next() (at time.Time, ok bool) {
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
func (c *confirmations) dueAt(now time.Time) map[string]unconfirmed {
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
// each time), or unknown (checked again after retry). why is what the check
// found when not dead.
func (c *confirmations) settle(id string, dead, alive bool, retry time.Duration, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.pending[id]
	if u != nil {
		u.why = why
	}
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
func (c *confirmations) stillAlive() int {
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

// confirmLoop checks waiting keys until ctx ends: a round when a key is
// due, at most one per Config.ConfirmInterval.
func (w *Worker) confirmLoop(ctx context.Context) {
	c := w.confirms
	var lastRound time.Time
	for {
		var t *time.Timer
		var wait <-chan time.Time
		if at, ok := c.next(); ok {
			t = time.NewTimer(time.Until(later(at, lastRound.Add(w.cfg.ConfirmInterval))))
			wait = t.C
		}
		fired := false
		select {
		case <-ctx.Done():
		case <-c.wake: // plan again with the new key
		case <-wait:
			fired = true
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		if !fired {
			continue
		}
		lastRound = time.Now()
		if due := c.dueAt(lastRound); len(due) > 0 {
			w.confirmRound(ctx, due)
		}
		w.cfg.Metrics.Unconfirmed.Set(float64(c.stillAlive()))
	}
}

// confirmRound checks the keys due: one list of the account's keys for all
// of them, and one call with each leaked key whose API key is not listed.
func (w *Worker) confirmRound(ctx context.Context, due map[string]unconfirmed) {
	var listed map[string]bool
	listErr := errNotListed
	for _, u := range due {
		if !u.foreign {
			var asOf time.Time
			listed, asOf, listErr = w.listForConfirmation(ctx, due)
			if listErr == nil {
				maps.DeleteFunc(due, func(_ string, u unconfirmed) bool { return !u.foreign && u.since.After(asOf) })
			}
			break
		}
	}
	// Keys are settled side by side: one ledger write each, which one at a
	// time would fall behind a fast drain.
	var wg sync.WaitGroup
	slots := make(chan struct{}, confirmWriters)
	for id, u := range due {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			w.confirmOne(ctx, id, u, listed, listErr)
		})
	}
	wg.Wait()
}

// confirmWriters bounds the keys one round settles at the same time.
const confirmWriters = 32

// confirmOne settles one key due, given the account's list (or why there
// is none).
func (w *Worker) confirmOne(ctx context.Context, id string, u unconfirmed, listed map[string]bool, listErr error) {
	var dead, alive bool
	var why string
	switch {
	case !u.foreign && listErr != nil:
		// The worker's own key, revoked, can list no more: Kalshi no
		// longer knowing it is the proof.
		dead = id == w.cfg.SelfKeyID && kalshi.IsUnknownSigningKey(listErr)
		why = "the account's keys could not be listed: " + listErr.Error()
	case !u.foreign && listed[id]:
		alive = true
		why = "the account still lists the key"
	case u.leaked != nil:
		// The account lists it no more (or never did): the leaked key's
		// own call must be refused as signed by a key Kalshi does not know.
		var err error
		dead, alive, err = w.leakedKeyRefused(ctx, id, u.leaked)
		switch {
		case alive:
			why = "Kalshi still accepts a call signed with the leaked key"
		case err != nil:
			why = "a call signed with the leaked key got no answer that proves the key unknown: " + err.Error()
		}
	default:
		dead = true
	}
	if dead {
		if err := w.ledger.ConfirmRevoked(ctx, id, u.record, u.rev, time.Now()); err != nil {
			w.cfg.Logger.Warn("cannot record a confirmed revocation in the ledger; trying again", "api_key_id", id, "err", err)
			dead = false
		} else {
			w.cfg.Logger.Info("revocation confirmed: the key is dead", "api_key_id", id,
				"after_ms", time.Since(u.record.RevokedAt).Milliseconds())
		}
	}
	if alive && u.alive == 0 {
		w.cfg.Logger.Warn("a revoked key is still alive: Kalshi still lists it or accepts its leaked key; checking again",
			"api_key_id", id, "request_id", u.record.RequestID)
	}
	if !dead && time.Since(u.since) >= w.cfg.ConfirmGiveUp {
		w.giveUp(ctx, id, u, why)
		return
	}
	w.confirms.settle(id, dead, alive, w.cfg.ConfirmInterval, why)
}

// giveUp records that the key's revocation could not be confirmed within
// Config.ConfirmGiveUp, and why, and stops checking it; until the record is
// written, it is checked as before.
func (w *Worker) giveUp(ctx context.Context, id string, u unconfirmed, why string) {
	if why == "" {
		why = "no check gave an answer"
	}
	why = fmt.Sprintf("not confirmed within %v of the revocation: %s", w.cfg.ConfirmGiveUp, why)
	if err := w.ledger.RecordUnconfirmed(ctx, id, u.record, u.rev, time.Now(), why); err != nil {
		w.cfg.Logger.Warn("cannot record an unconfirmed revocation in the ledger; trying again", "api_key_id", id, "err", err)
		w.confirms.settle(id, false, false, w.cfg.ConfirmInterval, why)
		return
	}
	w.cfg.Logger.Error("giving up confirming a revocation: the key may still be alive", "api_key_id", id,
		"request_id", u.record.RequestID, "reason", why)
	w.confirms.settle(id, true, false, 0, why)
}

// errNotListed: no key due needed the account's list.
var errNotListed = errors.New("not listed")

// listForConfirmation says which of the keys due the account lists, from
// a listing asked for after the earliest of them was revoked and within the
// last round's interval: one this process has, or the fleet's lister's, or
// its own call within the delete budget. asOf is when the listing was asked
// for: it says nothing of a key revoked later, which waits for the next
// round (so that a round during a mass revocation takes the fleet's listing
// of the last two seconds instead of one of its own).
func (w *Worker) listForConfirmation(ctx context.Context, due map[string]unconfirmed) (listed map[string]bool, asOf time.Time, err error) {
	var ids []string
	var earliest time.Time
	for id, u := range due {
		if !u.foreign {
			ids = append(ids, id)
			if earliest.IsZero() || u.since.Before(earliest) {
				earliest = u.since
			}
		}
	}
	notBefore := later(time.Now().Add(-w.cfg.ConfirmInterval), earliest)
	keys, asOf, ok := w.replica().SharedKeys(ctx, time.Now(), notBefore, ids)
	if !ok {
		if keys, asOf, err = w.listForConfirmationHere(ctx, notBefore); err != nil {
			return nil, time.Time{}, err
		}
	}
	listed = make(map[string]bool, len(keys))
	for id := range keys {
		listed[id] = true
	}
	return listed, asOf, nil
}

// listForConfirmationHere lists the account's keys within the delete
// budget, sharing the call with the requests in flight. It waits for at
// most one attempt's time: a round is no request, and the next one tries
// again.
func (w *Worker) listForConfirmationHere(ctx context.Context, notBefore time.Time) (map[string]kalshi.APIKey, time.Time, error) {
	stop, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
	defer cancel()
	keys, started, err := w.replica().Keys(ctx, stop, time.Now(), notBefore)
	if err != nil {
		if unauthorized(err) {
			w.credentialRefused(err)
		}
		w.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "cannot list the account's keys to confirm revocations", slog.Any("err", err))
	}
	return keys, started, err
}

// leakedKeyRefused makes one call signed as id with the leaked key: dead
// when Kalshi no longer knows the key, alive when it accepts the call,
// neither when the answer says nothing (err says what it was).
func (w *Worker) leakedKeyRefused(ctx context.Context, id string, leaked crypto.Signer) (dead, alive bool, err error) {
	as, err := w.del.As(id, leaked)
	if err != nil {
		return false, false, err
	}
	if err := w.cfg.Limiter.Wait(ctx); err != nil {
		return false, false, err
	}
	lctx, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
	defer cancel()
	_, err = as.ListAPIKeys(lctx)
	if budget.HeedAnswer(w.cfg.Limiter, err) {
		w.reportRate()
	}
	return kalshi.IsUnknownSigningKey(err), err == nil, err
}
