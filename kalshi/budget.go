package kalshi

import "math"

// BasicDeleteRate is the deletes per second of Kalshi's basic tier (200
// read tokens per second at 10 tokens a delete): the budget to start from
// when the account's limits cannot be read.
const BasicDeleteRate = 20

// BudgetFraction is the part of the advertised refill rate and burst that
// REVOKER_RATE=auto spends, so that timing jitter never causes a 429.
const BudgetFraction = 0.9

// deletePath is DELETE /api_keys/{api_key} as GET /account/endpoint_costs
// would list it; Costs.Cost matches it with or without the prefix and with
// any placeholder spelling.
const deletePath = apiPrefix + "/api_keys/{api_key}"

// DeleteBudget turns the account's limits (GET /account/limits) and
// endpoint costs (GET /account/endpoint_costs) into the account's delete
// budget: deletes use the read bucket at the cost listed for
// DELETE /api_keys/{api_key} (else the default cost), and the budget is
// BudgetFraction of the bucket's refill rate and capacity. burst is at
// least 1. The budget is the whole account's: replicas that share it
// split it in the worker's limiter (budget.Limiter.SetShare).
//
// Limits without a positive refill rate and capacity (not read, or not
// understood) give FallbackDeleteBudget. A delete that costs nothing gives
// perSecond 0: unlimited.
func DeleteBudget(limits Limits, costs Costs) (perSecond float64, burst int) {
	refill, capacity := limits.Read.RefillRate, limits.Read.BucketCapacity
	if !(refill > 0) || !(capacity > 0) || math.IsInf(refill, 0) || math.IsInf(capacity, 0) {
		return FallbackDeleteBudget()
	}
	cost := float64(costs.Cost("DELETE", deletePath))
	if cost <= 0 {
		return 0, 0
	}
	return refill / cost * BudgetFraction, burstOf(capacity / cost * BudgetFraction)
}

// FallbackDeleteBudget is the budget while the account's limits are
// unknown: BasicDeleteRate deletes per second and the basic tier's burst
// (200 tokens: 20 deletes), each times BudgetFraction.
func FallbackDeleteBudget() (perSecond float64, burst int) {
	return BasicDeleteRate * BudgetFraction, burstOf(BasicDeleteRate * BudgetFraction)
}

// burstOf rounds a token allowance down to whole deletes, at least one.
// The tiny epsilon keeps 0.9*200/10 at 18 despite floating point.
func burstOf(deletes float64) int {
	return max(1, int(math.Floor(deletes+1e-9)))
}

// BasicWriteRate is the write bucket's refill rate and capacity in tokens
// per second on Kalshi's basic tier: the write budget to start from when
// the account's limits cannot be read.
const BasicWriteRate = 100

// CancelBudget turns the account's limits and endpoint costs into the
// budget of CancelOrders calls (calls per second and burst), which spend
// the write bucket: BudgetFraction of its refill rate and capacity, at the
// cost GET /account/endpoint_costs lists for DELETE /portfolio/events/orders.
// Kalshi documents that cost as that of a batch cancel of the largest size
// the tier allows, but not the size: when the cost is not listed, one call
// is taken to cost the write bucket's whole capacity, the most any request
// can. burst is at least 1. Limits without a positive write refill rate and
// capacity give the basic tier's write bucket (BasicWriteRate). A cancel
// listed as free gives perSecond 0: unlimited.
func CancelBudget(limits Limits, costs Costs) (perSecond float64, burst int) {
	refill, capacity := limits.Write.RefillRate, limits.Write.BucketCapacity
	if !(refill > 0) || !(capacity > 0) || math.IsInf(refill, 0) || math.IsInf(capacity, 0) {
		refill, capacity = BasicWriteRate, BasicWriteRate
	}
	cost := capacity
	if c, ok := costs.listed("DELETE", CancelOrdersPath); ok {
		if c <= 0 {
			return 0, 0
		}
		cost = float64(c)
	}
	return refill / cost * BudgetFraction, burstOf(capacity / cost * BudgetFraction)
}
