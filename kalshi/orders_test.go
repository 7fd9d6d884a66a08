package kalshi

import (
	"context"
	"errors"
	"testing"

	"github.com/revoker/revoker/kalshi/emulator"
)

func TestCancelOrders(t *testing.T) {
	e := startEmulator(t, emulator.Options{Refill: -1})
	c := newClient(t, e, testEd25519(t))
	ctx := context.Background()
	e.AddOrders(2, 3)
	e.AddOrders(0, 1)
	two, zero := 2, 0
	if n, err := c.CancelOrders(ctx, &two); err != nil || n != 3 {
		t.Fatalf("CancelOrders(2) = %d, %v; want 3", n, err)
	}
	if e.RestingOrders(0) != 1 {
		t.Fatal("subaccount 0 lost its order")
	}
	if n, err := c.CancelOrders(ctx, &two); err != nil || n != 0 {
		t.Fatalf("again: %d, %v; want 0", n, err)
	}
	e.AddOrders(9, 2)
	if n, err := c.CancelOrders(ctx, nil); err != nil || n != 3 || e.RestingOrders(-1) != 0 {
		t.Fatalf("CancelOrders(nil) = %d, %v; want 3", n, err)
	}
	if n, err := c.CancelOrders(ctx, &zero); err != nil || n != 0 {
		t.Fatalf("CancelOrders(0) = %d, %v", n, err)
	}
	before := e.Stats().Requests
	for _, bad := range []int{-1, 64} {
		if _, err := c.CancelOrders(ctx, &bad); !errors.Is(err, ErrInvalidSubaccount) || IsTransient(err) {
			t.Errorf("CancelOrders(%d): %v, want ErrInvalidSubaccount", bad, err)
		}
	}
	if e.Stats().Requests != before {
		t.Error("an invalid subaccount was sent")
	}
}

// A restricted key's refusal and a 429 classify like any other answer.
func TestCancelOrdersRefused(t *testing.T) {
	e := startEmulator(t, emulator.Options{Refill: -1})
	key := testEd25519(t)
	id := e.AddSubaccountKey("bot", key.Public(), 4, "read", "write")
	c, err := New(Config{BaseURL: e.URL(), KeyID: id, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	other := 5
	_, err = c.CancelOrders(context.Background(), &other)
	if ae := apiError(t, err); ae.StatusCode != 403 || IsTransient(err) {
		t.Fatalf("another subaccount: %v, want a permanent 403", err)
	}
	keys, err := c.ListAPIKeys(context.Background())
	if err != nil || len(keys) != 1 || keys[0].Subaccount == nil || *keys[0].Subaccount != 4 {
		t.Fatalf("listing %+v, %v", keys, err)
	}
}
