package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/contain"
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

// revokeLeaked carries out a leaked key's request once claimed: it finds
// the key (or reads it from the claim, when an earlier delivery found it),
// guards it, records it with the claim before the first DELETE, and deletes
// it during the key's turn, which lasts until the result is stored.
func (w *Worker) revokeLeaked(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result, c *ledger.Claim) (v verdict, err error) {
	f := found{keyID: c.Target, foreign: c.Foreign}
	var fail *events.Error
	if f.keyID == "" {
		// Each listed key that refused the leaked key is recorded with the
		// claim, so that a redelivery resumes the search after it.
		s := search{from: c.ProbedThrough, refused: func(id string) { _ = c.Probed(ctx, id) }}
		if f, fail, err = w.findLeaked(ctx, stop, meta, req, s); err != nil {
			return verdict{}, ignoreStopped(err)
		}
	}
	if fail == nil {
		res.APIKeyID = f.keyID
		fail = w.guardKey(f.keyID)
	}
	if fail != nil {
		refuse(res, fail.Code, fail.Message)
		return w.decided(ctx, req, c, res, false)
	}
	unlock := w.keys.lock(f.keyID)
	defer func() {
		if v.res == nil || err != nil { // else the turn ends once the result is stored
			unlock()
		}
	}()
	if err := c.Found(ctx, f.keyID, f.foreign); err != nil {
		return verdict{}, err
	}
	var del deleter = w.del
	if f.foreign {
		if del, err = w.del.As(f.keyID, req.leaked.signer); err != nil { // cannot be: identify signed as this key already
			return verdict{}, err
		}
		res.Detail = "the key is not this account's: it deleted itself, signed with the leaked private key"
	}
	// The leaked key was accepted as this key moments ago: it was listed
	// (or, another account's, alive) before the first attempt.
	v, err = w.attempt(ctx, stop, meta, req, res, c, del, !f.foreign, func() (*kalshi.APIKey, error) {
		return w.listedLeaked(ctx, stop, meta.Timestamp, f), nil
	})
	if v.res != nil && err == nil {
		v.unlock, v.foreign = unlock, f.foreign
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

// findLeaked finds the key a leaked request's PEM is: as the ledger
// remembers it from an earlier request with the same PEM (after whose
// delete no listed key is it, and Kalshi's 404 then says already_revoked),
// or by identify, whose find it records before any DELETE. It returns the
// key, or the refusal that ends the request, or the error that sends it
// back (errStopped on shutdown).
func (w *Worker) findLeaked(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, s search) (f found, fail *events.Error, err error) {
	known := func() (found, error) {
		e, err := w.ledger.LeakedKeyOf(ctx, req.leaked.fingerprint)
		return found{keyID: e.Key, foreign: e.Foreign}, err
	}
	if f, err = known(); err != nil || f.keyID != "" {
		return f, nil, err
	}
	switch f, fail, err = w.identifyOnce(ctx, stop, meta.Timestamp, req.leaked, req.APIKeyID, s); {
	case fail != nil && fail.Code == events.CodeLeakedKeyNotFound:
		// Another request with this PEM may have recorded the key and
		// deleted it while this one listed the account's keys.
		if k, kerr := known(); kerr != nil || k.keyID != "" {
			f, fail, err = k, nil, kerr
		}
	case err == nil && fail == nil:
		err = w.ledger.RecordLeaked(ctx, req.leaked.fingerprint, ledger.Leaked{Key: f.keyID, Foreign: f.foreign})
	}
	return f, fail, err
}
