package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/revoker/revoker/events"
)

// listKeys is "revoker keys": the account's API keys, the worker's own
// marked with a star.
func listKeys(ctx context.Context, cfg Config, stdout io.Writer) error {
	client, err := newKalshiClient(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*cfg.AttemptTimeout)
	defer cancel()
	keys, err := client.ListAPIKeys(ctx)
	if err != nil {
		return fmt.Errorf("listing API keys: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tNAME\tSCOPES")
	own := false
	for _, k := range keys {
		mark := " "
		if events.CanonicalAPIKeyID(k.ID) == cfg.KalshiKeyID {
			mark, own = "*", true
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\n", mark, k.ID, k.Name, strings.Join(k.Scopes, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if own {
		fmt.Fprintln(stdout, "* the key revoker signs with (KALSHI_API_KEY_ID)")
	}
	return nil
}
