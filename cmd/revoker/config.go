package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// Limits on what parseConfig reads and accepts.
const (
	maxSecretFile   = 1 << 20 // a private key, seed, creds or certificate file
	maxRequestField = 1 << 10 // reason, requested_by, source (the request contract)
	maxConcurrency  = 1024
	maxReplicas     = 5 // JetStream's limit
)

// Config is every setting of the binary, parsed and validated once from flags
// and the environment by parseConfig. Settings a command does not take keep
// their defaults.
type Config struct {
	Command string // the subcommand: run, check, keys, revoke, results, status, sandbox or version

	// NATS connection (run, check, revoke).
	NATSURLs     []string // NATS_URL, --nats-url: servers, default ["nats://127.0.0.1:4222"]
	NATSCreds    string   // NATS_CREDS, --nats-creds: .creds file; "" for none
	NATSNkeySeed string   // NATS_NKEY_SEED, --nats-nkey: user nkey seed file; "" for none
	NATSTLSCA    string   // NATS_TLS_CA, --nats-tls-ca: CA bundle (PEM) that verifies the server
	NATSTLSCert  string   // NATS_TLS_CERT, --nats-tls-cert: client certificate (PEM)
	NATSTLSKey   string   // NATS_TLS_KEY, --nats-tls-key: the client certificate's key (PEM)

	// Kalshi (run, check, keys).
	KalshiBaseURL        string // KALSHI_BASE_URL, --kalshi-base-url: resolved absolute URL without trailing "/"
	KalshiKeyID          string // KALSHI_API_KEY_ID, --kalshi-key-id
	KalshiPrivateKeyPath string // KALSHI_PRIVATE_KEY_PATH, --kalshi-private-key; "" when the PEM came from KALSHI_PRIVATE_KEY
	KalshiPrivateKey     secret // the PEM itself, read from the file or KALSHI_PRIVATE_KEY; prints as REDACTED

	// Subjects, streams and the consumer.
	RequestsSubject string // REVOKER_REQUESTS_SUBJECT, default "keys.revoke.requests"
	ResultsSubject  string // REVOKER_RESULTS_SUBJECT, default "keys.revoke.results"; the outcome is appended
	RequestsStream  string // REVOKER_REQUESTS_STREAM, default "KEY_REVOKE_REQUESTS"
	ResultsStream   string // REVOKER_RESULTS_STREAM, default "KEY_REVOKE_RESULTS"
	Consumer        string // REVOKER_CONSUMER, default "revoker"
	StreamReplicas  int    // REVOKER_STREAM_REPLICAS, --stream-replicas: 1..5, default 1
	NoProvision     bool   // REVOKER_NO_PROVISION, --no-provision: only bind, never create

	// Worker behaviour (run, check, sandbox).
	Concurrency    int           // REVOKER_CONCURRENCY: 1..1024, default 8
	Rate           Rate          // REVOKER_RATE: default auto
	RateShare      float64       // REVOKER_RATE_SHARE: in (0, 1]; 0 for auto (the default)
	MaxRetry       time.Duration // REVOKER_MAX_RETRY: default 15m
	AttemptTimeout time.Duration // REVOKER_ATTEMPT_TIMEOUT: default 10s
	TrustedSigners []string      // REVOKER_TRUSTED_SIGNERS: NATS user public nkeys; empty: authentication off
	MaxRequestAge  time.Duration // REVOKER_MAX_REQUEST_AGE: default 5m (used only with TrustedSigners)
	AllowedSources []string      // REVOKER_ALLOWED_SOURCES: empty: any source

	// Guards (run, check, sandbox, and revoke --dry-run).
	AllowSelfRevoke bool     // REVOKER_ALLOW_SELF_REVOKE: default false
	ProtectedKeys   []string // REVOKER_PROTECTED_KEYS: canonical key IDs never deleted

	// Operations (every command that runs something).
	HTTPAddr  string     // REVOKER_HTTP_ADDR: host:port, default "127.0.0.1:9464"; "" when off
	LogFormat string     // REVOKER_LOG_FORMAT: "auto" (default), "text" or "json"
	LogLevel  slog.Level // REVOKER_LOG_LEVEL: default info

	// Output (revoke, keys, check, results, status).
	JSON bool // --json: print JSON documents, one a line, instead of text

	// revoke only.
	Reason         string        // --reason
	RequestedBy    string        // --requested-by
	Source         string        // --source, default "revoker-cli"
	Timeout        time.Duration // --timeout: how long to wait for all outcomes, default 30s
	SignerSeed     string        // REVOKER_SIGNER_SEED, --signer-seed: user nkey seed file that signs requests
	KeyFile        string        // -f, --filename: key IDs one a line; "-" is standard input; "" for none
	DryRun         bool          // --dry-run: delete nothing, say what would happen to each key
	IgnoreNotFound bool          // --ignore-not-found: a key the account does not have is not an error

	// results only.
	Since    time.Time        // --since: only results stored at or after it; zero for all
	Key      string           // --key: only results for this canonical key ID; "" for any
	Request  string           // --request: only results of this request id, or prefix with a trailing "*"
	Outcomes []events.Outcome // --outcome, repeatable: only results with these outcomes; empty for any
	Follow   bool             // --follow: keep printing new results as they are stored

	// sandbox only.
	Faults       sandboxFaults // --faults: failures the emulator injects; zero for none
	SandboxDir   string        // --dir: where sandbox.json and the key go; "" lets the sandbox choose
	NATSListen   string        // --nats-listen: default "127.0.0.1:4222"
	KalshiListen string        // --kalshi-listen: default "127.0.0.1:0" (a free port)
	SandboxKeys  int           // --keys: keys seeded in the emulator, default 5
	Demo         bool          // --demo: revoke two seeded keys at start

	// Warnings are problems that do not stop the program (a group-readable
	// key file, a setting that has no effect). The caller logs them.
	Warnings []string
}

