package emulator

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revoker/revoker/kalshi"
)

// testKey is generated once: RSA key generation is slow under -race.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// signer signs requests the way Kalshi documents it, independently of the
// kalshi package, with knobs to get it wrong on purpose.
type signer struct {
	id      string
	key     crypto.Signer
	maxSalt bool // RSA-PSS with the maximum salt length instead of 32
	now     func() time.Time
	signRaw bool // sign the path with its query string
}

func (s signer) sign(req *http.Request) {
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	ts := strconv.FormatInt(now().UnixMilli(), 10)
	path := req.URL.EscapedPath()
	if s.signRaw && req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	text := []byte(ts + req.Method + path)
	var sig []byte
	var err error
	switch k := s.key.(type) {
	case *rsa.PrivateKey:
		salt := rsa.PSSSaltLengthEqualsHash
		if s.maxSalt {
			salt = rsa.PSSSaltLengthAuto
		}
		d := sha256.Sum256(text)
		sig, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: salt})
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, text)
	}
	if err != nil {
		panic(err)
	}
	req.Header.Set("KALSHI-ACCESS-KEY", s.id)
	req.Header.Set("KALSHI-ACCESS-TIMESTAMP", ts)
	req.Header.Set("KALSHI-ACCESS-SIGNATURE", base64.StdEncoding.EncodeToString(sig))
}

// start serves e on loopback and returns its base URL.
func start(t *testing.T, e *Emulator) string {
	t.Helper()
	if err := e.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e.URL()
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// errBody is the nested error shape.
type errBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details string `json:"details"`
	} `json:"error"`
}

func (r reply) details(t *testing.T) string {
	t.Helper()
	var b errBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("body %q is not the nested error shape: %v", r.body, err)
	}
	return b.Error.Details
}

