package main

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/contain"
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
	// NATS_INBOX_PREFIX, --nats-inbox-prefix: the prefix of every reply inbox of the
	// connection (nats.CustomInboxPrefix); default per command, the role's prefix of
	// deploy/nats (defaultInboxPrefix).
	NATSInboxPrefix string

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
	MaxSchedule    time.Duration // REVOKER_MAX_SCHEDULE: default 720h (30 days)
	AttemptTimeout time.Duration // REVOKER_ATTEMPT_TIMEOUT: default 10s
	TrustedSigners []string      // REVOKER_TRUSTED_SIGNERS: NATS user public nkeys; empty: authentication off
	MaxRequestAge  time.Duration // REVOKER_MAX_REQUEST_AGE: default 5m (used only with TrustedSigners)
	AllowedSources []string      // REVOKER_ALLOWED_SOURCES: empty: any source
	CancelOrders   contain.Scope // REVOKER_CANCEL_ORDERS, --cancel-orders-scope: default off
	// REVOKER_RESULTS_MODE, --results-mode: structured (the default) or binary.
	ResultsMode events.ResultMode

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
	Reason              string        // --reason
	CancelOrdersRequest bool          // --cancel-orders: requests carry cancel_orders
	RequestedBy         string        // --requested-by
	Source              string        // --source, default "revoker-cli"
	Timeout             time.Duration // --timeout: how long to wait for all outcomes, default 30s
	SignerSeed          string        // REVOKER_SIGNER_SEED, --signer-seed: user nkey seed file that signs requests
	KeyFile             string        // -f, --filename: key IDs one a line; "-" is standard input; "" for none
	DryRun              bool          // --dry-run: delete nothing, say what would happen to each key
	IgnoreNotFound      bool          // --ignore-not-found: a key the account does not have is not an error
	LeakedKeyFile       string        // --leaked-key: a leaked PEM private key whose API key is revoked; "-" is standard input; "" for none
	All                 bool          // --all: revoke every key the account lists but the own and the protected ones
	Match               string        // --match: with --all, only keys whose name matches this path.Match pattern; "" for any
	Except              []string      // --except, repeatable: with --all, canonical key IDs spared too
	Yes                 bool          // --yes: with --all, do not ask for the number of keys
	At                  time.Time     // --at: no DELETE before it (not_before); zero for now

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

func (r Rate) String() string {
	switch {
	case r.Auto:
		return "auto"
	case r.PerSecond == 0:
		return "unlimited"
	}
	return strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/s"
}

// configError carries every configuration problem found, one per line.
type configError struct {
	Problems []string
}

func (e *configError) Error() string { return strings.Join(e.Problems, "\n") }

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

	raw, positional, err := resolveSettings(cmd, spec, args, getenv)
	if err != nil {
		return Config{}, nil, err
	}
	p := &parser{rawSettings: raw, cmd: cmd, invocation: cmd}

	// revoke reads the Kalshi settings and the guards only for --dry-run and
	// --all, which plan from the account's keys (the worker's console plans
	// them; these settings sign here only when no worker answers): without
	// them, they are not read, so a key file elsewhere in the environment
	// cannot stop a revocation.
	if cmd == "revoke" {
		given := func(key string) bool {
			on, err := strconv.ParseBool(p.get(key).val)
			return p.onCommandLine[key] && (on || err != nil)
		}
		switch {
		case given("all"):
			p.invocation = "revoke --all"
		case given("dry-run"):
			p.invocation = "revoke --dry-run"
		default:
			for _, s := range p.list {
				if s.group != "kalshi" && s.group != "guards" {
					continue
				}
				if p.onCommandLine[s.key()] {
					p.warn("--%s has no effect without --dry-run or --all", s.flag)
				}
				p.unset(s)
			}
			spec.groups = slices.DeleteFunc(slices.Clone(spec.groups), func(g string) bool { return g == "kalshi" || g == "guards" })
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