// Rate is REVOKER_RATE: the delete budget.
type Rate struct {
	Auto      bool    // read the budget from Kalshi's account limits
	PerSecond float64 // deletes per second when not Auto; 0 means unlimited
}

// Unlimited reports whether deletes are not rate limited at all.
func (r Rate) Unlimited() bool { return !r.Auto && r.PerSecond == 0 }

func (r Rate) String() string {
	switch {
	case r.Auto:
		return "auto"
	case r.PerSecond == 0:
		return "unlimited"
	}
	return strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/s"
}

// secret holds sensitive bytes, such as a PEM private key. It prints, logs
// and marshals as REDACTED, so logging a whole Config is safe.
type secret []byte

const redacted = "REDACTED"

func (secret) String() string               { return redacted }
func (secret) GoString() string             { return redacted }
func (secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (secret) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, redacted) }
func (s secret) Bytes() []byte              { return []byte(s) }
func (s *secret) wipe()                     { clear(*s); *s = nil }

// configError carries every configuration problem found, one per line.
type configError struct {
	Problems []string
}

func (e *configError) Error() string { return strings.Join(e.Problems, "\n") }

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
		summary:    "verify the configuration end to end",
		about:      "Verifies what \"revoker run\" would use with the same settings: the key loads, Kalshi\naccepts the signature, NATS and JetStream are reachable, the streams and the consumer\nare usable. Exits non-zero with the reason when something is wrong.",
		groups:     []string{"nats", "kalshi", "subjects", "streams", "provision", "worker", "guards", "http", "output", "log"},
		needKalshi: true,
	},
	"keys": {
		summary:    "list the account's API keys, marking the worker's own",
		about:      "Lists the account's API keys (ID, name, scopes), marking the key revoker signs with.\nWith --json, one {\"api_key_id\",\"name\",\"scopes\",\"own\"} object per line.",
		groups:     []string{"kalshi", "output", "log"},
		needKalshi: true,
	},
	"revoke": {
		args:    "KEY_ID...",
		summary: "publish one revoke request per key and wait for the outcomes",
		about: "Publishes one request per KEY_ID (and per line of -f FILE) and waits for each outcome.\n" +
			"Prints \"KEY_ID OUTCOME [ERROR_CODE: MESSAGE]\" per key, or one result document per line\n" +
			"with --json. A key that ends already_revoked although revoker never revoked it is not\n" +
			"in this account: that is exit status 3 unless --ignore-not-found.\n\n" +
			"--dry-run deletes nothing: it lists the account's keys once and prints, per key,\n" +
			"would_revoke, not_found, or refused with the guard's code (with --json one\n" +
			"{\"api_key_id\",\"plan\",\"code\"} object per line). It needs the Kalshi settings, and\n" +
			"applies the guards (KALSHI_API_KEY_ID, REVOKER_PROTECTED_KEYS) as set here.\n\n" +
			"Exit status: 0 every key is gone (or would be), 1 a key was refused, failed or is still\n" +
			"pending, 2 a configuration error, 3 a key is not in this account.",
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
			"asked and why (from the ledger), and whether the account still lists the key (only\n" +
			"with the Kalshi settings; otherwise not checked). With --json, one object per line.",
		groups: []string{"nats", "kalshi", "output", "log"},
	},
	"sandbox": {
		summary: "the whole system on one machine, with no Kalshi account",
		about: "Starts an embedded NATS JetStream server, a local Kalshi emulator seeded with keys and\n" +
			"the worker wired to both, then prints how to try it. Writes DIR/sandbox.json, the PEM\n" +
			"it names and DIR/sandbox.env (\". DIR/sandbox.env\" points every later command at the\n" +
			"sandbox) once everything is ready. A temporary DIR is removed on exit.",
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

// setting is one configurable value: a flag, an environment variable or both.
type setting struct {
	group  string
	flag   string // name without dashes; "" for environment only
	env    string // "" for flag only
	def    string
	arg    string // value placeholder in usage; "" for booleans
	help   string
	isBool bool
	secret bool   // never echoed, never trimmed
	short  string // a one-letter alias of flag ("f" for -f), or ""
	repeat bool   // the flag may be given more than once; the values are joined with ","

	active  bool   // the command takes it
	flagSet bool   // given on the command line
	flagVal string // value given on the command line
	val     string // resolved value
	fromEnv bool   // val came from the environment
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

// explicit reports whether the value was given rather than defaulted.
func (s *setting) explicit() bool { return s.flagSet || s.fromEnv }

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

		{group: "kalshi", flag: "kalshi-base-url", env: "KALSHI_BASE_URL", def: kalshi.ProdBaseURL, arg: "URL", help: "Kalshi API base URL; also prod or demo"},
		{group: "kalshi", flag: "kalshi-key-id", env: "KALSHI_API_KEY_ID", arg: "ID", help: "the Kalshi API key ID revoker signs with (required)"},
		{group: "kalshi", flag: "kalshi-private-key", env: "KALSHI_PRIVATE_KEY_PATH", arg: "FILE", help: "PEM private key of that API key, mode 600 (required unless KALSHI_PRIVATE_KEY is set)"},
		{group: "kalshi", env: "KALSHI_PRIVATE_KEY", arg: "PEM", secret: true, help: "the PEM private key itself, instead of a file"},

		{group: "subjects", flag: "requests-subject", env: "REVOKER_REQUESTS_SUBJECT", def: "keys.revoke.requests", arg: "SUBJECT", help: "subject of revoke requests"},
		{group: "subjects", flag: "results-subject", env: "REVOKER_RESULTS_SUBJECT", def: "keys.revoke.results", arg: "SUBJECT", help: "subject prefix of results; the outcome is appended"},

		{group: "streams", flag: "requests-stream", env: "REVOKER_REQUESTS_STREAM", def: "KEY_REVOKE_REQUESTS", arg: "NAME", help: "work-queue stream of requests"},
		{group: "streams", flag: "results-stream", env: "REVOKER_RESULTS_STREAM", def: "KEY_REVOKE_RESULTS", arg: "NAME", help: "stream of results (the audit log)"},
		{group: "streams", flag: "consumer", env: "REVOKER_CONSUMER", def: "revoker", arg: "NAME", help: "durable consumer shared by all replicas"},

		{group: "provision", flag: "stream-replicas", env: "REVOKER_STREAM_REPLICAS", def: "1", arg: "N", help: "replicas of the streams revoker creates, 1 to 5 (3 in production)"},
		{group: "provision", flag: "no-provision", env: "REVOKER_NO_PROVISION", def: "false", isBool: true, help: "only bind to existing streams and consumer; never create them"},

		{group: "worker", flag: "concurrency", env: "REVOKER_CONCURRENCY", def: "8", arg: "N", help: "deletes in flight per process, 1 to 1024"},
		{group: "worker", flag: "rate", env: "REVOKER_RATE", def: "auto", arg: "RATE", help: "deletes per second: auto (from the account's limits), a number, or 0 for unlimited"},
		{group: "worker", flag: "rate-share", env: "REVOKER_RATE_SHARE", def: "auto", arg: "FRACTION", help: "fraction of the account's rate budget this process may spend: auto (the live replicas split it evenly) or a number in (0, 1]; applies with --rate auto"},
		{group: "worker", flag: "max-retry", env: "REVOKER_MAX_RETRY", def: "15m", arg: "DURATION", help: "retry budget per request, counted from when the request was stored"},
		{group: "worker", flag: "attempt-timeout", env: "REVOKER_ATTEMPT_TIMEOUT", def: "10s", arg: "DURATION", help: "timeout of one HTTP attempt"},
		{group: "worker", flag: "trusted-signers", env: "REVOKER_TRUSTED_SIGNERS", arg: "KEYS", help: "NATS user public nkeys whose signed requests are accepted, comma-separated or @FILE (one per line); none: authentication off"},
		{group: "worker", flag: "max-request-age", env: "REVOKER_MAX_REQUEST_AGE", def: "5m", arg: "DURATION", help: "oldest signed request accepted (only with trusted signers)"},
		{group: "worker", flag: "allowed-sources", env: "REVOKER_ALLOWED_SOURCES", arg: "SOURCES", help: "comma-separated request sources accepted; none: any"},

		{group: "guards", flag: "allow-self-revoke", env: "REVOKER_ALLOW_SELF_REVOKE", def: "false", isBool: true, help: "allow deleting the key revoker signs with"},
		{group: "guards", flag: "protected-keys", env: "REVOKER_PROTECTED_KEYS", arg: "IDS", help: "comma-separated key IDs never to delete"},

		{group: "revoke", flag: "reason", arg: "TEXT", help: "why the keys are revoked (recorded in the result)"},
		{group: "revoke", flag: "requested-by", arg: "WHO", help: "who asks (recorded in the result)"},
		{group: "revoke", flag: "source", def: "revoker-cli", arg: "SOURCE", help: "the requesting system"},
		{group: "revoke", flag: "timeout", def: "30s", arg: "DURATION", help: "how long to wait for all outcomes"},
		{group: "revoke", flag: "signer-seed", env: "REVOKER_SIGNER_SEED", arg: "FILE", help: "NATS user nkey seed file that signs the requests"},
		{group: "revoke", flag: "filename", short: "f", arg: "FILE", help: "read key IDs from FILE, one a line (- is standard input; blank lines and # comments are skipped)"},
		{group: "revoke", flag: "dry-run", def: "false", isBool: true, help: "delete nothing: list the account's keys once and print what would happen to each key"},
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

// flagValue binds a setting to a flag.FlagSet. It accepts any text; the
// value is checked after parsing so that every problem is reported at once.
type flagValue struct{ s *setting }

func (v *flagValue) String() string {
	if v == nil || v.s == nil {
		return ""
	}
	return v.s.flagVal
}

func (v *flagValue) Set(x string) error {
	if v.s.repeat && v.s.flagSet {
		x = v.s.flagVal + "," + x
	}
	v.s.flagVal, v.s.flagSet = x, true
	return nil
}

func (v *flagValue) IsBoolFlag() bool { return v != nil && v.s != nil && v.s.isBool }

// parseConfig reads the settings of subcommand cmd from args (the arguments
// after the subcommand) and getenv, flag beating environment beating
// default. It returns the configuration and the positional arguments.
//
// -h or --help returns flag.ErrHelp: print usage(cmd). Every problem with
// the settings is reported at once in one error, one problem per line.
// Only local files are read; nothing connects.
func parseConfig(cmd string, args []string, getenv func(string) string) (Config, []string, error) {
	spec, ok := commands[cmd]
	if !ok {
		return Config{}, nil, fmt.Errorf("unknown command %q (run \"revoker -h\" for the list)", cmd)
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}

	p := &parser{cmd: cmd, invocation: cmd, byKey: map[string]*setting{}}
	fs := flag.NewFlagSet("revoker "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, s := range catalogue() {
		for _, g := range spec.groups {
			if s.group == g {
				s.active = true
			}
		}
		if s.active && s.flag != "" {
			fs.Var(&flagValue{s}, s.flag, s.help)
			if s.short != "" {
				fs.Var(&flagValue{s}, s.short, s.help)
			}
		}
		p.list = append(p.list, s)
		p.byKey[s.key()] = s
	}

	positional, err := parseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, nil, flag.ErrHelp
		}
		return Config{}, nil, fmt.Errorf("%s (run \"revoker %s -h\" for the flags)", strings.Replace(err.Error(), " -", " --", 1), cmd)
	}

	// revoke needs the Kalshi settings and the guards only for --dry-run:
	// without it, they are not read, so a key file elsewhere in the
	// environment cannot stop a revocation.
	if cmd == "revoke" {
		dry := p.get("dry-run")
		if on, err := strconv.ParseBool(dry.flagVal); dry.flagSet && (on || err != nil) {
			spec.needKalshi = true
			p.invocation = "revoke --dry-run"
		} else {
			for _, s := range p.list {
				if s.group != "kalshi" && s.group != "guards" {
					continue
				}
				if s.flagSet {
					p.warn("--%s has no effect without --dry-run", s.flag)
					s.flagSet = false
				}
				s.active = false
			}
		}
	}

	for _, s := range p.list {
		switch {
		case s.flagSet:
			s.val = s.flagVal
		case s.active && s.env != "" && getenv(s.env) != "":
			s.val, s.fromEnv = getenv(s.env), true
		default:
			s.val = s.def
		}
		if !s.secret {
			s.val = strings.TrimSpace(s.val)
		}
	}

	cfg := p.build(spec)
	p.checkArgs(spec, cfg, positional)
	cfg.Warnings = p.warnings
	if len(p.problems) > 0 {
		cfg.KalshiPrivateKey.wipe()
		return Config{}, nil, &configError{Problems: p.problems}
	}
	return cfg, positional, nil
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

// parser turns resolved setting values into a Config, collecting problems.
type parser struct {
	cmd        string
	invocation string // the command as messages name it: cmd, or "revoke --dry-run"
	list       []*setting
	byKey      map[string]*setting
	problems   []string
	warnings   []string
}

func (p *parser) get(key string) *setting {
	s, ok := p.byKey[key]
	if !ok {
		panic("revoker: no setting " + key) // a typo in this file
	}
	return s
}

func (p *parser) problem(format string, args ...any) {
	p.problems = append(p.problems, fmt.Sprintf(format, args...))
}

func (p *parser) warn(format string, args ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf(format, args...))
}

func (p *parser) str(key string) string { return p.get(key).val }

func (p *parser) boolean(key string) bool {
	s := p.get(key)
	v, err := strconv.ParseBool(s.val)
	if err != nil {
		p.problem("%s: %s is not true or false", s.label(), events.Quote(s.val))
	}
	return v
}

func (p *parser) duration(key string) time.Duration {
	s := p.get(key)
	d, err := time.ParseDuration(s.val)
	if err != nil {
		p.problem("%s: %s is not a duration (examples: 90s, 15m, 1h)", s.label(), events.Quote(s.val))
		return 0
	}
	if d <= 0 {
		p.problem("%s must be greater than 0, got %s", s.label(), events.Quote(s.val))
	}
	return d
}

func (p *parser) integer(key string, lo, hi int) int {
	s := p.get(key)
	n, err := strconv.Atoi(s.val)
	if err != nil {
		p.problem("%s: %s is not a whole number", s.label(), events.Quote(s.val))
		return 0
	}
	if n < lo || n > hi {
		p.problem("%s must be between %d and %d, got %d", s.label(), lo, hi, n)
	}
	return n
}

// splitList splits a comma-separated value, dropping blanks.
func (p *parser) splitList(key string) []string {
	var out []string
	for _, part := range strings.Split(p.str(key), ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func (p *parser) build(spec command) Config {
	cfg := Config{Command: p.cmd}

	cfg.NATSURLs = p.natsURLs()
	cfg.NATSCreds = p.credsFile("nats-creds")
	cfg.NATSNkeySeed = p.seedFile("nats-nkey")
	if cfg.NATSCreds != "" && cfg.NATSNkeySeed != "" {
		p.problem("%s and %s are both set; use one of them", p.get("nats-creds").label(), p.get("nats-nkey").label())
	}
	cfg.NATSTLSCA, cfg.NATSTLSCert, cfg.NATSTLSKey = p.natsTLS()

	cfg.KalshiBaseURL = p.kalshiBaseURL()
	cfg.KalshiKeyID = p.kalshiKeyID(spec)
	cfg.KalshiPrivateKeyPath, cfg.KalshiPrivateKey = p.kalshiPrivateKey(spec)
	p.kalshiBothOrNeither(spec)

	cfg.RequestsSubject, cfg.ResultsSubject = p.subjects()
	cfg.RequestsStream = p.name("requests-stream")
	cfg.ResultsStream = p.name("results-stream")
	cfg.Consumer = p.name("consumer")
	if cfg.RequestsStream != "" && cfg.RequestsStream == cfg.ResultsStream {
		p.problem("%s and %s must name different streams, both are %q", p.get("requests-stream").label(), p.get("results-stream").label(), cfg.RequestsStream)
	}
	cfg.StreamReplicas = p.integer("stream-replicas", 1, maxReplicas)
	cfg.NoProvision = p.boolean("no-provision")

	cfg.Concurrency = p.integer("concurrency", 1, maxConcurrency)
	cfg.Rate = p.rate()
	cfg.RateShare = p.rateShare()
	cfg.MaxRetry = p.duration("max-retry")
	cfg.AttemptTimeout = p.duration("attempt-timeout")
	cfg.AllowSelfRevoke = p.boolean("allow-self-revoke")
	cfg.ProtectedKeys = p.protectedKeys()
	cfg.TrustedSigners = p.trustedSigners()
	cfg.MaxRequestAge = p.duration("max-request-age")
	if s := p.get("max-request-age"); s.explicit() && len(cfg.TrustedSigners) == 0 {
		p.warn("%s has no effect without %s", s.label(), p.get("trusted-signers").label())
	}
	cfg.AllowedSources = p.splitList("allowed-sources")
	if err := authPolicy(cfg).Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			p.problem("request authentication: %s", line)
		}
	}

	cfg.HTTPAddr = p.httpAddr()
	cfg.LogFormat = p.logFormat()
	cfg.LogLevel = p.logLevel()

	cfg.Reason = p.requestField("reason")
	cfg.RequestedBy = p.requestField("requested-by")
	cfg.Source = p.requestField("source")
	cfg.Timeout = p.duration("timeout")
	cfg.JSON = p.boolean("json")
	cfg.SignerSeed = p.seedFile("signer-seed")
	cfg.KeyFile = p.str("filename")
	cfg.DryRun = p.boolean("dry-run")
	cfg.IgnoreNotFound = p.boolean("ignore-not-found")

	cfg.Since = p.since(time.Now())
	if s := p.get("key"); s.val != "" {
		cfg.Key = p.checkKeyID(s.label()+": ", s.val)
	}
	cfg.Request = p.requestPattern()
	cfg.Outcomes = p.outcomes()
	cfg.Follow = p.boolean("follow")

	cfg.SandboxDir = p.str("dir")
	cfg.NATSListen = p.listenAddr("nats-listen")
	cfg.KalshiListen = p.listenAddr("kalshi-listen")
	cfg.SandboxKeys = p.integer("keys", 1, 1000)
	cfg.Demo = p.boolean("demo")
	cfg.Faults = p.faults()
	return cfg
}

func (p *parser) checkArgs(spec command, cfg Config, args []string) {
	if spec.args == "" {
		if len(args) > 0 {
			p.problem("\"revoker %s\" takes no arguments, got %s", p.cmd, events.Quote(strings.Join(args, " ")))
		}
		return
	}
	// revoke and status KEY_ID...; revoke also -f FILE.
	switch {
	case len(args) > 0, cfg.KeyFile != "":
	case p.cmd == "revoke":
		p.problem("\"revoker revoke\" needs at least one KEY_ID, or -f FILE")
	default:
		p.problem("\"revoker %s\" needs at least one KEY_ID", p.cmd)
	}
	for _, id := range args {
		switch {
		case id == "-":
			p.problem("\"-\" is not a key ID; to read key IDs from standard input, use -f -")
		case cfg.DryRun:
			// --dry-run reports an invalid ID as refused, with the other keys.
		default:
			p.checkKeyID("", id)
		}
	}
}

func (p *parser) natsURLs() []string {
	s := p.get("nats-url")
	urls := p.splitList("nats-url")
	if len(urls) == 0 {
		p.problem("%s must not be empty", s.label())
		return nil
	}
	for _, raw := range urls {
		u := raw
		if !strings.Contains(u, "://") {
			u = "nats://" + u // what nats.go assumes
		}
		parsed, err := url.Parse(u)
		if err != nil || parsed.Host == "" || !oneOf(parsed.Scheme, "nats", "tls", "ws", "wss") {
			p.problem("%s: %s is not a NATS server URL (example: nats://127.0.0.1:4222)", s.label(), events.Quote(redactURL(raw)))
		}
	}
	return urls
}

func (p *parser) natsTLS() (ca, cert, key string) {
	caS, certS, keyS := p.get("nats-tls-ca"), p.get("nats-tls-cert"), p.get("nats-tls-key")
	ca, cert, key = caS.val, certS.val, keyS.val
	if ca != "" {
		if data, _, ok := p.readFile(caS); ok && !x509.NewCertPool().AppendCertsFromPEM(data) {
			p.problem("%s: %s holds no PEM certificate", caS.label(), ca)
		}
	}
	switch {
	case cert != "" && key == "":
		p.problem("%s is set but %s is not; set both or neither", certS.label(), keyS.label())
	case cert == "" && key != "":
		p.problem("%s is set but %s is not; set both or neither", keyS.label(), certS.label())
	case cert != "":
		_, _, okCert := p.readFile(certS)
		keyData, okKey := p.secretFile(keyS)
		clear(keyData)
		if okCert && okKey {
			if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
				p.problem("%s and %s do not make a certificate: %s", certS.label(), keyS.label(), plainTLSError(err))
			}
		}
	}
	return ca, cert, key
}

