package main

import (
	"fmt"
	"strings"
)

// command describes one subcommand: its flag groups and what it requires.
type command struct {
	args       string // positional arguments in the usage line
	summary    string
	about      string
	groups     []string
	needKalshi bool // KALSHI_API_KEY_ID and a private key are required
}

var commands = map[string]command{
	"run": {
		summary:    "the worker service; blocks until SIGINT or SIGTERM, then shuts down gracefully",
		about:      "Consumes revoke requests from JetStream, deletes each key at Kalshi and publishes one\nresult per request. Creates the streams and the consumer when they are missing\n(--no-provision only binds).",
		groups:     []string{"nats", "kalshi", "subjects", "streams", "provision", "worker", "guards", "http", "log"},
		needKalshi: true,
	},
	"check": {
		summary: "verify the configuration end to end",
		about:   "Verifies what \"revoker run\" would use with the same settings: the key loads, Kalshi\naccepts the signature, NATS and JetStream are reachable, the streams and the consumer\nare usable. Without the Kalshi settings, a running worker says through its console\nwhether Kalshi accepts its credential and whether it is ready. Exits non-zero with the\nreason when something is wrong.",
		groups:  []string{"nats", "kalshi", "subjects", "streams", "provision", "worker", "guards", "http", "output", "log"},
	},
	"keys": {
		summary: "list the account's API keys, marking the worker's own",
		about:   "Lists the account's API keys (ID, name, scopes), marking the key revoker signs with,\nas the worker lists them through its console (revoker.console.keys): only NATS\ncredentials are needed. With the Kalshi settings given here, it lists them itself when\nno worker answers. With --json, one {\"api_key_id\",\"name\",\"scopes\",\"own\"} object per line.",
		groups:  []string{"nats", "kalshi", "output", "log"},
	},
	"revoke": {
		args:    "KEY_ID...",
		summary: "revoke keys (by ID, --leaked-key PEM or --all) and wait for the outcomes",
		about: "Publishes one request per KEY_ID (and per line of -f FILE) and waits for each outcome.\n" +
			"Prints \"KEY_ID OUTCOME [ERROR_CODE: MESSAGE]\" per key, or one result document per line\n" +
			"with --json. A key without an outcome within --timeout is \"KEY_ID pending: ...\": its\n" +
			"request stays queued and will still be carried out; with --json its line is\n" +
			"{\"request_id\",\"api_key_id\",\"outcome\":\"pending\",\"request_seq\",\"detail\"} and every\n" +
			"line of standard output is JSON. A key that ends already_revoked although revoker\n" +
			"never revoked it is not in this account: that is exit status 3 unless\n" +
			"--ignore-not-found.\n\n" +
			"Then, within the same --timeout, it waits for the worker to confirm each revoked key\n" +
			"dead (the account no longer lists it) and prints \"KEY_ID confirmed\", or at the end\n" +
			"\"KEY_ID unconfirmed: WHY\": the account may still list it; \"revoker status KEY_ID\" tells\n" +
			"later. Confirmation does not change the exit status; --json does not wait for it.\n\n" +
			"--leaked-key FILE (- for standard input) revokes the key a leaked PEM private key\n" +
			"belongs to: the request carries the PEM and the worker finds the key (a KEY_ID\n" +
			"argument is a hint). The PEM is never printed: the outcome line names the key (the\n" +
			"PEM's fingerprint when no key matched), and a second line names the PEM:\n" +
			"\"KEY_ID leaked_key_fingerprint=sha256:HEX\".\n\n" +
			"--all revokes every key the account lists but revoker's own (KALSHI_API_KEY_ID) and\n" +
			"REVOKER_PROTECTED_KEYS; --match GLOB keeps the keys whose name matches, --except ID\n" +
			"spares more. It prints the plan, then asks to type the number of keys to revoke (--yes\n" +
			"does not ask). Its request ids are all-<UTC time>-N: \"revoker results --request\n" +
			"'all-<UTC time>-*'\" shows the batch. The worker's console makes the plan.\n\n" +
			"--dry-run deletes nothing: it lists the account's keys once and prints, per key,\n" +
			"would_revoke, not_found, or refused with the guard's code (with --json one\n" +
			"{\"api_key_id\",\"plan\",\"code\"} object per line); with --all, the plan (with --json\n" +
			"one {\"api_key_id\",\"name\",\"plan\",\"spared\"} object per line). The worker's console\n" +
			"plans, with the worker's listing and guards; with the Kalshi settings given here and\n" +
			"no worker answering, it plans here with the guards set here, and says so.\n\n" +
			"Exit status: 0 every key is gone (or would be), 1 a key was refused, failed or is still\n" +
			"pending, or --all was not confirmed, 2 a configuration error, 3 a key is not in this\n" +
			"account, 130 interrupted (Ctrl-C; 143 for SIGTERM) before every outcome came or at\n" +
			"--all's question: the requests sent stay queued.",
		groups: []string{"nats", "kalshi", "subjects", "guards", "revoke", "output", "log"},
	},
	"results": {
		summary: "the audit log: stored results, filtered; --follow for new ones",
		about: "Prints the results stored in the results stream, oldest first: a table (stored time,\n" +
			"request id, key, outcome, code, attempts), or with --json each stored result document\n" +
			"on a line of its own, exactly as stored. --follow keeps printing new results as they\n" +
			"are stored, until Ctrl-C. Filters combine: every one given must match.",
		groups: []string{"nats", "subjects", "streams", "results", "output", "log"},
	},
	"status": {
		args:    "KEY_ID...",
		summary: "what revoker knows of each key, and whether the account still lists it",
		about: "For each KEY_ID: whether revoker revoked it and, if so, when, by which request, who\n" +
			"asked and why (from the ledger), and whether the account still lists the key (asked\n" +
			"of the worker's console; with the Kalshi settings here, listed here when no worker\n" +
			"answers). So it tells apart a key that is live (listed; revoker never revoked it), one\n" +
			"revoker revoked (confirmed dead or not yet), and one not in this account (not listed,\n" +
			"never revoked by revoker: a wrong ID, the wrong environment, or deleted outside\n" +
			"revoker). With --json, one {\"api_key_id\",\"state\",\"revoked\",\"listed\"} object per\n" +
			"line; state is live, revoked, not_in_account or unknown (the account was not asked).",
		groups: []string{"nats", "kalshi", "output", "log"},
	},
	"sandbox": {
		summary: "the whole system on one machine, with no Kalshi account",
		about: "Starts an embedded NATS JetStream server, a local Kalshi emulator seeded with keys and\n" +
			"the worker wired to both, then prints how to try it. Writes DIR/sandbox.json, the PEM\n" +
			"it names and DIR/sandbox.env (\". DIR/sandbox.env\" points every later command at the\n" +
			"sandbox) once everything is ready. A temporary DIR is removed on exit. A --dir that\n" +
			"held an earlier run starts clean: that run's JetStream store (its results, ledger and\n" +
			"requests) and files are removed, and the log says so; a --dir a sandbox still serves\n" +
			"from is refused.",
		groups: []string{"sandbox", "subjects", "streams", "worker", "guards", "http", "log"},
	},
	"version": {
		summary: "print version and build info",
		about:   "Prints the version and build info.",
	},
}

