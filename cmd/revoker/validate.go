package main

// The parser that turns resolved settings into a Config, collecting every
// problem: its readers of plain values (booleans, durations, integers, lists)
// and build, which reads every setting. The checks by concern: validate_nats.go
// (NATS), validate_worker.go (the worker), validate_command.go (CLI commands);
// secret files in secretfiles.go.

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/revoker/revoker/events"
)

// parser turns resolved setting values into a Config, collecting problems.
type parser struct {
	*rawSettings
	cmd        string
	invocation string // the command as messages name it: cmd, or "revoke --dry-run"
	problems   []string
	warnings   []string
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
	cfg.NATSInboxPrefix = p.inboxPrefix(cfg)

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
	cfg.MaxSchedule = p.maxSchedule()
	cfg.AttemptTimeout = p.duration("attempt-timeout")
	cfg.AllowSelfRevoke = p.boolean("allow-self-revoke")
	cfg.ProtectedKeys = p.protectedKeys()
	cfg.TrustedSigners = p.trustedSigners()
	cfg.MaxRequestAge = p.duration("max-request-age")
	if s := p.get("max-request-age"); p.explicit[s.key()] && len(cfg.TrustedSigners) == 0 {
		p.warn("%s has no effect without %s", s.label(), p.get("trusted-signers").label())
	}
	cfg.AllowedSources = p.splitList("allowed-sources")
	cfg.ResultsMode = p.resultsMode()
	cfg.CancelOrders = p.cancelScope()
	if err := authPolicy(cfg).Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			p.problem("request authentication: %s", line)
		}
	}

	cfg.HTTPAddr = p.httpAddr()
	cfg.LogFormat = p.logFormat()
	cfg.LogLevel = p.logLevel()

	cfg.Reason = p.requestField("reason")
	cfg.CancelOrdersRequest = p.boolean("cancel-orders")
	cfg.RequestedBy = p.requestField("requested-by")
	cfg.Source = p.requestField("source")
	cfg.Timeout = p.duration("timeout")
	cfg.JSON = p.boolean("json")
	cfg.SignerSeed = p.seedFile("signer-seed")
	cfg.KeyFile = p.str("filename")
	cfg.DryRun = p.boolean("dry-run")
	cfg.IgnoreNotFound = p.boolean("ignore-not-found")
	cfg.LeakedKeyFile = p.str("leaked-key")
	cfg.All = p.boolean("all")
	cfg.Match = p.matchPattern()
	cfg.Except = p.exceptKeys()
	cfg.Yes = p.boolean("yes")
	cfg.At = p.at(time.Now())

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

func oneOf(v string, options ...string) bool {
	for _, o := range options {
		if v == o {
			return true
		}
	}
	return false
}
