package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
)

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
	// (worker.Config.ConfirmGiveUp after the revocation), and
	// UnconfirmedReason what the last check found. Zero unless it gave up.
	UnconfirmedAt     time.Time `json:"unconfirmed_at,omitzero"`
	UnconfirmedReason string    `json:"unconfirmed_reason,omitempty"`
	// The key's blast radius as the account listed it before the DELETE
	// (after it, nothing else can tell), its fields inlined as in the
	// result, and what the request's cancel_orders cancelled (nil without one).
	events.BlastRadius
	Containment *events.Containment `json:"containment,omitempty"`
}

// RecordRevoked notes that request revoked the key, unless an earlier
// request is already recorded for it. It returns the revision of the record
// it created, or 0.
func (l *Ledger) RecordRevoked(ctx context.Context, apiKeyID string, r KeyRecord) (uint64, error) {
	return l.createJSON(ctx, keyKey(apiKeyID), r)
}

// RevokedBy returns what the ledger knows of the key, or nil.
func (l *Ledger) RevokedBy(ctx context.Context, apiKeyID string) (*KeyRecord, error) {
	var r KeyRecord
	if _, found, err := l.getEntry(ctx, keyKey(apiKeyID), &r); !found {
		return nil, err
	}
	return &r, nil
}

// Lookup returns what the ledger knows of a key revoker revoked, or nil
// when it knows nothing. apiKeyID is canonicalised first.
func (l *Ledger) Lookup(ctx context.Context, apiKeyID string) (*KeyRecord, error) {
	return l.RevokedBy(ctx, events.CanonicalAPIKeyID(apiKeyID))
}

// ConfirmRevoked records that the key is dead: its record gets ConfirmedAt.
// rec is the record written at revision rev (0: unknown), updated in one
// write when nothing changed it since; it is created if the revocation's
// own write was lost.
func (l *Ledger) ConfirmRevoked(ctx context.Context, apiKeyID string, rec KeyRecord, rev uint64, at time.Time) error {
	return l.markKey(ctx, apiKeyID, rec, rev, func(r *KeyRecord) { r.ConfirmedAt = at })
}

// maxUnconfirmedReason bounds the reason a key record keeps.
const maxUnconfirmedReason = 512

// RecordUnconfirmed records in the key's record that its revocation could
// not be confirmed, at when and why. rec and rev are as for ConfirmRevoked.
func (l *Ledger) RecordUnconfirmed(ctx context.Context, apiKeyID string, rec KeyRecord, rev uint64, at time.Time, why string) error {
	if len(why) > maxUnconfirmedReason {
		why = strings.ToValidUTF8(why[:maxUnconfirmedReason], "")
	}
	return l.markKey(ctx, apiKeyID, rec, rev, func(r *KeyRecord) { r.UnconfirmedAt, r.UnconfirmedReason = at.UTC(), why })
}

// markKey applies mark to the key's record: rec as written at revision rev
// (0: unknown) in one write when nothing changed it since, else the record
// as stored, or rec created if the revocation's own write was lost. A
// record already confirmed is left alone: its key is dead.
func (l *Ledger) markKey(ctx context.Context, apiKeyID string, rec KeyRecord, rev uint64, mark func(*KeyRecord)) error {
	ctx, done := l.call(ctx)
	defer done()
	marked := func(r KeyRecord) ([]byte, error) {
		mark(&r)
		return json.Marshal(r)
	}
	if rev > 0 {
		v, err := marked(rec)
		if err != nil {
			return err
		}
		if _, err := l.kv.Update(ctx, keyKey(apiKeyID), v, rev); err == nil {
			return nil
		}
	}
	entry, err := l.kv.Get(ctx, keyKey(apiKeyID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		v, err := marked(rec)
		if err != nil {
			return err
		}
		_, err = l.kv.Create(ctx, keyKey(apiKeyID), v)
		return err
	} else if err != nil {
		return err
	}
	var stored KeyRecord
	if err := json.Unmarshal(entry.Value(), &stored); err != nil {
		return fmt.Errorf("ledger: key %s: %w", apiKeyID, err)
	}
	if !stored.ConfirmedAt.IsZero() {
		return nil
	}
	v, err := marked(stored)
	if err != nil {
		return err
	}
	_, err = l.kv.Update(ctx, keyKey(apiKeyID), v, entry.Revision())
	return err
}
