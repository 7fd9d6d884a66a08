package events

// The error codes, in one table (codes): each code's outcome, whether it is
// where an attack shows, and what it means. Code.Outcome reads it, and so do
// the tests of the contract's Outcomes table, the alerts and the dashboard
// (deploy/monitoring_test.go): add a code here first, and they say what else
// must name it.

import "slices"

// Code says why a request was rejected or failed.
type Code string

// The error codes; Codes says what each means and the outcome it comes with.
const (
	CodeInvalidRequest        Code = "invalid_request"
	CodeUnauthorizedRequest   Code = "unauthorized_request"
	CodeSelfRevocationRefused Code = "self_revocation_refused"
	CodeProtectedKey          Code = "protected_key"
	CodeConflictingRequestID  Code = "conflicting_request_id"
	CodeLeakedKeyNotFound     Code = "leaked_key_not_found"
	CodeKalshiBadRequest      Code = "kalshi_bad_request"
	CodeKalshiUnauthorized    Code = "kalshi_unauthorized"
	CodeRetriesExhausted      Code = "retries_exhausted"
	CodeMaxDeliveries         Code = "max_deliveries"

	// CodeCancelOrdersNotAllowed is a containment error, never an outcome's:
	// the deployment's REVOKER_CANCEL_ORDERS forbids the cancel a request asked for.
	CodeCancelOrdersNotAllowed Code = "cancel_orders_not_allowed"
)

// CodeInfo describes one error code.
type CodeInfo struct {
	Code    Code
	Outcome Outcome // Rejected or Failed; "" for a containment error
	// Attack says a result with this code is where an attack shows: a request
	// someone who may publish requests sent and revoker must refuse. The
	// alert RevokerRequestRefused fires on exactly these.
	Attack  bool
	Meaning string // one line
}

// codes is the one table of the error codes, in the contract's order.
var codes = []CodeInfo{
	{CodeInvalidRequest, Rejected, false, "the request does not follow the contract"},
	{CodeUnauthorizedRequest, Rejected, true, "it fails request authentication or REVOKER_ALLOWED_SOURCES"},
	{CodeSelfRevocationRefused, Rejected, true, "it names the worker's own key"},
	{CodeProtectedKey, Rejected, true, "it names a protected key"},
	{CodeConflictingRequestID, Rejected, true, "its id already names a request for another key"},
	{CodeLeakedKeyNotFound, Rejected, false, "no key of the account accepts a call signed with the leaked private key"},
	{CodeKalshiBadRequest, Rejected, false, "Kalshi answered 400 or another unexpected 4xx"},
	{CodeKalshiUnauthorized, Failed, false, "Kalshi answered 401 or 403: revoker's own credential is refused"},
	{CodeRetriesExhausted, Failed, false, "Kalshi kept failing until the retry budget ran out"},
	{CodeMaxDeliveries, Failed, false, "the request was delivered too often without a stored outcome"},
	{CodeCancelOrdersNotAllowed, "", false, "REVOKER_CANCEL_ORDERS forbids the cancel the request asked for"},
}

// Codes returns every error code with its outcome and meaning, in the
// contract's order.
func Codes() []CodeInfo { return slices.Clone(codes) }

// Outcome returns the outcome a result with this code has: Rejected or Failed, or ""
// for an unknown code and a containment-only one (CodeCancelOrdersNotAllowed).
func (c Code) Outcome() Outcome {
	for _, ci := range codes {
		if ci.Code == c {
			return ci.Outcome
		}
	}
	return ""
}