// credsFile checks a NATS .creds file: a user JWT and its nkey seed.
func (p *parser) credsFile(key string) string { return p.natsUserFile(key, true) }

// seedFile checks an nkey seed file: a user seed.
func (p *parser) seedFile(key string) string { return p.natsUserFile(key, false) }

// natsUserFile checks the secret file setting key names: a NATS user seed
// and, with creds, a user JWT. The data is wiped once checked.
func (p *parser) natsUserFile(key string, creds bool) string {
	s := p.get(key)
	if s.val == "" {
		return ""
	}
	data, ok := p.secretFile(s)
	if !ok {
		return s.val
	}
	defer clear(data)
	if why := natsUserKeyProblem(data, creds); why != "" {
		p.problem("%s: %s %s", s.label(), s.val, why)
	}
	return s.val
}

// natsUserKeyProblem says why data is not a NATS user seed file or, with
// creds, a .creds file; "" when it is one. nkeys and jwt parse it, as
// nats.go will; the message never includes the data.
func natsUserKeyProblem(data []byte, creds bool) string {
	kp, err := nkeys.ParseDecoratedUserNKey(data)
	if err == nil {
		kp.Wipe()
	}
	if creds {
		token, _ := nkeys.ParseDecoratedJWT(data)
		if _, jwtErr := jwt.DecodeUserClaims(token); err != nil || jwtErr != nil {
			return "is not a NATS user credentials file (a user JWT and its nkey seed)"
		}
		return ""
	}
	if err != nil {
		return "holds no NATS user nkey seed (one line starting with SU)"
	}
	return ""
}

