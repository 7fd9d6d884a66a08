package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/contain"
	"github.com/revoker/revoker/worker/ledger"
)

// decided finishes res, the outcome of the request claimed as c, records
// it in the ledger (and a revoked key's record) and returns its verdict.
// The result is stored only once the ledger holds the decision, so the two
// never disagree: a failed write sends the delivery back undecided.
// mayHaveDeleted says whether an attempt of the request got a 2xx or went
// unanswered.
func (w *Worker) decided(ctx context.Context, req request, c *ledger.Claim, res *events.Result, mayHaveDeleted bool) (verdict, error) {
	contain.Uncontained(req.CancelOrders, res)
	finish(res)
	doc := w.encode(res)
	var keyRev uint64
	var decisionErr, keyErr error
	// What Kalshi answered a DELETE is known only here: a NAK would leave
	// the next delivery a 404 to judge. So the writes are retried while the
	// message is kept alive, through a NATS node's election (a few seconds).
	decisionDone, keyDone := false, res.Outcome != events.Revoked
	wctx, cancel := context.WithTimeout(ctx, decisionRetryFor)
	defer cancel()
	for wait := decisionRetry; ; wait *= 2 {
		var wg sync.WaitGroup
		if !decisionDone {
			wg.Go(func() { decisionErr = c.Decide(wctx, doc, mayHaveDeleted); decisionDone = decisionErr == nil })
		}
		if !keyDone {
			wg.Go(func() {
				keyRev, keyErr = w.ledger.RecordRevoked(wctx, res.APIKeyID, keyRecordOf(res))
				keyDone = keyErr == nil
			})
		}
		wg.Wait()
		if errors.Join(decisionErr, keyErr) == nil || errors.Is(decisionErr, ledger.ErrConflict) || !mayHaveDeleted {
			break
		}
		if sleep(wctx, wait); wctx.Err() != nil {
			break
		}
	}
	if err := errors.Join(decisionErr, keyErr); err != nil {
		return verdict{}, err // a conflict: decide reads the ledger again
	}
	return verdict{res: res, doc: doc, msgID: req.ID, keyRev: keyRev}, nil
}

// How a decision after a DELETE is retried when the ledger does not answer:
// after 250 ms, then twice as long each time, for 8 s in all (the writes
// included: one may wait seconds for an answer that never comes).
const (
	decisionRetry    = 250 * time.Millisecond
	decisionRetryFor = 8 * time.Second
)

// republish stores again the result the ledger holds for a decided request,
// counting this delivery too: the results stream drops it as a duplicate
// unless the first store was lost. A refusal recorded by its code alone is
// made again from this delivery; a revoked key's record is written first,
// in case the delivery that decided died before it.
func (w *Worker) republish(ctx context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result, c *ledger.Claim) (verdict, error) {
	if c.Refused != "" {
		refuse(res, c.Refused, c.Message)
		return verdict{res: res, msgID: req.ID}, nil
	}
	stored, err := events.ParseResult(c.Result)
	if err != nil {
		return verdict{}, fmt.Errorf("ledger: decided result of request %d: %w", c.Seq, err)
	}
	stored.Deliveries = int(meta.NumDelivered)
	v := verdict{res: &stored, msgID: stored.RequestID, foreign: c.Foreign}
	if stored.Outcome == events.Revoked {
		v.keyRev, err = w.ledger.RecordRevoked(ctx, stored.APIKeyID, keyRecordOf(&stored))
	}
	return v, err // with an error, decide sends the delivery back
}

// keyRecordOf is the ledger's record of the key res revoked.
func keyRecordOf(res *events.Result) ledger.KeyRecord {
	return ledger.KeyRecord{
		RequestID: res.RequestID, RequestSeq: res.RequestSeq, RevokedAt: res.CompletedAt,
		RequestedBy: res.RequestedBy, Reason: res.Reason, Fingerprint: res.LeakedKeyFingerprint,
		BlastRadius: res.BlastRadius, Containment: res.Containment,
	}
}
