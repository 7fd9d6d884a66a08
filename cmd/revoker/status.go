package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker"
)

// keyStatus is what "revoker status" says of one key, and its --json form.
type keyStatus struct {
	APIKeyID string            `json:"api_key_id"`
	Revoked  *worker.KeyRecord `json:"revoked"` // from the ledger; null when revoker never revoked the key
	Listed   *bool             `json:"listed"`  // whether the account lists the key; null when not asked
}

// status is "revoker status KEY_ID...": per key, what the ledger knows of
// its revocation and, with the Kalshi settings, whether the account still
// lists it. When Kalshi does not answer, it says so, prints what the ledger
// knows all the same and exits 1.
func status(ctx context.Context, cfg Config, keyIDs []string, logger *slog.Logger, stdout io.Writer) error {
	var (
		listed   map[string]bool
		kalshiOK = true
	)
	if cfg.KalshiKeyID != "" {
		keys, err := accountKeys(ctx, cfg)
		if err != nil {
			logger.Error("cannot ask Kalshi which keys the account lists", "err", err)
			kalshiOK = false
		} else {
			listed = canonicalIDs(keys)
		}
	}

	ctx, nc, done, err := connectCLI(ctx, cfg, "revoker-status", logger)
	if err != nil {
		return err
	}
	defer done()
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ledger, err := worker.OpenKeyLedger(ctx, js)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("the ledger %s does not exist: no \"revoker run\" has provisioned it yet", worker.LedgerBucket)
	}
	if err != nil {
		return refusal(ctx, err)
	}
	enc := json.NewEncoder(jsonWriter{stdout})
	for i, id := range keyIDs {
		st := keyStatus{APIKeyID: events.CanonicalAPIKeyID(id)}
		if st.Revoked, err = ledger.Lookup(ctx, id); err != nil {
			return refusal(ctx, err)
		}
		if listed != nil {
			l := listed[st.APIKeyID]
			st.Listed = &l
		}
		if cfg.JSON {
			if err := enc.Encode(st); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printKeyStatus(stdout, st, kalshiOK)
	}
	if !kalshiOK {
		return exitError{exitFailed}
	}
	return nil
}

func printKeyStatus(w io.Writer, st keyStatus, kalshiOK bool) {
	fmt.Fprintln(w, cell(st.APIKeyID))
	if r := st.Revoked; r != nil {
		fmt.Fprintf(w, "  revoked       %s by request %s (sequence %d)\n", r.RevokedAt.UTC().Format("2006-01-02T15:04:05Z"), cell(r.RequestID), r.RequestSeq)
		switch {
		case !r.ConfirmedAt.IsZero():
			fmt.Fprintf(w, "  confirmed     %s\n", r.ConfirmedAt.UTC().Format("2006-01-02T15:04:05Z"))
		case !r.UnconfirmedAt.IsZero():
			fmt.Fprintf(w, "  confirmed     no: given up at %s: %s\n", r.UnconfirmedAt.UTC().Format("2006-01-02T15:04:05Z"), cell(r.UnconfirmedReason))
		default:
			fmt.Fprintln(w, "  confirmed     not yet confirmed: the account may still list the key")
		}
		fmt.Fprintf(w, "  requested by  %s\n", cell(r.RequestedBy))
		fmt.Fprintf(w, "  reason        %s\n", cell(r.Reason))
		if r.Fingerprint != "" {
			fmt.Fprintf(w, "  leaked key    %s\n", cell(r.Fingerprint))
		}
	} else {
		fmt.Fprintln(w, "  revoked       not by revoker (the ledger has no record of it)")
	}
	switch {
	case st.Listed == nil && !kalshiOK:
		fmt.Fprintln(w, "  account       unknown: Kalshi did not answer")
	case st.Listed == nil:
		fmt.Fprintln(w, "  account       not asked (no KALSHI_API_KEY_ID)")
	case *st.Listed:
		fmt.Fprintln(w, "  account       lists the key: it is live")
	default:
		fmt.Fprintln(w, "  account       does not list the key")
	}
}
