package emulator

import (
	"maps"
	"net/http"
	"slices"
	"time"
)

// Stats is what the emulator has seen since it was created.
type Stats struct {
	// Requests counts every request received, answered or not.
	Requests int
	// ByStatus counts answered requests by HTTP status.
	ByStatus map[int]int
	// Deletes counts keys actually deleted, by key ID: answered 204, or
	// deleted before the response was lost on purpose.
	Deletes map[string]int
	// DeleteAttempts counts DELETE /api_keys/{id} requests by key ID,
	// whatever their outcome.
	DeleteAttempts map[string]int
	// TooMany counts 429 answers, real or injected.
	TooMany int
	// Unauthorized counts 401 answers by cause (the error's details).
	Unauthorized map[string]int
	// LostResponses counts requests processed whose response was dropped.
	LostResponses int
	// LastDeleteAt is when each key was deleted (emulator clock).
	LastDeleteAt map[string]time.Time
	// BySigner counts answered requests, injected faults included, by the
	// key ID their KALSHI-ACCESS-KEY header named (as sent, valid
	// signature or not) and then by HTTP status. Only IDs of keys that
	// exist or existed are counted, so that a hostile header cannot grow
	// the map without bound.
	BySigner map[string]map[int]int
	// ByEndpoint counts answered requests, injected faults included, by
	// endpoint (Call.Endpoint, e.g. EndpointCancelOrders) and then by HTTP
	// status.
	ByEndpoint map[string]map[int]int
	// OrdersCancelled counts the resting orders cancelled by
	// DELETE /portfolio/events/orders.
	OrdersCancelled int
}

// record is the mutable form of Stats, guarded by Emulator.mu.
type record struct {
	byStatus       map[int]int
	deletes        map[string]int
	deleteAttempts map[string]int
	tooMany        int
	unauthorized   map[string]int
	lost           int
	lastDeleteAt   map[string]time.Time
	bySigner       map[string]map[int]int
	byEndpoint     map[string]map[int]int
	cancelled      int
}

func newRecord() record {
	return record{
		byStatus:       make(map[int]int),
		deletes:        make(map[string]int),
		deleteAttempts: make(map[string]int),
		unauthorized:   make(map[string]int),
		lastDeleteAt:   make(map[string]time.Time),
		bySigner:       make(map[string]map[int]int),
		byEndpoint:     make(map[string]map[int]int),
	}
}

// bookLocked records one answered request. status 0 means no answer was
// sent. Call with e.mu held.
func (e *Emulator) bookLocked(status int, sig sent, deleteID string) {
	if status != 0 {
		e.rec.byStatus[status]++
		if id := sig.keyID; id != "" && e.knownLocked(id) {
			m := e.rec.bySigner[id]
			if m == nil {
				m = make(map[int]int)
				e.rec.bySigner[id] = m
			}
			m[status]++
		}
		if ep := endpoints[sig.rt]; ep != "" {
			m := e.rec.byEndpoint[ep]
			if m == nil {
				m = make(map[int]int)
				e.rec.byEndpoint[ep] = m
			}
			m[status]++
		}
	}
	if status == 429 {
		e.rec.tooMany++
	}
	if deleteID != "" {
		e.rec.deleteAttempts[deleteID]++
	}
	if sig.sig != "" && len(e.sigs) < e.maxSigs {
		e.sigs = append(e.sigs, sig.sig)
	}
	if !sig.at.IsZero() && len(e.calls) < e.maxCalls {
		c := Call{Arrived: sig.at, Signed: sig.signed, Endpoint: endpoints[sig.rt], KeyID: deleteID, Status: status}
		if status != 0 {
			c.Answered = e.now()
		}
		if e.knownLocked(sig.keyID) {
			c.Signer = sig.keyID
		}
		if status == http.StatusTooManyRequests {
			c.RetryAfter = sig.retryAfter
			if c.RetryAfter <= 0 {
				c.RetryAfter = e.opts.RetryAfter
			}
			// As sent: whole seconds, rounded up.
			c.RetryAfter = (c.RetryAfter + time.Second - 1).Truncate(time.Second)
		}
		e.calls = append(e.calls, c)
	}
}

