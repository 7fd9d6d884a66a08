package worker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoker/revoker/events"
)

// ledger is the durable record every replica shares, in the JetStream KV
// bucket LedgerBucket. Every change is a compare-and-set on the revision
// read before it, so two replicas never both believe they own a request.
//
//	req.<base64url(request id)>  a requestEntry: what the id names and how it ended
//	key.<canonical key id>       a KeyRecord: which request revoked the key
//	leaked.<sha256 hex>          a leakedEntry: the key a leaked private key was found to be
//	attempt.<canonical key id>   an attemptEntry: the one request that may send the key's DELETE now
type ledger struct {
	kv     jetstream.KeyValue
	timing prometheus.Observer // the duration of every call; nil: none
}

// call bounds one ledger call and observes how long it took.
func (l *ledger) call(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithTimeout(ctx, ledgerTimeout)
	began := time.Now()
	return ctx, func() {
		cancel()
		if l.timing != nil {
			l.timing.Observe(time.Since(began).Seconds())
		}
	}
}

// requestEntry is what the ledger knows of one trusted request id.
type requestEntry struct {
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
	// recorded before it is sent (contain.go).
	Cancel *cancelRecord `json:"cancel,omitempty"`
}

func (e *requestEntry) decided() bool {
	return e.Refused != "" || len(e.Result) > 0 && string(e.Result) != "null"
}