// readFile reads a small local file named by setting s, reporting why it
// cannot. The error never includes the file's contents.
func (p *parser) readFile(s *setting) ([]byte, fs.FileMode, bool) {
	data, mode, err := readSmallFile(s.val)
	if err != nil {
		p.problem("%s: %v", s.label(), err)
		return nil, 0, false
	}
	return data, mode, true
}

// readSmallFile reads a regular file of at most maxSecretFile bytes. Its
// errors name the file and the reason, never the contents.
func readSmallFile(path string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read %s: %w", path, pathErrorReason(err))
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read %s: %w", path, pathErrorReason(err))
	}
	if info.IsDir() {
		return nil, 0, fmt.Errorf("%s is a directory, not a file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		clear(data)
		return nil, 0, fmt.Errorf("cannot read %s: %w", path, pathErrorReason(err))
	}
	if len(data) > maxSecretFile {
		clear(data)
		return nil, 0, fmt.Errorf("%s is larger than %d KiB; that is not a key or certificate", path, maxSecretFile>>10)
	}
	return data, info.Mode(), nil
}

// pathErrorReason drops the "open PATH:" prefix of an *fs.PathError.
func pathErrorReason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// secretFile reads the secret file setting s names: a private key, an nkey
// seed or a .creds file. One rule for all of them: a file every user may
// read is refused, one its group may read is warned about. The caller
// clears the data.
func (p *parser) secretFile(s *setting) ([]byte, bool) {
	data, mode, ok := p.readFile(s)
	if !ok || runtime.GOOS == "windows" {
		return data, ok
	}
	switch perm := mode.Perm(); {
	case perm&0o004 != 0:
		clear(data)
		p.problem("%s: %s is readable by every user (mode %04o); run chmod 600 %s", s.label(), s.val, perm, s.val)
		return nil, false
	case perm&0o040 != 0:
		p.warn("%s: %s is readable by its group (mode %04o); consider chmod 600 %s", s.label(), s.val, perm, s.val)
	}
	return data, true
}

