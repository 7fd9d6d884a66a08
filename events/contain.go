package events

import (
	"encoding/json"
	"strconv"
)

// Containment is what became of a request's cancel_orders: the resting
// orders cancelled once the key was deleted, or why none were. It is the
// result's data.containment, {"orders_cancelled": N} or
// {"error": {"code", "message"}}.
type Containment struct {
	OrdersCancelled int    // orders cancelled; meaningless when Error is set
	Error           *Error // why the orders were not (all) cancelled; nil on success
}

type containmentDoc struct {
	OrdersCancelled *int   `json:"orders_cancelled,omitempty"`
	Error           *Error `json:"error,omitempty"`
}

// MarshalJSON encodes c as the contract says: the count or the error. By
// hand, not through containmentDoc: encoding/json would escape <, > and &
// in the message, which the result's encoder leaves as they are.
func (c Containment) MarshalJSON() ([]byte, error) {
	if c.Error == nil {
		b := strconv.AppendInt([]byte(`{"orders_cancelled":`), int64(c.OrdersCancelled), 10)
		return append(b, '}'), nil
	}
	b := appendString([]byte(`{"error":{"code":`), string(c.Error.Code))
	b = appendString(append(b, `,"message":`...), c.Error.Message)
	return append(b, "}}"...), nil
}

// UnmarshalJSON decodes either form.
func (c *Containment) UnmarshalJSON(b []byte) error {
	var d containmentDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return err
	}
	*c = Containment{Error: d.Error}
	if d.OrdersCancelled != nil && d.Error == nil {
		c.OrdersCancelled = *d.OrdersCancelled
	}
	return nil
}

// BlastRadius is what the account listed of a key before the DELETE: after
// it, nothing at Kalshi can tell how bad the leak was. It is declared once,
// here: the result's data and the ledger's key record embed it, so a field
// added here is in both. Each field is left out when unknown.
type BlastRadius struct {
	KeyName   string   `json:"key_name,omitempty"`
	KeyScopes []string `json:"key_scopes,omitzero"` // as listed: nil when not listed, empty when listed with none
	// KeySubaccount is the one subaccount a restricted key could use; nil
	// for an unrestricted key.
	KeySubaccount *int `json:"key_subaccount,omitempty"`
}

// shortenBlastRadius cuts the free text of the blast radius and the
// containment to at most n bytes each, as Result.shortened does the rest.
func (r *Result) shortenBlastRadius(short func(string) string) {
	r.KeyName = short(r.KeyName)
	if r.KeyScopes != nil {
		scopes := make([]string, len(r.KeyScopes))
		for i, s := range r.KeyScopes {
			scopes[i] = short(s)
		}
		r.KeyScopes = scopes
	}
	if c := r.Containment; c != nil && c.Error != nil {
		r.Containment = &Containment{Error: &Error{Code: c.Error.Code, Message: short(c.Error.Message)}}
	}
}
