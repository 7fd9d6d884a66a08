package ledger

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
)

// Bucket is the JetStream KV bucket of the ledger, and Stream the stream
// behind it.
const (
	Bucket = "REVOKER_LEDGER"
	Stream = "KV_" + Bucket
)

// CallTimeout bounds each ledger call: one unanswered while NATS is away
// must not hold a request past its redelivery.
const CallTimeout = 5 * time.Second

// minEntryTTL is the shortest TTL JetStream accepts for one message.
const minEntryTTL = time.Second

// ErrConflict: the entry changed since it was read; another writer came
// first.
var ErrConflict = errors.New("the ledger entry changed meanwhile")

// Ledger reads and writes the ledger bucket.
type Ledger struct {
	kv     jetstream.KeyValue
	timing prometheus.Observer // the duration of every call; nil: none
}

// New is the ledger in kv, observing the duration of every call in timing
// (nil: none).
func New(kv jetstream.KeyValue, timing prometheus.Observer) *Ledger {
	return &Ledger{kv: kv, timing: timing}
}

// Open binds to the ledger bucket in js, once for any number of lookups.
func Open(ctx context.Context, js jetstream.JetStream) (*Ledger, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		return nil, fmt.Errorf("ledger bucket %s: %w", Bucket, err)
	}
	return New(kv, nil), nil
}

func requestKey(id string) string       { return "req." + base64.RawURLEncoding.EncodeToString([]byte(id)) }
func keyKey(apiKeyID string) string     { return "key." + apiKeyID }
func attemptKey(apiKeyID string) string { return "attempt." + apiKeyID }
func leakedKeyKey(fingerprint string) string {
	return "leaked." + strings.TrimPrefix(fingerprint, "sha256:")
}

// call bounds one ledger call and observes how long it took.
func (l *Ledger) call(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	began := time.Now()
	return ctx, func() {
		cancel()
		if l.timing != nil {
			l.timing.Observe(time.Since(began).Seconds())
		}
	}
}

// Fill is how full the ledger is: its bytes over its limit (0 when it has
// none). A full ledger takes no new claim, and requests then wait.
func (l *Ledger) Fill(ctx context.Context) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout) // not a request's call: not timed
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

// createJSON writes v under key unless an entry is there, and returns the
// revision it created, or 0.
func (l *Ledger) createJSON(ctx context.Context, key string, v any) (uint64, error) {
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

// getEntry reads the entry under key into v and returns its revision;
// found is false when there is none.
func (l *Ledger) getEntry(ctx context.Context, key string, v any) (rev uint64, found bool, err error) {
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
// revision rev. ErrConflict means another writer came first.
func (l *Ledger) putEntry(ctx context.Context, key string, v any, rev uint64) (uint64, error) {
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
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: writing %s: %w", key, err)
	}
	return rev, nil
}

// createTTL writes value under key unless an entry is there, and returns
// the revision it created. The entry expires after ttl (whole seconds, at
// least one; the bucket's own TTL still applies when it is shorter) and
// leaves a marker that a later create replaces. When an entry is there the
// error wraps jetstream.ErrKeyExists, so a caller taking a lease knows it
// lost.
//
// It needs the bucket's per-entry TTLs (worker.LedgerConfig,
// worker.UpgradeLedger); on a bucket without them JetStream refuses the
// write, and worker.CheckSettings refuses such a bucket before the worker
// starts.
func (l *Ledger) createTTL(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
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
