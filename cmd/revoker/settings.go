package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/contain"
)

// setting declares one configurable value: a flag, an environment variable
// or both. Its name, environment variable and default are declared here
// once; usage prints them, resolveSettings binds them.
type setting struct {
	group  string
	flag   string // name without dashes; "" for environment only
	env    string // "" for flag only
	def    string // the built-in default
	arg    string // value placeholder in usage; "" for booleans
	help   string
	isBool bool
	secret bool   // never echoed, never trimmed
	short  string // a one-letter alias of flag ("f" for -f), or ""
	repeat bool   // the flag may be given more than once; the values are joined with ","; no default

	val string // the text resolveSettings bound: flag, else environment, else def
}

// key identifies a setting: its flag name, or its environment variable.
func (s *setting) key() string {
	if s.flag != "" {
		return s.flag
	}
	return s.env
}

// label names a setting in messages the way an operator sets it.
func (s *setting) label() string {
	switch {
	case s.flag == "":
		return s.env
	case s.env == "":
		return "--" + s.flag
	}
	return s.env + " (--" + s.flag + ")"
}

// catalogue returns a fresh copy of every setting, in usage order.
func catalogue() []*setting {
	return []*setting{
		{group: "sandbox", flag: "dir", arg: "DIR", help: "directory for sandbox.json and the PEM it names (default: chosen by the sandbox)"},
		{group: "sandbox", flag: "nats-listen", def: "127.0.0.1:4222", arg: "HOST:PORT", help: "address of the embedded NATS server"},
		{group: "sandbox", flag: "kalshi-listen", def: "127.0.0.1:0", arg: "HOST:PORT", help: "address of the Kalshi emulator (port 0: a free port)"},
		{group: "sandbox", flag: "keys", def: "5", arg: "N", help: "API keys to seed in the emulator, 1 to 1000"},
		{group: "sandbox", flag: "demo", def: "false", isBool: true, help: "revoke two of the seeded keys at start and print their outcomes"},
		{group: "sandbox", flag: "faults", arg: "SPEC", help: "failures the emulator injects, e.g. 5xx=0.2,429=0.1,latency=50ms-300ms,lost=0.05 (also hang=FRACTION, seed=N)"},

		{group: "nats", flag: "nats-url", env: "NATS_URL", def: "nats://127.0.0.1:4222", arg: "URLS", help: "NATS server URLs, comma-separated"},
		{group: "nats", flag: "nats-creds", env: "NATS_CREDS", arg: "FILE", help: "NATS user credentials (.creds) file"},
		{group: "nats", flag: "nats-nkey", env: "NATS_NKEY_SEED", arg: "FILE", help: "NATS user nkey seed file"},
		{group: "nats", flag: "nats-tls-ca", env: "NATS_TLS_CA", arg: "FILE", help: "CA certificates (PEM) that verify the NATS server"},
		{group: "nats", flag: "nats-tls-cert", env: "NATS_TLS_CERT", arg: "FILE", help: "client certificate (PEM) for NATS TLS"},
		{group: "nats", flag: "nats-tls-key", env: "NATS_TLS_KEY", arg: "FILE", help: "private key (PEM) of the client certificate"},
		{group: "nats", flag: "nats-inbox-prefix", env: "NATS_INBOX_PREFIX", arg: "PREFIX", help: "subject prefix of this connection's reply inboxes; deploy/nats lets each role read only its own (default: " + inboxWorker + " for run and sandbox, " + inboxRequester + " for revoke, " + inboxAuditor + " for results, status and keys; check: " + inboxWorker + " with the Kalshi settings, else " + inboxAuditor + ")"},

		{group: "kalshi", flag: "kalshi-base-url", env: "KALSHI_BASE_URL", def: kalshi.ProdBaseURL, arg: "URL", help: "Kalshi API base URL; also prod or demo"},
		{group: "kalshi", flag: "kalshi-key-id", env: "KALSHI_API_KEY_ID", arg: "ID", help: "the Kalshi API key ID revoker signs with (required)"},
		{group: "kalshi", flag: "kalshi-private-key", env: "KALSHI_PRIVATE_KEY_PATH", arg: "FILE", help: "PEM private key of that API key, mode 600 (required unless KALSHI_PRIVATE_KEY is set)"},
		{group: "kalshi", env: "KALSHI_PRIVATE_KEY", arg: "PEM", secret: true, help: "the PEM private key itself, instead of a file"},

		{group: "subjects", flag: "requests-subject", env: "REVOKER_REQUESTS_SUBJECT", def: worker.DefaultRequestsSubject, arg: "SUBJECT", help: "subject of revoke requests"},
		{group: "subjects", flag: "results-subject", env: "REVOKER_RESULTS_SUBJECT", def: worker.DefaultResultsSubject, arg: "SUBJECT", help: "subject prefix of results; the outcome is appended"},

		{group: "streams", flag: "requests-stream", env: "REVOKER_REQUESTS_STREAM", def: worker.DefaultRequestsStream, arg: "NAME", help: "work-queue stream of requests"},
		{group: "streams", flag: "results-stream", env: "REVOKER_RESULTS_STREAM", def: worker.DefaultResultsStream, arg: "NAME", help: "stream of results (the audit log)"},
		{group: "streams", flag: "consumer", env: "REVOKER_CONSUMER", def: worker.DefaultConsumer, arg: "NAME", help: "durable consumer shared by all replicas"},

		{group: "provision", flag: "stream-replicas", env: "REVOKER_STREAM_REPLICAS", def: strconv.Itoa(worker.DefaultReplicas), arg: "N", help: "replicas of the streams revoker creates, 1 to 5 (3 in production)"},
		{group: "provision", flag: "no-provision", env: "REVOKER_NO_PROVISION", def: "false", isBool: true, help: "only bind to existing streams and consumer; never create them"},

		{group: "worker", flag: "concurrency", env: "REVOKER_CONCURRENCY", def: strconv.Itoa(worker.DefaultConcurrency), arg: "N", help: "deletes in flight per process, 1 to 1024"},
		{group: "worker", flag: "rate", env: "REVOKER_RATE", def: "auto", arg: "RATE", help: "deletes per second: auto (from the account's limits), a number, or 0 for unlimited"},
		{group: "worker", flag: "rate-share", env: "REVOKER_RATE_SHARE", def: "auto", arg: "FRACTION", help: "fraction of the account's rate budget this process may spend: auto (the live replicas split it evenly) or a number in (0, 1]; applies with --rate auto"},
		{group: "worker", flag: "max-retry", env: "REVOKER_MAX_RETRY", def: shortDuration(worker.DefaultMaxRetry), arg: "DURATION", help: "retry budget per request, counted from when the request was stored"},
		{group: "worker", flag: "max-schedule", env: "REVOKER_MAX_SCHEDULE", def: shortDuration(worker.DefaultMaxSchedule), arg: "DURATION", help: "how far ahead of when it was stored a request's not_before may be (revoke --at); less when the requests stream keeps requests shorter"},
		{group: "worker", flag: "attempt-timeout", env: "REVOKER_ATTEMPT_TIMEOUT", def: shortDuration(worker.DefaultAttemptTimeout), arg: "DURATION", help: "timeout of one HTTP attempt"},
		{group: "worker", flag: "trusted-signers", env: "REVOKER_TRUSTED_SIGNERS", arg: "KEYS", help: "NATS user public nkeys whose signed requests are accepted, comma-separated or @FILE (one per line); none: authentication off"},
		{group: "worker", flag: "max-request-age", env: "REVOKER_MAX_REQUEST_AGE", def: "5m", arg: "DURATION", help: "oldest signed request accepted (only with trusted signers)"},
		{group: "worker", flag: "results-mode", env: "REVOKER_RESULTS_MODE", def: string(events.Structured), arg: "MODE", help: "how results are laid out as CloudEvents on NATS: structured (JSON document, content-type application/cloudevents+json) or binary (data as the body, attributes in ce-* headers)"},
		{group: "worker", flag: "cancel-orders-scope", env: "REVOKER_CANCEL_ORDERS", def: string(contain.DefaultScope), arg: "SCOPE", help: "orders a request with cancel_orders may cancel once its key is deleted: off (none), subaccount (a subaccount-restricted key's subaccount) or all (every order of the member, for an unrestricted key too)"},
		{group: "worker", flag: "allowed-sources", env: "REVOKER_ALLOWED_SOURCES", arg: "SOURCES", help: "comma-separated request sources accepted; none: any"},

		{group: "guards", flag: "allow-self-revoke", env: "REVOKER_ALLOW_SELF_REVOKE", def: "false", isBool: true, help: "allow deleting the key revoker signs with"},
		{group: "guards", flag: "protected-keys", env: "REVOKER_PROTECTED_KEYS", arg: "IDS", help: "comma-separated key IDs never to delete"},

		{group: "revoke", flag: "reason", arg: "TEXT", help: "why the keys are revoked (recorded in the result)"},
		{group: "revoke", flag: "requested-by", arg: "WHO", help: "who asks (recorded in the result)"},
		{group: "revoke", flag: "source", def: "revoker-cli", arg: "SOURCE", help: "the requesting system"},
		{group: "revoke", flag: "timeout", def: "30s", arg: "DURATION", help: "how long to wait for all outcomes (and, in text, the revocations' confirmations)"},
		{group: "revoke", flag: "signer-seed", env: "REVOKER_SIGNER_SEED", arg: "FILE", help: "NATS user nkey seed file that signs the requests"},
		{group: "revoke", flag: "filename", short: "f", arg: "FILE", help: "read key IDs from FILE, one a line (- is standard input; blank lines and # comments are skipped)"},
		{group: "revoke", flag: "leaked-key", arg: "FILE", help: "revoke the API key a leaked PEM private key belongs to (- is standard input); the worker finds the key, a KEY_ID argument is a hint; the PEM is sent in the request and never printed"},
		{group: "revoke", flag: "all", def: "false", isBool: true, help: "revoke every key the account lists but revoker's own (KALSHI_API_KEY_ID) and REVOKER_PROTECTED_KEYS, once the number of keys is typed"},
		{group: "revoke", flag: "match", arg: "GLOB", help: "with --all: only the keys whose name matches GLOB (path.Match: * ? [a-z] \\; * does not match /)"},
		{group: "revoke", flag: "except", arg: "ID", repeat: true, help: "with --all: spare this key too; repeatable"},
		{group: "revoke", flag: "cancel-orders", def: "false", isBool: true, help: "once each key is deleted, cancel the resting orders it could have placed (its subaccount's; member-wide only where the worker allows it); the outcome's containment says what was cancelled"},
		{group: "revoke", flag: "yes", def: "false", isBool: true, help: "with --all: go on without asking for the number of keys"},
		{group: "revoke", flag: "dry-run", def: "false", isBool: true, help: "delete nothing: list the account's keys once and print what would happen to each key (with --all: the plan)"},
		{group: "revoke", flag: "at", arg: "TIME", help: "revoke at TIME, an RFC 3339 time or +DURATION from now, not before (sends not_before): prints each request as scheduled once the worker has recorded it, and exits"},
		{group: "revoke", flag: "ignore-not-found", def: "false", isBool: true, help: "a key this account does not have is not an error (otherwise exit status 3)"},

		{group: "results", flag: "since", arg: "DURATION|TIME", help: "only results stored since then: a duration back from now (90m, 24h) or an RFC 3339 time"},
		{group: "results", flag: "key", arg: "ID", help: "only results for this API key ID"},
		{group: "results", flag: "request", arg: "ID", help: "only results of this request id; a trailing * matches a prefix"},
		{group: "results", flag: "outcome", arg: "OUTCOME", repeat: true, help: "only results with this outcome: revoked, already_revoked, rejected or failed; repeatable"},
		{group: "results", flag: "follow", def: "false", isBool: true, help: "keep printing new results as they are stored, until Ctrl-C"},

		{group: "output", flag: "json", def: "false", isBool: true, help: "print JSON, one document per line"},

		{group: "http", flag: "http-addr", env: "REVOKER_HTTP_ADDR", def: "127.0.0.1:9464", arg: "HOST:PORT", help: "address of /metrics, /healthz and /readyz; off disables"},

		{group: "log", flag: "log-format", env: "REVOKER_LOG_FORMAT", def: "auto", arg: "FORMAT", help: "auto (text on a terminal, JSON otherwise), text or json"},
		{group: "log", flag: "log-level", env: "REVOKER_LOG_LEVEL", def: "info", arg: "LEVEL", help: "debug, info, warn or error"},
	}
}

