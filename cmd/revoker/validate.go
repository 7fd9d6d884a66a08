package main

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker"
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

func (p *parser) checkArgs(spec command, cfg Config, args []string) {
	if spec.args == "" {
		if len(args) > 0 {
			p.problem("\"revoker %s\" takes no arguments, got %s", p.cmd, events.Quote(strings.Join(args, " ")))
		}
		return
	}
	if p.cmd == "revoke" && !p.revokeForm(cfg, args) {
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

// revokeForm checks the flags that choose what "revoke" revokes: KEY_IDs
// (and -f), --all, or --leaked-key. It reports false when the arguments
// are checked already (or need no more checking).
func (p *parser) revokeForm(cfg Config, args []string) bool {
	if !cfg.All {
		for _, key := range []string{"match", "except"} {
			if s := p.get(key); s.val != "" {
				p.problem("--%s applies only with --all", s.flag)
			}
		}
		if p.onCommandLine["yes"] {
			p.warn("--yes has no effect without --all")
		}
	}
	p.atForm(cfg)
	switch {
	case cfg.LeakedKeyFile != "":
		if cfg.All {
			p.problem("--leaked-key and --all do not go together: --leaked-key revokes the one key a leaked PEM belongs to")
		}
		if cfg.DryRun {
			p.problem("--leaked-key and --dry-run do not go together: only the worker finds which key a leaked PEM belongs to")
		}
		if cfg.KeyFile != "" {
			p.problem("--leaked-key and -f do not go together: give at most one KEY_ID, as a hint")
		}
		if len(args) > 1 {
			p.problem("--leaked-key takes at most one KEY_ID (a hint of the key the PEM belongs to), got %d", len(args))
		}
		for _, id := range args {
			p.checkKeyID("--leaked-key hint: ", id)
		}
		return false
	case cfg.All:
		if len(args) > 0 || cfg.KeyFile != "" {
			p.problem("--all takes no KEY_ID and no -f: it revokes every key of the account but revoker's own and the protected ones (--except ID spares more)")
		}
		return false
	}
	return true
}

// matchPattern reads --match, a path.Match pattern.
func (p *parser) matchPattern() string {
	s := p.get("match")
	if s.val == "" {
		return ""
	}
	if _, err := path.Match(s.val, ""); err != nil {
		p.problem("%s: %s is not a valid pattern (path.Match: * ? [a-z] \\)", s.label(), events.Quote(s.val))
	}
	return s.val
}

// exceptKeys reads --except, given once or more, each value a key ID or a
// comma-separated list; it returns their canonical IDs.
func (p *parser) exceptKeys() []string {
	s := p.get("except")
	var ids []string
	for _, id := range p.splitList("except") {
		if c := p.checkKeyID(s.label()+": ", id); !slices.Contains(ids, c) {
			ids = append(ids, c)
		}
	}
	return ids
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

// inboxPrefix reads NATS_INBOX_PREFIX: a plain subject (no wildcards), or
// when not set the prefix of the role the command acts in. check acts as the
// worker when it signs with the worker's Kalshi key itself, otherwise as an
// auditor (it then only reads).
func (p *parser) inboxPrefix(cfg Config) string {
	s := p.get("nats-inbox-prefix")
	if s.val == "" {
		return defaultInboxPrefix(p.cmd, cfg.KalshiKeyID != "" || len(cfg.KalshiPrivateKey.Bytes()) > 0)
	}
	p.checkSubject(s, false)
	return s.val
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

func (p *parser) cancelScope() worker.CancelScope {
	s := p.get("cancel-orders-scope")
	sc, err := worker.ParseCancelScope(strings.ToLower(s.val))
	if err != nil {
		p.problem("%s: %s is not off, subaccount or all", s.label(), events.Quote(s.val))
	}
	return sc
}

func (p *parser) logFormat() string {
	s := p.get("log-format")
	v := strings.ToLower(s.val)
	if !oneOf(v, "auto", "text", "json") {
		p.problem("%s: %s is not auto, text or json", s.label(), events.Quote(s.val))
	}
	return v
}

func (p *parser) resultsMode() events.ResultMode {
	s := p.get("results-mode")
	m, err := events.ParseResultMode(strings.ToLower(s.val))
	if err != nil {
		p.problem("%s: %v", s.label(), err)
	}
	return m
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
	if spec.needKalshi || !oneOf(idS.group, spec.groups...) {
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
