package kalshi

import "strings"

// APIKey is one of the account's API keys as GET /api_keys lists it.
type APIKey struct {
	ID     string   `json:"api_key_id"`
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	// Subaccount is set for a key restricted to one subaccount (0-63).
	Subaccount *int `json:"subaccount,omitempty"`
}

// Limits is the account's rate budget from GET /account/limits.
type Limits struct {
	UsageTier string `json:"usage_tier"`
	Read      Bucket `json:"read"`
	Write     Bucket `json:"write"`
}

// Bucket is one token bucket: RefillRate tokens per second up to
// BucketCapacity tokens. Every request costs tokens (see [Costs]).
type Bucket struct {
	RefillRate     float64 `json:"refill_rate"`
	BucketCapacity float64 `json:"bucket_capacity"`
}

// DefaultCost is the token cost of a request whose endpoint Kalshi does not
// list with a different one.
const DefaultCost = 10

// Costs is the token cost of requests from GET /account/endpoint_costs,
// which lists only the endpoints whose cost differs from the default.
type Costs struct {
	DefaultCost   int            `json:"default_cost"`
	EndpointCosts []EndpointCost `json:"endpoint_costs"`
}

// EndpointCost is the cost of one endpoint. Path may carry the
// /trade-api/v2 prefix and {placeholders} for path parameters.
type EndpointCost struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Cost   int    `json:"cost"`
}

// Cost returns the token cost of a request: the listed cost of the matching
// endpoint, else DefaultCost, or 10 when DefaultCost is not positive. path
// may be a template ("/api_keys/{api_key}") or a concrete path
// ("/trade-api/v2/api_keys/abc"), with or without the /trade-api/v2 prefix;
// a listed {placeholder} or :param segment matches any one segment.
func (c Costs) Cost(method, path string) int {
	if cost, ok := c.listed(method, path); ok {
		return cost
	}
	if c.DefaultCost > 0 {
		return c.DefaultCost
	}
	return DefaultCost
}

// listed returns the cost listed for the endpoint, if any.
func (c Costs) listed(method, path string) (int, bool) {
	for _, ec := range c.EndpointCosts {
		if ec.Cost >= 0 && strings.EqualFold(ec.Method, method) && pathMatches(ec.Path, path) {
			return ec.Cost, true
		}
	}
	return 0, false
}

// apiPrefix is the path prefix of every endpoint.
const apiPrefix = "/trade-api/v2"

func pathMatches(pattern, path string) bool {
	ps := strings.Split(normPath(pattern), "/")
	ss := strings.Split(normPath(path), "/")
	if len(ps) != len(ss) {
		return false
	}
	for i := range ps {
		if ps[i] != ss[i] && !isParam(ps[i]) && !isParam(ss[i]) {
			return false
		}
	}
	return true
}

func isParam(seg string) bool {
	return len(seg) > 1 && (seg[0] == ':' || seg[0] == '{' && seg[len(seg)-1] == '}')
}

func normPath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	p = strings.TrimPrefix(p, apiPrefix)
	return strings.Trim(p, "/")
}
