package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// exitError ends the program with a given status; run has already said why.
type exitError struct{ code int }

// Exit statuses besides 0.
const (
	exitFailed   = 1 // a failed check, or an outcome that is not success
	exitConfig   = 2 // a configuration (or input) error: nothing was done
	exitNotFound = 3 // revoke: a key this account does not have
)

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run is the whole program: main only calls it, and so do the tests. It
// returns when the command is done or, for long-running commands, when ctx
// is cancelled or SIGINT/SIGTERM arrives.
// stdin is read only by "revoke -f -".
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, stop := notifyContext(ctx)
	defer stop()

	if len(args) == 0 {
		fmt.Fprint(stderr, usage(""))
		return exitError{exitConfig}
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
			printProblems(stderr, "revoker "+cmd+": the configuration has", cerr.Problems)
		} else {
			fmt.Fprintf(stderr, "revoker: %v\n", err)
		}
		return exitError{exitConfig}
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
		err = revoke(ctx, cfg, rest, stdin, logger, stdout, stderr)
	case "results":
		err = results(ctx, cfg, logger, stdout, stderr)
	case "status":
		err = status(ctx, cfg, rest, logger, stdout)
	case "keys":
		err = listKeys(ctx, cfg, logger, stdout)
	case "check":
		err = check(ctx, cfg, logger, stdout)
	default:
		err = fmt.Errorf("command %q is not implemented", cmd)
	}
	var exit exitError
	switch {
	case err == nil || errors.As(err, &exit):
	case interrupted(ctx) && cmd != "run" && cmd != "sandbox":
		// Ctrl-C or SIGTERM ended what the command waited for: that, not
		// the error it caused, is the news. (run and sandbox stop on them.)
		fmt.Fprintf(stderr, "revoker %s: interrupted\n", cmd)
		return exitError{interruptStatus(ctx)}
	default:
		logger.Error("revoker "+cmd+" failed", "err", err)
	}
	return err
}

// notifyContext is signal.NotifyContext for SIGINT and SIGTERM, with the
// signal as the context's cause (a signalError), so that a command can exit
// with the status a shell expects of it.
func notifyContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case s := <-signals:
			if sig, ok := s.(syscall.Signal); ok {
				cancel(signalError{sig})
			}
			cancel(nil)
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
		cancel(nil)
	}
}

// signalError is the cause of run's context when SIGINT or SIGTERM ended it.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return e.sig.String() + " received" }

// interrupted reports whether ctx ended because it was cancelled (Ctrl-C,
// SIGTERM, or its caller) rather than by a deadline.
func interrupted(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// interruptStatus is the exit status of a command ctx's end interrupted:
// 128 plus the signal's number, as a shell reports a process the signal
// killed (130 for Ctrl-C, 143 for SIGTERM). A context its caller
// cancelled (a test, an embedding program) counts as Ctrl-C.
func interruptStatus(ctx context.Context) int {
	var s signalError
	if errors.As(context.Cause(ctx), &s) {
		return 128 + int(s.sig)
	}
	return 128 + int(syscall.SIGINT)
}

// printProblems prints "HEAD N problems:" and one problem a line.
func printProblems(w io.Writer, head string, problems []string) {
	fmt.Fprintf(w, "%s %s:\n", head, plural(len(problems), "problem"))
	for _, p := range problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