func call(t *testing.T, s *signer, method, url string, body []byte) reply {
	t.Helper()
	r, err := try(s, method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func try(s *signer, method, url string, body []byte) (reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return reply{}, err
	}
	if s != nil {
		s.sign(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}, err
}

func TestDeleteLifecycle(t *testing.T) {
	e := New(Options{})
	base := start(t, e)
	admin := &signer{id: e.AddKey("admin", testKey().Public()), key: testKey()}
	_, victimKey, _ := ed25519.GenerateKey(rand.Reader)
	victim := e.AddKey("victim", victimKey.Public())

	if r := call(t, admin, "DELETE", base+"/api_keys/"+victim, nil); r.status != 204 || len(r.body) != 0 {
		t.Fatalf("first delete: %d %q, want 204 and an empty body", r.status, r.body)
	}
	if e.HasKey(victim) {
		t.Fatal("key still exists after 204")
	}
	r := call(t, admin, "DELETE", base+"/api_keys/"+victim, nil)
	if r.status != 404 {
		t.Fatalf("second delete: %d %q, want 404", r.status, r.body)
	}
	if r := call(t, admin, "DELETE", base+"/api_keys/not-a-uuid", nil); r.status != 400 {
		t.Fatalf("invalid id: %d %q, want 400", r.status, r.body)
	}
	// Upper-case hex names the same key.
	other := e.AddKey("other", victimKey.Public())
	if r := call(t, admin, "DELETE", base+"/api_keys/"+strings.ToUpper(other), nil); r.status != 204 {
		t.Fatalf("upper-case id: %d %q, want 204", r.status, r.body)
	}

	st := e.Stats()
	if st.Deletes[victim] != 1 || st.DeleteAttempts[victim] != 2 || st.ByStatus[204] != 2 || st.ByStatus[404] != 1 || st.ByStatus[400] != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if _, ok := st.LastDeleteAt[victim]; !ok {
		t.Fatal("LastDeleteAt not recorded")
	}
	if got := len(e.Signatures()); got != 4 {
		t.Fatalf("recorded %d signatures, want 4", got)
	}
}

func TestSelfDelete(t *testing.T) {
	e := New(Options{})
	base := start(t, e)
	s := &signer{id: e.AddKey("self", testKey()), key: testKey()}
	if r := call(t, s, "DELETE", base+"/api_keys/"+s.id, nil); r.status != 204 {
		t.Fatalf("self delete: %d %q", r.status, r.body)
	}
	r := call(t, s, "GET", base+"/api_keys", nil)
	if r.status != 401 || r.details(t) != "NOT_FOUND" {
		t.Fatalf("after self delete: %d %q, want 401 NOT_FOUND", r.status, r.body)
	}
}

func TestAuthentication(t *testing.T) {
	e := New(Options{})
	base := start(t, e)
	id := e.AddKey("k", testKey())
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edID := e.AddKey("ed", edKey.Public())

	tests := []struct {
		name    string
		s       *signer
		url     string
		status  int
		details string
		code    string
	}{
		{"rsa pss salt 32", &signer{id: id, key: testKey()}, "/api_keys", 200, "", ""},
		{"ed25519", &signer{id: edID, key: edKey}, "/api_keys", 200, "", ""},
		{"query string not signed", &signer{id: id, key: testKey()}, "/api_keys?limit=5", 200, "", ""},
		{"max salt length", &signer{id: id, key: testKey(), maxSalt: true}, "/api_keys", 401, "INCORRECT_API_KEY_SIGNATURE", "authentication_error"},
		{"query string signed", &signer{id: id, key: testKey(), signRaw: true}, "/api_keys?limit=5", 401, "INCORRECT_API_KEY_SIGNATURE", "authentication_error"},
		{"stale timestamp", &signer{id: id, key: testKey(), now: func() time.Time { return time.Now().Add(-11 * time.Second) }}, "/api_keys", 401, "header_timestamp_expired", "header_timestamp_expired"},
		{"future timestamp", &signer{id: id, key: testKey(), now: func() time.Time { return time.Now().Add(11 * time.Second) }}, "/api_keys", 401, "header_timestamp_expired", "header_timestamp_expired"},
		{"slightly late timestamp", &signer{id: id, key: testKey(), now: func() time.Time { return time.Now().Add(-5 * time.Second) }}, "/api_keys", 200, "", ""},
		{"unknown key", &signer{id: "0b2ee4a0-0000-4000-8000-000000000000", key: testKey()}, "/api_keys", 401, "NOT_FOUND", "authentication_error"},
		{"wrong key for id", &signer{id: edID, key: testKey()}, "/api_keys", 401, "INCORRECT_API_KEY_SIGNATURE", "authentication_error"},
		{"unsigned", nil, "/api_keys", 401, "signature_is_missing_from_headers", "signature_is_missing_from_headers"},
		{"unsigned limits", nil, "/account/limits", 401, "signature_is_missing_from_headers", "signature_is_missing_from_headers"},
		{"unsigned endpoint costs", nil, "/account/endpoint_costs", 200, "", ""},
		{"signed endpoint costs", &signer{id: id, key: testKey()}, "/account/endpoint_costs", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, tt.s, "GET", base+tt.url, nil)
			if r.status != tt.status {
				t.Fatalf("status %d %q, want %d", r.status, r.body, tt.status)
			}
			if tt.status != 401 {
				return
			}
			var b errBody
			if err := json.Unmarshal(r.body, &b); err != nil {
				t.Fatal(err)
			}
			if b.Error.Details != tt.details || b.Error.Code != tt.code || b.Error.Message == "" {
				t.Fatalf("body %s, want code %s details %s", r.body, tt.code, tt.details)
			}
		})
	}
	if got := e.Stats().Unauthorized["INCORRECT_API_KEY_SIGNATURE"]; got != 3 {
		t.Fatalf("Unauthorized[INCORRECT_API_KEY_SIGNATURE] = %d, want 3", got)
	}
}

