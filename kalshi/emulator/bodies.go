package emulator

import (
	"encoding/json"
	"strconv"
	"time"
)

const defaultCost = 10

// Causes of a 401, as Kalshi names them in the error's details.
const (
	causeMissing   = "signature_is_missing_from_headers"
	causeNotFound  = "NOT_FOUND"
	causeExpired   = "header_timestamp_expired"
	causeSignature = "INCORRECT_API_KEY_SIGNATURE"
)

// nested returns Kalshi's nested error body.
func nested(code, message, details string) []byte {
	type inner struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details string `json:"details,omitempty"`
	}
	b, _ := json.Marshal(struct {
		Error inner `json:"error"`
	}{inner{code, message, details}})
	return b
}

// flat returns Kalshi's flat error body.
func flat(code, message string) []byte {
	b, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, message})
	return b
}

// Bodies are built once; the hot path only writes them.
var (
	bodyUnauthorized = map[string][]byte{
		causeMissing:   nested(causeMissing, "signature is missing from headers", causeMissing),
		causeNotFound:  nested("authentication_error", "authentication error", causeNotFound),
		causeExpired:   nested(causeExpired, "header timestamp expired", causeExpired),
		causeSignature: nested("authentication_error", "authentication error", causeSignature),
	}
	bodyKeyNotFound       = nested("not_found", "api key not found", "")
	bodyInvalidKeyID      = nested("bad_request", "invalid api key id", "api_key must be a UUID")
	bodyRouteNotFound     = nested("not_found", "route not found", "")
	bodyMethodNotAllowed  = nested("method_not_allowed", "method not allowed", "")
	bodyInvalidSubaccount = flat("bad_request", "subaccount must be an integer from 0 to 63")
	bodyCancelForbidden   = nested("permission_denied", "the api key may not cancel these orders", "")
	bodyTooMany           = []byte(`{"error":"too many requests"}`)
	bodyFault             = map[int][]byte{
		500: nested("internal_server_error", "internal server error", ""),
		502: []byte("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"),
		503: []byte(`{"msg":"service unavailable"}`),
		504: nil,
	}
	contentJSON = []string{"application/json; charset=utf-8"}
	contentHTML = []string{"text/html"}
)

// costsBody is GET /account/endpoint_costs: only costs that differ from
// the default are listed.
func costsBody(deleteCost, cancelCost int) []byte {
	type cost struct {
		Method string `json:"method"`
		Path   string `json:"path"`
		Cost   int    `json:"cost"`
	}
	v := struct {
		DefaultCost   int    `json:"default_cost"`
		EndpointCosts []cost `json:"endpoint_costs"`
	}{DefaultCost: defaultCost, EndpointCosts: []cost{}}
	if deleteCost != defaultCost {
		v.EndpointCosts = append(v.EndpointCosts, cost{"DELETE", BasePath + "/api_keys/{api_key}", deleteCost})
	}
	v.EndpointCosts = append(v.EndpointCosts, cost{"DELETE", BasePath + "/portfolio/events/orders", cancelCost})
	b, _ := json.Marshal(v)
	return b
}

// retryAfterValue renders d as whole seconds, rounded up.
func retryAfterValue(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
