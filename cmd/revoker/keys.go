package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// listKeys is "revoker keys": the account's API keys, the worker's own
// marked with a star.
func listKeys(ctx context.Context, cfg Config, stdout io.Writer) error {
	keys, err := accountKeys(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.JSON {
		enc := json.NewEncoder(jsonWriter{stdout})
		for _, k := range keys {
			if err := enc.Encode(listedKey{k.ID, k.Name, k.Scopes, events.CanonicalAPIKeyID(k.ID) == cfg.KalshiKeyID}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tNAME\tSCOPES")
	own := false
	for _, k := range keys {
		mark := " "
		if events.CanonicalAPIKeyID(k.ID) == cfg.KalshiKeyID {
			mark, own = "*", true
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\n", mark, cell(k.ID), cell(k.Name), cell(strings.Join(k.Scopes, ",")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if own {
		fmt.Fprintln(stdout, "* the key revoker signs with (KALSHI_API_KEY_ID)")
	}
	return nil
}

// listedKey is the --json form of one line of "revoker keys".
type listedKey struct {
	ID     string   `json:"api_key_id"`
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	Own    bool     `json:"own"` // the key revoker signs with
}

// accountKeys lists the account's API keys, signed with the worker's
// credential.
func accountKeys(ctx context.Context, cfg Config) ([]kalshi.APIKey, error) {
	client, err := newKalshiClient(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*cfg.AttemptTimeout)
	defer cancel()
	keys, err := client.ListAPIKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	return keys, nil
}

// canonicalIDs is the set of the keys' canonical IDs.
func canonicalIDs(keys []kalshi.APIKey) map[string]bool {
	ids := make(map[string]bool, len(keys))
	for _, k := range keys {
		ids[events.CanonicalAPIKeyID(k.ID)] = true
	}
	return ids
}
