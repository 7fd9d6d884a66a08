// Package emulator is a local, in-process stand-in for the parts of the
// Kalshi Trade API v2 that revoker uses, faithful enough to test a client
// against: the four api_keys endpoints, GET /account/limits,
// GET /account/endpoint_costs and DELETE /portfolio/events/orders (Cancel
// All Orders, see orders.go), all under /trade-api/v2.
//
// Requests are authenticated exactly as Kalshi does it: the three
// KALSHI-ACCESS-* headers, a known key, a millisecond timestamp within
// Options.Skew of the emulator's clock, and a signature over
// timestamp+METHOD+path (the path as sent, without the query string) that
// verifies with RSA-PSS/SHA-256 and a salt of exactly 32 bytes, or with
// Ed25519. Every failure is a 401 with Kalshi's nested error body; its
// details name the cause: signature_is_missing_from_headers, NOT_FOUND (an
// unknown or deleted key), header_timestamp_expired or
// INCORRECT_API_KEY_SIGNATURE.
//
// Keys belong to accounts: AddKey and GenerateKey use the default account
// "", AddKeyIn any other. A key of any account authenticates; a request
// acts in its signing key's account (the default one under
// Options.NoAuth): GET /api_keys lists that account's keys only, POST
// creates keys in it, and DELETE /api_keys/{id} of another account's key
// answers 404 as for an unknown key and deletes nothing. Kalshi does not
// document whether that case is 403 or 404; the emulator picks 404, the
// answer that would make a client wrongly take the key for already gone.
//
// All keys of all accounts share one read token bucket (Options.Refill,
// Options.Capacity), a simplification: Kalshi's buckets are per account,
// and tests of one account's budget need only one. Every authenticated
// request costs 10 tokens, and a request that finds too few is answered
// 429 {"error":"too many requests"}. GET /account/endpoint_costs needs no
// authentication and costs nothing.
//
// A key may be restricted to one subaccount (AddSubaccountKey, or POST with
// "subaccount" 0-63), which GET /api_keys lists. AddOrders places resting
// orders in a subaccount and RestingOrders counts them; the cancel spends a
// write bucket of its own (Options.WriteRefill, Options.CancelCost).
//
// Keys are lower-case UUIDs. DELETE /api_keys/{id} answers 204 with an
// empty body, 404 when no such key exists (any more) in the caller's
// account, and 400 when the ID is not a UUID. A key may delete itself; its
// later requests get 401 NOT_FOUND. Concurrent deletes of one key give
// exactly one 204.
//
// SetFaults injects failures, deterministically for a given seed: 5xx
// answers (with JSON, HTML, bare and empty bodies), 429s, latency, hangs,
// and deletes whose response is lost (the connection is closed after the
// key was deleted). KeepListing makes a deleted key stay in GET /api_keys,
// a stale listing. Stats (with per-key counts in Stats.BySigner),
// Signatures and Calls (each request with its arrival time and answer)
// record what the emulator saw; Stats.ByEndpoint counts by endpoint.
//
// An *Emulator is an http.Handler: serve it with Start, or mount it on an
// httptest.Server (its base URL is then the server's URL + "/trade-api/v2").
package emulator

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// BasePath is the path prefix of every endpoint.
const BasePath = "/trade-api/v2"

// Options configures an Emulator. The zero value of every field means its
// default.
type Options struct {
	// Skew is the accepted difference between a request's timestamp and
	// the emulator's clock, each way. Default 10s.
	Skew time.Duration
	// Refill is the read bucket's refill rate in tokens per second.
	// Default 200 (the basic tier). Negative means no rate limit.
	Refill float64
	// Capacity is the read bucket's size in tokens. Default: Refill, or
	// 200 when Refill is also unset.
	Capacity float64
	// Tier is the usage tier GET /account/limits reports. Default "basic".
	Tier string
	// RetryAfter, if positive, is sent as Retry-After (whole seconds,
	// rounded up) on every 429, real or injected.
	RetryAfter time.Duration
	// NoAuth accepts requests without checking their signature.
	NoAuth bool
	// Now is the emulator's clock, for timestamps and the bucket. Default
	// time.Now.
	Now func() time.Time
	// DeleteCost is the token cost of DELETE /api_keys/{id}. Default 10;
	// any other value is listed by GET /account/endpoint_costs.
	DeleteCost int
	// MaxSignatures bounds how many signatures Signatures keeps (the
	// first ones received). Default 65536; negative keeps none.
	MaxSignatures int
	// MaxCalls bounds how many calls Calls keeps (the first ones
	// received). Default 65536; negative keeps none.
	MaxCalls int
	// WriteRefill is the write bucket's refill rate (and capacity) in
	// tokens per second, which order cancels spend. Default: the tier's
	// (basic 100), or unlimited when Refill is negative. Negative means no
	// limit.
	WriteRefill float64
	// CancelCost is the token cost of DELETE /portfolio/events/orders,
	// which GET /account/endpoint_costs lists. Default: the write bucket's
	// capacity, what a batch cancel of the largest size costs.
	CancelCost int
}

