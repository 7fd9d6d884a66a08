package confirm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/budget"
)

// Run checks waiting keys until ctx ends: a round when a key is
// due, at most one per Config.Interval.
func (c *Revocations) Run(ctx context.Context) {
	var lastRound time.Time
	for {
		var t *time.Timer
		var wait <-chan time.Time
		if at, ok := c.next(); ok {
			t = time.NewTimer(time.Until(later(at, lastRound.Add(c.cfg.Interval))))
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
			c.round(ctx, due)
		}
		c.cfg.Unconfirmed.Set(float64(c.stillAlive()))
	}
}

// round checks the keys due: one list of the account's keys for all
// of them, and one call with each leaked key whose API key is not listed.
func (c *Revocations) round(ctx context.Context, due map[string]unconfirmed) {
	var listed map[string]bool
	listErr := errNotListed
	for _, u := range due {
		if !u.Foreign {
			var asOf time.Time
			listed, asOf, listErr = c.list(ctx, due)
			if listErr == nil {
				maps.DeleteFunc(due, func(_ string, u unconfirmed) bool { return !u.Foreign && u.since.After(asOf) })
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
			c.one(ctx, id, u, listed, listErr)
		})
	}
	wg.Wait()
}

// confirmWriters bounds the keys one round settles at the same time.
const confirmWriters = 32

// one settles one key due, given the account's list (or why there
// is none).
func (c *Revocations) one(ctx context.Context, id string, u unconfirmed, listed map[string]bool, listErr error) {
	var dead, alive bool
	var why string
	switch {
	case !u.Foreign && listErr != nil:
		// The worker's own key, revoked, can list no more: Kalshi no
		// longer knowing it is the proof.
		dead = id == c.cfg.SelfKeyID && kalshi.IsUnknownSigningKey(listErr)
		why = "the account's keys could not be listed: " + listErr.Error()
	case !u.Foreign && listed[id]:
		alive = true
		why = "the account still lists the key"
	case u.Leaked != nil:
		// The account lists it no more (or never did): the leaked key's
		// own call must be refused as signed by a key Kalshi does not know.
		var err error
		dead, alive, err = c.leakedKeyRefused(ctx, id, u.Leaked)
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
		if err := c.cfg.Ledger().ConfirmRevoked(ctx, id, u.Record, u.Rev, time.Now()); err != nil {
			c.cfg.Logger.Warn("cannot record a confirmed revocation in the ledger; trying again", "api_key_id", id, "err", err)
			dead = false
		} else {
			c.cfg.Logger.Info("revocation confirmed: the key is dead", "api_key_id", id,
				"after_ms", time.Since(u.Record.RevokedAt).Milliseconds())
		}
	}
	if alive && u.alive == 0 {
		c.cfg.Logger.Warn("a revoked key is still alive: Kalshi still lists it or accepts its leaked key; checking again",
			"api_key_id", id, "request_id", u.Record.RequestID)
	}
	if !dead && time.Since(u.since) >= c.cfg.GiveUp {
		c.giveUp(ctx, id, u, why)
		return
	}
	c.settle(id, dead, alive, c.cfg.Interval)
}

// giveUp records that the key's revocation could not be confirmed within
// Config.GiveUp, and why, and stops checking it; until the record is
// written, it is checked as before.
func (c *Revocations) giveUp(ctx context.Context, id string, u unconfirmed, why string) {
	if why == "" {
		why = "no check gave an answer"
	}
	why = fmt.Sprintf("not confirmed within %v of the revocation: %s", c.cfg.GiveUp, why)
	if err := c.cfg.Ledger().RecordUnconfirmed(ctx, id, u.Record, u.Rev, time.Now(), why); err != nil {
		c.cfg.Logger.Warn("cannot record an unconfirmed revocation in the ledger; trying again", "api_key_id", id, "err", err)
		c.settle(id, false, false, c.cfg.Interval)
		return
	}
	c.cfg.Logger.Error("giving up confirming a revocation: the key may still be alive", "api_key_id", id,
		"request_id", u.Record.RequestID, "reason", why)
	c.settle(id, true, false, 0)
}

// errNotListed: no key due needed the account's list.
var errNotListed = errors.New("not listed")

// list says which of the keys due the account lists, from
// a listing asked for after the earliest of them was revoked and within the
// last round's interval: one this process has, or the fleet's lister's, or
// its own call within the delete budget. asOf is when the listing was asked
// for: it says nothing of a key revoked later, which waits for the next
// round (so that a round during a mass revocation takes the fleet's listing
// of the last two seconds instead of one of its own).
func (c *Revocations) list(ctx context.Context, due map[string]unconfirmed) (listed map[string]bool, asOf time.Time, err error) {
	var ids []string
	var earliest time.Time
	for id, u := range due {
		if !u.Foreign {
			ids = append(ids, id)
			if earliest.IsZero() || u.since.Before(earliest) {
				earliest = u.since
			}
		}
	}
	notBefore := later(time.Now().Add(-c.cfg.Interval), earliest)
	keys, asOf, ok := c.cfg.SharedKeys(ctx, time.Now(), notBefore, ids)
	if !ok {
		if keys, asOf, err = c.listHere(ctx, notBefore); err != nil {
			return nil, time.Time{}, err
		}
	}
	listed = make(map[string]bool, len(keys))
	for id := range keys {
		listed[id] = true
	}
	return listed, asOf, nil
}

// listHere lists the account's keys within the delete budget, sharing the
// call with the requests in flight.
func (c *Revocations) listHere(ctx context.Context, notBefore time.Time) (map[string]kalshi.APIKey, time.Time, error) {
	keys, started, err := c.cfg.Keys(ctx, notBefore)
	if err != nil {
		c.cfg.ListFailed(err)
		c.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "cannot list the account's keys to confirm revocations", slog.Any("err", err))
	}
	return keys, started, err
}

// leakedKeyRefused makes one call signed as id with the leaked key: dead
// when Kalshi no longer knows the key, alive when it accepts the call,
// neither when the answer says nothing (err says what it was).
func (c *Revocations) leakedKeyRefused(ctx context.Context, id string, leaked crypto.Signer) (dead, alive bool, err error) {
	as, err := c.cfg.As(id, leaked)
	if err != nil {
		return false, false, err
	}
	if err := c.cfg.Limiter.Wait(ctx); err != nil {
		return false, false, err
	}
	lctx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	_, err = as.ListAPIKeys(lctx)
	if budget.HeedAnswer(c.cfg.Limiter, err) {
		c.cfg.RateChanged()
	}
	return kalshi.IsUnknownSigningKey(err), err == nil, err
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
