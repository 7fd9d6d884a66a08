package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/budget"
)

// The account listing that says whether a key is listed before its first
// DELETE is shared by the whole fleet, not only by one process: one replica,
// the lister (the live replica with the lowest id, as in failover.go),
// lists the account at most once per listingMaxAge for every replica, and
// the others ask it, on revoker.fleet.listing.<consumer>.<its id>, which of
// the keys they need are listed; confirmation rounds ask it too. During a
// mass revocation that is one GET /api_keys every 2 s for the fleet instead
// of one per replica. A replica that gets no answer in time (the lister
// died, is cut off from Kalshi, or NATS is slow) lists for itself: sharing
// only saves budget, it decides nothing.

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
}

// fresh returns the keys of a listing asked for at notBefore or later, and
// when it was asked for.
func (li *listing) fresh(notBefore time.Time) (map[string]kalshi.APIKey, time.Time, bool) {
	li.mu.Lock()
	defer li.mu.Unlock()
	if li.keys != nil && !li.started.Before(notBefore) {
		return li.keys, li.started, true
	}
	return nil, time.Time{}, false
}

// store keeps a listing asked for at started, unless a later one is kept.
func (li *listing) store(started time.Time, got []kalshi.APIKey) map[string]kalshi.APIKey {
	keys := make(map[string]kalshi.APIKey, len(got))
	for _, k := range got {
		keys[events.CanonicalAPIKeyID(k.ID)] = k
	}
	li.mu.Lock()
	defer li.mu.Unlock()
	if li.keys == nil || started.After(li.started) {
		li.keys, li.started = keys, started
	}
	return keys
}

// Keys returns the account's keys from a listing asked for at notBefore or
// later, and when it was asked for, sharing one call among every caller
// meanwhile. The call is the worker's List, within the budget of the
// request stored at storedAt.
func (r *Replica) Keys(ctx, stop context.Context, storedAt, notBefore time.Time) (map[string]kalshi.APIKey, time.Time, error) {
	li := &r.listing
	for {
		if keys, started, ok := li.fresh(notBefore); ok {
			return keys, started, nil
		}
		li.mu.Lock()
		if p := li.pending; p != nil {
			li.mu.Unlock()
			// When it ends, a fresh listing is taken above; a failed one
			// is not this caller's failure (the other caller's budget may
			// have been shorter: a confirmation round's), so it lists
			// itself, within its own.
			select {
			case <-p:
			case <-stop.Done():
				return nil, time.Time{}, r.cfg.Stopped
			}
			continue
		}
		p := make(chan struct{})
		li.pending = p
		li.mu.Unlock()

		started := time.Now()
		got, err := r.cfg.List(ctx, stop, storedAt)
		var keys map[string]kalshi.APIKey
		if err == nil {
			keys = li.store(started, got)
		}
		li.mu.Lock()
		li.pending = nil
		li.mu.Unlock()
		close(p)
		if err != nil {
			return nil, time.Time{}, err
		}
		if !started.Before(notBefore) {
			return keys, started, nil
		}
	}
}

// Listed returns keyID (canonical) as the account listed it in a listing
// asked for no longer than listingMaxAge ago, nil when it is not listed: the
// fleet's listing, from the lister when this replica is not it.
func (r *Replica) Listed(ctx, stop context.Context, storedAt time.Time, keyID string) (*kalshi.APIKey, error) {
	keys, err := r.fleetKeys(ctx, stop, storedAt, time.Now().Add(-listingMaxAge), []string{keyID})
	if err != nil {
		return nil, err
	}
	if k, ok := keys[keyID]; ok {
		return &k, nil
	}
	return nil, nil
}

// listingAskTimeout is how long a replica waits for the lister's answer
// before it lists for itself; after a question without a good answer it
// lists for itself for listingAskPause, so that a lister cut off from Kalshi
// or dead costs the others one wait, not one per request.
const (
	listingAskTimeout = time.Second
	listingAskPause   = 5 * time.Second
)

// listingAsk is a replica's question to the lister; listingAnswer its reply.
type listingAsk struct {
	Keys []string `json:"keys"`
	// MaxAge: how long before the lister hears the question the listing
	// may have been asked for (relative: the two clocks may differ).
	MaxAge   time.Duration `json:"max_age"`
	StoredAt time.Time     `json:"stored_at"` // of the request asking: its budget pays
}

type listingAnswer struct {
	Listed []kalshi.APIKey `json:"listed,omitempty"` // the keys asked for that are listed
	// Age: how long before answering the listing was asked for (a
	// duration: the two clocks may differ). Absent from a lister of an
	// earlier version: the asker then knows only MaxAge.
	Age   time.Duration `json:"age,omitempty"`
	Error string        `json:"error,omitempty"`
}

// maxListingMsg bounds what a replica parses; maxListingAsk the keys one
// question names (a bigger confirmation round lists for itself).
const (
	maxListingMsg = 64 << 10
	maxListingAsk = 512
)

// listingSubject is where replica id answers questions about the listing:
// each replica listens on its own, so that a question to a lister that died
// gets "no responders" at once instead of waiting out a timeout.
func (r *Replica) listingSubject(id string) string {
	return budget.FleetSubject + ".listing." + r.cfg.Consumer + "." + id
}