func TestMalformedHeaders(t *testing.T) {
	e := New(Options{})
	base := start(t, e)
	id := e.AddKey("k", testKey())
	for _, tt := range []struct {
		name, ts, sig, details string
	}{
		{"seconds timestamp", strconv.FormatInt(time.Now().Unix(), 10), "AAAA", "header_timestamp_expired"},
		{"garbage timestamp", "yesterday", "AAAA", "header_timestamp_expired"},
		{"garbage signature", strconv.FormatInt(time.Now().UnixMilli(), 10), "not base64!", "INCORRECT_API_KEY_SIGNATURE"},
		{"empty signature", strconv.FormatInt(time.Now().UnixMilli(), 10), "", "signature_is_missing_from_headers"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"/api_keys", nil)
			req.Header.Set("KALSHI-ACCESS-KEY", id)
			req.Header.Set("KALSHI-ACCESS-TIMESTAMP", tt.ts)
			req.Header.Set("KALSHI-ACCESS-SIGNATURE", tt.sig)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := reply{resp.StatusCode, resp.Header, b}
			if r.status != 401 || r.details(t) != tt.details {
				t.Fatalf("%d %s, want 401 %s", r.status, r.body, tt.details)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	e := New(Options{NoAuth: true})
	base := start(t, e)
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/api_keys", 200},
		{"PUT", "/api_keys", 405},
		{"GET", "/api_keys/0b2ee4a0-0000-4000-8000-000000000000", 405},
		{"DELETE", "/api_keys/a/b", 404},
		{"DELETE", "/api_keys/generate", 400},
		{"GET", "/account/limits", 200},
		{"POST", "/account/limits", 405},
		{"GET", "/portfolio/balance", 404},
		{"GET", "/other/api_keys", 404},
	} {
		url := base + tt.path
		if tt.path == "/other/api_keys" {
			url = strings.TrimSuffix(base, BasePath) + tt.path
		}
		if r := call(t, nil, tt.method, url, nil); r.status != tt.status {
			t.Errorf("%s %s: %d %s, want %d", tt.method, tt.path, r.status, r.body, tt.status)
		}
	}
}

func TestRateLimit(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := New(Options{Refill: 20, Capacity: 30, RetryAfter: 1500 * time.Millisecond, Now: clock})
	base := start(t, e)
	s := &signer{id: e.AddKey("k", testKey()), key: testKey(), now: clock}

	// 30 tokens: three calls at 10 each, then 429.
	for i := range 3 {
		if r := call(t, s, "GET", base+"/api_keys", nil); r.status != 200 {
			t.Fatalf("call %d: %d", i, r.status)
		}
	}
	r := call(t, s, "GET", base+"/account/limits", nil)
	if r.status != 429 || string(r.body) != `{"error":"too many requests"}` || r.header.Get("Retry-After") != "2" {
		t.Fatalf("4th call: %d %s Retry-After %q, want 429 too many requests, Retry-After 2", r.status, r.body, r.header.Get("Retry-After"))
	}
	// endpoint_costs is free and unauthenticated.
	if r := call(t, nil, "GET", base+"/account/endpoint_costs", nil); r.status != 200 {
		t.Fatalf("endpoint costs while empty: %d", r.status)
	}
	// Half a second refills 10 tokens: one more call.
	mu.Lock()
	now = now.Add(500 * time.Millisecond)
	mu.Unlock()
	if r := call(t, s, "GET", base+"/api_keys", nil); r.status != 200 {
		t.Fatalf("after refill: %d", r.status)
	}
	if r := call(t, s, "GET", base+"/api_keys", nil); r.status != 429 {
		t.Fatalf("after refill, second call: %d", r.status)
	}
	if st := e.Stats(); st.TooMany != 2 || st.ByStatus[429] != 2 {
		t.Fatalf("stats %+v", st)
	}
	e.SetLimits(-1, 0)
	for i := range 50 {
		if r := call(t, s, "GET", base+"/api_keys", nil); r.status != 200 {
			t.Fatalf("unlimited call %d: %d", i, r.status)
		}
	}
}

func TestLimitsAndCosts(t *testing.T) {
	e := New(Options{NoAuth: true, Refill: 300, Tier: "advanced", DeleteCost: 5})
	base := start(t, e)
	r := call(t, nil, "GET", base+"/account/limits", nil)
	want := `{"usage_tier":"advanced","read":{"refill_rate":300,"bucket_capacity":300},"write":{"refill_rate":300,"bucket_capacity":300}}`
	if r.status != 200 || string(r.body) != want || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("limits: %d %s", r.status, r.body)
	}
	r = call(t, nil, "GET", base+"/account/endpoint_costs", nil)
	want = `{"default_cost":10,"endpoint_costs":[{"method":"DELETE","path":"/trade-api/v2/api_keys/{api_key}","cost":5},` +
		`{"method":"DELETE","path":"/trade-api/v2/portfolio/events/orders","cost":300}]}`
	if r.status != 200 || string(r.body) != want {
		t.Fatalf("costs: %d %s", r.status, r.body)
	}
	e2 := New(Options{NoAuth: true})
	r = call(t, nil, "GET", start(t, e2)+"/account/endpoint_costs", nil)
	if string(r.body) != `{"default_cost":10,"endpoint_costs":[{"method":"DELETE","path":"/trade-api/v2/portfolio/events/orders","cost":100}]}` {
		t.Fatalf("default costs: %s", r.body)
	}
}

