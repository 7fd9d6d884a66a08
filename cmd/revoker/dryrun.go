package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker"
)

// The plans of "revoke --dry-run".
const (
	planWouldRevoke = "would_revoke"
	planNotFound    = "not_found"
	planRefused     = "refused"
)

// keyPlan is what a revoke request for one key would come to. It is also
// the --json form of a --dry-run line.
type keyPlan struct {
	APIKeyID string      `json:"api_key_id"`
	Plan     string      `json:"plan"`
	Code     events.Code `json:"code,omitempty"` // the guard's, when refused
	why      string
}

// planFor decides the plan for keyID from the guards of cfg, in the order
// the worker applies them (a valid ID, then its own key, then the protected
// keys), and from the account's canonical key IDs.
func planFor(cfg Config, listed map[string]bool, keyID string) keyPlan {
	p := keyPlan{APIKeyID: keyID, Plan: planRefused}
	id := events.CanonicalAPIKeyID(keyID)
	switch guard := worker.KeyGuard(id, cfg.KalshiKeyID, cfg.AllowSelfRevoke, cfg.ProtectedKeys); {
	case keyIDProblem(keyID) != "":
		p.Code, p.why = events.CodeInvalidRequest, keyIDProblem(keyID)
	case guard == events.CodeSelfRevocationRefused:
		p.Code, p.why = guard, "the key revoker signs with (KALSHI_API_KEY_ID); REVOKER_ALLOW_SELF_REVOKE=true allows it"
	case guard == events.CodeProtectedKey:
		p.Code, p.why = guard, "listed in REVOKER_PROTECTED_KEYS"
	case !listed[id]:
		p.Plan, p.why = planNotFound, notFoundHint
	default:
		p.Plan = planWouldRevoke
	}
	return p
}

// dryRun is "revoker revoke --dry-run": it lists the account's keys once and
// prints the plan of each key, deleting nothing. Exit status 1 when a key
// would be refused, else 3 when one is not in the account (unless
// --ignore-not-found), else 0.
func dryRun(ctx context.Context, cfg Config, keyIDs []string, stdout io.Writer) error {
	keys, err := accountKeys(ctx, cfg)
	if err != nil {
		return err
	}
	listed := canonicalIDs(keys)

	refused, notFound := false, false
	enc := json.NewEncoder(jsonWriter{stdout})
	for _, id := range keyIDs {
		p := planFor(cfg, listed, id)
		switch {
		case cfg.JSON:
			if err := enc.Encode(p); err != nil {
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
