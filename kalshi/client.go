package kalshi

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultUserAgent is the User-Agent sent when Config.UserAgent is empty.
const DefaultUserAgent = "revoker/dev"

// maxBody bounds a successful response body the client decodes.
const maxBody = 8 << 20

// Config configures a [Client]. The zero value of every optional field
// means its default.
type Config struct {
	// BaseURL is the API root including /trade-api/v2; "prod" and "demo"
	// name the two environments. Default: ProdBaseURL. See ResolveBaseURL.
	BaseURL string
	// KeyID is the API key ID that signs requests. Required.
	KeyID string
	// PrivateKey is the key's private half, RSA or Ed25519. Required.
	PrivateKey crypto.Signer
	// HTTPClient sends the requests. The client uses a copy whose Transport
	// (http.DefaultTransport if nil) is wrapped by the signing transport and
	// which never follows a redirect, whatever CheckRedirect says: a 3xx is
	// returned as an *APIError rather than signed for another host and path.
	// The caller's client is not modified. Default: a client with a 30 s
	// overall timeout, bounded dial, TLS and header timeouts and up to 64
	// idle connections per host.
	HTTPClient *http.Client
	// UserAgent identifies the program, with its version. Default
	// DefaultUserAgent ("revoker/dev").
	UserAgent string
	// Now is the clock that timestamps signatures. Default time.Now.
	Now func() time.Time
}

// String describes the configuration without the private key.
func (c Config) String() string {
	return fmt.Sprintf("kalshi.Config{BaseURL:%q KeyID:%q PrivateKey:%s}", c.BaseURL, c.KeyID, keyState(c.PrivateKey))
}

// GoString is String: %#v must not print the key either.
func (c Config) GoString() string { return c.String() }

// LogValue logs the configuration with the private key redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL),
		slog.String("key_id", c.KeyID),
		slog.String("private_key", keyState(c.PrivateKey)),
	)
}

func keyState(k crypto.Signer) string {
	if k == nil {
		return "<nil>"
	}
	return redacted
}

// Client calls the Kalshi API with one API key. It is safe for concurrent
// use and reuses connections; create one per credential and share it.
type Client struct {
	baseURL   string
	keyID     string
	userAgent string
	hc        *http.Client
}

// New returns a client for cfg, reporting every invalid field at once.
func New(cfg Config) (*Client, error) {
	var errs []error
	base, err := ResolveBaseURL(cfg.BaseURL)
	if err != nil {
		errs = append(errs, err)
	}
	switch {
	case cfg.KeyID == "":
		errs = append(errs, errors.New("key id is required"))
	case !ValidKeyID(cfg.KeyID):
		errs = append(errs, errors.New("key id must be 1 to 128 characters of [A-Za-z0-9_-]"))
	}
	kind, err := kindOf(cfg.PrivateKey)
	if err != nil {
		errs = append(errs, err)
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	if strings.ContainsFunc(ua, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		errs = append(errs, errors.New("user agent must not contain control characters"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("kalshi: invalid config: %w", errors.Join(errs...))
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		hc = *defaultHTTPClient()
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc.Transport = &transport{keyID: cfg.KeyID, key: cfg.PrivateKey, kind: kind, base: rt, now: now}
	hc.CheckRedirect = noRedirect
	return &Client{baseURL: base, keyID: cfg.KeyID, userAgent: ua, hc: &hc}, nil
}

func defaultHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          128,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// noRedirect makes the client return a redirect as the response it is.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// As returns a client for the same API that signs with another key: a
// leaked key being identified, or deleting itself. It shares this client's
// connections, user agent and clock.
func (c *Client) As(keyID string, key crypto.Signer) (*Client, error) {
	var errs []error
	if !ValidKeyID(keyID) {
		errs = append(errs, errors.New("key id must be 1 to 128 characters of [A-Za-z0-9_-]"))
	}
	kind, err := kindOf(key)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("kalshi: invalid credential: %w", errors.Join(errs...))
	}
	signing := c.hc.Transport.(*transport)
	hc := *c.hc
	hc.Transport = &transport{keyID: keyID, key: key, kind: kind, base: signing.base, now: signing.now}
	return &Client{baseURL: c.baseURL, keyID: keyID, userAgent: c.userAgent, hc: &hc}, nil
}

// KeyID returns the ID of the key that signs this client's requests.
func (c *Client) KeyID() string { return c.keyID }

// BaseURL returns the API root the client calls, without a trailing "/".
func (c *Client) BaseURL() string { return c.baseURL }

// DeleteAPIKey deletes the API key apiKeyID with DELETE /api_keys/{id}.
// It returns nil only when Kalshi answers 204. A key that does not exist
// (any more) gives an error for which IsNotFound is true. An ID that
// ValidKeyID rejects gives ErrInvalidKeyID without any request.
func (c *Client) DeleteAPIKey(ctx context.Context, apiKeyID string) error {
	if !ValidKeyID(apiKeyID) {
		return fmt.Errorf("kalshi: delete api key %.64q: %w", apiKeyID, ErrInvalidKeyID)
	}
	resp, err := c.send(ctx, http.MethodDelete, "/api_keys/"+url.PathEscape(apiKeyID))
	if err != nil {
		return fmt.Errorf("kalshi: delete api key %s: %w", apiKeyID, err)
	}
	closeBody(resp)
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("kalshi: delete api key %s: %w", apiKeyID, &APIError{
			StatusCode: resp.StatusCode,
			Message:    "unexpected status, want 204 No Content",
		})
	}
	return nil
}

// ListAPIKeys returns the account's API keys (GET /api_keys).
func (c *Client) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	var v struct {
		APIKeys *[]APIKey `json:"api_keys"`
	}
	if err := c.getJSON(ctx, "list api keys", "/api_keys", &v); err != nil {
		return nil, err
	}
	// A 2xx without a key list is not Kalshi's answer: another service, or
	// a path that is not the API.
	if v.APIKeys == nil {
		return nil, fmt.Errorf("kalshi: list api keys: %w", &APIError{StatusCode: http.StatusOK, Message: "the answer holds no api_keys list"})
	}
	return *v.APIKeys, nil
}

// AccountLimits returns the account's rate limits (GET /account/limits).
func (c *Client) AccountLimits(ctx context.Context) (Limits, error) {
	var v Limits
	err := c.getJSON(ctx, "account limits", "/account/limits", &v)
	return v, err
}

// EndpointCosts returns the token cost of requests
// (GET /account/endpoint_costs). The endpoint needs no authentication; the
// request is signed all the same.
func (c *Client) EndpointCosts(ctx context.Context) (Costs, error) {
	var v Costs
	err := c.getJSON(ctx, "endpoint costs", "/account/endpoint_costs", &v)
	return v, err
}

func (c *Client) getJSON(ctx context.Context, op, path string, v any) error {
	resp, err := c.send(ctx, http.MethodGet, path)
	if err != nil {
		return fmt.Errorf("kalshi: %s: %w", op, err)
	}
	defer closeBody(resp)
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(v); err != nil {
		return fmt.Errorf("kalshi: %s: decode response: %w", op, err)
	}
	return nil
}

// send makes one signed request and returns the response if its status is
// 2xx; otherwise the *APIError from CheckResponse.
func (c *Client) send(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header["Accept"] = []string{"application/json"}
	req.Header["User-Agent"] = []string{c.userAgent}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if err := CheckResponse(resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// closeBody drains a little of what is left, so the connection can be
// reused, and closes the body.
func closeBody(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}
