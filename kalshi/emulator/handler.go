package emulator

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The signed headers in canonical form, for direct header map access.
const (
	headerKey       = "Kalshi-Access-Key"
	headerTimestamp = "Kalshi-Access-Timestamp"
	headerSignature = "Kalshi-Access-Signature"
)

// maxRequestBody bounds a POST body.
const maxRequestBody = 64 << 10

type route uint8

const (
	routeNone route = iota
	routeListKeys
	routeCreateKey
	routeGenerateKey
	routeDeleteKey
	routeLimits
	routeCosts
	routeCancelOrders
)

// routeOf maps a request to an endpoint. For routeNone it returns the
// status to answer (404 or 405); for routeDeleteKey the key ID.
func routeOf(method, path string) (route, string, int) {
	rest, ok := strings.CutPrefix(path, BasePath)
	if !ok {
		return routeNone, "", http.StatusNotFound
	}
	want := func(m string, r route) (route, string, int) {
		if method == m {
			return r, "", 0
		}
		return routeNone, "", http.StatusMethodNotAllowed
	}
	switch rest {
	case "/api_keys":
		if method == http.MethodPost {
			return routeCreateKey, "", 0
		}
		return want(http.MethodGet, routeListKeys)
	case "/api_keys/generate":
		if method != http.MethodDelete {
			return want(http.MethodPost, routeGenerateKey)
		}
	case "/account/limits":
		return want(http.MethodGet, routeLimits)
	case "/account/endpoint_costs":
		return want(http.MethodGet, routeCosts)
	case "/portfolio/events/orders":
		return want(http.MethodDelete, routeCancelOrders)
	}
	if id, ok := strings.CutPrefix(rest, "/api_keys/"); ok && !strings.Contains(id, "/") {
		if method == http.MethodDelete {
			return routeDeleteKey, id, 0
		}
		return routeNone, "", http.StatusMethodNotAllowed
	}
	return routeNone, "", http.StatusNotFound
}

// sent is what a request's headers claimed, for the record: the key ID
// they named and the signature, valid or not; and, for the call log, when
// it arrived, its endpoint and the Retry-After of an injected 429.
type sent struct {
	keyID, sig string
	at         time.Time
	signed     time.Time // the request's own timestamp header: when the client signed it
	rt         route
	retryAfter time.Duration
}