// rawSettings holds the text of every setting, unchecked: checking comes
// after, so that every problem is reported at once.
type rawSettings struct {
	list          []*setting
	byKey         map[string]*setting
	onCommandLine map[string]bool // keys of the settings given as flags
	explicit      map[string]bool // keys of the settings given as flags or by the environment
}

// resolveSettings binds the flags of the groups spec takes, each defaulting
// to its environment variable when that is set and not empty, else to its
// built-in default, and parses args (the arguments after the command cmd).
// Settings of other groups keep their built-in default; their environment
// is not read. It returns the settings and the positional arguments; -h
// returns flag.ErrHelp.
func resolveSettings(cmd string, spec command, args []string, getenv func(string) string) (*rawSettings, []string, error) {
	r := &rawSettings{byKey: map[string]*setting{}, onCommandLine: map[string]bool{}, explicit: map[string]bool{}}
	fs := flag.NewFlagSet("revoker "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	byFlag := map[string]*setting{}
	for _, s := range catalogue() {
		r.list = append(r.list, s)
		r.byKey[s.key()] = s
		s.val = s.def
		if !oneOf(s.group, spec.groups...) {
			continue
		}
		if v := getenv(s.env); s.env != "" && v != "" {
			s.val, r.explicit[s.key()] = v, true
		}
		for _, name := range []string{s.flag, s.short} {
			if name == "" {
				continue
			}
			byFlag[name] = s
			switch {
			case s.isBool:
				fs.Var((*boolText)(&s.val), name, s.help)
			case s.repeat:
				fs.Var((*listText)(&s.val), name, s.help)
			default:
				fs.StringVar(&s.val, name, s.val, s.help)
			}
		}
	}

	positional, err := parseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, flag.ErrHelp
		}
		return nil, nil, fmt.Errorf("%s (run \"revoker %s -h\" for the flags)", strings.Replace(err.Error(), " -", " --", 1), cmd)
	}
	fs.Visit(func(f *flag.Flag) {
		key := byFlag[f.Name].key()
		r.onCommandLine[key], r.explicit[key] = true, true
	})
	for _, s := range r.list {
		if !s.secret {
			s.val = strings.TrimSpace(s.val)
		}
	}
	return r, positional, nil
}

