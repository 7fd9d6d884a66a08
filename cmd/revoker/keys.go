package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/console"
)

// listKeys is "revoker keys": the account's API keys, the worker's own
// marked with a star, as the worker's console lists them (or, with the
// Kalshi settings here and no worker answering, as listed here).
func listKeys(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	var keys []console.Key
	err := askConsole(ctx, cfg, "revoker-keys", logger, func(ctx context.Context, c *console.Client) error {
		r, err := c.Keys(ctx)
		keys = r.Keys
		return err
	})
	if err != nil {
		if !fallBack(cfg, logger, err) {
			return err
		}
		listed, err := accountKeys(ctx, cfg)
		if err != nil {
			return err
		}
		keys = make([]console.Key, len(listed))
		for i, k := range listed {
			keys[i] = console.Key{ID: k.ID, Name: k.Name, Scopes: k.Scopes, Subaccount: k.Subaccount, Own: events.CanonicalAPIKeyID(k.ID) == cfg.KalshiKeyID}
		}
	}
	if cfg.JSON {
		enc := json.NewEncoder(jsonWriter{stdout})
		for _, k := range keys {
			if err := enc.Encode(listedKey{k.ID, k.Name, k.Scopes, k.Subaccount, k.Own}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tNAME\tSCOPES\tSUBACCOUNT")
	own := false
	for _, k := range keys {
		mark := " "
		if k.Own {
			mark, own = "*", true
		}
		sub := "-" // every subaccount
		if k.Subaccount != nil {
			sub = strconv.Itoa(*k.Subaccount)
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\n", mark, cell(k.ID), cell(k.Name), cell(strings.Join(k.Scopes, ",")), sub)
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
	// Subaccount is set for a key restricted to one subaccount.
	Subaccount *int `json:"subaccount,omitempty"`
	Own        bool `json:"own"` // the key revoker signs with
}

// accountKeys lists the account's API keys, signed here with the Kalshi
// settings given here.
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
func canonicalIDs(keys []kalshi.APIKey) map[string]bool { return console.Listed(keys) }