// ServeHTTP answers one API request.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.requests.Add(1)
	rt, id, status := routeOf(r.Method, r.URL.Path)
	sig := sent{keyID: first(r.Header[headerKey]), sig: first(r.Header[headerSignature]), at: e.now(), rt: rt}
	if ms, err := strconv.ParseInt(first(r.Header[headerTimestamp]), 10, 64); err == nil {
		sig.signed = time.UnixMilli(ms)
	}
	if rt == routeNone {
		body := bodyRouteNotFound
		if status == http.StatusMethodNotAllowed {
			body = bodyMethodNotAllowed
		}
		e.book(status, sig, "")
		writeBody(w, status, contentJSON, body)
		return
	}
	if rt == routeDeleteKey && isUUID(id) {
		id = strings.ToLower(id)
	}
	var f fault
	if e.faultsOn.Load() {
		f = e.drawFault()
		if !e.pause(r.Context(), f.delay) {
			e.book(0, sig, id)
			return
		}
		if f.status != 0 {
			e.book(f.status, sig, id)
			writeFault(w, f.status)
			return
		}
		if f.tooMany {
			ra := f.retryAfter
			if ra <= 0 {
				ra = e.opts.RetryAfter
			}
			sig.retryAfter = ra
			e.book(http.StatusTooManyRequests, sig, id)
			writeTooMany(w, ra)
			return
		}
	}
	if rt == routeCosts {
		e.book(http.StatusOK, sig, "")
		writeBody(w, http.StatusOK, contentJSON, e.costs)
		return
	}
	now := e.now()
	var k *apiKey
	if !e.opts.NoAuth {
		var cause string
		if k, cause = e.authenticate(r, now); cause != "" {
			e.mu.Lock()
			e.rec.unauthorized[cause]++
			e.bookLocked(http.StatusUnauthorized, sig, id)
			e.mu.Unlock()
			writeBody(w, http.StatusUnauthorized, contentJSON, bodyUnauthorized[cause])
			return
		}
	}
	switch rt {
	case routeDeleteKey:
		e.deleteKey(w, k, id, sig, now, f.lost)
	case routeListKeys:
		e.listKeysHandler(w, k, sig, now)
	case routeLimits:
		e.limits(w, k, sig, now)
	case routeCreateKey, routeGenerateKey:
		e.createKey(w, r, rt, k, sig, now)
	case routeCancelOrders:
		e.cancelOrders(w, r, k, sig, now)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// authenticate checks the signed headers. It returns the signing key, or
// the cause of the 401.
func (e *Emulator) authenticate(r *http.Request, now time.Time) (*apiKey, string) {
	keyID, ts, sig := first(r.Header[headerKey]), first(r.Header[headerTimestamp]), first(r.Header[headerSignature])
	if keyID == "" || ts == "" || sig == "" {
		return nil, causeMissing
	}
	e.mu.Lock()
	k := e.keys[keyID]
	e.mu.Unlock()
	if k == nil {
		return nil, causeNotFound
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, causeExpired
	}
	if d := now.Sub(time.UnixMilli(ms)); d > e.opts.Skew || d < -e.opts.Skew {
		return nil, causeExpired
	}
	if len(sig) > 2048 {
		return nil, causeSignature
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return nil, causeSignature
	}
	var buf [192]byte
	text := append(buf[:0], ts...)
	text = append(text, r.Method...)
	text = append(text, wirePath(r)...)
	if !k.verify(text, raw) {
		return nil, causeSignature
	}
	return k, ""
}

// wirePath is the request path as the client sent it, without the query.
func wirePath(r *http.Request) string {
	if u := r.RequestURI; u != "" && u[0] == '/' {
		p, _, _ := strings.Cut(u, "?")
		return p
	}
	return r.URL.EscapedPath()
}

// admitLocked lets an authenticated request spend its tokens. It returns 0,
// or 401 when the signing key was deleted meanwhile, or 429. Call with e.mu
// held.
func (e *Emulator) admitLocked(k *apiKey, now time.Time, cost float64) int {
	if k != nil && e.keys[k.id] != k {
		e.rec.unauthorized[causeNotFound]++
		return http.StatusUnauthorized
	}
	if !e.readB.take(now, cost) {
		return http.StatusTooManyRequests
	}
	return 0
}

// writeDenied answers what admitLocked refused.
func (e *Emulator) writeDenied(w http.ResponseWriter, status int) {
	if status == http.StatusUnauthorized {
		writeBody(w, status, contentJSON, bodyUnauthorized[causeNotFound])
		return
	}
	writeTooMany(w, e.opts.RetryAfter)
}

// accountOf is the account a request acts in: its signing key's, or the
// default account's when authentication is off.
func accountOf(k *apiKey) string {
	if k == nil {
		return ""
	}
	return k.account
}

func (e *Emulator) deleteKey(w http.ResponseWriter, k *apiKey, id string, sig sent, now time.Time, lose bool) {
	e.mu.Lock()
	status := e.admitLocked(k, now, e.delCost)
	if status == 0 {
		target := e.keys[id]
		switch {
		case !isUUID(id):
			status = http.StatusBadRequest
		// Another account's key is answered as if it did not exist.
		case target != nil && target.account == accountOf(k):
			e.removeLocked(target)
			e.rec.deletes[id]++
			e.rec.lastDeleteAt[id] = now
			status = http.StatusNoContent
		default:
			status = http.StatusNotFound
		}
	}
	lost := lose && (status == http.StatusNoContent || status == http.StatusNotFound)
	if lost {
		e.rec.lost++
		e.bookLocked(0, sig, id)
	} else {
		e.bookLocked(status, sig, id)
	}
	e.mu.Unlock()

	switch {
	case lost:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return
		}
		e.book(http.StatusBadGateway, sent{keyID: sig.keyID}, "")
		writeFault(w, http.StatusBadGateway)
	case status == http.StatusNoContent:
		w.WriteHeader(status)
	case status == http.StatusNotFound:
		writeBody(w, status, contentJSON, bodyKeyNotFound)
	case status == http.StatusBadRequest:
		writeBody(w, status, contentJSON, bodyInvalidKeyID)
	default:
		e.writeDenied(w, status)
	}
}

type wireKey struct {
	ID         string   `json:"api_key_id"`
	Name       string   `json:"name"`
	Scopes     []string `json:"scopes"`
	Subaccount *int     `json:"subaccount,omitempty"`
}

func (e *Emulator) listKeysHandler(w http.ResponseWriter, k *apiKey, sig sent, now time.Time) {
	e.mu.Lock()
	status := e.admitLocked(k, now, defaultCost)
	e.bookLocked(statusOr(status, http.StatusOK), sig, "")
	e.mu.Unlock()
	if status != 0 {
		e.writeDenied(w, status)
		return
	}
	keys := e.listKeys(accountOf(k), true)
	v := struct {
		APIKeys []wireKey `json:"api_keys"`
	}{make([]wireKey, len(keys))}
	for i, k := range keys {
		v.APIKeys[i] = wireKey{k.id, k.name, k.scopes, k.subaccount}
	}
	writeJSON(w, http.StatusOK, v)
}

type wireBucket struct {
	RefillRate     float64 `json:"refill_rate"`
	BucketCapacity float64 `json:"bucket_capacity"`
}

