// Command revoker revokes Kalshi API keys the moment another system asks.
//
// Incident-response and key-rotation systems publish "revoke key" requests
// on a NATS JetStream subject; "revoker run" deletes each key through
// Kalshi's signed DELETE /api_keys/{api_key}, retries what is transient and
// stores exactly one outcome per request on the results subject.
//
//	revoker run               the worker service
//	revoker sandbox --demo    everything on one machine, no account needed
//	revoker revoke KEY_ID...  ask for revocations and wait for the outcomes
//	revoker results           the audit log, filtered; --follow for new results
//	revoker status KEY_ID...  what revoker knows of a key, and whether it is listed
//	revoker keys              list the account's API keys
//	revoker check             verify the configuration end to end
//	revoker version           version and build info
//
// "revoker COMMAND -h" lists a command's flags with their environment
// variables and defaults. The README has the install line and the incident
// runbook; docs/ has the operator contract and the rest of the reference.
//
// Exit status: 0 success, 1 a failed check or outcome, 2 a configuration
// error, 3 a key that is not in the account (revoke; see --ignore-not-found),
// 130 (143 for SIGTERM) a command interrupted before it was done (revoke:
// the requests it sent stay queued). run and sandbox stop on either signal.
package main

import (
	"context"
	"errors"
	"os"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	var exit exitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		os.Exit(exit.code)
	default:
		os.Exit(1)
	}
}
