package worker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/ledger"
)

// One key, one attempt at a time, fleet-wide. Before its first DELETE a
// request records in the ledger's attempt.<key> entry that it is the one
// attempting the key, with a lease its owner renews while it retries. A
// request for the same key that finds the lease held by another request
// whose decision is not recorded waits for it (a delayed NAK, not a held
// slot); one that finds it decided, or lapsed, takes it over and remembers
// the earlier request when that one may have deleted the key. The entry also
// records whether the account listed the key before the request's first
// attempt: only then can a 404 after an unanswered attempt mean that the
// attempt deleted it.

// lease is a request's hold on its key's attempt entry.
type lease struct {
	l      *ledger.Ledger
	key    string
	length time.Duration

	mu  sync.Mutex
	e   ledger.Attempt
	rev uint64
	// takenBy is the entry of the request that took the key over, nil
	// while the lease holds: this one's 404 then proves nothing.
	takenBy *ledger.Attempt
	// ours: the entry named this request before this delivery took it; an
	// earlier delivery may have sent a DELETE.
	ours bool
}

// errWaitForKey is acquire's answer when another request is attempting the
// key: this one comes back for that request's decision.
var errWaitForKey = errors.New("another request is attempting the key")

// acquire takes key's attempt entry for the request id (seq is this
// message), or returns errWaitForKey. listed is asked only when the request
// takes the key afresh.
func (w *Worker) acquire(ctx context.Context, key, id string, seq uint64, listed func() (*kalshi.APIKey, error)) (*lease, error) {
	length := w.leaseLength()
	for try := range 4 {
		// The first try takes the key as new, one write and no read: the
		// common case. A conflict reads what is there.
		var cur ledger.Attempt
		var rev uint64
		var found bool
		var err error
		if try > 0 {
			if cur, rev, found, err = w.ledger.AttemptOn(ctx, key); err != nil {
				return nil, err
			}
		}
		now := time.Now()
		next := ledger.Attempt{RequestID: id, Seq: seq, At: now, Until: now.Add(length)}
		ours := found && cur.RequestID == id
		switch {
		case ours:
			next = cur
			next.Seq, next.Until = seq, now.Add(length)
		case found:
			decided, err := w.ledger.DecisionOf(ctx, cur.RequestID)
			if err != nil {
				return nil, err
			}
			if decided == nil && now.Before(cur.Until) {
				return nil, errWaitForKey
			}
			next.Others = slices.Clone(cur.Others)
			// Decided with an attempt that may have landed, or gone quiet:
			// its attempts may be what deleted the key, if the account
			// listed it before them (key ids are never reused: one not
			// listed then was gone already; chaos seed 772897).
			if (decided == nil || decided.MayHaveDeleted) && cur.Listed {
				next.Remember(ledger.OtherAttempt{RequestID: cur.RequestID, At: cur.At, Listed: cur.Listed, Key: cur.Key})
			}
			// This request held the key before (chaos seed 772897): its
			// earlier attempt may be what deleted it, and the listing
			// before that first attempt is the one that counts.
			if i := slices.IndexFunc(next.Others, func(o ledger.OtherAttempt) bool { return o.RequestID == id }); i >= 0 {
				earlier := next.Others[i]
				next.Others = slices.Delete(next.Others, i, i+1)
				next.At, next.Listed, next.Key = earlier.At, earlier.Listed, earlier.Key
				ours = true
			}
		}
		if !ours {
			if next.Key, err = listed(); err != nil {
				return nil, err
			}
			next.Listed = next.Key != nil
		}
		rev, err = w.ledger.PutAttempt(ctx, key, next, rev)
		if errors.Is(err, ledger.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &lease{l: w.ledger, key: key, length: length, e: next, rev: rev, ours: ours}, nil
	}
	return nil, ledger.ErrConflict
}

// leaseLength is how long a lease holds without renewal: the ack wait of the
// bound consumer, after which JetStream hands a silent owner's message to
// another replica anyway.
func (w *Worker) leaseLength() time.Duration {
	if d := time.Duration(w.ackWait.Load()); d > 0 {
		return d
	}
	return w.cfg.AckWait
}

// renewEvery renews the lease every third of its length until stop is
// called; a renewal that finds another request named marks the lease lost.
func (le *lease) renewEvery(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(le.length / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			le.mu.Lock()
			if le.takenBy != nil {
				le.mu.Unlock()
				return
			}
			next := le.e
			next.Until = time.Now().Add(le.length)
			rev, err := le.l.PutAttempt(ctx, le.key, next, le.rev)
			switch {
			case err == nil:
				le.e, le.rev = next, rev
			case errors.Is(err, ledger.ErrConflict):
				le.rereadLocked(ctx)
			}
			le.mu.Unlock()
		}
	}()
	return func() { cancel(); <-done }
}

// rereadLocked brings the lease up to date with the key's entry, le.mu
// held. An entry still naming this request is still its lease: a renewal
// whose answer was lost (a NATS node's loss) may have been stored, and the
// next one then meets it as a conflict (chaos seed 391272). One naming
// another request means the lease is lost. A failed read changes nothing.
func (le *lease) rereadLocked(ctx context.Context) {
	cur, rev, found, err := le.l.AttemptOn(ctx, le.key)
	switch {
	case err != nil || !found:
	case cur.RequestID == le.e.RequestID:
		le.e, le.rev = cur, rev
	default:
		le.takenBy = &cur
	}
}

// takenOver reports whether another request holds the key now. It reads
// the entry: the last renewal may be a moment old.
func (le *lease) takenOver(ctx context.Context) bool {
	le.mu.Lock()
	defer le.mu.Unlock()
	if le.takenBy == nil {
		le.rereadLocked(ctx)
	}
	return le.takenBy != nil
}

// judge404 turns Kalshi's 404 for the lease's key into the outcome: revoked
// only when an attempt of this request went unanswered, the account listed
// the key before this request's first attempt, and no other request's
// attempt on it is recorded; already_revoked otherwise, naming whoever
// revoked or attempted the key. mayHaveDeleted says whether an attempt of
// this request (this delivery or an earlier one) went unanswered.
func (w *Worker) judge404(ctx context.Context, le *lease, res *events.Result, mayHaveDeleted bool) {
	le.mu.Lock()
	e, takenBy := le.e, le.takenBy
	le.mu.Unlock()
	if mayHaveDeleted && e.Listed && len(e.Others) == 0 && takenBy == nil {
		res.Outcome = events.Revoked
		res.Detail = "Kalshi answered 404 after an attempt of this request went unanswered, and no other request attempted the key: that attempt deleted it"
		return
	}
	rec, err := w.ledger.RevokedBy(ctx, res.APIKeyID)
	if err == nil && rec != nil && rec.RequestID == res.RequestID {
		// An earlier delivery of this request decided revoked and wrote
		// the key's record, but not its decision (it died between the two
		// writes, or the ledger did not take the decision; chaos seed
		// 391272): the record is the proof.
		res.Outcome = events.Revoked
		res.Detail = "Kalshi answered 404: an earlier delivery of this request revoked the key (the ledger's key record names it)"
		return
	}
	res.Outcome = events.AlreadyRevoked
	if err == nil && rec != nil {
		res.RevokedBy, res.RevokedAt = rec.RequestID, rec.RevokedAt
		return
	}
	if takenBy != nil { // the request that took the key over attempted it
		res.RevokedBy, res.RevokedAt = takenBy.RequestID, takenBy.At
		return
	}
	for _, o := range slices.Backward(e.Others) {
		if o.RequestID != res.RequestID {
			res.RevokedBy, res.RevokedAt = o.RequestID, o.At
			return
		}
	}
}
