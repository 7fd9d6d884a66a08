package provision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/internal/jskv"
	"github.com/revoker/revoker/worker/ledger"
)

// RequestsMaxAge is how long the requests stream keeps a request past the
// latest not_before it accepts. Requests are work, not history: a week is
// ample for an outage of every worker, counted from when a request is due
// (RequestsStreamConfig adds how far ahead one may be scheduled).
const RequestsMaxAge = 7 * 24 * time.Hour

// How long the other streams keep what they hold. Results are the audit log.
// A result is at most events.MaxResultSize; its message adds a subject and
// the Nats-Msg-Id header. The results stream is bounded in bytes too, so no
// flood of requests can fill the account's storage: the oldest results go
// first (Discard old), and requests keep flowing.
const (
	resultsMaxAge    = 90 * 24 * time.Hour
	requestsDupWin   = time.Hour
	maxAckPending    = 1000
	requestMaxMsgLen = 64 << 10
	resultMaxMsgLen  = 10 << 10
	resultsMaxBytes  = 2 << 30
	// ledgerTTL keeps a decision as long as the audit log keeps its result,
	// far longer than the results duplicates window it must outlast.
	ledgerTTL      = resultsMaxAge
	ledgerMaxBytes = 1 << 30
	ledgerMaxValue = 16 << 10
	// ledgerMarkerTTL turns on per-entry TTLs (createTTL) and is how long
	// the marker an expired entry leaves stays. Nothing reads the markers:
	// a create over one succeeds, and a compare-and-set on the expired
	// revision fails as it should. Short, so they cost next to nothing.
	ledgerMarkerTTL = time.Minute
)

// RequestsStreamConfig is the requests stream as Ensure creates it. It
// keeps a request a week past the latest not_before it accepts, so a
// scheduled request is still there when due (see the worker's
// scheduleLimit).
func RequestsStreamConfig(c Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.RequestsStream,
		Description: "revoker: revoke-key requests (work queue)",
		Subjects:    []string{c.RequestsSubject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		MaxAge:      RequestsMaxAge + c.MaxSchedule,
		MaxMsgSize:  requestMaxMsgLen,
		Discard:     jetstream.DiscardOld,
		Duplicates:  requestsDupWin,
	}
}

// ResultsStreamConfig is the results stream as Ensure creates it. Its
// duplicates window outlasts the longest a request can be retried, so a
// repeated outcome is always dropped.
func ResultsStreamConfig(c Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.ResultsStream,
		Description: "revoker: one outcome per request (audit log)",
		Subjects:    []string{c.ResultsSubject + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		MaxAge:      resultsMaxAge,
		MaxBytes:    resultsMaxBytes,
		MaxMsgSize:  resultMaxMsgLen,
		AllowDirect: true, // the audit log reads in batches, without a consumer
		Discard:     jetstream.DiscardOld,
		Duplicates:  c.MaxRetry + time.Hour,
	}
}

// LedgerConfig is the ledger bucket as Ensure creates it: per request id
// the key it names and its decision, per key the request that revoked it.
// One revision per entry suffices: every change is a compare-and-set on it.
// Entries live ledgerTTL unless created with a shorter TTL of their own
// (createTTL), which needs nats-server 2.11 or later.
func LedgerConfig(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         ledger.Bucket,
		Description:    "revoker: request decisions and revoked keys (ledger)",
		History:        1,
		TTL:            ledgerTTL,
		MaxBytes:       ledgerMaxBytes,
		MaxValueSize:   ledgerMaxValue,
		Storage:        jetstream.FileStorage,
		Replicas:       c.Replicas,
		LimitMarkerTTL: ledgerMarkerTTL,
	}
}

// ReplicasConfig is the replica plan bucket as Ensure creates it (see
// budget.BucketConfig).
func ReplicasConfig(c Config) jetstream.KeyValueConfig {
	return budget.BucketConfig(c.Replicas)
}