// unlimited is what GET /account/limits reports for an unlimited bucket.
const unlimited = 1e6

// tierWrite is the write bucket's refill rate (and capacity) per tier.
var tierWrite = map[string]float64{"basic": 100, "advanced": 300, "premier": 1000, "paragon": 2000, "prime": 4000}

func (e *Emulator) limits(w http.ResponseWriter, k *apiKey, sig sent, now time.Time) {
	e.mu.Lock()
	status := e.admitLocked(k, now, defaultCost)
	e.bookLocked(statusOr(status, http.StatusOK), sig, "")
	read := wireBucket{e.readB.refill, e.readB.capacity}
	write := wireBucket{e.writeB.refill, e.writeB.capacity}
	e.mu.Unlock()
	if status != 0 {
		e.writeDenied(w, status)
		return
	}
	if read.RefillRate < 0 {
		read = wireBucket{unlimited, unlimited}
	}
	if write.RefillRate < 0 {
		write = wireBucket{unlimited, unlimited}
	}
	writeJSON(w, http.StatusOK, struct {
		UsageTier string     `json:"usage_tier"`
		Read      wireBucket `json:"read"`
		Write     wireBucket `json:"write"`
	}{e.opts.Tier, read, write})
}

// createKey serves POST /api_keys (with a public key) and POST
// /api_keys/generate.
func (e *Emulator) createKey(w http.ResponseWriter, r *http.Request, rt route, k *apiKey, sig sent, now time.Time) {
	e.mu.Lock()
	status := e.admitLocked(k, now, defaultCost)
	if status != 0 {
		e.bookLocked(status, sig, "")
	}
	e.mu.Unlock()
	if status != 0 {
		e.writeDenied(w, status)
		return
	}
	status, body, ct := e.create(r, rt, accountOf(k))
	e.book(status, sig, "")
	writeBody(w, status, ct, body)
}

// create registers the key a POST describes in account.
func (e *Emulator) create(r *http.Request, rt route, account string) (int, []byte, []string) {
	bad := func(msg string) (int, []byte, []string) {
		return http.StatusBadRequest, flat("bad_request", msg), contentJSON
	}
	var req struct {
		Name       string   `json:"name"`
		PublicKey  string   `json:"public_key"`
		Scopes     []string `json:"scopes"`
		Subaccount *int     `json:"subaccount"`
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	switch {
	case err != nil:
		return bad("cannot read request body")
	case len(data) > maxRequestBody:
		return bad("request body too large")
	case json.Unmarshal(data, &req) != nil:
		return http.StatusBadRequest, flat("invalid_content_type", "request body must be a JSON object"), contentJSON
	case req.Name == "":
		return bad("name is required")
	case req.Subaccount != nil && !validSubaccount(*req.Subaccount):
		return bad("subaccount must be 0 to 63")
	}
	if rt == routeGenerateKey {
		id, pemKey, err := e.generate(account, req.Name, req.Scopes, req.Subaccount)
		if err != nil {
			return http.StatusInternalServerError, bodyFault[500], contentJSON
		}
		return marshal(http.StatusCreated, struct {
			ID         string `json:"api_key_id"`
			PrivateKey string `json:"private_key"`
		}{id, string(pemKey)})
	}
	pub, err := parsePublicKeyPEM(req.PublicKey)
	if err != nil {
		return bad("invalid public_key: " + err.Error())
	}
	id, err := e.addKey(account, req.Name, pub, req.Scopes, req.Subaccount, true)
	switch {
	case err == errDuplicateKey:
		return http.StatusConflict, flat("conflict", "public key already registered"), contentJSON
	case err != nil:
		return bad("invalid public_key: " + err.Error())
	}
	return marshal(http.StatusCreated, struct {
		ID string `json:"api_key_id"`
	}{id})
}

func statusOr(status, ok int) int {
	if status != 0 {
		return status
	}
	return ok
}

func marshal(status int, v any) (int, []byte, []string) {
	b, err := json.Marshal(v)
	if err != nil {
		return http.StatusInternalServerError, bodyFault[500], contentJSON
	}
	return status, b, contentJSON
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	_, b, _ := marshal(status, v)
	writeBody(w, status, contentJSON, b)
}

func writeBody(w http.ResponseWriter, status int, contentType []string, body []byte) {
	if len(body) > 0 {
		w.Header()["Content-Type"] = contentType
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeTooMany(w http.ResponseWriter, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header()["Retry-After"] = []string{retryAfterValue(retryAfter)}
	}
	writeBody(w, http.StatusTooManyRequests, contentJSON, bodyTooMany)
}

func writeFault(w http.ResponseWriter, status int) {
	ct := contentJSON
	if status == http.StatusBadGateway {
		ct = contentHTML
	}
	writeBody(w, status, ct, bodyFault[status])
}