func (p *parser) kalshiBaseURL() string {
	s := p.get("kalshi-base-url")
	u, err := kalshi.ResolveBaseURL(s.val)
	if err != nil {
		p.problem("%s: %v", s.label(), err)
	}
	return u
}

func (p *parser) kalshiKeyID(spec command) string {
	s := p.get("kalshi-key-id")
	if s.val == "" {
		if spec.needKalshi {
			p.problem("%s is required for \"revoker %s\"", s.label(), p.invocation)
		}
		return ""
	}
	return p.checkKeyID(s.label()+": ", s.val)
}

// checkKeyID reports id unless kalshi accepts it as a key ID, and returns
// its canonical form, the one the worker compares.
func (p *parser) checkKeyID(where, id string) string {
	if why := keyIDProblem(id); why != "" {
		p.problem("%s%s", where, why)
	}
	return events.CanonicalAPIKeyID(id)
}

// kalshiPrivateKey returns the key file's path (if any) and the PEM, from
// KALSHI_PRIVATE_KEY_PATH or KALSHI_PRIVATE_KEY. A path given as a flag
// beats KALSHI_PRIVATE_KEY; both in the environment is a problem.
func (p *parser) kalshiPrivateKey(spec command) (string, secret) {
	pathS, pemS := p.get("kalshi-private-key"), p.get("KALSHI_PRIVATE_KEY")
	path, content := pathS.val, pemS.val
	switch {
	case path != "" && content != "" && pathS.flagSet:
		p.warn("KALSHI_PRIVATE_KEY is ignored: --kalshi-private-key %s is given", path)
		content = ""
	case path != "" && content != "":
		p.problem("%s and KALSHI_PRIVATE_KEY are both set; set only one (a file path or the PEM itself)", pathS.label())
		return path, nil
	case path == "" && content == "":
		if spec.needKalshi {
			p.problem("%s or KALSHI_PRIVATE_KEY is required for \"revoker %s\"", pathS.label(), p.invocation)
		}
		return "", nil
	}

	if content != "" {
		return "", p.privateKey("KALSHI_PRIVATE_KEY", []byte(content))
	}
	data, ok := p.secretFile(pathS)
	if !ok {
		return path, nil
	}
	return path, p.privateKey(pathS.label()+": "+path, data)
}

