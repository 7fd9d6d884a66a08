package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/console"
)

// The plans of "revoke --dry-run".
const (
	planWouldRevoke = console.PlanWouldRevoke
	planNotFound    = console.PlanNotFound
	planRefused     = console.PlanRefused
)

// keyPlan is what a revoke request for one key would come to. It is also
// the --json form of a --dry-run line.
type keyPlan struct {
	console.KeyPlan
	why string
}

// explain adds to p why it is refused or not found, in words.
func explain(p console.KeyPlan) keyPlan {
	kp := keyPlan{KeyPlan: p}
	switch {
	case p.Code == events.CodeInvalidRequest:
		kp.why = keyIDProblem(p.APIKeyID)
		if kp.why == "" {
			kp.why = events.Quote(p.APIKeyID) + " is not a Kalshi API key ID"
		}
	case p.Code == events.CodeSelfRevocationRefused:
		kp.why = "the key revoker signs with (KALSHI_API_KEY_ID); REVOKER_ALLOW_SELF_REVOKE=true allows it"
	case p.Code == events.CodeProtectedKey:
		kp.why = "listed in REVOKER_PROTECTED_KEYS"
	case p.Plan == planNotFound:
		kp.why = notFoundHint
	}
	return kp
}

// localGuards are the guards as set here.
func localGuards(cfg Config) console.Guards {
	return console.Guards{SelfKeyID: cfg.KalshiKeyID, AllowSelfRevoke: cfg.AllowSelfRevoke, ProtectedKeys: cfg.ProtectedKeys}
}

// planKeys plans keyIDs: an ID that cannot name a key (keyIDProblem) is
// refused here; the others by the worker's console, with the worker's
// guards and account listing, or, when no worker answers and the Kalshi
// settings are given here, from a listing signed here with the guards set
// here.
func planKeys(ctx context.Context, cfg Config, keyIDs []string, logger *slog.Logger) ([]keyPlan, error) {
	plans := make([]keyPlan, len(keyIDs))
	var ask []string
	var at []int
	for i, id := range keyIDs {
		if keyIDProblem(id) != "" {
			plans[i] = explain(console.KeyPlan{APIKeyID: id, Plan: planRefused, Code: events.CodeInvalidRequest})
			continue
		}
		ask, at = append(ask, id), append(at, i)
	}
	if len(ask) == 0 {
		return plans, nil
	}
	var got []console.KeyPlan
	err := askConsole(ctx, cfg, "revoker-dry-run", logger, func(ctx context.Context, c *console.Client) error {
		r, err := c.Plan(ctx, console.PlanRequest{Keys: ask})
		got = r.Keys
		if err == nil {
			warnLocalGuards(cfg, r.Guards, logger)
		}
		return err
	})
	switch {
	case err == nil:
	case fallBack(cfg, logger, err):
		keys, err := accountKeys(ctx, cfg)
		if err != nil {
			return nil, err
		}
		got = console.PlanKeys(localGuards(cfg), canonicalIDs(keys), ask)
	default:
		return nil, err
	}
	if len(got) != len(ask) {
		return nil, fmt.Errorf("the worker planned %d keys, asked %d", len(got), len(ask))
	}
	for j, p := range got {
		p.APIKeyID = keyIDs[at[j]] // as given
		plans[at[j]] = explain(p)
	}
	return plans, nil
}

// dryRun is "revoker revoke --dry-run": the worker plans each key, deleting
// nothing, and it prints the plans. Exit status 1 when a key would be
// refused, else 3 when one is not in the account (unless
// --ignore-not-found), else 0.
func dryRun(ctx context.Context, cfg Config, keyIDs []string, logger *slog.Logger, stdout io.Writer) error {
	plans, err := planKeys(ctx, cfg, keyIDs, logger)
	if err != nil {
		return err
	}
	refused, notFound := false, false
	enc := json.NewEncoder(jsonWriter{stdout})
	for _, p := range plans {
		id := p.APIKeyID
		switch {
		case cfg.JSON:
			if err := enc.Encode(p.KeyPlan); err != nil {
				return err
			}
		case p.Plan == planRefused:
			fmt.Fprintf(stdout, "%s %s %s: %s\n", cell(id), p.Plan, cell(string(p.Code)), events.Sanitize(p.why)) // an invalid ID may hold control characters
		case p.Plan == planNotFound:
			fmt.Fprintf(stdout, "%s %s (%s)\n", cell(id), p.Plan, events.Sanitize(p.why))
		default:
			fmt.Fprintf(stdout, "%s %s\n", cell(id), p.Plan)
		}
		refused = refused || p.Plan == planRefused
		notFound = notFound || (p.Plan == planNotFound && !cfg.IgnoreNotFound)
	}
	switch {
	case refused:
		return exitError{exitFailed}
	case notFound:
		return exitError{exitNotFound}
	}
	return nil
}
