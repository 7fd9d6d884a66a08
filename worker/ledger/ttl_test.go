package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
)

func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t).URL()))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// createBucket makes the ledger bucket with what the ledger relies on: one
// revision per key and per-entry TTLs. Provisioning's configuration (sizes,
// replicas, TTLs) is held by the provisioning tests.
func createBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: ledger.Bucket, History: 1, LimitMarkerTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// An entry created with a TTL is there until it expires, then gone, and
// can be created again; a second create while it lives loses with
// ErrKeyExists. Entries without a TTL stay. On a ledger without per-entry
// TTLs (the old main's) createTTL fails.
func TestLedgerEntryExpires(t *testing.T) {
	ctx := context.Background()
	kv := createBucket(t, startJS(t))
	l := ledger.New(kv, nil)
	if _, err := ledger.CreateJSON(l, ctx, "key.kept", ledger.KeyRecord{RequestID: "r"}); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	rev, err := ledger.CreateTTL(l, ctx, "miss.ab", []byte(`{}`), time.Second)
	if err != nil || rev == 0 {
		t.Fatalf("createTTL: revision %d, %v", rev, err)
	}
	if _, err := ledger.CreateTTL(l, ctx, "miss.ab", []byte(`{"again":1}`), time.Second); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Errorf("second createTTL while the entry lives: %v, want ErrKeyExists", err)
	}
	if _, err := ledger.CreateTTL(l, ctx, "miss.cd", nil, 500*time.Millisecond); err == nil {
		t.Error("createTTL with a TTL under a second: no error")
	}
	natstest.WaitFor(t, 10*time.Second, "the entry to expire", func() bool {
		_, err := kv.Get(ctx, "miss.ab")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	if lived := time.Since(created); lived < time.Second {
		t.Errorf("the entry expired after %v, before its TTL", lived)
	}
	if again, err := ledger.CreateTTL(l, ctx, "miss.ab", []byte(`{}`), time.Hour); err != nil || again <= rev {
		t.Errorf("createTTL over the expired entry: revision %d, %v", again, err)
	}
	if _, err := kv.Get(ctx, "key.kept"); err != nil {
		t.Errorf("an entry without a TTL: %v", err)
	}

	old := startJS(t)
	okv, err := old.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ledger.Bucket}) // as the previous main made it: no per-entry TTLs
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.CreateTTL(ledger.New(okv, nil), ctx, "miss.ab", []byte(`{}`), time.Hour); err == nil {
		t.Error("createTTL on a ledger without per-entry TTLs: no error")
	}
}
