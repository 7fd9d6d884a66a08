package emulator

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// cancelled decodes a cancel's answer into the subaccount of each order.
func cancelled(t *testing.T, r reply) []int {
	t.Helper()
	var v struct {
		Orders []struct {
			OrderID    string `json:"order_id"`
			Subaccount int    `json:"subaccount"`
		} `json:"orders"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &v) != nil || v.Orders == nil {
		t.Fatalf("cancel: %d %s, want 200 with an orders list", r.status, r.body)
	}
	subs := make([]int, len(v.Orders))
	for i, o := range v.Orders {
		if !isUUID(o.OrderID) {
			t.Fatalf("order id %q", o.OrderID)
		}
		subs[i] = o.Subaccount
	}
	return subs
}

// Cancel All Orders: one subaccount's, or all; signed; a restricted key
// reaches its own subaccount only; a bad subaccount is 400.
func TestCancelOrders(t *testing.T) {
	e := New(Options{Refill: -1})
	base := start(t, e)
	admin := &signer{id: e.AddKey("admin", testKey()), key: testKey()}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	restricted := &signer{id: e.AddSubaccountKey("bot", edKey.Public(), 3, "read", "write::trade"), key: edKey}
	reader := &signer{id: e.AddKey("reader", edKey.Public(), "read"), key: edKey}
	e.AddOrders(0, 2)
	e.AddOrders(3, 4)
	e.AddOrders(5, 1)

	keys := listed(t, admin, base)
	if len(keys) != 3 || keys[0].Subaccount != nil || keys[1].Subaccount == nil || *keys[1].Subaccount != 3 {
		t.Fatalf("listing %+v, want the restricted key with subaccount 3", keys)
	}
	for _, tc := range []struct {
		who    *signer
		query  string
		status int
	}{
		{nil, "?subaccount=3", 401},
		{admin, "?subaccount=64", 400},
		{admin, "?subaccount=-1", 400},
		{admin, "?subaccount=x", 400},
		{admin, "?subaccount=1&subaccount=2", 400},
		{restricted, "", 403},
		{restricted, "?subaccount=5", 403},
		{reader, "?subaccount=3", 403},
	} {
		if r := call(t, tc.who, "DELETE", base+"/portfolio/events/orders"+tc.query, nil); r.status != tc.status {
			t.Errorf("cancel%s: %d %s, want %d", tc.query, r.status, r.body, tc.status)
		}
	}
	if n := e.RestingOrders(-1); n != 7 {
		t.Fatalf("refused cancels left %d orders, want 7", n)
	}
	if subs := cancelled(t, call(t, restricted, "DELETE", base+"/portfolio/events/orders?subaccount=3", nil)); len(subs) != 4 || subs[0] != 3 {
		t.Fatalf("restricted key cancelled %v, want four of subaccount 3", subs)
	}
	if e.RestingOrders(3) != 0 || e.RestingOrders(0) != 2 || e.RestingOrders(5) != 1 {
		t.Fatal("the subaccount cancel touched another subaccount")
	}
	if subs := cancelled(t, call(t, admin, "DELETE", base+"/portfolio/events/orders?subaccount=3", nil)); len(subs) != 0 {
		t.Fatalf("second cancel: %v, want none", subs)
	}
	if subs := cancelled(t, call(t, admin, "DELETE", base+"/portfolio/events/orders", nil)); len(subs) != 3 {
		t.Fatalf("member-wide cancel: %v, want 3", subs)
	}
	if call(t, admin, "GET", base+"/portfolio/events/orders", nil).status != http.StatusMethodNotAllowed {
		t.Error("GET on the cancel endpoint is not 405")
	}
	st := e.Stats()
	if got := st.ByEndpoint[EndpointCancelOrders]; got[200] != 3 || got[400] != 4 || got[403] != 3 || got[401] != 1 {
		t.Errorf("ByEndpoint[cancel] = %v", got)
	}
	if st.ByEndpoint[EndpointListKeys][200] != 1 || st.OrdersCancelled != 7 {
		t.Errorf("ByEndpoint = %v, cancelled %d", st.ByEndpoint, st.OrdersCancelled)
	}
	// A deleted key cancels nothing.
	if call(t, admin, "DELETE", base+"/api_keys/"+restricted.id, nil).status != 204 {
		t.Fatal("delete")
	}
	e.AddOrders(3, 1)
	if r := call(t, restricted, "DELETE", base+"/portfolio/events/orders?subaccount=3", nil); r.status != 401 || e.RestingOrders(3) != 1 {
		t.Fatalf("deleted key cancel: %d", r.status)
	}
}

// One call cancels at most 10,000 orders.
func TestCancelOrdersAtMost10000(t *testing.T) {
	e := New(Options{NoAuth: true, Refill: -1})
	base := start(t, e)
	e.AddOrders(1, maxCancel+5)
	if n := len(cancelled(t, call(t, nil, "DELETE", base+"/portfolio/events/orders", nil))); n != maxCancel {
		t.Fatalf("first call cancelled %d", n)
	}
	if n := len(cancelled(t, call(t, nil, "DELETE", base+"/portfolio/events/orders?subaccount=1", nil))); n != 5 {
		t.Fatalf("second call cancelled %d", n)
	}
}

// The cancel spends the write bucket at CancelCost, not the read bucket.
func TestCancelOrdersSpendsWriteTokens(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	e := New(Options{NoAuth: true, Refill: 20, WriteRefill: 100, CancelCost: 60, Now: func() time.Time { return now }})
	base := start(t, e)
	r := call(t, nil, "GET", base+"/account/limits", nil)
	if want := `{"usage_tier":"basic","read":{"refill_rate":20,"bucket_capacity":20},"write":{"refill_rate":100,"bucket_capacity":100}}`; string(r.body) != want {
		t.Fatalf("limits %s", r.body)
	}
	// limits took 10 of the 20 read tokens; the cancel takes none of them.
	if r := call(t, nil, "DELETE", base+"/portfolio/events/orders", nil); r.status != 200 {
		t.Fatalf("first cancel: %d", r.status)
	}
	if r := call(t, nil, "DELETE", base+"/portfolio/events/orders", nil); r.status != 429 {
		t.Fatalf("second cancel with 40 write tokens left: %d, want 429", r.status)
	}
	if r := call(t, nil, "GET", base+"/api_keys", nil); r.status != 200 {
		t.Fatalf("a read after the cancels: %d, want 200", r.status)
	}
}

// Keys created over the API may be restricted to a subaccount.
func TestCreateSubaccountKey(t *testing.T) {
	e := New(Options{})
	base := start(t, e)
	admin := &signer{id: e.AddKey("admin", testKey()), key: testKey()}
	r := call(t, admin, "POST", base+"/api_keys/generate", []byte(`{"name":"sub","subaccount":7}`))
	if r.status != 201 {
		t.Fatalf("generate: %d %s", r.status, r.body)
	}
	for _, bad := range []string{`{"name":"x","subaccount":64}`, `{"name":"x","subaccount":-1}`, `{"name":"x","subaccount":"1"}`} {
		if r := call(t, admin, "POST", base+"/api_keys/generate", []byte(bad)); r.status != 400 {
			t.Errorf("generate %s: %d, want 400", bad, r.status)
		}
	}
	keys := listed(t, admin, base)
	if len(keys) != 2 || keys[1].Subaccount == nil || *keys[1].Subaccount != 7 {
		t.Fatalf("listing %+v", keys)
	}
}
