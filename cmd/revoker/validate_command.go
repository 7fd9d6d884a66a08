package main

// The settings of the CLI commands: the arguments and flags of revoke (KEY_IDs,
// -f, --all, --leaked-key), the request fields it sends, and the filters of
// results (--since, --request, --outcome); sandbox --faults.

import (
	"path"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/revoker/revoker/events"
)

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
