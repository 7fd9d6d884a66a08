package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// cancel_orders decodes in all three forms; any other type is invalid.
func TestDecodeCancelOrders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header map[string][]string
		body   string
		want   bool
		err    string
	}{
		{"plain true", nil, `{"api_key_id":"k","cancel_orders":true}`, true, ""},
		{"plain false", nil, `{"api_key_id":"k","cancel_orders":false}`, false, ""},
		{"plain absent", nil, `{"api_key_id":"k"}`, false, ""},
		{"plain null", nil, `{"api_key_id":"k","cancel_orders":null}`, false, ""},
		{"structured", nil, `{"specversion":"1.0","id":"e","source":"s","type":"t","data":{"api_key_id":"k","cancel_orders":true}}`, true, ""},
		{"structured, top level is not data", nil, `{"specversion":"1.0","id":"e","source":"s","type":"t","cancel_orders":true,"data":{"api_key_id":"k"}}`, false, ""},
		{"binary", ceHdr(), `{"api_key_id":"k","cancel_orders":true}`, true, ""},
		{"a string", nil, `{"api_key_id":"k","cancel_orders":"true"}`, false, "cancel_orders must be a boolean, not a string"},
		{"a number", nil, `{"api_key_id":"k","cancel_orders":1}`, false, "cancel_orders must be a boolean, not a number"},
		{"an object in data", nil, `{"specversion":"1.0","id":"e","source":"s","type":"t","data":{"api_key_id":"k","cancel_orders":{}}}`, false, "data.cancel_orders must be a boolean, not an object"},
		{"twice", nil, `{"api_key_id":"k","cancel_orders":true,"cancel_orders":false}`, false, `the key "cancel_orders" more than once`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRequest(tc.header, []byte(tc.body), fallback)
			var ire *InvalidRequestError
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.err != "" && (!errors.As(err, &ire) || !strings.Contains(ire.Reason, tc.err)):
				t.Fatalf("err = %v, want %q", err, tc.err)
			case tc.err == "" && got.CancelOrders != tc.want:
				t.Fatalf("CancelOrders = %v, want %v", got.CancelOrders, tc.want)
			}
		})
	}
}

// The blast radius and the containment are encoded, parsed back, and kept
// within MaxResultSize however long what Kalshi listed is.
func TestResultBlastRadiusAndContainment(t *testing.T) {
	sub := 7
	r := revokedResult()
	r.KeyName, r.KeyScopes, r.KeySubaccount = "bot \"7\"", []string{"read", "write::trade"}, &sub
	r.Containment = &Containment{OrdersCancelled: 12}
	doc, err := r.MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	var wire struct {
		Data map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(doc, &wire); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"key_name": `"bot \"7\""`, "key_scopes": `["read","write::trade"]`, "key_subaccount": `7`,
		"containment": `{"orders_cancelled":12}`,
	} {
		if got := string(wire.Data[k]); got != want {
			t.Errorf("data.%s = %s, want %s", k, got, want)
		}
	}
	back, err := ParseResult(doc)
	if err != nil || back.KeyName != r.KeyName || strings.Join(back.KeyScopes, ",") != "read,write::trade" ||
		back.KeySubaccount == nil || *back.KeySubaccount != 7 || back.Containment == nil || *back.Containment != *r.Containment {
		t.Fatalf("ParseResult = %+v, %v", back, err)
	}

	// An unrestricted key has no key_subaccount; subaccount 0 is kept; an
	// error replaces the count; empty scopes are an empty array.
	r.KeySubaccount, r.KeyScopes = nil, []string{}
	r.Containment = &Containment{Error: &Error{Code: CodeCancelOrdersNotAllowed, Message: "off"}}
	doc, _ = r.MarshalEvent()
	if s := string(doc); strings.Contains(s, "key_subaccount") || !strings.Contains(s, `"key_scopes":[]`) ||
		!strings.Contains(s, `"containment":{"error":{"code":"cancel_orders_not_allowed","message":"off"}}`) {
		t.Fatalf("doc %s", doc)
	}
	back, _ = ParseResult(doc)
	if back.Containment == nil || back.Containment.Error == nil || back.Containment.Error.Code != CodeCancelOrdersNotAllowed {
		t.Fatalf("containment error lost: %+v", back.Containment)
	}
	zero := 0
	r.KeySubaccount = &zero
	if doc, _ = r.MarshalEvent(); !strings.Contains(string(doc), `"key_subaccount":0`) {
		t.Fatalf("subaccount 0 lost: %s", doc)
	}
	// A key not listed carries none of it.
	plain := revokedResult()
	if doc, _ = plain.MarshalEvent(); strings.Contains(string(doc), `"key_`) || strings.Contains(string(doc), "containment") {
		t.Fatalf("unlisted key: %s", doc)
	}

	// A huge name and many long scopes are cut to fit.
	r.KeyName = strings.Repeat("n", 10000)
	r.KeyScopes = []string{strings.Repeat("s", 5000), strings.Repeat("t", 5000)}
	doc, err = r.MarshalEvent()
	if err != nil || len(doc) > MaxResultSize || !json.Valid(doc) {
		t.Fatalf("huge blast radius: %d bytes, %v", len(doc), err)
	}
}
