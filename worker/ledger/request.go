package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
)

// Request is what the ledger knows of one trusted request id.
type Request struct {
	Key       string          `json:"key"`                 // what the id names: a canonical key ID, or a leaked key's fingerprint
	Seq       uint64          `json:"seq"`                 // stream sequence of the message that carries it out
	ClaimedAt time.Time       `json:"claimed_at"`          // when that message took it
	Attempted bool            `json:"attempted,omitempty"` // a DELETE may have reached Kalshi
	Result    json.RawMessage `json:"result,omitempty"`    // the decided result document; set once
	// A leaked key's request records the key it was found to be before the
	// first DELETE: once deleted, the key can no longer be found.
	Target  string `json:"target,omitempty"`  // the key ID the leaked key belongs to
	Foreign bool   `json:"foreign,omitempty"` // of another account: deleted with the leaked key itself
	// ProbedThrough: every listed key up to this one (in order) refused the
	// leaked key; a redelivery resumes the search after it.
	ProbedThrough string `json:"probed_through,omitempty"`
	// MayHaveDeleted, recorded with the decision, says whether an attempt
	// of the request got a 2xx or went unanswered: a later request for the
	// key then names it.
	MayHaveDeleted bool `json:"may_have_deleted,omitempty"`
	// A refusal decided before any Kalshi call is recorded by its code and
	// message alone, with a short TTL: cheap requests cannot fill the ledger.
	Refused events.Code `json:"refused,omitempty"`
	Message string      `json:"message,omitempty"`
	// Waits counts the deliveries of message Seq that waited for another
	// request's decision on the key: they do not count toward max
	// deliveries.
	Waits uint64 `json:"waits,omitempty"`
	// Cancel is the request's cancel of resting orders (cancel_orders),
	// recorded before it is sent.
	Cancel *Cancel `json:"cancel,omitempty"`
}

// Decided reports whether the request's outcome is recorded.
func (e *Request) Decided() bool {
	return e.Refused != "" || len(e.Result) > 0 && string(e.Result) != "null"
}

// Cancel is the ledger's record of a request's cancel of resting orders.
type Cancel struct {
	StartedAt time.Time     `json:"started_at"`          // recorded before the first call was sent
	Done      bool          `json:"done,omitempty"`      // answered for good: Cancelled or Error holds the answer
	Cancelled int           `json:"cancelled,omitempty"` // orders cancelled
	Error     *events.Error `json:"error,omitempty"`     // why not, when Done
}

// Claim is a request's entry as this message last read or wrote it. Each
// step of the request records itself with a compare-and-set on that
// revision: ErrConflict says another message changed the entry meanwhile,
// and the step then leaves the claim as it was.
type Claim struct {
	Request
	l   *Ledger
	id  string
	rev uint64
}

// refusalTTL is how long the ledger keeps a request refused before any
// Kalshi call: its result is stored, and a redelivery comes within the ack
// wait, long before.
const refusalTTL = 24 * time.Hour

// Claim records e under id unless id is already recorded, and returns the
// entry that is there now: e itself (fresh) or the earlier one. A refusal
// decided before any Kalshi call expires after a day.
func (l *Ledger) Claim(ctx context.Context, id string, e Request) (c *Claim, fresh bool, err error) {
	ctx, done := l.call(ctx)
	defer done()
	v, err := json.Marshal(e)
	if err != nil {
		return nil, false, err
	}
	var opts []jetstream.KVCreateOpt
	if e.Refused != "" {
		opts = append(opts, jetstream.KeyTTL(refusalTTL))
	}
	rev, err := l.kv.Create(ctx, requestKey(id), v, opts...)
	if err == nil {
		return &Claim{e, l, id, rev}, true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, false, fmt.Errorf("ledger: claiming request %.64q: %w", id, err)
	}
	entry, err := l.kv.Get(ctx, requestKey(id))
	if err != nil {
		// Deleted or expired between the two calls: the caller tries again.
		return nil, false, fmt.Errorf("ledger: reading request %.64q: %w", id, errors.Join(ErrConflict, err))
	}
	var got Request
	if err := json.Unmarshal(entry.Value(), &got); err != nil {
		return nil, false, fmt.Errorf("ledger: request %.64q: %w", id, err)
	}
	return &Claim{got, l, id, entry.Revision()}, false, nil
}

// write replaces the entry read as c with next, if nobody changed it since
// (ErrConflict otherwise), and then holds next.
func (c *Claim) write(ctx context.Context, next Request) error {
	rev, err := c.l.putEntry(ctx, requestKey(c.id), next, c.rev)
	if err == nil {
		c.Request, c.rev = next, rev
	}
	return err
}

// CarryOut records that message p.Seq carries the request out from here:
// a redelivery of the message that claimed it, or a copy taking over from
// one that is gone (its deliveries so far were spent waiting). p is what
// this message proposed to claim: its guards' refusal, if any, replaces the
// entry's.
func (c *Claim) CarryOut(ctx context.Context, p Request) error {
	next := c.Request
	if c.Seq != p.Seq {
		next.Seq, next.ClaimedAt, next.Waits = p.Seq, p.ClaimedAt, 0
	}
	next.Result, next.Refused, next.Message = p.Result, p.Refused, p.Message
	next.Attempted = c.Attempted || p.Attempted
	return c.write(ctx, next)
}

// Waited counts a delivery that waited for another request's decision on
// the key.
func (c *Claim) Waited(ctx context.Context) error {
	next := c.Request
	next.Waits++
	return c.write(ctx, next)
}

// Probed records that every listed key up to keyID refused the leaked key.
func (c *Claim) Probed(ctx context.Context, keyID string) error {
	next := c.Request
	next.ProbedThrough = keyID
	return c.write(ctx, next)
}

// Found records the key the leaked key was found to be, before its first
// DELETE.
func (c *Claim) Found(ctx context.Context, keyID string, foreign bool) error {
	next := c.Request
	next.Target, next.Foreign, next.Attempted = keyID, foreign, true
	return c.write(ctx, next)
}

// RecordCancel records the request's cancel of resting orders: before it
// is sent, and once answered.
func (c *Claim) RecordCancel(ctx context.Context, rec Cancel) error {
	next := c.Request
	next.Cancel = &rec
	return c.write(ctx, next)
}

// Decide records the request's result document, and whether an attempt of
// it got a 2xx or went unanswered.
func (c *Claim) Decide(ctx context.Context, result []byte, mayHaveDeleted bool) error {
	next := c.Request
	next.Result, next.MayHaveDeleted = result, mayHaveDeleted
	return c.write(ctx, next)
}

// DecisionOf returns the decided entry of request id, or nil while it is
// undecided.
func (l *Ledger) DecisionOf(ctx context.Context, id string) (*Request, error) {
	var e Request
	_, found, err := l.getEntry(ctx, requestKey(id), &e)
	if err != nil || !found || !e.Decided() {
		return nil, err
	}
	return &e, nil
}
