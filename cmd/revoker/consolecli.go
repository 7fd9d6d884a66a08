package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/worker/console"
)

// The commands that need the account (keys, revoke --dry-run and --all,
// status, check) ask the worker's console over NATS: the worker answers with
// its own Kalshi credential and guards, so an operator needs only NATS
// credentials. With the Kalshi settings given here they sign the listing
// themselves when no worker answers, and say so.

// noConsoleError says that no worker's console could be asked, and why.
type noConsoleError struct{ err error }

func (e *noConsoleError) Error() string { return e.err.Error() }
func (e *noConsoleError) Unwrap() error { return e.err }

// askConsole connects as name, runs ask with a console client and closes.
// It returns a *noConsoleError when no worker could be asked (NATS
// unreachable, no worker subscribed, no answer in time, or a NATS server
// that refuses this user the console's subject), and the worker's refusal
// (*console.Error) as it is.
func askConsole(ctx context.Context, cfg Config, name string, logger *slog.Logger, ask func(context.Context, *console.Client) error) error {
	ctx, nc, done, err := connectCLI(ctx, cfg, name, logger)
	if err != nil {
		return &noConsoleError{fmt.Errorf("cannot ask the worker's console: %w", err)}
	}
	defer done()
	defer nc.Close()
	err = ask(ctx, console.NewClient(nc))
	var noWorker *console.NoWorkerError
	switch {
	case err == nil:
		return nil
	case errors.Is(context.Cause(ctx), nats.ErrPermissionViolation):
		return &noConsoleError{fmt.Errorf("the NATS server refused: %w (this NATS user may not ask the worker's console, revoker.console.*: see deploy/nats/accounts.conf)", context.Cause(ctx))}
	case errors.As(err, &noWorker):
		return &noConsoleError{err}
	}
	return err
}

// signsHere reports whether the Kalshi settings are given here, so that a
// command may sign its listing itself when no worker answers.
func signsHere(cfg Config) bool { return cfg.KalshiKeyID != "" }

// fallBack says, on one line, that the command signs with the Kalshi
// settings given here because no worker answered; false when it cannot
// (no settings here, or the worker refused rather than being absent).
func fallBack(cfg Config, logger *slog.Logger, err error) bool {
	var none *noConsoleError
	if !signsHere(cfg) || !errors.As(err, &none) {
		return false
	}
	logger.Warn("no worker's console answered; signing Kalshi calls here with KALSHI_API_KEY_ID and the guards set here",
		"kalshi_key_id", cfg.KalshiKeyID, "cause", err)
	return true
}

// warnLocalGuards says, when guard settings are given here and differ from
// the worker's (which made the plan), that they do not apply.
func warnLocalGuards(cfg Config, worker console.Guards, logger *slog.Logger) {
	if !cfg.AllowSelfRevoke && len(cfg.ProtectedKeys) == 0 {
		return
	}
	if cfg.AllowSelfRevoke == worker.AllowSelfRevoke && sameSet(cfg.ProtectedKeys, worker.ProtectedKeys) {
		return
	}
	logger.Warn("REVOKER_ALLOW_SELF_REVOKE and REVOKER_PROTECTED_KEYS set here differ from the worker's and have no effect: the plan is the worker's, made with its guards",
		"worker_allow_self_revoke", worker.AllowSelfRevoke, "worker_protected_keys", strings.Join(worker.ProtectedKeys, ","))
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
