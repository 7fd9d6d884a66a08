package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/ledger"
)

// confirmPoll is how often revoke reads the ledger for the confirmations
// it still waits for: one read per pending key a round.
const confirmPoll = 200 * time.Millisecond

// errLedgerRefused ends the wait for confirmations when the NATS server
// refuses this user the ledger.
var errLedgerRefused = errors.New("ledger read refused")

// printConfirmations waits, until ctx ends (revoke's --timeout), for the
// ledger's confirmed_at of every key the outcomes say revoked: the worker
// sets it once it has seen that the account no longer lists the key. It
// prints "KEY confirmed" per key as its confirmation arrives, then
// "KEY unconfirmed: WHY" for the others. Confirmation is news, not an
// outcome: nothing here changes the exit status, and a ledger this user may
// not read is said on those lines rather than failing the command.
func printConfirmations(ctx context.Context, cfg Config, outcomes []*outcome, logger *slog.Logger, stdout io.Writer) {
	var keys []*awaited
	seen := map[string]bool{}
	for _, o := range outcomes {
		if o.result == nil || o.result.Outcome != events.Revoked || o.result.APIKeyID == "" {
			continue
		}
		id := events.CanonicalAPIKeyID(o.result.APIKeyID)
		if !seen[id] {
			seen[id] = true
			keys = append(keys, &awaited{id: id, label: o.label()})
		}
	}
	if len(keys) == 0 {
		return
	}
	why := awaitConfirmations(ctx, cfg, keys, logger, func(k *awaited) {
		fmt.Fprintf(stdout, "%s confirmed\n", k.label)
	})
	for _, k := range keys {
		if !k.confirmed {
			fmt.Fprintf(stdout, "%s unconfirmed: %s; the account may still list the key: check \"revoker status %s\"\n", k.label, why, k.id)
		}
	}
}

// awaited is a revoked key whose confirmation revoke waits for.
type awaited struct {
	id, label string // canonical ID; as printed
	confirmed bool
}

// awaitConfirmations polls the ledger for the keys until each is
// confirmed (calling confirmed for each as it is) or ctx ends, and returns
// why some are not: "" when all are.
//
// It reads on a connection of its own, whose log lines are all at debug:
// the server may refuse this user the ledger (deploy/nats gives the
// requester no ledger read), which is no failure of the command, and must
// neither end the command's connection with connectCLI's refusal nor leave
// it a last error to warn of.
func awaitConfirmations(ctx context.Context, cfg Config, keys []*awaited, logger *slog.Logger, confirmed func(*awaited)) string {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	quiet := slog.New(debugOnly{logger.Handler()})
	nc, err := dialNATS(ctx, cfg, "revoker-cli-confirm", quiet, func(err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			cancel(errLedgerRefused)
		}
	})
	if err != nil {
		return ledgerProblem(ctx, cfg, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return ledgerProblem(ctx, cfg, err)
	}
	led, err := ledger.Open(ctx, js)
	if err != nil {
		return ledgerProblem(ctx, cfg, err)
	}
	tick := time.NewTicker(confirmPoll)
	defer tick.Stop()
	var lastErr error
	for {
		pending := 0
		for _, k := range keys {
			if k.confirmed {
				continue
			}
			rec, err := led.Lookup(ctx, k.id)
			switch {
			case err != nil:
				lastErr = err
				quiet.Debug("cannot read the ledger; trying again", "api_key_id", k.id, "err", err)
				pending++
			case rec != nil && !rec.ConfirmedAt.IsZero():
				k.confirmed = true
				confirmed(k)
			default:
				pending++
			}
		}
		if pending == 0 {
			return ""
		}
		select {
		case <-ctx.Done():
			return ledgerProblem(ctx, cfg, lastErr)
		case <-tick.C:
		}
	}
}

// ledgerProblem says why the wait for confirmations ended early: ctx ended,
// or err (may be nil) stopped it.
func ledgerProblem(ctx context.Context, cfg Config, err error) string {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errLedgerRefused):
		return fmt.Sprintf("this NATS user may not read the ledger %s, where the worker records confirmations", ledger.Bucket)
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return fmt.Sprintf("the ledger %s does not exist", ledger.Bucket)
	case errors.Is(cause, context.DeadlineExceeded):
		return fmt.Sprintf("no confirmation within --timeout %v", cfg.Timeout)
	case cause != nil:
		return "interrupted before a confirmation"
	}
	return fmt.Sprintf("cannot read the ledger: %v", err)
}

// debugOnly logs every record at debug level.
type debugOnly struct{ slog.Handler }

func (d debugOnly) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.Handler.Enabled(ctx, slog.LevelDebug)
}

func (d debugOnly) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return d.Handler.Handle(ctx, r)
}

func (d debugOnly) WithAttrs(attrs []slog.Attr) slog.Handler {
	return debugOnly{d.Handler.WithAttrs(attrs)}
}

func (d debugOnly) WithGroup(name string) slog.Handler { return debugOnly{d.Handler.WithGroup(name)} }
