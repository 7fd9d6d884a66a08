package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker/ledger"
)

// Check compares the streams, consumer and ledger bucket that exist with
// what the worker's guarantees need, and reports every setting that breaks
// one, at once, in plain words. What is missing is reported too. With
// c.Provision, a ledger without per-entry TTLs passes: Bind upgrades it
// before the worker binds.
func Check(ctx context.Context, js jetstream.JetStream, c Config) error {
	var errs []error
	problem := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	resultsDup := c.MaxRetry + time.Hour

	if s, err := js.Stream(ctx, c.RequestsStream); err != nil {
		problem("stream %s: %w", c.RequestsStream, err)
	} else {
		cfg := s.CachedInfo().Config
		if cfg.Retention != jetstream.WorkQueuePolicy {
			problem("stream %s has %s retention; it must be a work queue, so a settled request leaves it", cfg.Name, cfg.Retention)
		}
		if cfg.Duplicates < requestsDupWin {
			problem("stream %s has a duplicates window of %v; at least %v drops a repeated request", cfg.Name, cfg.Duplicates, requestsDupWin)
		}
	}
	if s, err := js.Stream(ctx, c.ResultsStream); err != nil {
		problem("stream %s: %w", c.ResultsStream, err)
	} else {
		cfg := s.CachedInfo().Config
		if cfg.Duplicates < resultsDup {
			problem("stream %s has a duplicates window of %v; at least REVOKER_MAX_RETRY + 1h = %v keeps one result per request", cfg.Name, cfg.Duplicates, resultsDup)
		}
		if cfg.MaxMsgSize > 0 && cfg.MaxMsgSize < resultMaxMsgLen {
			problem("stream %s refuses messages over %d bytes; a result needs up to %d", cfg.Name, cfg.MaxMsgSize, resultMaxMsgLen)
		}
	}
	if cons, err := js.Consumer(ctx, c.RequestsStream, c.Consumer); err != nil {
		problem("consumer %s on stream %s: %w", c.Consumer, c.RequestsStream, err)
	} else {
		cfg := cons.CachedInfo().Config
		if cfg.AckPolicy != jetstream.AckExplicitPolicy {
			problem("consumer %s acknowledges %s; it must be explicit", c.Consumer, cfg.AckPolicy)
		}
		if cfg.AckWait > 30*time.Second {
			problem("consumer %s has an ack wait of %v; at most 30s lets another replica take over a dead worker's requests in time", c.Consumer, cfg.AckWait)
		}
		if cfg.MaxDeliver > 0 && cfg.MaxDeliver <= c.MaxDeliveries {
			problem("consumer %s stops after %d deliveries; it must deliver more than %d times (or without limit) so the worker can store failed/max_deliveries", c.Consumer, cfg.MaxDeliver, c.MaxDeliveries)
		}
	}
	if s, err := js.Stream(ctx, UntrustedStream); err != nil {
		problem("stream %s (rejections of untrusted requests; nats stream add --config deploy/nats/streams/%[1]s.json): %w", UntrustedStream, err)
	} else {
		cfg := s.CachedInfo().Config
		for _, code := range untrustedCodes {
			if subject := UntrustedResultSubject(code); !subjectCovered(cfg.Subjects, subject) {
				problem("stream %s does not take %s; it must take %s.>", cfg.Name, subject, UntrustedSubject)
				break
			}
		}
		if cfg.Retention != jetstream.LimitsPolicy {
			problem("stream %s has %s retention; it must keep rejections by limits, like the audit log", cfg.Name, cfg.Retention)
		}
		if cfg.Discard != jetstream.DiscardOld {
			problem("stream %s discards new messages when full; it must drop the oldest, or a flood of junk would stay queued", cfg.Name)
		}
		if cfg.Duplicates < untrustedDupWin {
			problem("stream %s has a duplicates window of %v; at least %v keeps one rejection per message", cfg.Name, cfg.Duplicates, untrustedDupWin)
		}
		if cfg.MaxMsgSize > 0 && cfg.MaxMsgSize < resultMaxMsgLen {
			problem("stream %s refuses messages over %d bytes; a rejection needs up to %d", cfg.Name, cfg.MaxMsgSize, resultMaxMsgLen)
		}
	}
	if kv, err := js.KeyValue(ctx, ledger.Bucket); err != nil {
		problem("ledger bucket %s: %w", ledger.Bucket, err)
	} else if st, err := kv.Status(ctx); err != nil {
		problem("ledger bucket %s: %w", ledger.Bucket, err)
	} else {
		if ttl := st.TTL(); ttl > 0 && ttl < resultsDup {
			problem("ledger bucket %s keeps entries %v; at least the results duplicates window, %v, so a repeated request finds its decision", ledger.Bucket, ttl, resultsDup)
		}
		// A bucket from before per-entry TTLs: run upgrades it before it
		// binds (UpgradeLedger); with --no-provision the operator must.
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && !bs.StreamInfo().Config.AllowMsgTTL && !c.Provision {
			problem("ledger bucket %s has no per-entry TTLs, so a refusal would be kept %v instead of a day; upgrade it in place, keeping every entry (nats-server 2.11+): nats kv edit %[1]s --marker-ttl %[3]s, or start revoker run once without --no-provision", ledger.Bucket, st.TTL(), strings.TrimSuffix(ledgerMarkerTTL.String(), "0s"))
		}
	}
	return errors.Join(errs...)
}
