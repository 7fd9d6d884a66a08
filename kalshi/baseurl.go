package kalshi

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Base URLs of the two Kalshi environments. API keys belong to one
// environment: a demo key is rejected by production and the other way round.
// ProdBaseURL is the production host Kalshi's documentation names;
// LegacyProdBaseURL, the one it named before, still serves the same API
// and is accepted like any https URL.
const (
	ProdBaseURL       = "https://external-api.kalshi.com/trade-api/v2"
	LegacyProdBaseURL = "https://api.elections.kalshi.com/trade-api/v2"
	DemoBaseURL       = "https://external-api.demo.kalshi.co/trade-api/v2"
)

// MaxKeyIDLen is the longest API key ID [ValidKeyID] accepts.
const MaxKeyIDLen = 128

// ErrInvalidKeyID is returned, wrapped, by [Client.DeleteAPIKey] for a key ID
// that [ValidKeyID] rejects. No request is sent in that case.
var ErrInvalidKeyID = errors.New("invalid api key id: want 1 to 128 characters of [A-Za-z0-9_-]")

// ValidKeyID reports whether id is 1 to 128 characters of [A-Za-z0-9_-].
// Only such IDs are ever placed in a request path, so no input can change
// the path that is signed.
func ValidKeyID(id string) bool {
	if len(id) == 0 || len(id) > MaxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// ResolveBaseURL turns a configured base URL into the one the client uses.
// "" and "prod" mean [ProdBaseURL], "demo" means [DemoBaseURL] (both
// case-insensitive). Anything else must be an absolute https URL without
// credentials, query or fragment; a trailing "/" is removed. Plain http is
// accepted only for a loopback host (127.0.0.0/8, ::1, localhost), such as a
// local emulator: anywhere else it would carry signed requests in clear.
func ResolveBaseURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "prod", "production":
		return ProdBaseURL, nil
	case "demo":
		return DemoBaseURL, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		// Drop the quoted input url.Parse adds: it could hold credentials.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("base url: %w", err)
	}
	switch {
	case u.User != nil:
		return "", errors.New("base url must not contain credentials")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("base url %q: want prod, demo or an http(s) URL", s)
	case u.Host == "":
		return "", fmt.Errorf("base url %q: missing host", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("base url %q: must not have a query or fragment", s)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return "", fmt.Errorf("base url %q: plain http is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); use https", s)
	}
	return strings.TrimRight(s, "/"), nil
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