// ConsumerConfig is the shared durable consumer as Ensure creates it.
// MaxDeliver is unlimited at the server: the worker itself gives up on the
// MaxDeliveries-th delivery with a result, so nothing is ever left stuck.
func ConsumerConfig(c Config) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "revoker workers (shared by all replicas)",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
		FilterSubject: c.RequestsSubject,
	}
}

// Ensure creates the streams, the consumer and the buckets that are
// missing, whatever c.Provision says. What exists is left as it is
// (operators may have tuned it), except a ledger without per-entry TTLs,
// which is upgraded in place (see UpgradeLedger).
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) error {
	if err := ensureStreams(ctx, js, c); err != nil {
		return err
	}
	_, err := bindConsumer(ctx, js, c, true)
	return err
}

// Bind returns the durable consumer the worker pulls from. With
// c.Provision it first creates what is missing, as Ensure does; without,
// it only binds to what an operator created.
func Bind(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Consumer, error) {
	if c.Provision {
		if err := ensureStreams(ctx, js, c); err != nil {
			return nil, err
		}
	}
	return bindConsumer(ctx, js, c, c.Provision)
}

func ensureStreams(ctx context.Context, js jetstream.JetStream, c Config) error {
	for _, sc := range []jetstream.StreamConfig{RequestsStreamConfig(c), ResultsStreamConfig(c), UntrustedStreamConfig(c)} {
		if _, err := js.Stream(ctx, sc.Name); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("looking up stream %s: %w", sc.Name, err)
		}
		if _, err := js.CreateStream(ctx, sc); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("creating stream %s: %w", sc.Name, err)
		}
	}
	for _, kc := range []jetstream.KeyValueConfig{LedgerConfig(c), ReplicasConfig(c)} {
		if _, err := jskv.Ensure(ctx, js, kc); err != nil {
			return fmt.Errorf("the bucket %s: %w", kc.Bucket, err)
		}
	}
	return UpgradeLedger(ctx, js)
}

// UpgradeLedger turns on per-entry TTLs in a ledger bucket made before
// they existed (by an earlier revoker, or by hand), keeping every entry and
// every other setting. JetStream allows it on a live stream, once: it
// cannot be turned off again. It does nothing to a bucket that has them.
func UpgradeLedger(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, ledger.Stream)
	if err != nil {
		return fmt.Errorf("the ledger bucket %s: %w", ledger.Bucket, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.AllowMsgTTL {
		return nil
	}
	cfg.AllowMsgTTL = true
	if cfg.SubjectDeleteMarkerTTL <= 0 {
		cfg.SubjectDeleteMarkerTTL = ledgerMarkerTTL
	}
	updated, err := js.UpdateStream(ctx, cfg)
	if err != nil {
		return fmt.Errorf("turning on per-entry TTLs in the ledger bucket %s: %w", ledger.Bucket, err)
	}
	if !updated.CachedInfo().Config.AllowMsgTTL { // a server before 2.11 ignores the setting
		return fmt.Errorf("turning on per-entry TTLs in the ledger bucket %s: the NATS server does not support them (nats-server 2.11 or later does)", ledger.Bucket)
	}
	return nil
}

// bindConsumer returns the durable consumer, creating it when missing and
// create is set.
func bindConsumer(ctx context.Context, js jetstream.JetStream, c Config, create bool) (jetstream.Consumer, error) {
	cons, err := js.Consumer(ctx, c.RequestsStream, c.Consumer)
	if err == nil {
		return cons, nil
	}
	if !create || !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("binding to consumer %s on stream %s: %w", c.Consumer, c.RequestsStream, err)
	}
	cons, err = js.CreateConsumer(ctx, c.RequestsStream, ConsumerConfig(c))
	if errors.Is(err, jetstream.ErrConsumerExists) {
		// Another replica created it first.
		cons, err = js.Consumer(ctx, c.RequestsStream, c.Consumer)
	}
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s on stream %s: %w", c.Consumer, c.RequestsStream, err)
	}
	return cons, nil
}