// get returns the setting key names; key is a flag name, or the environment
// variable of a setting that has no flag.
func (r *rawSettings) get(key string) *setting {
	s, ok := r.byKey[key]
	if !ok {
		panic("revoker: no setting " + key) // a typo in cmd/revoker
	}
	return s
}

// unset gives s its built-in default, as if the command did not take it.
func (r *rawSettings) unset(s *setting) {
	s.val = s.def
	delete(r.onCommandLine, s.key())
	delete(r.explicit, s.key())
}

// boolText is the text of a boolean flag: the flag alone means "true"; any
// other text is kept for checking.
type boolText string

func (b *boolText) String() string {
	if b == nil {
		return ""
	}
	return string(*b)
}
func (b *boolText) Set(v string) error { *b = boolText(v); return nil }
func (b *boolText) IsBoolFlag() bool   { return true }

// listText is the text of a repeatable flag: the values given, joined with ",".
type listText string

func (l *listText) String() string {
	if l == nil {
		return ""
	}
	return string(*l)
}

func (l *listText) Set(v string) error {
	if *l != "" {
		v = string(*l) + "," + v
	}
	*l = listText(v)
	return nil
}

// parseFlags parses args, allowing flags after positional arguments
// ("revoke KEY --reason x"). Everything after "--" is positional.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// shortDuration writes d as an operator would: "15m", not "15m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