// privateKey keeps data if kalshi can sign with it, and wipes it otherwise.
func (p *parser) privateKey(what string, data []byte) secret {
	if _, err := kalshi.ParsePrivateKey(data); err != nil {
		clear(data)
		p.problem("%s: %v", what, err)
		return nil
	}
	return secret(data)
}

func (p *parser) subjects() (requests, results string) {
	reqS, resS := p.get("requests-subject"), p.get("results-subject")
	requests, results = reqS.val, resS.val
	// revoke publishes to the requests subject: it must be a plain subject.
	reqOK := p.checkSubject(reqS, p.cmd != "revoke")
	resOK := p.checkSubject(resS, false)
	if reqOK && resOK && subjectsOverlap(requests, results+".>") {
		p.problem("%s %q overlaps %s %q: results are published under %s.>, which must not include requests", resS.label(), results, reqS.label(), requests, results)
	}
	return requests, results
}

// checkSubject reports a problem with a NATS subject: empty tokens, spaces,
// and wildcards where they are not allowed.
func (p *parser) checkSubject(s *setting, wildcards bool) bool {
	v := s.val
	if v == "" {
		p.problem("%s must not be empty", s.label())
		return false
	}
	tokens := strings.Split(v, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			p.problem("%s: %s has an empty token (a leading, trailing or doubled '.')", s.label(), events.Quote(v))
			return false
		case strings.IndexFunc(t, isSpaceOrControl) >= 0:
			p.problem("%s: %s must not contain spaces", s.label(), events.Quote(v))
			return false
		case t == "*" || t == ">":
			if !wildcards {
				p.problem("%s: %s must not contain wildcards ('*' or '>')", s.label(), events.Quote(v))
				return false
			}
			if t == ">" && i != len(tokens)-1 {
				p.problem("%s: %s has '>' before the last token", s.label(), events.Quote(v))
				return false
			}
		case strings.ContainsAny(t, "*>"):
			p.problem("%s: %s has '*' or '>' inside a token", s.label(), events.Quote(v))
			return false
		}
	}
	return true
}