// Call is one request the emulator received, as Calls keeps it.
type Call struct {
	// Arrived is when the request arrived, before any injected delay;
	// Answered when its status was decided, zero when none was sent (a
	// lost response, or a client that gave up during a hang).
	Arrived, Answered time.Time
	// Signed is the time in the request's KALSHI-ACCESS-TIMESTAMP header:
	// when the client signed it, just before sending (zero without one).
	// Unlike Arrived, no delay on the way moves it.
	Signed time.Time
	// Endpoint is the route, e.g. "DELETE /api_keys/{id}"; "" for a
	// request that matched none.
	Endpoint string
	// KeyID is the key a DELETE named (lower case when a UUID).
	KeyID string
	// Signer is the KALSHI-ACCESS-KEY header when it names a key that
	// exists or existed, else "".
	Signer string
	// Status is the HTTP status answered; 0 when no answer was sent.
	Status int
	// RetryAfter is a 429's Retry-After as sent (whole seconds); 0 when
	// none was.
	RetryAfter time.Duration
}

// Endpoint names in Call.Endpoint.
const (
	EndpointListKeys     = "GET /api_keys"
	EndpointCreateKey    = "POST /api_keys"
	EndpointGenerateKey  = "POST /api_keys/generate"
	EndpointDeleteKey    = "DELETE /api_keys/{id}"
	EndpointLimits       = "GET /account/limits"
	EndpointCosts        = "GET /account/endpoint_costs"
	EndpointCancelOrders = "DELETE /portfolio/events/orders"
)

var endpoints = [...]string{
	routeListKeys:     EndpointListKeys,
	routeCreateKey:    EndpointCreateKey,
	routeGenerateKey:  EndpointGenerateKey,
	routeDeleteKey:    EndpointDeleteKey,
	routeLimits:       EndpointLimits,
	routeCosts:        EndpointCosts,
	routeCancelOrders: EndpointCancelOrders,
}

// Calls returns the requests received, in the order they were answered or
// given up on (up to Options.MaxCalls), with when each arrived and what it
// got: enough to check from outside that no call went out during a
// Retry-After.
func (e *Emulator) Calls() []Call {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

// book records one answered request.
func (e *Emulator) book(status int, sig sent, deleteID string) {
	e.mu.Lock()
	e.bookLocked(status, sig, deleteID)
	e.mu.Unlock()
}

// Stats returns a deep copy of what the emulator has recorded.
func (e *Emulator) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	bySigner := make(map[string]map[int]int, len(e.rec.bySigner))
	for id, m := range e.rec.bySigner {
		bySigner[id] = maps.Clone(m)
	}
	byEndpoint := make(map[string]map[int]int, len(e.rec.byEndpoint))
	for ep, m := range e.rec.byEndpoint {
		byEndpoint[ep] = maps.Clone(m)
	}
	return Stats{
		Requests:        int(e.requests.Load()),
		ByStatus:        maps.Clone(e.rec.byStatus),
		Deletes:         maps.Clone(e.rec.deletes),
		DeleteAttempts:  maps.Clone(e.rec.deleteAttempts),
		TooMany:         e.rec.tooMany,
		Unauthorized:    maps.Clone(e.rec.unauthorized),
		LostResponses:   e.rec.lost,
		LastDeleteAt:    maps.Clone(e.rec.lastDeleteAt),
		BySigner:        bySigner,
		ByEndpoint:      byEndpoint,
		OrdersCancelled: e.rec.cancelled,
	}
}

// Signatures returns every KALSHI-ACCESS-SIGNATURE value received, valid or
// not, in arrival order (up to Options.MaxSignatures), so tests can check
// that none of them leaked into logs or results.
func (e *Emulator) Signatures() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.sigs)
}
