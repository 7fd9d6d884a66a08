package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// minEntryTTL is the shortest TTL JetStream accepts for one message.
const minEntryTTL = time.Second

// createTTL writes value under key unless an entry is there, and returns
// the revision it created. The entry expires after ttl (whole seconds, at
// least one; the bucket's own TTL still applies when it is shorter) and
// leaves a marker that a later create replaces. When an entry is there the
// error wraps jetstream.ErrKeyExists, so a caller taking a lease knows it
// lost.
//
// It needs the bucket's per-entry TTLs (LedgerConfig, UpgradeLedger); on
// a bucket without them JetStream refuses the write, and CheckSettings
// refuses such a bucket before the worker starts.
func (l *ledger) createTTL(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if ttl < minEntryTTL {
		return 0, fmt.Errorf("ledger: creating %s: TTL %v is shorter than %v", key, ttl, minEntryTTL)
	}
	ctx, done := l.call(ctx)
	defer done()
	rev, err := l.kv.Create(ctx, key, value, jetstream.KeyTTL(ttl.Round(time.Second)))
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return 0, fmt.Errorf("ledger: creating %s: %w", key, jetstream.ErrKeyExists)
	case err != nil:
		return 0, fmt.Errorf("ledger: creating %s with a TTL of %v: %w", key, ttl, err)
	}
	return rev, nil
}