// subjectsOverlap reports whether some subject matches both patterns.
func subjectsOverlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(at) && i < len(bt); i++ {
		x, y := at[i], bt[i]
		if x == ">" || y == ">" {
			return true
		}
		if x != y && x != "*" && y != "*" {
			return false
		}
	}
	return len(at) == len(bt)
}

// name checks a stream or consumer name.
func (p *parser) name(key string) string {
	s := p.get(key)
	switch {
	case s.val == "":
		p.problem("%s must not be empty", s.label())
	case strings.ContainsAny(s.val, ".*>/\\") || strings.IndexFunc(s.val, isSpaceOrControl) >= 0:
		p.problem("%s: %s must not contain spaces, '.', '*', '>', '/' or '\\'", s.label(), events.Quote(s.val))
	}
	return s.val
}

func isSpaceOrControl(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

func (p *parser) rate() Rate {
	s := p.get("rate")
	if strings.EqualFold(s.val, "auto") {
		return Rate{Auto: true}
	}
	v, err := strconv.ParseFloat(s.val, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		p.problem("%s must be auto, a number of deletes per second, or 0 for unlimited, got %s", s.label(), events.Quote(s.val))
		return Rate{}
	}
	return Rate{PerSecond: v}
}

func (p *parser) rateShare() float64 {
	s := p.get("rate-share")
	if strings.EqualFold(s.val, "auto") {
		return 0
	}
	v, err := strconv.ParseFloat(s.val, 64)
	if err != nil {
		p.problem("%s: %s is not a number", s.label(), events.Quote(s.val))
		return 0
	}
	if !(v > 0 && v <= 1) {
		p.problem("%s must be in (0, 1], got %s", s.label(), events.Quote(s.val))
	}
	return v
}

func (p *parser) protectedKeys() []string {
	s := p.get("protected-keys")
	ids := p.splitList("protected-keys")
	for i, id := range ids {
		ids[i] = p.checkKeyID(s.label()+": ", id)
	}
	return ids
}

// trustedSigners reads REVOKER_TRUSTED_SIGNERS: comma-separated public
// keys, or @FILE with one key per line (blank lines and # comments skipped).
func (p *parser) trustedSigners() []string {
	s := p.get("trusted-signers")
	var entries []string
	where := func(i int) string { return fmt.Sprintf("entry %d", i+1) }
	if file, ok := strings.CutPrefix(s.val, "@"); ok {
		file = strings.TrimSpace(file)
		if file == "" {
			p.problem("%s: %q names no file", s.label(), s.val)
			return nil
		}
		data, _, err := readSmallFile(file)
		if err != nil {
			p.problem("%s: %v", s.label(), err)
			return nil
		}
		var lines []int
		for n, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			entries = append(entries, line)
			lines = append(lines, n+1)
		}
		where = func(i int) string { return fmt.Sprintf("line %d of %s", lines[i], file) }
		if len(entries) == 0 {
			p.problem("%s: %s lists no keys", s.label(), file)
			return nil
		}
	} else {
		entries = p.splitList("trusted-signers")
	}

	var keys []string
	seen := map[string]bool{}
	for i, e := range entries {
		switch {
		case nkeys.IsValidPublicUserKey(e):
			if !seen[e] {
				seen[e] = true
				keys = append(keys, e)
			}
		case strings.HasPrefix(e, "S"):
			// Probably a seed: a secret, so it is not echoed.
			p.problem("%s: %s looks like an nkey seed, which is secret; list public user keys (starting with U) only", s.label(), where(i))
		default:
			p.problem("%s: %s %s is not a NATS user public key (56 characters starting with U)", s.label(), where(i), events.Quote(e))
		}
	}
	return keys
}

