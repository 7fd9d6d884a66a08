package worker

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// The account listing that says whether a key is listed before its first
// DELETE is shared by the whole fleet, not only by one process: one replica,
// the lister (the live replica with the lowest id, as in failover.go),
// lists the account at most once per listingMaxAge for every replica, and
// the others ask it on revoker.fleet.listing.<consumer> for the one key they
// need. During a mass revocation that is one GET /api_keys every 2 s for the
// fleet instead of one per replica. A replica that gets no answer in time
// (the lister died, or NATS is slow) lists for itself: sharing only saves
// budget, it decides nothing.

// listingMaxAge is how old an account listing may be to say whether a key
// is listed before its first DELETE.
const listingMaxAge = 2 * time.Second

// listing is the account's key listing one process shares: every request in
// flight reads the same one, and at most one GET /api_keys is under way.
type listing struct {
	mu      sync.Mutex
	started time.Time // when the listing in keys was asked for
	keys    map[string]kalshi.APIKey
	pending chan struct{} // closed when the listing under way ends
	err     error         // of the last listing
}

// listed returns keyID as the account listed it in a listing asked for no
// longer than listingMaxAge ago (or after now), nil when it is not listed,
// sharing one call among every request that asks meanwhile. The call goes
// through call, within the budget of the request stored at storedAt.
func (w *Worker) listed(ctx, stop context.Context, storedAt time.Time, keyID string) (*kalshi.APIKey, error) {
	asked := time.Now()
	li := &w.listing
	for {
		li.mu.Lock()
		if li.keys != nil && !li.started.Before(asked.Add(-listingMaxAge)) {
			k, ok := li.keys[keyID]
			li.mu.Unlock()
			if !ok {
				return nil, nil
			}
			return &k, nil
		}
		if p := li.pending; p != nil {
			li.mu.Unlock()
			select {
			case <-p:
			case <-stop.Done():
				return nil, errStopped
			}
			li.mu.Lock()
			err, fresh := li.err, li.keys != nil && !li.started.Before(asked.Add(-listingMaxAge))
			li.mu.Unlock()
			if err != nil && !fresh {
				return nil, err
			}
			continue
		}
		p := make(chan struct{})
		li.pending = p
		li.mu.Unlock()

		started := time.Now()
		var got []kalshi.APIKey
		err := w.call(ctx, stop, storedAt, func(ctx context.Context) error {
			var err error
			got, err = w.del.ListAPIKeys(ctx)
			return err
		}, func(error) {})
		li.mu.Lock()
		li.pending, li.err = nil, err
		if err == nil {
			keys := make(map[string]kalshi.APIKey, len(got))
			for _, k := range got {
				keys[events.CanonicalAPIKeyID(k.ID)] = k
			}
			li.keys, li.started = keys, started
		}
		li.mu.Unlock()
		close(p)
		if err != nil {
			return nil, err
		}
	}
}

// listingAskTimeout is how long a replica waits for the lister's answer
// before it lists for itself.
const listingAskTimeout = 2 * time.Second

// listingAsk is a replica's question to the lister; listingAnswer its reply.
type listingAsk struct {
	Key      string    `json:"key"`
	StoredAt time.Time `json:"stored_at"` // of the request asking: its budget pays
}

type listingAnswer struct {
	Key   *kalshi.APIKey `json:"key,omitempty"` // nil: not listed
	Error string         `json:"error,omitempty"`
}

// maxListingMsg bounds what a replica parses.
const maxListingMsg = 4096

func (w *Worker) listingSubject() string { return FleetSubject + ".listing." + w.cfg.Consumer }

// isLister reports whether this replica lists for the fleet: no live replica
// it hears has a lower id.
func (w *Worker) isLister() bool {
	f := w.holdings
	if f == nil || w.js == nil {
		return true // a worker outside a fleet (unit tests)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for id, p := range f.peers {
		if id < f.id && now.Sub(p.seen) <= heldStrike {
			return false
		}
	}
	return true
}

// fleetListed is listed, asked of the fleet's lister when this replica is
// not it.
func (w *Worker) fleetListed(ctx, stop context.Context, storedAt time.Time, keyID string) (*kalshi.APIKey, error) {
	if w.isLister() {
		return w.listed(ctx, stop, storedAt, keyID)
	}
	q, _ := json.Marshal(listingAsk{Key: keyID, StoredAt: storedAt})
	actx, cancel := context.WithTimeout(ctx, listingAskTimeout)
	m, err := w.js.Conn().RequestWithContext(actx, w.listingSubject(), q)
	cancel()
	var a listingAnswer
	if err == nil && len(m.Data) <= maxListingMsg && json.Unmarshal(m.Data, &a) == nil && a.Error == "" &&
		(a.Key == nil || events.CanonicalAPIKeyID(a.Key.ID) == keyID) {
		return a.Key, nil
	}
	return w.listed(ctx, stop, storedAt, keyID)
}

// serveListing answers the other replicas' questions while this replica is
// the lister, until ctx ends.
func (w *Worker) serveListing(ctx context.Context) (stop func(), err error) {
	var inflight sync.WaitGroup
	sub, err := w.js.Conn().Subscribe(w.listingSubject(), func(m *nats.Msg) {
		var q listingAsk
		if m.Reply == "" || len(m.Data) > maxListingMsg || json.Unmarshal(m.Data, &q) != nil ||
			q.Key != events.CanonicalAPIKeyID(q.Key) || q.Key == "" || !w.isLister() {
			return
		}
		inflight.Go(func() {
			var a listingAnswer
			k, err := w.listed(ctx, ctx, q.StoredAt, q.Key)
			if err != nil {
				a.Error = "cannot list the account" // the asker lists for itself, and sees why
			}
			a.Key = k
			b, _ := json.Marshal(a)
			_ = m.Respond(b)
		})
	})
	if err != nil {
		return nil, err
	}
	return func() { _ = sub.Unsubscribe(); inflight.Wait() }, nil
}
