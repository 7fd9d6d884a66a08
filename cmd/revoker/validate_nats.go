package main

// The settings that reach NATS: server URLs, subjects (and that results never
// cover requests), the inbox prefix, and stream and consumer names.

import (
	"net/url"
	"strings"
	"unicode"

	"github.com/revoker/revoker/events"
)

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
