package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/ledger"
)

// claim takes the request in the ledger for this message, proposing what
// guard decided, and returns the claim this message carries out; or, with
// none, the verdict that ends the delivery instead: the id already names
// another key (rejected under an id of its own), the request is decided
// (its result stored again), or another message that is alive carries it
// out (waiting).
func (w *Worker) claim(ctx context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result, proposal ledger.Request) (*ledger.Claim, verdict, error) {
	c, fresh, err := w.ledger.Claim(ctx, req.ID, proposal)
	if err != nil || fresh {
		return c, verdict{}, err
	}
	seq := meta.Sequence.Stream
	var v verdict
	switch {
	case c.Key != proposal.Key:
		v = untrusted(res, meta, events.CodeConflictingRequestID, fmt.Sprintf(
			"request id %s already names request %d for %s; nothing was deleted",
			events.Quote(req.ID), c.Seq, describeNamed(c.Key)))
	case c.Decided():
		v, err = w.republish(ctx, meta, req, res, c)
	case c.Seq != seq:
		v.waiting, err = w.ownerAlive(ctx, req, c)
	}
	if v.res != nil || v.waiting || err != nil {
		return nil, v, err
	}
	// This message carries the request out: a redelivery of the one that
	// claimed it, or a copy taking over from one that is gone. A copy's
	// deliveries were spent waiting for the other, not failing; so were
	// the ones this message spent waiting for another request's key.
	if res.Error != nil && res.Error.Code == events.CodeMaxDeliveries &&
		(c.Seq != seq || int(meta.NumDelivered-min(c.Waits, meta.NumDelivered)) < w.cfg.MaxDeliveries) {
		*res = *newResult(req, meta, res.ReceivedAt)
		proposal.Result, proposal.Attempted = nil, req.leaked == nil
	}
	return c, verdict{}, c.CarryOut(ctx, proposal)
}

// ownerAlive reports whether the message that claimed request c is still
// carrying it out: it claimed it less than a lease ago, or it holds the
// key's attempt lease. A copy waits only that long for an owner that is
// gone; taking over is safe either way, every write being a compare-and-set.
func (w *Worker) ownerAlive(ctx context.Context, req request, c *ledger.Claim) (bool, error) {
	if time.Since(c.ClaimedAt) < w.leaseLength() {
		return true, nil
	}
	key := c.Target
	if req.leaked == nil {
		key = req.APIKeyID
	}
	if key == "" {
		return false, nil
	}
	e, _, found, err := w.ledger.AttemptOn(ctx, key)
	return found && e.RequestID == req.ID && e.Seq == c.Seq && time.Now().Before(e.Until), err
}