// lister returns the id of the replica that lists for the fleet: the live
// replica with the lowest id this one hears, itself included.
func (r *Replica) lister() string {
	if r.cfg.Conn == nil {
		return "" // a replica alone (unit tests)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now, lowest := time.Now(), r.id
	for id, p := range r.peers {
		if id < lowest && now.Sub(p.seen) <= heldStrike && !p.gone && validReplicaID(id) {
			lowest = id
		}
	}
	return lowest
}

// isLister reports whether this replica lists for the fleet.
func (r *Replica) isLister() bool {
	id := r.lister()
	return id == "" || id == r.id
}

// validReplicaID: what New makes (hex), nothing that could change
// a subject.
func validReplicaID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// fleetKeys returns those of keys (canonical ids) that the account listed in
// a listing asked for at notBefore or later: asked of the lister when this
// replica is not it, listed here when it is or does not answer.
func (r *Replica) fleetKeys(ctx, stop context.Context, storedAt, notBefore time.Time, keys []string) (map[string]kalshi.APIKey, error) {
	if got, _, ok := r.SharedKeys(ctx, storedAt, notBefore, keys); ok {
		return got, nil
	}
	got, _, err := r.Keys(ctx, stop, storedAt, notBefore)
	return got, err
}

// SharedKeys is a listing asked for at notBefore or later without a call of
// this replica's: the one it keeps, or the lister's answer for keys
// (canonical ids); ok is false without either. asOf is when, at the
// earliest, the listing was asked for, on this replica's clock.
func (r *Replica) SharedKeys(ctx context.Context, storedAt, notBefore time.Time, keys []string) (got map[string]kalshi.APIKey, asOf time.Time, ok bool) {
	if got, started, ok := r.listing.fresh(notBefore); ok {
		return got, started, true
	}
	if r.isLister() || len(keys) > maxListingAsk {
		return nil, time.Time{}, false
	}
	asked := time.Now()
	got, age, ok := r.askLister(ctx, listingAsk{Keys: keys, MaxAge: asked.Sub(notBefore), StoredAt: storedAt})
	// The lister asked for its listing age before it answered, and it
	// answered after this replica asked: asked-age is no later than that.
	if asOf = asked.Add(-age); asOf.Before(notBefore) {
		asOf = notBefore
	}
	return got, asOf, ok
}

// askLister asks the fleet's lister; ok is false without a good answer.
// age is how long before answering the lister asked for its listing (0:
// a lister that does not say).
func (r *Replica) askLister(ctx context.Context, q listingAsk) (keys map[string]kalshi.APIKey, age time.Duration, ok bool) {
	if time.Since(time.Unix(0, r.listerFailed.Load())) < listingAskPause {
		return nil, 0, false
	}
	// A lister whose connection is gone answers "no responders" at once:
	// the next one is asked (or this replica lists), without a pause.
	for lister := r.lister(); lister != r.id; lister = r.lister() {
		got, age, err := r.askListerOnce(ctx, lister, q)
		if errors.Is(err, nats.ErrNoResponders) {
			r.forget(lister)
			continue
		}
		if err != nil && ctx.Err() == nil {
			r.listerFailed.Store(time.Now().UnixNano())
		}
		return got, age, err == nil
	}
	return nil, 0, false
}

var errBadAnswer = errors.New("the lister's answer is not one")

func (r *Replica) askListerOnce(ctx context.Context, lister string, q listingAsk) (map[string]kalshi.APIKey, time.Duration, error) {
	b, _ := json.Marshal(q)
	actx, cancel := context.WithTimeout(ctx, listingAskTimeout)
	defer cancel()
	m, err := r.cfg.Conn.RequestWithContext(actx, r.listingSubject(lister), b)
	if err != nil {
		return nil, 0, err
	}
	var a listingAnswer
	if len(m.Data) > maxListingMsg || json.Unmarshal(m.Data, &a) != nil || a.Error != "" || a.Age < 0 {
		return nil, 0, errBadAnswer
	}
	asked := make(map[string]bool, len(q.Keys))
	for _, k := range q.Keys {
		asked[k] = true
	}
	got := make(map[string]kalshi.APIKey, len(a.Listed))
	for _, k := range a.Listed {
		id := events.CanonicalAPIKeyID(k.ID)
		if !asked[id] {
			return nil, 0, errBadAnswer
		}
		got[id] = k
	}
	return got, a.Age, nil
}

// serveListing answers the other replicas' questions until ctx ends. A
// replica asked is the lister in the asker's view, if not (yet) in its own
// (it has not heard that a lower one is gone): it answers all the same,
// since silence would cost the asker a timeout and listings of its own.
func (r *Replica) serveListing(ctx context.Context) (stop func(), err error) {
	var inflight sync.WaitGroup
	sub, err := r.cfg.Conn.Subscribe(r.listingSubject(r.id), func(m *nats.Msg) {
		var q listingAsk
		if m.Reply == "" || len(m.Data) > maxListingMsg || json.Unmarshal(m.Data, &q) != nil ||
			len(q.Keys) > maxListingAsk || q.MaxAge < 0 {
			return
		}
		notBefore := time.Now().Add(-q.MaxAge)
		inflight.Go(func() {
			var a listingAnswer
			var keys map[string]kalshi.APIKey
			var started time.Time
			cutOff, err := r.cfg.CutOff(), error(nil)
			if !cutOff { // cut off from Kalshi: the asker lists sooner itself
				keys, started, err = r.Keys(ctx, ctx, q.StoredAt, notBefore)
			}
			if cutOff || err != nil {
				a.Error = "cannot list the account" // the asker lists for itself, and sees why
			} else {
				a.Age = max(time.Since(started), time.Nanosecond)
			}
			for _, id := range q.Keys {
				if k, ok := keys[events.CanonicalAPIKeyID(id)]; ok {
					a.Listed = append(a.Listed, k)
				}
			}
			b, _ := json.Marshal(a)
			_ = m.Respond(b)
		})
	})
	if err != nil {
		return nil, err
	}
	return func() { _ = sub.Unsubscribe(); inflight.Wait() }, nil
}
