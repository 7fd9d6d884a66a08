package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/console"
)

// The plan of a key "revoke --all" spares, and why, as its --dry-run --json
// says.
const (
	planSpared        = console.PlanSpared
	sparedOwn         = console.SparedOwn
	sparedProtected   = console.SparedProtected
	sparedExcept      = console.SparedExcept
	sparedNotMatching = console.SparedNotMatching
)

// planAll asks the worker's console for the --all plan, made with the
// worker's guards and listing; when no worker answers and the Kalshi
// settings are given here, it plans from a listing signed here with the
// guards set here.
func planAll(ctx context.Context, cfg Config, logger *slog.Logger) (console.AllPlan, error) {
	var plan *console.AllPlan
	err := askConsole(ctx, cfg, "revoker-plan", logger, func(ctx context.Context, c *console.Client) error {
		r, err := c.Plan(ctx, console.PlanRequest{All: true, Match: cfg.Match, Except: cfg.Except})
		plan = r.All
		if err == nil {
			warnLocalGuards(cfg, r.Guards, logger)
		}
		return err
	})
	switch {
	case err == nil && plan == nil:
		return console.AllPlan{}, errors.New("the worker's console answered no plan")
	case err == nil:
		return *plan, nil
	case fallBack(cfg, logger, err):
		keys, err := accountKeys(ctx, cfg)
		if err != nil {
			return console.AllPlan{}, err
		}
		return console.PlanAll(localGuards(cfg), keys, cfg.Match, cfg.Except), nil
	}
	return console.AllPlan{}, err
}

// sparedWhy is why a key is spared, in words.
func sparedWhy(cfg Config, reason string) string {
	switch reason {
	case sparedOwn:
		return "the key revoker signs with (KALSHI_API_KEY_ID)"
	case sparedProtected:
		return "protected (REVOKER_PROTECTED_KEYS)"
	case sparedExcept:
		return "--except"
	case sparedNotMatching:
		return "name does not match --match " + events.Quote(cfg.Match)
	}
	return reason
}

// printAllPlan writes the plan for an operator to read.
func printAllPlan(w io.Writer, cfg Config, p console.AllPlan) error {
	if len(p.Revoke) == 0 {
		fmt.Fprintf(w, "The account lists %s; none will be revoked.\n", plural(p.Listed, "key"))
	} else {
		fmt.Fprintf(w, "The account lists %s; %d will be revoked:\n", plural(p.Listed, "key"), len(p.Revoke))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, l := range p.Revoke {
		fmt.Fprintf(tw, "  %s\t%s\n", cell(l.APIKeyID), cell(l.Name))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(p.Spared) > 0 {
		fmt.Fprintf(w, "Spared (%d):\n", len(p.Spared))
		for _, l := range p.Spared {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", cell(l.APIKeyID), cell(l.Name), events.Sanitize(sparedWhy(cfg, l.Spared)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, id := range p.ExceptUnlisted {
		fmt.Fprintf(w, "Note: --except %s names no key the account lists; check the ID.\n", id)
	}
	return nil
}

// revokeAll is "revoker revoke --all": it lists the account's keys, prints
// the plan and, once the operator typed the number of keys to revoke (or
// with --yes), publishes one request per key, under the ids
// all-<UTC time>-N, and waits for the outcomes as revoke does. --dry-run
// prints the plan only (with --json, one allPlanLine per key). With --json
// the plan and the question go to stderr, so that stdout holds only the
// result documents.
func revokeAll(ctx context.Context, cfg Config, stdin io.Reader, logger *slog.Logger, stdout, stderr io.Writer) error {
	plan, err := planAll(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if cfg.DryRun && cfg.JSON {
		enc := json.NewEncoder(jsonWriter{stdout})
		for _, l := range slices.Concat(plan.Revoke, plan.Spared) {
			if err := enc.Encode(l); err != nil {
				return err
			}
		}
		return nil
	}
	human := stdout
	if cfg.JSON {
		human = stderr
	}
	if err := printAllPlan(human, cfg, plan); err != nil {
		return err
	}
	switch {
	case cfg.DryRun:
		fmt.Fprintln(human, "--dry-run: nothing was sent.")
		return nil
	case len(plan.Revoke) == 0:
		fmt.Fprintln(human, "No key to revoke: nothing was sent.")
		return nil
	}

	ctx, nc, done, err := connectCLI(ctx, cfg, "revoker-cli", logger)
	if err != nil {
		return err
	}
	defer done()
	defer nc.Close()
	if !cfg.Yes {
		if why := askCount(ctx, stdin, human, len(plan.Revoke)); why != "" {
			fmt.Fprintf(stderr, "revoker revoke --all: %s: nothing was sent\n", why)
			if interrupted(ctx) {
				return exitError{interruptStatus(ctx)}
			}
			return exitError{exitFailed}
		}
	}

	prefix := allRequestPrefix(time.Now())
	reqs := make([]revocation, len(plan.Revoke))
	for i, l := range plan.Revoke {
		reqs[i] = revocation{requestID: fmt.Sprintf("%s%d", prefix, i+1), keyID: l.APIKeyID}
	}
	fmt.Fprintf(human, "Requesting %s as %s1 to %s; revoker results --request '%s*' shows the batch.\n",
		plural(len(reqs), "revocation"), prefix, reqs[len(reqs)-1].requestID, prefix)
	return reportRevocations(ctx, nc, cfg, reqs, logger, stdout, stderr)
}

// allRequestPrefix is the prefix of the request ids of one "revoke --all":
// all-<UTC time>-, to the millisecond: an id names one key for good, so two
// runs must not share one (a second run's request would be
// conflicting_request_id and delete nothing).
func allRequestPrefix(now time.Time) string {
	return "all-" + now.UTC().Format(allTimeLayout) + "-"
}

const allTimeLayout = "20060102T150405.000Z"

// maxAnswer bounds the line askCount reads.
const maxAnswer = 1 << 10

// askCount asks the operator to type n and reads one line of stdin. It
// returns "" when the line is n, and otherwise why the answer does not do.
func askCount(ctx context.Context, stdin io.Reader, w io.Writer, n int) string {
	fmt.Fprintf(w, "Type the number of keys to revoke (%d) to go on: ", n)
	if stdin == nil {
		return "no answer (no standard input)"
	}
	type answer struct {
		line string
		ok   bool
	}
	read := make(chan answer, 1)
	go func() { // a read of stdin cannot be interrupted; Ctrl-C must still end the wait
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 0, 64), maxAnswer)
		ok := sc.Scan()
		read <- answer{sc.Text(), ok}
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(w)
		return "interrupted"
	case a := <-read:
		switch got := strings.TrimSpace(a.line); {
		case !a.ok:
			fmt.Fprintln(w)
			return "no answer (end of input)"
		case got != strconv.Itoa(n):
			return fmt.Sprintf("the answer was %s, not %d", events.Quote(got), n)
		}
	}
	return ""
}
