package kalshi

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revoker/revoker/kalshi/emulator"
)

// startEmulator serves an emulator on loopback for the test.
func startEmulator(t *testing.T, opts emulator.Options) *emulator.Emulator {
	t.Helper()
	e := emulator.New(opts)
	if err := e.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// newClient registers key with e and returns a client signing with it.
func newClient(t *testing.T, e *emulator.Emulator, key crypto.Signer) *Client {
	t.Helper()
	c, err := New(Config{BaseURL: e.URL(), KeyID: e.AddKey("revoker", key.Public()), PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// victim adds a key to be deleted.
func victim(t *testing.T, e *emulator.Emulator) string {
	t.Helper()
	return e.AddKey("victim", testEd25519(t).Public())
}

func apiError(t *testing.T, err error) *APIError {
	t.Helper()
	var e *APIError
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *APIError", err, err)
	}
	return e
}

func TestClientEndToEnd(t *testing.T) {
	e := startEmulator(t, emulator.Options{})
	c := newClient(t, e, testRSA())
	ctx := context.Background()
	id := victim(t, e)

	if err := c.DeleteAPIKey(ctx, id); err != nil {
		t.Fatalf("first delete: %v", err)
	}
	if e.HasKey(id) {
		t.Fatal("key still exists")
	}
	err := c.DeleteAPIKey(ctx, id)
	if !IsNotFound(err) || IsTransient(err) || !IsPermanent(err) {
		t.Fatalf("second delete: %v, want a permanent not-found error", err)
	}
	if !strings.Contains(err.Error(), id) {
		t.Fatalf("error %q does not name the key", err)
	}

	keys, err := c.ListAPIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].ID != c.KeyID() || keys[0].Name != "revoker" || strings.Join(keys[0].Scopes, ",") != "read,write" {
		t.Fatalf("keys = %+v", keys)
	}

	limits, err := c.AccountLimits(ctx)
	want := Limits{UsageTier: "basic", Read: Bucket{200, 200}, Write: Bucket{100, 100}}
	if err != nil || limits != want {
		t.Fatalf("limits = %+v, %v; want %+v", limits, err, want)
	}

	costs, err := c.EndpointCosts(ctx)
	if err != nil || costs.DefaultCost != 10 || costs.Cost("DELETE", "/api_keys/{api_key}") != 10 || costs.Cost("DELETE", CancelOrdersPath) != 100 {
		t.Fatalf("costs = %+v, %v", costs, err)
	}

	st := e.Stats()
	if st.ByStatus[204] != 1 || st.ByStatus[404] != 1 || st.ByStatus[200] != 3 || st.ByStatus[401] != 0 {
		t.Fatalf("emulator saw %v", st.ByStatus)
	}
	if c.BaseURL() != e.URL() {
		t.Fatalf("BaseURL = %q", c.BaseURL())
	}
}

func TestKeyFormatsEndToEnd(t *testing.T) {
	e := startEmulator(t, emulator.Options{})
	for _, tt := range []struct {
		name string
		pem  []byte
	}{
		{"pkcs1 rsa", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(testRSA()))},
		{"pkcs8 rsa", pkcs8(t, testRSA())},
		{"pkcs8 ed25519", pkcs8(t, testEd25519(t))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParsePrivateKey(tt.pem)
			if err != nil {
				t.Fatal(err)
			}
			c := newClient(t, e, key)
			if err := c.DeleteAPIKey(context.Background(), victim(t, e)); err != nil {
				t.Fatalf("delete: %v", err)
			}
		})
	}
	if got := e.Stats().ByStatus[204]; got != 3 {
		t.Fatalf("%d deletes succeeded, want 3", got)
	}
}

