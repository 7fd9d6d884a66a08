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

// Claim is a request entry as read, with the revision a change must match.
type Claim struct {
	Request
	rev uint64
}

// refusalTTL is how long the ledger keeps a request refused before any
// Kalshi call: its result is stored, and a redelivery comes within the ack
// wait, long before.
const refusalTTL = 24 * time.Hour

// Claim records e under id unless id is already recorded, and returns the
// entry that is there now: e itself (fresh) or the earlier one. A refusal
// decided before any Kalshi call expires after a day.
func (l *Ledger) Claim(ctx context.Context, id string, e Request) (c Claim, fresh bool, err error) {
	ctx, done := l.call(ctx)
	defer done()
	v, err := json.Marshal(e)
	if err != nil {
		return Claim{}, false, err
	}
	var opts []jetstream.KVCreateOpt
	if e.Refused != "" {
		opts = append(opts, jetstream.KeyTTL(refusalTTL))
	}
	rev, err := l.kv.Create(ctx, requestKey(id), v, opts...)
	if err == nil {
		return Claim{e, rev}, true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return Claim{}, false, fmt.Errorf("ledger: claiming request %.64q: %w", id, err)
	}
	entry, err := l.kv.Get(ctx, requestKey(id))
	if err != nil {
		// Deleted or expired between the two calls: the caller tries again.
		return Claim{}, false, fmt.Errorf("ledger: reading request %.64q: %w", id, errors.Join(ErrConflict, err))
	}
	var got Request
	if err := json.Unmarshal(entry.Value(), &got); err != nil {
		return Claim{}, false, fmt.Errorf("ledger: request %.64q: %w", id, err)
	}
	return Claim{got, entry.Revision()}, false, nil
}

// Update replaces the entry read as c with e, if nobody changed it since
// (ErrConflict otherwise).
func (l *Ledger) Update(ctx context.Context, id string, c Claim, e Request) (Claim, error) {
	rev, err := l.putEntry(ctx, requestKey(id), e, c.rev)
	if err != nil {
		return Claim{}, err
	}
	return Claim{e, rev}, nil
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