func TestCreateAndGenerate(t *testing.T) {
	e := New(Options{})
	base := start(t, e)
	admin := &signer{id: e.AddKey("admin", testKey()), key: testKey()}

	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(edKey.Public())
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	body, _ := json.Marshal(map[string]any{"name": "ed", "public_key": pub, "scopes": []string{"read"}})
	r := call(t, admin, "POST", base+"/api_keys", body)
	var created struct {
		ID         string `json:"api_key_id"`
		PrivateKey string `json:"private_key"`
	}
	if r.status != 201 || json.Unmarshal(r.body, &created) != nil || !isUUID(created.ID) {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if r := call(t, admin, "POST", base+"/api_keys", body); r.status != 409 {
		t.Fatalf("duplicate: %d %s, want 409", r.status, r.body)
	}
	for _, bad := range []string{`{"name":"x","public_key":"nope"}`, `{"public_key":"x"}`, `not json`} {
		if r := call(t, admin, "POST", base+"/api_keys", []byte(bad)); r.status != 400 {
			t.Fatalf("create %s: %d %s, want 400", bad, r.status, r.body)
		}
	}
	// The new key signs.
	edSigner := &signer{id: created.ID, key: edKey}
	r = call(t, edSigner, "GET", base+"/api_keys", nil)
	var list struct {
		APIKeys []struct {
			ID     string   `json:"api_key_id"`
			Name   string   `json:"name"`
			Scopes []string `json:"scopes"`
		} `json:"api_keys"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &list) != nil || len(list.APIKeys) != 2 ||
		list.APIKeys[0].ID != admin.id || list.APIKeys[1].Name != "ed" || strings.Join(list.APIKeys[1].Scopes, ",") != "read" {
		t.Fatalf("list: %d %s", r.status, r.body)
	}

	r = call(t, admin, "POST", base+"/api_keys/generate", []byte(`{"name":"gen"}`))
	if r.status != 201 || json.Unmarshal(r.body, &created) != nil {
		t.Fatalf("generate: %d %s", r.status, r.body)
	}
	block, _ := pem.Decode([]byte(created.PrivateKey))
	if block == nil || block.Type != "RSA PRIVATE KEY" {
		t.Fatal("generate: private_key is not a PKCS#1 PEM")
	}
	gen, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if r := call(t, &signer{id: created.ID, key: gen}, "DELETE", base+"/api_keys/"+created.ID, nil); r.status != 204 {
		t.Fatalf("generated key deletes itself: %d %s", r.status, r.body)
	}
	if ids := e.KeyIDs(); len(ids) != 2 || ids[0] != admin.id {
		t.Fatalf("KeyIDs = %v", ids)
	}

	id, pemKey, err := e.GenerateKey("direct")
	if err != nil || !e.HasKey(id) || !bytes.Contains(pemKey, []byte("BEGIN RSA PRIVATE KEY")) {
		t.Fatalf("GenerateKey: %v", err)
	}
}

func TestAddKeyRejectsUnsupported(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("AddKey accepted a string as a public key")
		}
	}()
	New(Options{}).AddKey("x", "not a key")
}

func TestConcurrentDeletes(t *testing.T) {
	e := New(Options{Refill: -1})
	base := start(t, e)
	s := &signer{id: e.AddKey("admin", testKey()), key: testKey()}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	victim := e.AddKey("victim", edKey.Public())

	var wg sync.WaitGroup
	var ok, notFound, other atomic.Int32
	for range 50 {
		wg.Go(func() {
			r, err := try(s, "DELETE", base+"/api_keys/"+victim, nil)
			switch {
			case err != nil:
				other.Add(1)
			case r.status == 204:
				ok.Add(1)
			case r.status == 404:
				notFound.Add(1)
			default:
				other.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || notFound.Load() != 49 || other.Load() != 0 {
		t.Fatalf("204: %d, 404: %d, other: %d; want 1, 49, 0", ok.Load(), notFound.Load(), other.Load())
	}
	if st := e.Stats(); st.Deletes[victim] != 1 || st.DeleteAttempts[victim] != 50 {
		t.Fatalf("stats %+v", st)
	}
}

// statuses runs n unsigned GETs and returns their statuses (0 for a
// transport error).
func statuses(t *testing.T, base string, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		r, err := try(nil, "GET", base+"/account/limits", nil)
		if err == nil {
			out[i] = r.status
		}
	}
	return out
}

func TestFaultsDeterministic(t *testing.T) {
	e := New(Options{NoAuth: true, Refill: -1, RetryAfter: 3 * time.Second})
	base := start(t, e)
	f := Faults{Seed: 7, ServerError: 0.3, TooMany: 0.2}
	e.SetFaults(f)
	a := statuses(t, base, 60)
	e.SetFaults(f)
	b := statuses(t, base, 60)
	if !equal(a, b) {
		t.Fatalf("same seed, different faults:\n%v\n%v", a, b)
	}
	seen := map[int]int{}
	for _, s := range a {
		seen[s]++
	}
	if seen[200] == 0 || seen[429] == 0 || seen[500]+seen[502]+seen[503]+seen[504] == 0 {
		t.Fatalf("statuses %v: want a mix of 200, 429 and 5xx", seen)
	}
	e.SetFaults(Faults{Seed: 8, ServerError: 0.3, TooMany: 0.2})
	if c := statuses(t, base, 60); equal(a, c) {
		t.Fatal("different seeds gave the same faults")
	}
	e.SetFaults(Faults{})
	for _, s := range statuses(t, base, 10) {
		if s != 200 {
			t.Fatalf("faults off: status %d", s)
		}
	}
	// Every fault body shape and the Retry-After of injected 429s.
	e.SetFaults(Faults{TooMany: 1})
	if r := call(t, nil, "GET", base+"/account/limits", nil); r.status != 429 || r.header.Get("Retry-After") != "3" {
		t.Fatalf("injected 429: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	e.SetFaults(Faults{TooMany: 1, RetryAfter: time.Second})
	if r := call(t, nil, "GET", base+"/account/limits", nil); r.header.Get("Retry-After") != "1" {
		t.Fatalf("injected 429 with Faults.RetryAfter: Retry-After %q", r.header.Get("Retry-After"))
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFaultBodies(t *testing.T) {
	for status, body := range bodyFault {
		rec := httptest.NewRecorder()
		writeFault(rec, status)
		if rec.Code != status || !bytes.Equal(rec.Body.Bytes(), body) {
			t.Errorf("fault %d: %d %q", status, rec.Code, rec.Body.Bytes())
		}
	}
}

func TestLostResponse(t *testing.T) {
	e := New(Options{NoAuth: true})
	base := start(t, e)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	id := e.AddKey("victim", edKey.Public())
	e.SetFaults(Faults{LostResponse: 1})
	if _, err := try(nil, "DELETE", base+"/api_keys/"+id, nil); err == nil {
		t.Fatal("delete with a lost response returned a response")
	}
	if e.HasKey(id) {
		t.Fatal("key not deleted before the response was lost")
	}
	// GETs are not affected.
	if r := call(t, nil, "GET", base+"/api_keys", nil); r.status != 200 {
		t.Fatalf("GET during lost-response faults: %d", r.status)
	}
	st := e.Stats()
	if st.LostResponses != 1 || st.Deletes[id] != 1 || st.ByStatus[204] != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Without a hijackable connection it answers 502.
	id2 := e.AddKey("victim2", edKey.Public())
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest("DELETE", BasePath+"/api_keys/"+id2, nil))
	if rec.Code != 502 || e.HasKey(id2) {
		t.Fatalf("recorder: %d, key exists %v", rec.Code, e.HasKey(id2))
	}
}

func TestHang(t *testing.T) {
	e := New(Options{NoAuth: true})
	base := start(t, e)
	e.SetFaults(Faults{Hang: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api_keys", nil)
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: err %v, want deadline exceeded", err)
	}

	e.SetFaults(Faults{Hang: 1, HangFor: 20 * time.Millisecond, Latency: 10 * time.Millisecond})
	begin := time.Now()
	if r := call(t, nil, "GET", base+"/api_keys", nil); r.status != 200 {
		t.Fatalf("bounded hang: %d", r.status)
	}
	if d := time.Since(begin); d < 30*time.Millisecond {
		t.Fatalf("bounded hang took %v, want at least 30ms", d)
	}

	// Close releases a request hanging forever.
	e.SetFaults(Faults{Hang: 1})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = try(nil, "GET", base+"/api_keys", nil)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.Stats().Requests < 3 {
		if time.Now().After(deadline) {
			t.Fatal("hanging request never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the hanging request")
	}
}

func TestStartTwice(t *testing.T) {
	e := New(Options{})
	start(t, e)
	if err := e.Start(""); err == nil {
		t.Fatal("second Start succeeded")
	}
	if !strings.HasPrefix(e.URL(), "http://127.0.0.1:") || !strings.HasSuffix(e.URL(), BasePath) {
		t.Fatalf("URL %q", e.URL())
	}
}

func TestMaxSignatures(t *testing.T) {
	e := New(Options{MaxSignatures: 2, Refill: -1})
	base := start(t, e)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	s := &signer{id: e.AddKey("k", edKey.Public()), key: edKey}
	for range 3 {
		call(t, s, "GET", base+"/api_keys", nil)
	}
	if got := len(e.Signatures()); got != 2 {
		t.Fatalf("kept %d signatures, want 2", got)
	}
	if got := len(New(Options{MaxSignatures: -1}).Signatures()); got != 0 {
		t.Fatalf("kept %d signatures, want 0", got)
	}
}

func TestUUID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := newUUID()
		if !isUUID(id) || strings.ToLower(id) != id || id[14] != '4' || seen[id] {
			t.Fatalf("bad uuid %q", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "0b2ee4a0-0000-4000-8000-00000000000", "0b2ee4a0x0000-4000-8000-000000000000", "0b2ee4a0-0000-4000-8000-00000000000g"} {
		if isUUID(bad) {
			t.Errorf("isUUID(%q) = true", bad)
		}
	}
}

// benchDelete measures the emulator's hot path: an authenticated DELETE of
// a key that no longer exists (404), straight through ServeHTTP.
func benchDelete(b *testing.B, key crypto.Signer) {
	now := time.Now()
	e := New(Options{Refill: -1, Now: func() time.Time { return now }, MaxSignatures: -1})
	s := signer{id: e.AddKey("k", key), key: key, now: func() time.Time { return now }}
	req := httptest.NewRequest("DELETE", BasePath+"/api_keys/0b2ee4a0-0000-4000-8000-000000000000", nil)
	s.sign(req)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != 404 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

func BenchmarkDeleteRSA(b *testing.B) { benchDelete(b, testKey()) }

func BenchmarkDeleteEd25519(b *testing.B) {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	benchDelete(b, k)
}

// listed signs GET /api_keys as s and returns the listed keys.
func listed(t *testing.T, s *signer, base string) []wireKey {
	t.Helper()
	r := call(t, s, "GET", base+"/api_keys", nil)
	var v struct {
		APIKeys []wireKey `json:"api_keys"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &v) != nil {
		t.Fatalf("GET /api_keys as %s: %d %s", s.id, r.status, r.body)
	}
	return v.APIKeys
}

func ids(keys []wireKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	return out
}

func TestAccounts(t *testing.T) {
	e := New(Options{Refill: -1})
	base := start(t, e)
	admin := &signer{id: e.AddKey("admin", testKey()), key: testKey()}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	other := &signer{id: e.AddKeyIn("other", "o", otherKey.Public(), "read"), key: otherKey}
	victim := e.AddKeyIn("other", "victim", otherKey.Public())

	// Each account lists only its own keys.
	if got := ids(listed(t, admin, base)); !slices.Equal(got, []string{admin.id}) {
		t.Fatalf("default account lists %v, want only %s", got, admin.id)
	}
	if got := listed(t, other, base); !slices.Equal(ids(got), []string{other.id, victim}) || got[0].Name != "o" || !slices.Equal(got[0].Scopes, []string{"read"}) {
		t.Fatalf("account other lists %+v", got)
	}
	if got := e.KeyIDs(); !slices.Equal(got, []string{admin.id}) {
		t.Fatalf("KeyIDs = %v, want the default account's only", got)
	}
	if got := e.AccountKeyIDs("other"); !slices.Equal(got, []string{other.id, victim}) {
		t.Fatalf(`AccountKeyIDs("other") = %v`, got)
	}

	// Another account's key is 404 with the body of an unknown key, and
	// stays.
	unknown := call(t, admin, "DELETE", base+"/api_keys/0b2ee4a0-0000-4000-8000-000000000000", nil)
	cross := call(t, admin, "DELETE", base+"/api_keys/"+victim, nil)
	if cross.status != 404 || unknown.status != 404 || !bytes.Equal(cross.body, unknown.body) ||
		cross.header.Get("Content-Type") != unknown.header.Get("Content-Type") {
		t.Fatalf("cross-account delete: %d %s, unknown key: %d %s; want the same 404", cross.status, cross.body, unknown.status, unknown.body)
	}
	if !e.HasKey(victim) {
		t.Fatal("a cross-account delete deleted the key")
	}
	// The same through the kalshi client, from the other side.
	c, err := kalshi.New(kalshi.Config{BaseURL: base, KeyID: other.id, PrivateKey: otherKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAPIKey(context.Background(), admin.id); !kalshi.IsNotFound(err) {
		t.Fatalf("other deletes admin's key: %v, want a 404", err)
	}
	if !e.HasKey(admin.id) {
		t.Fatal("admin's key deleted from another account")
	}
	// Within its account a key deletes others and itself.
	if err := c.DeleteAPIKey(context.Background(), victim); err != nil {
		t.Fatalf("delete in own account: %v", err)
	}
	r := call(t, other, "POST", base+"/api_keys/generate", []byte(`{"name":"gen"}`))
	var created struct {
		ID string `json:"api_key_id"`
	}
	if r.status != 201 || json.Unmarshal(r.body, &created) != nil {
		t.Fatalf("generate: %d %s", r.status, r.body)
	}
	if got := e.AccountKeyIDs("other"); !slices.Equal(got, []string{other.id, created.ID}) {
		t.Fatalf("after generate, other has %v: the key belongs to the caller's account", got)
	}
	if err := c.DeleteAPIKey(context.Background(), other.id); err != nil {
		t.Fatalf("self delete: %v", err)
	}
	if r := call(t, other, "GET", base+"/api_keys", nil); r.status != 401 || r.details(t) != "NOT_FOUND" {
		t.Fatalf("after self delete: %d %s, want 401 NOT_FOUND", r.status, r.body)
	}
	if got := e.KeyIDs(); !slices.Equal(got, []string{admin.id}) {
		t.Fatalf("KeyIDs = %v", got)
	}
}

func TestKeepListing(t *testing.T) {
	e := New(Options{Refill: -1})
	base := start(t, e)
	admin := &signer{id: e.AddKey("admin", testKey()), key: testKey()}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	before := &signer{id: e.AddKey("before", edKey.Public(), "read::portfolio_balance"), key: edKey}
	mid := e.AddKey("mid", edKey.Public())
	after := e.AddKey("after", edKey.Public())
	plain := e.AddKey("plain", edKey.Public())
	elsewhere := e.AddKeyIn("other", "elsewhere", edKey.Public())
	otherAdmin := &signer{id: e.AddKeyIn("other", "other-admin", edKey.Public()), key: edKey}
	e.KeepListing("0b2ee4a0-0000-4000-8000-000000000000") // never existed: ignored

	// Marked before its delete.
	e.KeepListing(before.id)
	if r := call(t, admin, "DELETE", base+"/api_keys/"+before.id, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	// Marked after it was removed.
	e.RemoveKey(after)
	e.KeepListing(after)
	// Not marked: gone from the list.
	if r := call(t, admin, "DELETE", base+"/api_keys/"+plain, nil); r.status != 204 {
		t.Fatalf("delete plain: %d %s", r.status, r.body)
	}
	e.KeepListing(elsewhere)
	e.RemoveKey(elsewhere)

	got := listed(t, admin, base)
	if !slices.Equal(ids(got), []string{admin.id, before.id, mid, after}) {
		t.Fatalf("listed %v, want admin, before, mid, after in that order", ids(got))
	}
	if got[1].Name != "before" || !slices.Equal(got[1].Scopes, []string{"read::portfolio_balance"}) {
		t.Fatalf("stale entry %+v, want its name and scopes", got[1])
	}
	if got := ids(listed(t, otherAdmin, base)); !slices.Equal(got, []string{elsewhere, otherAdmin.id}) {
		t.Fatalf("account other lists %v", got)
	}
	// Otherwise the keys are deleted.
	if r := call(t, before, "GET", base+"/api_keys", nil); r.status != 401 || r.details(t) != "NOT_FOUND" {
		t.Fatalf("listed but deleted key signs: %d %s, want 401 NOT_FOUND", r.status, r.body)
	}
	for _, id := range []string{before.id, after} {
		if r := call(t, admin, "DELETE", base+"/api_keys/"+id, nil); r.status != 404 {
			t.Fatalf("second delete of %s: %d %s, want 404", id, r.status, r.body)
		}
		if e.HasKey(id) {
			t.Fatalf("HasKey(%s) after delete", id)
		}
	}
	if got := e.KeyIDs(); !slices.Equal(got, []string{admin.id, mid}) {
		t.Fatalf("KeyIDs = %v, want the existing keys only", got)
	}
	if st := e.Stats(); st.Deletes[before.id] != 1 {
		t.Fatalf("Deletes[before] = %d, want 1", st.Deletes[before.id])
	}
}

func TestBySigner(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	e := New(Options{Refill: -1, Now: clock})
	base := start(t, e)
	admin := &signer{id: e.AddKey("admin", testKey()), key: testKey(), now: clock}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	doomed := &signer{id: e.AddKeyIn("other", "doomed", edKey.Public()), key: edKey, now: clock}
	badSalt := &signer{id: admin.id, key: testKey(), maxSalt: true, now: clock}

	call(t, admin, "GET", base+"/api_keys", nil)                // 200
	call(t, badSalt, "GET", base+"/account/limits", nil)        // 401 INCORRECT_API_KEY_SIGNATURE
	call(t, admin, "DELETE", base+"/api_keys/"+doomed.id, nil)  // 404: another account's key
	call(t, doomed, "DELETE", base+"/api_keys/"+doomed.id, nil) // 204
	call(t, doomed, "GET", base+"/api_keys", nil)               // 401 NOT_FOUND: a deleted key still counts
	call(t, admin, "GET", base+"/no/such/route", nil)           // 404 route

	// Injected faults count with their status.
	e.SetFaults(Faults{TooMany: 1})
	call(t, admin, "GET", base+"/api_keys", nil)
	e.SetFaults(Faults{ServerError: 1, Seed: 3})
	fault := call(t, admin, "GET", base+"/api_keys", nil).status
	e.SetFaults(Faults{})
	// A real 429 from the bucket.
	e.SetLimits(1, 10)
	call(t, admin, "GET", base+"/api_keys", nil)
	call(t, admin, "GET", base+"/api_keys", nil)

	// Unknown IDs and unsigned requests are not counted.
	for range 20 {
		call(t, &signer{id: newUUID(), key: testKey(), now: clock}, "GET", base+"/account/endpoint_costs", nil)
	}
	call(t, nil, "GET", base+"/api_keys", nil)

	st := e.Stats()
	want := map[string]map[int]int{
		admin.id:  {200: 2, 401: 1, 404: 2, 429: 2, fault: 1},
		doomed.id: {204: 1, 401: 1},
	}
	if len(st.BySigner) != len(want) {
		t.Fatalf("BySigner = %v, want %v", st.BySigner, want)
	}
	for id, w := range want {
		if !maps.Equal(st.BySigner[id], w) {
			t.Fatalf("BySigner[%s] = %v, want %v", id, st.BySigner[id], w)
		}
	}
	if st.Unauthorized["INCORRECT_API_KEY_SIGNATURE"] != 1 {
		t.Fatalf("the 401 counted under admin is not a signature failure: %v", st.Unauthorized)
	}
	// Stats are deep copies.
	st.BySigner[admin.id][200] = 99
	delete(st.BySigner, doomed.id)
	if again := e.Stats(); again.BySigner[admin.id][200] != 2 || again.BySigner[doomed.id][204] != 1 {
		t.Fatalf("Stats shares its maps: %v", again.BySigner)
	}
}

// TestCalls checks the call log: each request with its arrival, its
// endpoint, the key a DELETE named, the signer, the status and a 429's
// Retry-After as sent; a lost response is logged with status 0.
func TestCalls(t *testing.T) {
	e := New(Options{Refill: -1, MaxCalls: 5})
	base := start(t, e)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	s := &signer{id: e.AddKey("signer", edKey.Public()), key: edKey}
	victim := e.AddKey("victim", edKey.Public())
	began := time.Now()

	call(t, s, "GET", base+"/api_keys", nil)
	call(t, s, "DELETE", base+"/api_keys/"+strings.ToUpper(victim), nil)
	e.SetFaults(Faults{TooMany: 1, RetryAfter: 1500 * time.Millisecond})
	if r := call(t, s, "DELETE", base+"/api_keys/"+victim, nil); r.status != 429 {
		t.Fatalf("status %d, want an injected 429", r.status)
	}
	e.SetFaults(Faults{LostResponse: 1})
	if _, err := try(s, "DELETE", base+"/api_keys/"+victim, nil); err == nil {
		t.Fatal("a lost response was answered")
	}
	e.SetFaults(Faults{})
	call(t, nil, "GET", base+"/account/endpoint_costs", nil)
	call(t, nil, "GET", base+"/account/endpoint_costs", nil) // past MaxCalls

	got := e.Calls()
	want := []Call{
		{Endpoint: EndpointListKeys, Signer: s.id, Status: 200},
		{Endpoint: EndpointDeleteKey, KeyID: victim, Signer: s.id, Status: 204},
		{Endpoint: EndpointDeleteKey, KeyID: victim, Signer: s.id, Status: 429, RetryAfter: 2 * time.Second},
		{Endpoint: EndpointDeleteKey, KeyID: victim, Signer: s.id},
		{Endpoint: EndpointCosts, Status: 200},
	}
	if len(got) != len(want) {
		t.Fatalf("%d calls logged, want %d: %+v", len(got), len(want), got)
	}
	for i, c := range got {
		if c.Arrived.Before(began) || c.Arrived.After(time.Now()) {
			t.Errorf("call %d arrived at %v, outside the test", i, c.Arrived)
		}
		if (c.Status == 0) != c.Answered.IsZero() || !c.Answered.IsZero() && c.Answered.Before(c.Arrived) {
			t.Errorf("call %d: status %d answered at %v, arrived %v", i, c.Status, c.Answered, c.Arrived)
		}
		// A signed request carries its signing time, to the millisecond.
		if c.Signer != "" && (c.Signed.Before(began.Truncate(time.Millisecond)) || c.Signed.After(c.Arrived)) {
			t.Errorf("call %d signed at %v, arrived %v", i, c.Signed, c.Arrived)
		}
		c.Arrived, c.Answered, c.Signed = time.Time{}, time.Time{}, time.Time{}
		if c != want[i] {
			t.Errorf("call %d = %+v, want %+v", i, c, want[i])
		}
	}
	if n := len(New(Options{MaxCalls: -1}).Calls()); n != 0 {
		t.Errorf("MaxCalls -1 kept %d calls", n)
	}
}