// commandOrder is the order commands are listed in the top-level usage.
var commandOrder = []string{"run", "sandbox", "revoke", "results", "status", "keys", "check", "version"}

// groupTitles are the headings of the flag groups in usage, in order.
var groupTitles = []struct{ id, title string }{
	{"sandbox", "Sandbox"},
	{"nats", "NATS"},
	{"kalshi", "Kalshi"},
	{"subjects", "Subjects"},
	{"streams", "Streams and consumer"},
	{"provision", "Provisioning"},
	{"worker", "Worker"},
	{"guards", "Guards"},
	{"revoke", "Request"},
	{"results", "Filters"},
	{"output", "Output"},
	{"http", "Health and metrics"},
	{"log", "Logging"},
}

// usage returns the help text of cmd; "" (or an unknown command) gives the
// top-level help listing the commands.
func usage(cmd string) string {
	spec, ok := commands[cmd]
	var b strings.Builder
	if !ok {
		b.WriteString("Usage: revoker COMMAND [flags]\n\n")
		b.WriteString("revoker revokes Kalshi API keys on requests received over NATS JetStream.\n\nCommands:\n")
		for _, name := range commandOrder {
			fmt.Fprintf(&b, "  %-8s  %s\n", name, commands[name].summary)
		}
		b.WriteString("\nRun \"revoker COMMAND -h\" for the flags of a command. Every setting can also be given\n")
		b.WriteString("by the environment variable named in its help; a flag beats the environment, which\nbeats the default.\n")
		return b.String()
	}

	line := "Usage: revoker " + cmd
	if len(spec.groups) > 0 {
		line += " [flags]"
	}
	if spec.args != "" {
		line += " " + spec.args
	}
	fmt.Fprintf(&b, "%s\n\n%s\n", line, spec.about)
	all := catalogue()
	for _, g := range groupTitles {
		if !oneOf(g.id, spec.groups...) {
			continue
		}
		fmt.Fprintf(&b, "\n%s:\n", g.title)
		for _, s := range all {
			if s.group != g.id {
				continue
			}
			names := "--" + s.flag
			if s.short != "" {
				names = "-" + s.short + ", " + names
			}
			if s.flag == "" {
				fmt.Fprintf(&b, "  %s=%s (environment only)\n", s.env, s.arg)
			} else if s.arg == "" {
				fmt.Fprintf(&b, "  %s\n", names)
			} else {
				fmt.Fprintf(&b, "  %s %s\n", names, s.arg)
			}
			var notes []string
			if s.env != "" && s.flag != "" {
				notes = append(notes, "env "+s.env)
			}
			if s.def != "" && !s.isBool {
				notes = append(notes, "default "+s.def)
			}
			b.WriteString("        " + s.help)
			if len(notes) > 0 {
				b.WriteString(" [" + strings.Join(notes, ", ") + "]")
			}
			b.WriteString("\n")
		}
	}
	if len(spec.groups) == 0 {
		b.WriteString("\nNo flags.\n")
	}
	return b.String()
}