// Emulator is a local Kalshi API. Its methods are safe for concurrent use.
type Emulator struct {
	opts     Options
	now      func() time.Time
	costs    []byte // GET /account/endpoint_costs body
	delCost  float64
	maxSigs  int
	maxCalls int
	done     chan struct{}
	doneOnce sync.Once

	requests atomic.Int64

	// mu guards the keys, the bucket and the record. Signatures are
	// verified outside it.
	mu    sync.Mutex
	keys  map[string]*apiKey // existing keys of every account
	gone  map[string]*apiKey // deleted keys
	seq   uint64
	readB tokenBucket // the read bucket, which the api_keys endpoints spend
	rec   record
	sigs  []string
	calls []Call
	// orders are the resting orders of each account; writeB the write
	// bucket that cancels spend, cancelCost tokens each.
	orders     map[string][]order
	writeB     tokenBucket
	cancelCost float64

	faultsOn atomic.Bool
	faultMu  sync.Mutex
	faults   Faults
	rng      *rand.Rand

	srvMu sync.Mutex
	srv   *http.Server
	url   string
}

// New returns an emulator with no keys. Serve it with Start or as an
// http.Handler.
func New(opts Options) *Emulator {
	if opts.Skew <= 0 {
		opts.Skew = 10 * time.Second
	}
	if opts.Refill == 0 {
		opts.Refill = 200
	}
	if opts.Capacity <= 0 {
		opts.Capacity = opts.Refill
		if opts.Refill < 0 {
			opts.Capacity = 200
		}
	}
	if opts.Tier == "" {
		opts.Tier = "basic"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DeleteCost <= 0 {
		opts.DeleteCost = defaultCost
	}
	switch {
	case opts.MaxSignatures == 0:
		opts.MaxSignatures = 1 << 16
	case opts.MaxSignatures < 0:
		opts.MaxSignatures = 0
	}
	switch {
	case opts.MaxCalls == 0:
		opts.MaxCalls = 1 << 16
	case opts.MaxCalls < 0:
		opts.MaxCalls = 0
	}
	if opts.WriteRefill == 0 {
		opts.WriteRefill = tierWrite[opts.Tier]
		if opts.Refill < 0 || opts.WriteRefill == 0 {
			opts.WriteRefill = -1
		}
	}
	if opts.CancelCost <= 0 {
		opts.CancelCost = int(max(opts.WriteRefill, tierWrite["basic"]))
	}
	e := &Emulator{
		opts:     opts,
		now:      opts.Now,
		costs:    costsBody(opts.DeleteCost, opts.CancelCost),
		delCost:  float64(opts.DeleteCost),
		maxSigs:  opts.MaxSignatures,
		maxCalls: opts.MaxCalls,
		done:     make(chan struct{}),
		keys:     make(map[string]*apiKey),
		gone:     make(map[string]*apiKey),
		readB:    tokenBucket{refill: opts.Refill, capacity: opts.Capacity, tokens: opts.Capacity, last: opts.Now()},
		rec:      newRecord(),
		orders:   make(map[string][]order),
		writeB: tokenBucket{refill: opts.WriteRefill, capacity: max(opts.WriteRefill, 0),
			tokens: max(opts.WriteRefill, 0), last: opts.Now()},
		cancelCost: float64(opts.CancelCost),
	}
	e.rng = newRand(0)
	return e
}

// Start listens on addr ("" means 127.0.0.1 on a free port) and serves in
// the background until Close.
func (e *Emulator) Start(addr string) error {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	e.srvMu.Lock()
	defer e.srvMu.Unlock()
	if e.srv != nil {
		return errors.New("emulator: already started")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	e.srv = srv
	e.url = "http://" + ln.Addr().String() + BasePath
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// URL returns the base URL of a started emulator,
// "http://127.0.0.1:PORT/trade-api/v2", or "" before Start.
func (e *Emulator) URL() string {
	e.srvMu.Lock()
	defer e.srvMu.Unlock()
	return e.url
}

// Close stops the server started by Start, closing its connections, and
// releases every hanging request. It is safe to call more than once.
func (e *Emulator) Close() error {
	e.doneOnce.Do(func() { close(e.done) })
	e.srvMu.Lock()
	srv := e.srv
	e.srvMu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// SetLimits replaces the read bucket's refill rate and capacity and fills
// the bucket. refill < 0 means no limit; capacity <= 0 means refill.
func (e *Emulator) SetLimits(refill, capacity float64) {
	if capacity <= 0 {
		capacity = refill
		if refill < 0 {
			capacity = 200
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.readB = tokenBucket{refill: refill, capacity: capacity, tokens: capacity, last: e.now()}
}

// pause waits d, returning false if the client gave up or the emulator
// closed first. d < 0 waits for one of those.
func (e *Emulator) pause(ctx context.Context, d time.Duration) bool {
	if d == 0 {
		return true
	}
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-ctx.Done():
		return false
	case <-e.done:
		return false
	}
}
