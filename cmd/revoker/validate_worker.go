package main

// The worker's settings: its Kalshi key and endpoint, the rate budget, the key
// guards, request authentication, containment, results mode, the HTTP and
// sandbox listen addresses, and logging.

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/contain"
)

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

func (p *parser) cancelScope() contain.Scope {
	s := p.get("cancel-orders-scope")
	sc, err := contain.ParseScope(strings.ToLower(s.val))
	if err != nil {
		p.problem("%s: %s is not off, subaccount or all", s.label(), events.Quote(s.val))
	}
	return sc
}

func (p *parser) resultsMode() events.ResultMode {
	s := p.get("results-mode")
	m, err := events.ParseResultMode(strings.ToLower(s.val))
	if err != nil {
		p.problem("%s: %v", s.label(), err)
	}
	return m
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