// KeyRecord is what the ledger knows of one key revoker revoked.
type KeyRecord struct {
	RequestID   string    `json:"request_id"`
	RequestSeq  uint64    `json:"request_seq"`
	RevokedAt   time.Time `json:"revoked_at"`
	RequestedBy string    `json:"requested_by,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	// Fingerprint names the leaked private key the request carried, if any.
	Fingerprint string `json:"leaked_key_fingerprint,omitempty"`
	// ConfirmedAt is when revoker saw that the key is dead: the account no
	// longer lists it (and a leaked key's signed call is refused). Zero
	// until then.
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	// UnconfirmedAt is when revoker gave up confirming the key dead
	// (Config.ConfirmGiveUp after the revocation), and UnconfirmedReason
	// what the last check found. Zero unless it gave up.
	UnconfirmedAt     time.Time `json:"unconfirmed_at,omitzero"`
	UnconfirmedReason string    `json:"unconfirmed_reason,omitempty"`
	// The key's blast radius as the account listed it before the DELETE
	// (after it, nothing else can tell), and what the request's
	// cancel_orders cancelled (nil without one).
	KeyName       string              `json:"key_name,omitempty"`
	KeyScopes     []string            `json:"key_scopes,omitempty"`
	KeySubaccount *int                `json:"key_subaccount,omitempty"`
	Containment   *events.Containment `json:"containment,omitempty"`
}

// claim is a request entry as read, with the revision a change must match.
type claim struct {
	requestEntry
	rev uint64
}

var errLedgerConflict = errors.New("the ledger entry changed meanwhile")

// refusalTTL is how long the ledger keeps a request refused before any
// Kalshi call: its result is stored, and a redelivery comes within the ack
// wait, long before.
const refusalTTL = 24 * time.Hour

// ledgerTimeout bounds each ledger call: one unanswered while NATS is away
// must not hold a request past its redelivery.
const ledgerTimeout = 5 * time.Second

func requestKey(id string) string       { return "req." + base64.RawURLEncoding.EncodeToString([]byte(id)) }
func keyKey(apiKeyID string) string     { return "key." + apiKeyID }
func attemptKey(apiKeyID string) string { return "attempt." + apiKeyID }
func leakedKeyKey(fingerprint string) string {
	return "leaked." + strings.TrimPrefix(fingerprint, "sha256:")
}

// leakedEntry is the key a leaked private key was found to be. A key's
// public key never changes, so it stays true; it lets a later request with
// the same PEM find the key after its delete, when no listed key is it.
type leakedEntry struct {
	Key     string `json:"key"`
	Foreign bool   `json:"foreign,omitempty"`
}

// recordLeaked notes which key a leaked private key is, unless known.
func (l *ledger) recordLeaked(ctx context.Context, fingerprint string, e leakedEntry) error {
	_, err := l.createJSON(ctx, leakedKeyKey(fingerprint), e)
	return err
}

// leakedKeyOf returns the key a leaked private key was found to be, or nil
// when the ledger does not know it.
func (l *ledger) leakedKeyOf(ctx context.Context, fingerprint string) (*leakedEntry, error) {
	var e leakedEntry
	if found, err := l.getJSON(ctx, leakedKeyKey(fingerprint), &e); !found {
		return nil, err
	}
	return &e, nil
}

// createJSON writes v under key unless an entry is there, and returns the
// revision it created, or 0.
func (l *ledger) createJSON(ctx context.Context, key string, v any) (uint64, error) {
	ctx, done := l.call(ctx)
	defer done()
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	rev, err := l.kv.Create(ctx, key, b)
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("ledger: creating %s: %w", key, err)
	}
	return rev, nil
}

// getJSON reads the entry under key into v; found is false when there is
// none.
func (l *ledger) getJSON(ctx context.Context, key string, v any) (found bool, err error) {
	_, found, err = l.getEntry(ctx, key, v)
	return found, err
}

// claim records e under id unless id is already recorded, and returns the
// entry that is there now: e itself (fresh) or the earlier one. A refusal
// decided before any Kalshi call expires after refusalTTL.
func (l *ledger) claim(ctx context.Context, id string, e requestEntry) (c claim, fresh bool, err error) {
	ctx, done := l.call(ctx)
	defer done()
	v, err := json.Marshal(e)
	if err != nil {
		return claim{}, false, err
	}
	var opts []jetstream.KVCreateOpt
	if e.Refused != "" {
		opts = append(opts, jetstream.KeyTTL(refusalTTL))
	}
	rev, err := l.kv.Create(ctx, requestKey(id), v, opts...)
	if err == nil {
		return claim{e, rev}, true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return claim{}, false, fmt.Errorf("ledger: claiming request %.64q: %w", id, err)
	}
	entry, err := l.kv.Get(ctx, requestKey(id))
	if err != nil {
		// Deleted or expired between the two calls: the caller tries again.
		return claim{}, false, fmt.Errorf("ledger: reading request %.64q: %w", id, errors.Join(errLedgerConflict, err))
	}
	var got requestEntry
	if err := json.Unmarshal(entry.Value(), &got); err != nil {
		return claim{}, false, fmt.Errorf("ledger: request %.64q: %w", id, err)
	}
	return claim{got, entry.Revision()}, false, nil
}

// update replaces the entry read as c with e, if nobody changed it since
// (errLedgerConflict otherwise).
func (l *ledger) update(ctx context.Context, id string, c claim, e requestEntry) (claim, error) {
	rev, err := l.putEntry(ctx, requestKey(id), e, c.rev)
	if err != nil {
		return claim{}, err
	}
	return claim{e, rev}, nil
}

// recordRevoked notes that request revoked the key, unless an earlier
// request is already recorded for it. It returns the revision of the record
// it created, or 0.
func (l *ledger) recordRevoked(ctx context.Context, apiKeyID string, r KeyRecord) (uint64, error) {
	return l.createJSON(ctx, keyKey(apiKeyID), r)
}

// confirmRevoked records that the key is dead: its record gets ConfirmedAt.
// rec is the record written at revision rev (0: unknown), updated in one
// write when nothing changed it since; it is created if the revocation's
// own write was lost.
func (l *ledger) confirmRevoked(ctx context.Context, apiKeyID string, rec KeyRecord, rev uint64, at time.Time) error {
	ctx, done := l.call(ctx)
	defer done()
	if rev > 0 {
		confirmed := rec
		confirmed.ConfirmedAt = at
		v, err := json.Marshal(confirmed)
		if err != nil {
			return err
		}
		if _, err := l.kv.Update(ctx, keyKey(apiKeyID), v, rev); err == nil {
			return nil
		}
	}
	entry, err := l.kv.Get(ctx, keyKey(apiKeyID))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rec.ConfirmedAt = at
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		_, err = l.kv.Create(ctx, keyKey(apiKeyID), v)
		return err
	case err != nil:
		return err
	}
	var stored KeyRecord
	if err := json.Unmarshal(entry.Value(), &stored); err != nil {
		return fmt.Errorf("ledger: key %s: %w", apiKeyID, err)
	}
	if !stored.ConfirmedAt.IsZero() {
		return nil
	}
	stored.ConfirmedAt = at
	v, err := json.Marshal(stored)
	if err != nil {
		return err
	}
	_, err = l.kv.Update(ctx, keyKey(apiKeyID), v, entry.Revision())
	return err
}

// revokedBy returns what the ledger knows of the key, or nil.
func (l *ledger) revokedBy(ctx context.Context, apiKeyID string) (*KeyRecord, error) {
	var r KeyRecord
	if found, err := l.getJSON(ctx, keyKey(apiKeyID), &r); !found {
		return nil, err
	}
	return &r, nil
}

// fill is how full the ledger is: its bytes over its limit (0 when it has
// none). A full ledger takes no new claim, and requests then wait.
func (l *ledger) fill(ctx context.Context) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, ledgerTimeout) // not a request's call: not timed
	defer cancel()
	st, err := l.kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo().Config.MaxBytes <= 0 {
		return 0, nil
	}
	return float64(st.Bytes()) / float64(bs.StreamInfo().Config.MaxBytes), nil
}

// KeyLedger reads what the ledger knows of the keys revoker revoked.
type KeyLedger struct{ l ledger }

// OpenKeyLedger binds to the ledger bucket in js, once for any number of
// lookups.
func OpenKeyLedger(ctx context.Context, js jetstream.JetStream) (*KeyLedger, error) {
	kv, err := js.KeyValue(ctx, LedgerBucket)
	if err != nil {
		return nil, fmt.Errorf("ledger bucket %s: %w", LedgerBucket, err)
	}
	return &KeyLedger{ledger{kv: kv}}, nil
}

// Lookup returns what the ledger knows of a key revoker revoked, or nil
// when it knows nothing. apiKeyID is canonicalised first.
func (k *KeyLedger) Lookup(ctx context.Context, apiKeyID string) (*KeyRecord, error) {
	return k.l.revokedBy(ctx, events.CanonicalAPIKeyID(apiKeyID))
}

// getEntry reads the entry under key into v and returns its revision;
// found is false when there is none.
func (l *ledger) getEntry(ctx context.Context, key string, v any) (rev uint64, found bool, err error) {
	ctx, done := l.call(ctx)
	defer done()
	entry, err := l.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("ledger: reading %s: %w", key, err)
	}
	if err := json.Unmarshal(entry.Value(), v); err != nil {
		return 0, false, fmt.Errorf("ledger: %s: %w", key, err)
	}
	return entry.Revision(), true, nil
}

// putEntry writes v under key: created when rev is 0, else replacing
// revision rev. errLedgerConflict means another writer came first.
func (l *ledger) putEntry(ctx context.Context, key string, v any, rev uint64) (uint64, error) {
	ctx, done := l.call(ctx)
	defer done()
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	if rev == 0 {
		rev, err = l.kv.Create(ctx, key, b)
	} else {
		rev, err = l.kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, errLedgerConflict
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: writing %s: %w", key, err)
	}
	return rev, nil
}
