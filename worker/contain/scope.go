package contain

import (
	"fmt"
	"slices"
)

// Scope is what REVOKER_CANCEL_ORDERS allows: which orders a request with
// cancel_orders may cancel.
type Scope string

// The cancel scopes.
const (
	Off        Scope = "off"        // none: cancel_orders gets cancel_orders_not_allowed
	Subaccount Scope = "subaccount" // a subaccount-restricted key's subaccount
	All        Scope = "all"        // also every order of the member, for an unrestricted key
)

// DefaultScope is REVOKER_CANCEL_ORDERS's default.
const DefaultScope = Off

// ParseScope reads REVOKER_CANCEL_ORDERS.
func ParseScope(s string) (Scope, error) {
	switch sc := Scope(s); sc {
	case Off, Subaccount, All:
		return sc, nil
	}
	return "", fmt.Errorf("%q is not off, subaccount or all", s)
}

// NeedsScope reports whether a cancel under sc needs the worker's key to
// trade: a write scope, "write" or "write::trade".
func (sc Scope) NeedsScope() bool { return sc == Subaccount || sc == All }

// CanCancel reports whether scopes (a key's, as listed) allow cancelling
// orders. Kalshi does not document the scope the cancel needs; trading
// needs write::trade or the older write.
func CanCancel(scopes []string) bool {
	return slices.Contains(scopes, "write") || slices.Contains(scopes, "write::trade")
}