func (p *parser) httpAddr() string {
	s := p.get("http-addr")
	if strings.EqualFold(s.val, "off") {
		return ""
	}
	if !validHostPort(s.val) {
		p.problem("%s: %s is not host:port or off (example: 127.0.0.1:9464)", s.label(), events.Quote(s.val))
	}
	return s.val
}

func (p *parser) listenAddr(key string) string {
	s := p.get(key)
	if !validHostPort(s.val) {
		p.problem("%s: %s is not host:port (example: 127.0.0.1:4222)", s.label(), events.Quote(s.val))
	}
	return s.val
}

// validHostPort accepts host:port with a numeric port; the host may be
// empty (every interface).
func validHostPort(v string) bool {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

func (p *parser) logFormat() string {
	s := p.get("log-format")
	v := strings.ToLower(s.val)
	if !oneOf(v, "auto", "text", "json") {
		p.problem("%s: %s is not auto, text or json", s.label(), events.Quote(s.val))
	}
	return v
}

func (p *parser) logLevel() slog.Level {
	s := p.get("log-level")
	var l slog.Level
	if err := l.UnmarshalText([]byte(s.val)); err != nil {
		p.problem("%s: %s is not a log level (debug, info, warn or error)", s.label(), events.Quote(s.val))
	}
	return l
}

// kalshiBothOrNeither reports a key ID without a private key, or the other
// way round, for a command that uses Kalshi only when both are given.
func (p *parser) kalshiBothOrNeither(spec command) {
	idS, pathS, pemS := p.get("kalshi-key-id"), p.get("kalshi-private-key"), p.get("KALSHI_PRIVATE_KEY")
	if spec.needKalshi || !idS.active {
		return
	}
	if hasKey := pathS.val != "" || pemS.val != ""; (idS.val != "") != hasKey {
		p.problem("%s and %s (or KALSHI_PRIVATE_KEY) go together: set both to ask Kalshi, or neither", idS.label(), pathS.label())
	}
}

// since reads --since: a positive duration back from now, or an RFC 3339
// time. Zero when not given.
func (p *parser) since(now time.Time) time.Time {
	s := p.get("since")
	if s.val == "" {
		return time.Time{}
	}
	if d, err := time.ParseDuration(s.val); err == nil {
		if d <= 0 {
			p.problem("%s must be a positive duration or a time, got %s", s.label(), events.Quote(s.val))
		}
		return now.Add(-d)
	}
	t, err := time.Parse(time.RFC3339, s.val)
	if err != nil {
		p.problem("%s: %s is neither a duration (90m, 24h) nor an RFC 3339 time (2026-11-25T10:00:00Z)", s.label(), events.Quote(s.val))
	}
	return t
}

// requestPattern reads --request: a request id, or a prefix and "*".
func (p *parser) requestPattern() string {
	s := p.get("request")
	id := strings.TrimSuffix(s.val, "*")
	switch {
	case len(id) > events.MaxIDLength:
		p.problem("%s is longer than a request id can be (%d bytes)", s.label(), events.MaxIDLength)
	case strings.ContainsAny(id, "*"):
		p.problem("%s: %s may have a \"*\" only at the end", s.label(), events.Quote(s.val))
	case strings.IndexFunc(id, unicode.IsControl) >= 0:
		p.problem("%s: %s has control characters, which no request id has", s.label(), events.Quote(s.val))
	}
	return s.val
}

// outcomes reads --outcome, given once or more, each value one outcome or a
// comma-separated list.
func (p *parser) outcomes() []events.Outcome {
	s := p.get("outcome")
	var out []events.Outcome
	for _, v := range p.splitList("outcome") {
		o := events.Outcome(strings.ToLower(v))
		switch {
		case !o.Valid():
			p.problem("%s: %s is not an outcome (revoked, already_revoked, rejected or failed)", s.label(), events.Quote(v))
		case !slices.Contains(out, o):
			out = append(out, o)
		}
	}
	return out
}

// faults reads --faults.
func (p *parser) faults() sandboxFaults {
	s := p.get("faults")
	f, problems := parseFaults(s.val)
	for _, why := range problems {
		p.problem("%s: %s", s.label(), why)
	}
	return f
}

func (p *parser) requestField(key string) string {
	s := p.get(key)
	if len(s.val) > maxRequestField {
		p.problem("%s is longer than 1 KiB (%d bytes)", s.label(), len(s.val))
	}
	return s.val
}

func oneOf(v string, options ...string) bool {
	for _, o := range options {
		if v == o {
			return true
		}
	}
	return false
}

// plainTLSError drops the "tls: " prefix of crypto/tls errors.
func plainTLSError(err error) string {
	return strings.TrimPrefix(pathErrorReason(err).Error(), "tls: ")
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
