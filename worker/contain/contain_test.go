package contain

import (
	"testing"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// Which orders a deleted key's cancel may reach: its subaccount's when it
// is restricted to one; every order of the member only under All; none
// (with why) when the key was not deleted, is another account's, was not
// listed, or the scope does not allow it.
func TestReach(t *testing.T) {
	sub := 3
	restricted := &kalshi.APIKey{ID: "k", Scopes: []string{"read"}, Subaccount: &sub}
	member := &kalshi.APIKey{ID: "k", Scopes: []string{"read"}}
	revoked := &events.Result{Outcome: events.Revoked}
	failed := &events.Result{Outcome: events.Failed, Error: &events.Error{Code: events.CodeKalshiBadRequest}}
	for _, tc := range []struct {
		name  string
		scope Scope
		res   *events.Result
		key   *kalshi.APIKey
		own   bool
		sub   *int
		code  events.Code // "": allowed
	}{
		{"restricted key, subaccount scope", Subaccount, revoked, restricted, true, &sub, ""},
		{"restricted key, all scope", All, revoked, restricted, true, &sub, ""},
		{"member key, all scope", All, revoked, member, true, nil, ""},
		{"member key, subaccount scope", Subaccount, revoked, member, true, nil, events.CodeCancelOrdersNotAllowed},
		{"off", Off, revoked, restricted, true, nil, events.CodeCancelOrdersNotAllowed},
		{"another account's key", All, revoked, restricted, false, nil, events.CodeCancelOrdersNotAllowed},
		{"not listed", All, revoked, &kalshi.APIKey{ID: "k"}, true, nil, events.CodeCancelOrdersNotAllowed},
		{"not deleted", All, failed, restricted, true, nil, events.CodeKalshiBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, refusal := reach(tc.scope, tc.res, tc.key, tc.own)
			switch {
			case tc.code == "" && refusal != nil:
				t.Fatalf("refused: %+v", refusal)
			case tc.code != "" && (refusal == nil || refusal.Code != tc.code):
				t.Fatalf("refusal %+v, want code %s", refusal, tc.code)
			case (got == nil) != (tc.sub == nil) || got != nil && *got != *tc.sub:
				t.Fatalf("reach %v, want %v", got, tc.sub)
			}
		})
	}
}

// A request with cancel_orders whose key was not deleted says why nothing
// was cancelled: its own error's code. One without cancel_orders, or whose
// key was deleted, gets no containment from Uncontained.
func TestUncontained(t *testing.T) {
	res := &events.Result{Outcome: events.Rejected, Error: &events.Error{Code: events.CodeProtectedKey}}
	Uncontained(true, res)
	if res.Containment == nil || res.Containment.Error == nil || res.Containment.Error.Code != events.CodeProtectedKey {
		t.Errorf("containment %+v, want the request's own code", res.Containment)
	}
	notAsked := &events.Result{Outcome: events.Rejected, Error: &events.Error{Code: events.CodeProtectedKey}}
	Uncontained(false, notAsked)
	deleted := &events.Result{Outcome: events.Revoked}
	Uncontained(true, deleted)
	if notAsked.Containment != nil || deleted.Containment != nil {
		t.Errorf("containment %+v without cancel_orders, %+v with the key deleted", notAsked.Containment, deleted.Containment)
	}
}
