package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/ledger"
)

// One delivery, from the stream to a stored result and the ack, reads down
// this file and the files named by its steps:
//
//	decode, verify   handle.go (verify), request.go (decode)
//	guard            guard.go: the key's guards and the delivery limit
//	decide           handle.go (decide, decideOnce), claim.go: the claim in the ledger
//	delete           delete.go (attempt, revokeLeaked), attempt.go: the key's lease and its 404
//	record           record.go: the decision in the ledger before the result is stored
//	store            store.go: the result on the results subject
//	settle           settle.go: ack, terminate or NAK
//
// The ledger (package worker/ledger) is met through the claim: each step
// records itself with one call on it.

// handle carries one delivery through every step. The pull loop holds it
// in the fleet's view (failover.go) until handle returns. stop is cancelled
// when shutdown begins (no new attempts); ctx when the drain deadline passes
// (abandon everything).
func (w *Worker) handle(ctx, stop context.Context, msg jetstream.Msg) {
	w.cfg.Metrics.InFlight.Inc()
	defer w.cfg.Metrics.InFlight.Dec()
	received := time.Now()

	meta, err := msg.Metadata()
	if err != nil { // not a JetStream delivery; cannot happen on a pull consumer
		w.cfg.Logger.Error("message without JetStream metadata", "err", err)
		_ = msg.TermWithReason("no jetstream metadata")
		return
	}
	defer keepAlive(msg, w.keepAliveInterval())()

	req, res, v, trusted := w.verify(msg, meta, received)
	if trusted {
		// A request with a not_before ahead waits for it, or is rejected or
		// sent back (schedule.go); a due one goes on, as stored at its time.
		var due bool
		if meta, v, due = w.schedule(ctx, meta, req, res); due {
			// Requests for one key take turns within the process, from
			// decision to stored result: the second sees the first's delete,
			// and the ledger then names the request that revoked the key. A
			// leaked key's request takes its key's turn once it knows the key.
			defer w.keys.lock(req.names())()
			v = w.decide(ctx, stop, meta, req, res)
			defer v.endTurn()
		}
	}
	stored := w.store(ctx, req, meta, v)
	w.settle(msg, meta, v, stored)
}

// verify decodes the delivery and applies the request policy. A request
// that fails either is not trusted: v rejects it under a message id of its
// own.
func (w *Worker) verify(msg jetstream.Msg, meta *jetstream.MsgMetadata, received time.Time) (req request, res *events.Result, v verdict, trusted bool) {
	req, err := decode(msg.Headers(), msg.Data(), events.FallbackID(meta.Stream, meta.Sequence.Stream))
	res = newResult(req, meta, received)
	code := events.CodeInvalidRequest
	if err == nil && w.cfg.Policy != nil {
		err, code = w.cfg.Policy.AuthorizeAt(msg.Headers(), msg.Data(), req.Request, meta.Timestamp), events.CodeUnauthorizedRequest
	}
	if err != nil {
		v = untrusted(res, meta, code, err.Error())
	}
	return req, res, v, err == nil
}

// decide carries out a valid, verified request: its id is trusted. The
// ledger says whether the id is new, already decided, held by another copy
// of the request, or names another key; a compare-and-set lost to another
// replica is retried with what the ledger says then. Any other error sends
// the delivery back undecided.
func (w *Worker) decide(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result) verdict {
	err := ledger.ErrConflict
	for try := 0; try < 3 && errors.Is(err, ledger.ErrConflict); try++ {
		if try > 0 {
			*res = *newResult(req, meta, res.ReceivedAt)
		}
		var v verdict
		if v, err = w.decideOnce(ctx, stop, meta, req, res); err == nil {
			return v
		}
	}
	if !errors.Is(err, ledger.ErrConflict) && ctx.Err() == nil {
		w.cfg.Logger.Warn("ledger unavailable; the request will be delivered again",
			"request_id", req.ID, "stream_seq", meta.Sequence.Stream, "err", err)
	}
	return verdict{}
}

// decideOnce is one pass of decide: guard, claim, then the delete of the
// key the request names, or of the key its leaked private key is.
func (w *Worker) decideOnce(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result) (verdict, error) {
	c, v, err := w.claim(ctx, meta, req, res, w.guard(meta, req, res))
	switch {
	case c == nil || err != nil:
		return v, err
	case c.Decided(): // refused by a guard
		return verdict{res: res, doc: c.Result, msgID: req.ID}, nil
	case req.leaked != nil:
		return w.revokeLeaked(ctx, stop, meta, req, res, c)
	}
	return w.attempt(ctx, stop, meta, req, res, c, w.del, true, func() (*kalshi.APIKey, error) {
		return w.listedForAttempt(ctx, stop, meta.Timestamp, req.APIKeyID)
	})
}
