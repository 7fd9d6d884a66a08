package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/console"
	"github.com/revoker/revoker/worker/ledger"
)

// keyStatus is what "revoker status" says of one key, and its --json form.
type keyStatus struct {
	APIKeyID string            `json:"api_key_id"`
	State    keyState          `json:"state"`
	Revoked  *ledger.KeyRecord `json:"revoked"` // from the ledger; null when revoker never revoked the key
	Listed   *bool             `json:"listed"`  // whether the account lists the key; null when nobody could tell
	// Scheduled: requests for the key with a not_before (revoke --at),
	// listed from when the worker first saw them until a week after their
	// time; absent when none.
	Scheduled []ledger.ScheduledRequest `json:"scheduled,omitempty"`
}

// keyState is the verdict of "revoker status" on a key: what an operator
// does next depends on it.
type keyState string

const (
	stateRevoked      keyState = "revoked"        // revoker revoked it (confirmed dead or not: see listed)
	stateLive         keyState = "live"           // the account lists it; revoker never revoked it
	stateNotInAccount keyState = "not_in_account" // neither listed nor revoked by revoker
	stateUnknown      keyState = "unknown"        // revoker never revoked it; whether it is listed is unknown
)

// judge sets st.State from what the ledger and the listing say.
func (st *keyStatus) judge() {
	switch {
	case st.Revoked != nil:
		st.State = stateRevoked
	case st.Listed == nil:
		st.State = stateUnknown
	case *st.Listed:
		st.State = stateLive
	default:
		st.State = stateNotInAccount
	}
}

// status is "revoker status KEY_ID...": per key, what the ledger knows of
// its revocation and whether the account still lists it, as the worker's
// console says (or, with the Kalshi settings here and no worker answering,
// as listed here). When neither answers, it says so, prints what the
// ledger knows all the same and exits 1.
func status(ctx context.Context, cfg Config, keyIDs []string, logger *slog.Logger, stdout io.Writer) error {
	listed, why := accountListing(ctx, cfg, keyIDs, logger)

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
	led, err := ledger.Open(ctx, js)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("the ledger %s does not exist: no \"revoker run\" has provisioned it yet", ledger.Bucket)
	}
	if err != nil {
		return refusal(ctx, explainJetStream(nc, err))
	}
	enc := json.NewEncoder(jsonWriter{stdout})
	for i, id := range keyIDs {
		st := keyStatus{APIKeyID: events.CanonicalAPIKeyID(id)}
		if st.Revoked, err = led.Lookup(ctx, id); err != nil {
			return refusal(ctx, err)
		}
		if st.Scheduled, err = led.Scheduled(ctx, id); err != nil {
			return refusal(ctx, err)
		}
		if listed != nil {
			l := listed[st.APIKeyID]
			st.Listed = &l
		}
		st.judge()
		if cfg.JSON {
			if err := enc.Encode(st); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printKeyStatus(stdout, st, why)
	}
	if listed == nil {
		return exitError{exitFailed}
	}
	return nil
}

// accountListing returns which of keyIDs (canonical) the account lists,
// from the worker's console or, failing that with the Kalshi settings
// here, from a listing signed here; nil and why (logged) when neither
// answered.
func accountListing(ctx context.Context, cfg Config, keyIDs []string, logger *slog.Logger) (map[string]bool, string) {
	var listed map[string]bool
	err := askConsole(ctx, cfg, "revoker-status", logger, func(ctx context.Context, c *console.Client) error {
		r, err := c.Status(ctx, keyIDs)
		if err != nil {
			return err
		}
		listed = make(map[string]bool, len(r.Keys))
		for _, k := range r.Keys {
			listed[k.APIKeyID] = k.Listed
		}
		return nil
	})
	switch {
	case err == nil:
		return listed, ""
	case fallBack(cfg, logger, err):
		keys, err := accountKeys(ctx, cfg)
		if err == nil {
			return canonicalIDs(keys), ""
		}
		logger.Error("cannot ask Kalshi which keys the account lists", "err", err)
		return nil, "Kalshi did not answer"
	}
	logger.Error("cannot ask the worker which keys the account lists", "err", err)
	var none *noConsoleError
	if errors.As(err, &none) {
		return nil, "no worker answered"
	}
	return nil, "the worker did not answer"
}

// printKeyStatus prints st; unknown says why the account was not asked
// when st.Listed is nil.
func printKeyStatus(w io.Writer, st keyStatus, unknown string) {
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
		printBlastRadius(w, r)
	} else if st.State == stateLive {
		fmt.Fprintln(w, "  revoked       no (the ledger has no record of it)")
	} else {
		fmt.Fprintln(w, "  revoked       not by revoker (the ledger has no record of it)")
	}
	printScheduledFor(w, st.Scheduled, time.Now())
	switch {
	case st.Listed == nil:
		fmt.Fprintf(w, "  account       unknown: %s\n", unknown)
	case *st.Listed:
		fmt.Fprintln(w, "  account       lists the key: it is live")
	case st.State == stateNotInAccount:
		fmt.Fprintf(w, "  account       does not list the key: %s\n", notFoundHint)
	default:
		fmt.Fprintln(w, "  account       does not list the key")
	}
}

// printBlastRadius prints what the account listed of a revoked key before
// its DELETE, and what its request's cancel_orders cancelled.
func printBlastRadius(w io.Writer, r *ledger.KeyRecord) {
	if r.KeyScopes != nil || r.KeyName != "" {
		fmt.Fprintf(w, "  name          %s\n", cell(r.KeyName))
		fmt.Fprintf(w, "  scopes        %s\n", cell(strings.Join(r.KeyScopes, ",")))
		if r.KeySubaccount != nil {
			fmt.Fprintf(w, "  subaccount    %d (the key was restricted to it)\n", *r.KeySubaccount)
		} else {
			fmt.Fprintln(w, "  subaccount    none: the key could act on every subaccount")
		}
	}
	switch c := r.Containment; {
	case c == nil:
	case c.Error != nil:
		fmt.Fprintf(w, "  orders        none cancelled: %s: %s\n", c.Error.Code, cell(c.Error.Message))
	default:
		fmt.Fprintf(w, "  orders        %d resting orders cancelled after the DELETE\n", c.OrdersCancelled)
	}
}