func TestGeneratedKeyEndToEnd(t *testing.T) {
	e := startEmulator(t, emulator.Options{})
	id, pemKey, err := e.GenerateKey("generated")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParsePrivateKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{BaseURL: e.URL(), KeyID: id, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	// A key may delete itself; afterwards it cannot authenticate.
	if err := c.DeleteAPIKey(context.Background(), id); err != nil {
		t.Fatalf("self delete: %v", err)
	}
	_, err = c.ListAPIKeys(context.Background())
	if ae := apiError(t, err); ae.StatusCode != 401 || ae.Details != "NOT_FOUND" || !IsPermanent(err) {
		t.Fatalf("after self delete: %v", err)
	}
}

// capture wraps an emulator in an httptest server that records request
// headers.
type capture struct {
	mu      sync.Mutex
	headers []http.Header
}

func (c *capture) server(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.headers = append(c.headers, r.Header.Clone())
		c.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + emulator.BasePath
}

func TestSignsEveryAttemptAfresh(t *testing.T) {
	e := emulator.New(emulator.Options{})
	var cp capture
	base := cp.server(t, e)
	var tick atomic.Int64
	start := time.Now()
	key := testEd25519(t)
	c, err := New(Config{
		BaseURL:    base,
		KeyID:      e.AddKey("k", key.Public()),
		PrivateKey: key,
		UserAgent:  "revoker/1.2.3",
		Now:        func() time.Time { return start.Add(time.Duration(tick.Add(1)) * time.Millisecond) },
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.ListAPIKeys(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for i, h := range cp.headers {
		ts, sig := h.Get(HeaderTimestamp), h.Get(HeaderSignature)
		if want := fmt.Sprint(start.Add(time.Duration(i+1) * time.Millisecond).UnixMilli()); ts != want {
			t.Errorf("request %d: timestamp %s, want %s", i, ts, want)
		}
		if seen[sig] || sig == "" {
			t.Errorf("request %d: signature reused or missing", i)
		}
		seen[sig] = true
		if h.Get(HeaderKey) != c.KeyID() || h.Get("User-Agent") != "revoker/1.2.3" || h.Get("Accept") != "application/json" {
			t.Errorf("request %d: headers %v", i, h)
		}
	}

	// The transport does not modify the caller's request.
	req := httptest.NewRequest("GET", base+"/api_keys?x=1", nil)
	req.RequestURI = ""
	resp, err := c.hc.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("query string: status %d, want 200 (the query is not signed)", resp.StatusCode)
	}
	if len(req.Header) != 0 {
		t.Fatalf("RoundTrip modified the request: %v", req.Header)
	}
}

func TestDefaultUserAgent(t *testing.T) {
	e := emulator.New(emulator.Options{})
	var cp capture
	base := cp.server(t, e)
	key := testEd25519(t)
	c, err := New(Config{BaseURL: base, KeyID: e.AddKey("k", key.Public()), PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.EndpointCosts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ua := cp.headers[0].Get("User-Agent"); ua != "revoker/dev" {
		t.Fatalf("User-Agent %q", ua)
	}
}

func TestInvalidKeyIDSendsNothing(t *testing.T) {
	e := startEmulator(t, emulator.Options{})
	c := newClient(t, e, testEd25519(t))
	for _, id := range []string{"", "../account/limits", "a/b", "a?b", "a%2F..", "x\r\nKALSHI-ACCESS-KEY: y", strings.Repeat("a", 129)} {
		err := c.DeleteAPIKey(context.Background(), id)
		if !errors.Is(err, ErrInvalidKeyID) || !IsPermanent(err) {
			t.Fatalf("DeleteAPIKey(%q) = %v, want ErrInvalidKeyID", id, err)
		}
	}
	if n := e.Stats().Requests; n != 0 {
		t.Fatalf("%d requests sent for invalid key IDs", n)
	}
}

func TestConcurrentDeletesOfOneKey(t *testing.T) {
	e := startEmulator(t, emulator.Options{Refill: -1})
	c := newClient(t, e, testRSA())
	id := victim(t, e)
	errs := make([]error, 50)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = c.DeleteAPIKey(context.Background(), id) })
	}
	wg.Wait()
	var ok, notFound int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case IsNotFound(err):
			notFound++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || notFound != 49 {
		t.Fatalf("%d succeeded and %d not found, want 1 and 49", ok, notFound)
	}
}

func TestRateLimited(t *testing.T) {
	e := startEmulator(t, emulator.Options{RetryAfter: 2 * time.Second})
	e.SetLimits(0, 10) // one call, never refilled
	c := newClient(t, e, testEd25519(t))
	if _, err := c.ListAPIKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := c.DeleteAPIKey(context.Background(), victim(t, e))
	ae := apiError(t, err)
	if ae.StatusCode != 429 || ae.Message != "too many requests" || !IsTransient(err) || RetryAfter(err) != 2*time.Second {
		t.Fatalf("got %v, want a transient 429 with Retry-After 2s", err)
	}
}

func TestTransientFailures(t *testing.T) {
	e := startEmulator(t, emulator.Options{Refill: -1})
	c := newClient(t, e, testEd25519(t))
	ctx := context.Background()

	e.SetFaults(emulator.Faults{Seed: 1, ServerError: 1})
	seen := map[int]bool{}
	for range 40 {
		err := c.DeleteAPIKey(ctx, victim(t, e))
		ae := apiError(t, err)
		if ae.StatusCode < 500 || !IsTransient(err) || err.Error() == "" {
			t.Fatalf("injected 5xx: %v", err)
		}
		seen[ae.StatusCode] = true
	}
	if len(seen) != 4 {
		t.Fatalf("saw statuses %v, want 500, 502, 503 and 504", seen)
	}

	// The key is deleted but the response is lost: transient, then 404.
	e.SetFaults(emulator.Faults{LostResponse: 1})
	id := victim(t, e)
	err := c.DeleteAPIKey(ctx, id)
	if err == nil || !IsTransient(err) || e.HasKey(id) {
		t.Fatalf("lost response: %v (key exists: %v), want a transient error after the delete", err, e.HasKey(id))
	}
	e.SetFaults(emulator.Faults{})
	if err := c.DeleteAPIKey(ctx, id); !IsNotFound(err) {
		t.Fatalf("retry after lost response: %v, want not found", err)
	}

	// An attempt that times out.
	e.SetFaults(emulator.Faults{Hang: 1})
	actx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = c.DeleteAPIKey(actx, victim(t, e))
	if !errors.Is(err, context.DeadlineExceeded) || !IsTransient(err) {
		t.Fatalf("hang: %v, want a transient deadline error", err)
	}
	e.SetFaults(emulator.Faults{})

	// Nobody listening.
	closed := emulator.New(emulator.Options{})
	if err := closed.Start(""); err != nil {
		t.Fatal(err)
	}
	url := closed.URL()
	_ = closed.Close()
	c2, err := New(Config{BaseURL: url, KeyID: "k", PrivateKey: testEd25519(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.DeleteAPIKey(ctx, "x"); err == nil || !IsTransient(err) {
		t.Fatalf("connection refused: %v, want transient", err)
	}
}

func TestAuthFailuresArePermanentAndSecretFree(t *testing.T) {
	e := startEmulator(t, emulator.Options{})
	ctx := context.Background()
	other := testEd25519(t)
	for _, tt := range []struct {
		name    string
		cfg     Config
		details string
	}{
		{"wrong key", Config{KeyID: e.AddKey("k", other.Public()), PrivateKey: testRSA()}, "INCORRECT_API_KEY_SIGNATURE"},
		{"unknown key", Config{KeyID: "0b2ee4a0-0000-4000-8000-000000000000", PrivateKey: testRSA()}, "NOT_FOUND"},
		{"clock behind", Config{KeyID: e.AddKey("k", other.Public()), PrivateKey: other,
			Now: func() time.Time { return time.Now().Add(-time.Minute) }}, "header_timestamp_expired"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.BaseURL = e.URL()
			c, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = c.DeleteAPIKey(ctx, victim(t, e))
			ae := apiError(t, err)
			if ae.StatusCode != 401 || ae.Details != tt.details || !IsPermanent(err) {
				t.Fatalf("got %v, want a permanent 401 %s", err, tt.details)
			}
			for _, sig := range e.Signatures() {
				if strings.Contains(err.Error(), sig) || strings.Contains(err.Error(), sig[:16]) {
					t.Fatal("error contains a signature")
				}
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := New(Config{BaseURL: "ftp://x", UserAgent: "a\nb"})
	for _, want := range []string{"base url", "key id is required", "private key is required", "user agent"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, err = New(Config{KeyID: "bad id", PrivateKey: ec})
	for _, want := range []string{"key id must be", "unsupported key type *ecdsa.PublicKey"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
	c, err := New(Config{KeyID: "k", PrivateKey: testEd25519(t)})
	if err != nil || c.BaseURL() != ProdBaseURL || c.KeyID() != "k" {
		t.Fatalf("defaults: %v", err)
	}
	c, err = New(Config{BaseURL: "demo", KeyID: "k", PrivateKey: testEd25519(t)})
	if err != nil || c.BaseURL() != DemoBaseURL {
		t.Fatalf("demo: %v", err)
	}
}

type countingTransport struct {
	n    atomic.Int32
	base http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func TestInjectedHTTPClient(t *testing.T) {
	e := startEmulator(t, emulator.Options{})
	ct := &countingTransport{base: http.DefaultTransport}
	hc := &http.Client{Transport: ct, Timeout: 5 * time.Second}
	key := testEd25519(t)
	c, err := New(Config{BaseURL: e.URL(), KeyID: e.AddKey("k", key.Public()), PrivateKey: key, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAPIKey(context.Background(), victim(t, e)); err != nil {
		t.Fatal(err)
	}
	if ct.n.Load() != 1 || hc.Transport != ct {
		t.Fatalf("injected transport used %d times; caller's client modified: %v", ct.n.Load(), hc.Transport != ct)
	}
}

func TestDefaultHTTPClient(t *testing.T) {
	hc := defaultHTTPClient()
	tr := hc.Transport.(*http.Transport)
	if hc.Timeout == 0 || tr.MaxIdleConnsPerHost < 64 || tr.ResponseHeaderTimeout == 0 || tr.TLSHandshakeTimeout == 0 {
		t.Fatalf("default client without timeouts or pooling: %+v", hc)
	}
	// Redirects are not followed (nor re-signed for another URL).
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "https://elsewhere.example/steal", http.StatusFound)
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL, KeyID: "k", PrivateKey: testEd25519(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListAPIKeys(context.Background())
	if ae := apiError(t, err); ae.StatusCode != 302 || !IsPermanent(err) || hits.Load() != 1 {
		t.Fatalf("redirect: %v after %d requests", err, hits.Load())
	}
}

// TestRedirectsNeverFollowed gives New a caller's client, which would follow
// redirects: a 307 must come back as an error, never be signed and sent to
// the place it names.
func TestRedirectsNeverFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
	}))
	defer target.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/trade-api/v2/api_keys/other", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	follow := func(*http.Request, []*http.Request) error { return nil }
	for name, hc := range map[string]*http.Client{
		"zero client":           {},
		"client that follows":   {CheckRedirect: follow},
		"client with transport": {Transport: http.DefaultTransport, CheckRedirect: follow},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := New(Config{BaseURL: redirector.URL + "/trade-api/v2", KeyID: "k", PrivateKey: testEd25519(t), HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			err = c.DeleteAPIKey(context.Background(), "victim")
			if ae := apiError(t, err); ae.StatusCode != http.StatusTemporaryRedirect || !IsPermanent(err) {
				t.Errorf("DeleteAPIKey answered 307: %v, want a permanent *APIError", err)
			}
			if n := elsewhere.Load(); n != 0 {
				t.Fatalf("the redirect target received %d requests", n)
			}
			if hc.CheckRedirect != nil && hc.CheckRedirect(nil, nil) != nil {
				t.Error("the caller's client was modified")
			}
		})
	}
}

func TestUnexpectedResponses(t *testing.T) {
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Write([]byte(body.Load().(string)))
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL, KeyID: "k", PrivateKey: testEd25519(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = c.DeleteAPIKey(ctx, "x")
	if ae := apiError(t, err); ae.StatusCode != 200 || !IsPermanent(err) {
		t.Fatalf("delete answered 200: %v, want a permanent error", err)
	}
	body.Store("not json")
	if _, err := c.ListAPIKeys(ctx); err == nil || !IsPermanent(err) {
		t.Fatalf("invalid JSON: %v, want permanent", err)
	}
	body.Store(`{"api_keys":[{"api_key_id":"a"`)
	if _, err := c.ListAPIKeys(ctx); err == nil || !IsTransient(err) {
		t.Fatalf("truncated JSON: %v, want transient", err)
	}
}

func TestCosts(t *testing.T) {
	c := Costs{DefaultCost: 12, EndpointCosts: []EndpointCost{
		{Method: "DELETE", Path: "/trade-api/v2/api_keys/{api_key}", Cost: 5},
		{Method: "POST", Path: "/portfolio/orders/:id/amend", Cost: 3},
		{Method: "GET", Path: "/free", Cost: 0},
	}}
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"DELETE", "/api_keys/{api_key}", 5},
		{"delete", "/trade-api/v2/api_keys/abc", 5},
		{"DELETE", "/api_keys/abc?x=1", 5},
		{"DELETE", "/api_keys", 12},
		{"DELETE", "/api_keys/a/b", 12},
		{"GET", "/api_keys/abc", 12},
		{"POST", "/trade-api/v2/portfolio/orders/o1/amend", 3},
		{"GET", "/free/", 0},
	} {
		if got := c.Cost(tt.method, tt.path); got != tt.want {
			t.Errorf("Cost(%s, %s) = %d, want %d", tt.method, tt.path, got, tt.want)
		}
	}
	if got := (Costs{}).Cost("DELETE", "/api_keys/x"); got != 10 {
		t.Errorf("zero Costs: %d, want 10", got)
	}
}

// A 200 without a key list (another service at a wrong base URL) is not
// Kalshi accepting the credential.
func TestListAPIKeysWantsAKeyList(t *testing.T) {
	for _, body := range []string{`{}`, `{"keys":[]}`, `{"api_keys":null}`} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, body)
		}))
		c, err := New(Config{BaseURL: srv.URL + "/trade-api/v2", KeyID: "k", PrivateKey: testRSA()})
		if err != nil {
			t.Fatal(err)
		}
		if keys, err := c.ListAPIKeys(context.Background()); err == nil || IsTransient(err) {
			t.Errorf("%s: keys %v, err %v; want a permanent error", body, keys, err)
		}
		srv.Close()
	}
}
