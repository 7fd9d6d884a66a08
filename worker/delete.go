package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/contain"
	"github.com/revoker/revoker/worker/leaked"
	"github.com/revoker/revoker/worker/ledger"
)

// attempt deletes res.APIKeyID for the request claimed as c, holding the
// key's attempt lease, judges the answer, cancels the key's resting orders
// if asked, and records the decision. del signs the DELETE; own says it
// signs with the worker's credential.
func (w *Worker) attempt(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result, c *ledger.Claim, del deleter, own bool, listed func() (*kalshi.APIKey, error)) (verdict, error) {
	le, err := w.acquire(ctx, res.APIKeyID, req.ID, meta.Sequence.Stream, listed)
	var be *budgetError
	switch {
	case errors.Is(err, errWaitForKey):
		// This delivery waits for another request's decision: it does not
		// count toward max deliveries. A lost count costs one delivery.
		_ = c.Waited(ctx)
		return verdict{waiting: true}, nil
	case errors.As(err, &be):
		exhausted(res, meta.Timestamp, "listing the account's keys: "+be.why)
		return w.decided(ctx, req, c, res, false)
	case err != nil:
		return verdict{}, ignoreStopped(err)
	}
	stopRenewing := le.renewEvery(ctx)
	unanswered, interrupted := w.revoke(ctx, stop, meta.Timestamp, res, del, own)
	stopRenewing()
	if interrupted {
		return verdict{}, nil
	}
	// An earlier delivery that held the lease may have sent a DELETE too.
	mayHaveDeleted := unanswered || le.ours
	if res.Outcome == events.AlreadyRevoked && mayHaveDeleted && le.takenOver(ctx) {
		// Another request took the key while this one's attempt went
		// unanswered: this 404 cannot tell whose attempt deleted it. The
		// next delivery takes the key back, after the other's decision
		// and counting this request's first attempt, as any would.
		w.cfg.Logger.Info(keyTakenOver, "request_id", req.ID, "api_key_id", res.APIKeyID)
		_ = c.Waited(ctx)
		return verdict{waiting: true}, nil
	}
	if res.Outcome == events.AlreadyRevoked {
		w.judge404(ctx, le, res, mayHaveDeleted)
	}
	contain.BlastRadius(res, le.e.Key)
	if req.CancelOrders {
		if err := contain.Contain(ctx, stop, w.containment(), meta.Timestamp, res, c, le.e.Key, own); err != nil {
			return verdict{}, ignoreStopped(err)
		}
	}
	return w.decided(ctx, req, c, res, mayHaveDeleted || res.Outcome == events.Revoked)
}

// keyTakenOver tells the operator why a request's result comes a delivery
// later than its 404.
const keyTakenOver = "another request took the key while this one's attempt went unanswered; waiting for its decision"

// revokeLeaked carries out a leaked key's request once claimed: it finds
// the key (or reads it from the claim, when an earlier delivery found it),
// guards it, records it with the claim before the first DELETE, and deletes
// it during the key's turn, which lasts until the result is stored.
func (w *Worker) revokeLeaked(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result, c *ledger.Claim) (v verdict, err error) {
	f := leaked.Found{KeyID: c.Target, Foreign: c.Foreign}
	var fail *events.Error
	if f.KeyID == "" {
		// Each listed key that refused the leaked key is recorded with the
		// claim, so that a redelivery resumes the search after it.
		s := leaked.Search{From: c.ProbedThrough, Refused: func(id string) { _ = c.Probed(ctx, id) }}
		if f, fail, err = leaked.Find(ctx, stop, w.search(), meta.Timestamp, req.leaked, req.APIKeyID, s); err != nil {
			return verdict{}, ignoreStopped(err)
		}
	}
	if fail == nil {
		res.APIKeyID = f.KeyID
		fail = w.guardKey(f.KeyID)
	}
	if fail != nil {
		refuse(res, fail.Code, fail.Message)
		return w.decided(ctx, req, c, res, false)
	}
	unlock := w.keys.lock(f.KeyID)
	defer func() {
		if v.res == nil || err != nil { // else the turn ends once the result is stored
			unlock()
		}
	}()
	if err := c.Found(ctx, f.KeyID, f.Foreign); err != nil {
		return verdict{}, err
	}
	var del deleter = w.del
	if f.Foreign {
		if del, err = w.del.As(f.KeyID, req.leaked.Signer()); err != nil { // cannot be: identify signed as this key already
			return verdict{}, err
		}
		res.Detail = "the key is not this account's: it deleted itself, signed with the leaked private key"
	}
	// The leaked key was accepted as this key moments ago: it was listed
	// (or, another account's, alive) before the first attempt.
	v, err = w.attempt(ctx, stop, meta, req, res, c, del, !f.Foreign, func() (*kalshi.APIKey, error) {
		return w.listedLeaked(ctx, stop, meta.Timestamp, f), nil
	})
	if v.res != nil && err == nil {
		v.unlock, v.foreign = unlock, f.Foreign
	}
	return v, err
}

// listedForAttempt is listed for a request's first attempt: a listing that
// Kalshi refuses for good leaves the key unlisted, and the DELETE's own
// answer then says what is wrong.
func (w *Worker) listedForAttempt(ctx, stop context.Context, storedAt time.Time, keyID string) (*kalshi.APIKey, error) {
	k, err := w.listed(ctx, stop, storedAt, keyID)
	var be *budgetError
	if err == nil || errors.Is(err, errStopped) || errors.As(err, &be) {
		return k, err
	}
	return nil, nil
}
