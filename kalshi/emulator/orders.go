package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Resting orders and Kalshi's "Cancel All Orders",
// DELETE /portfolio/events/orders (docs.kalshi.com, "Cancel All Orders" and
// "Cancel Up to 10,000 Orders"): it cancels the member's resting
// event-market orders, of every subaccount or, with the query parameter
// subaccount (0 the primary account, 1-63), of that one only; at most
// maxCancel per call. The docs leave the answer's body and a restricted
// key's reach unsaid; the emulator answers 200 with the cancelled orders,
// {"orders":[{"order_id":...,"subaccount":N}]}, the shape of Kalshi's batch
// cancel, and refuses with 403 a key restricted to one subaccount that asks
// for another or for all, or a key without a write scope ("write" or
// "write::trade"). A subaccount that is not an integer from 0 to 63 is 400.
// The call spends the write bucket (Options.WriteRefill), at
// Options.CancelCost tokens, which GET /account/endpoint_costs lists.

// maxCancel is the most orders one cancel call cancels.
const maxCancel = 10000

// tokenBucket is a token bucket; refill < 0 means unlimited.
type tokenBucket struct {
	refill, capacity, tokens float64
	last                     time.Time
}

func (b *tokenBucket) take(now time.Time, cost float64) bool {
	if b.refill < 0 {
		return true
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.capacity, b.tokens+el.Seconds()*b.refill)
		b.last = now
	}
	if b.tokens < cost {
		return false
	}
	b.tokens -= cost
	return true
}

// order is a resting order of one account's subaccount.
type order struct {
	id         string
	subaccount int
}

func validSubaccount(n int) bool { return n >= 0 && n <= 63 }

// AddOrders places n resting orders in subaccount (0 the primary account,
// 1-63) of the default account, as another client of the member would, and
// returns their IDs. It panics on a subaccount outside 0-63.
func (e *Emulator) AddOrders(subaccount, n int) []string {
	if !validSubaccount(subaccount) {
		panic(fmt.Sprintf("emulator: AddOrders: subaccount %d is not 0-63", subaccount))
	}
	ids := make([]string, n)
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range ids {
		ids[i] = newUUID()
		e.orders[""] = append(e.orders[""], order{ids[i], subaccount})
	}
	return ids
}

// RestingOrders returns how many resting orders subaccount of the default
// account has; subaccount < 0 counts every subaccount's.
func (e *Emulator) RestingOrders(subaccount int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, o := range e.orders[""] {
		if subaccount < 0 || o.subaccount == subaccount {
			n++
		}
	}
	return n
}

// canWrite reports whether a key's scopes let it trade.
func canWrite(k *apiKey) bool {
	return k == nil || slices.Contains(k.scopes, "write") || slices.Contains(k.scopes, "write::trade")
}

func (e *Emulator) cancelOrders(w http.ResponseWriter, r *http.Request, k *apiKey, sig sent, now time.Time) {
	var sub *int
	if q := r.URL.Query(); q.Has("subaccount") {
		n, err := strconv.Atoi(q.Get("subaccount"))
		if err != nil || !validSubaccount(n) || len(q["subaccount"]) > 1 {
			e.book(http.StatusBadRequest, sig, "")
			writeBody(w, http.StatusBadRequest, contentJSON, bodyInvalidSubaccount)
			return
		}
		sub = &n
	}
	e.mu.Lock()
	status := 0
	switch {
	case k != nil && e.keys[k.id] != k:
		status = e.admitLocked(k, now, 0) // 401: deleted meanwhile
	case !e.writeB.take(now, e.cancelCost):
		status = http.StatusTooManyRequests
	case !canWrite(k):
		status = http.StatusForbidden
	case k != nil && k.subaccount != nil && (sub == nil || *sub != *k.subaccount):
		status = http.StatusForbidden
	}
	var cancelled []wireOrder
	if status == 0 {
		status = http.StatusOK
		cancelled = e.cancelLocked(accountOf(k), sub)
	}
	e.bookLocked(status, sig, "")
	e.mu.Unlock()
	switch status {
	case http.StatusOK:
		writeJSON(w, status, struct {
			Orders []wireOrder `json:"orders"`
		}{cancelled})
	case http.StatusForbidden:
		writeBody(w, status, contentJSON, bodyCancelForbidden)
	default:
		e.writeDenied(w, status)
	}
}

type wireOrder struct {
	OrderID    string `json:"order_id"`
	Subaccount int    `json:"subaccount"`
}

// cancelLocked cancels up to maxCancel resting orders of account, of
// subaccount *sub or of all. Call with e.mu held.
func (e *Emulator) cancelLocked(account string, sub *int) []wireOrder {
	cancelled := []wireOrder{}
	kept := e.orders[account][:0]
	for _, o := range e.orders[account] {
		if len(cancelled) < maxCancel && (sub == nil || o.subaccount == *sub) {
			cancelled = append(cancelled, wireOrder{o.id, o.subaccount})
			continue
		}
		kept = append(kept, o)
	}
	e.orders[account] = kept
	e.rec.cancelled += len(cancelled)
	return cancelled
}
