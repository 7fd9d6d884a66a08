package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
)

// exitError ends the program with a given status; run has already said why.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run is the whole program: main only calls it, and so do the tests. It
// returns when the command is done or, for long-running commands, when ctx
// is cancelled or SIGINT/SIGTERM arrives.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if len(args) == 0 {
		fmt.Fprint(stderr, usage(""))
		return exitError{2}
	}
	cmd := args[0]
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage(""))
		return nil
	case "version", "-version", "--version":
		printVersion(stdout)
		return nil
	}
	cfg, rest, err := parseConfig(cmd, args[1:], getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage(cmd))
		return nil
	}
	if err != nil {
		var cerr *configError
		if errors.As(err, &cerr) {
			fmt.Fprintf(stderr, "revoker %s: the configuration has %s:\n", cmd, plural(len(cerr.Problems), "problem"))
			for _, p := range cerr.Problems {
				fmt.Fprintf(stderr, "  - %s\n", p)
			}
		} else {
			fmt.Fprintf(stderr, "revoker: %v\n", err)
		}
		return exitError{2}
	}
	logger := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	for _, w := range cfg.Warnings {
		logger.Warn(w)
	}

	switch cmd {
	case "run":
		err = serve(ctx, cfg, logger)
	case "sandbox":
		err = sandbox(ctx, cfg, logger, stdout)
	case "revoke":
		err = revoke(ctx, cfg, rest, logger, stdout)
	case "keys":
		err = listKeys(ctx, cfg, stdout)
	case "check":
		err = check(ctx, cfg, stdout)
	default:
		err = fmt.Errorf("command %q is not implemented", cmd)
	}
	var exit exitError
	if err != nil && !errors.As(err, &exit) {
		logger.Error("revoker "+cmd+" failed", "err", err)
	}
	return err
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
