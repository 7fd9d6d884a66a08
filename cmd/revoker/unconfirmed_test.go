package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
)

// putKeyRecord writes the ledger's record of a key, as the worker would.
func (w *world) putKeyRecord(id string, rec ledger.KeyRecord) {
	w.t.Helper()
	js, err := jetstream.New(natstest.Connect(w.t, w.nats.URL()))
	if err != nil {
		w.t.Fatal(err)
	}
	kv, err := js.KeyValue(w.t.Context(), ledger.Bucket)
	if err != nil {
		w.t.Fatal(err)
	}
	v, err := json.Marshal(rec)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := kv.Put(w.t.Context(), "key."+id, v); err != nil {
		w.t.Fatal(err)
	}
}

// A revocation the worker gave up confirming shows as such in status, with
// the reason, and in --json.
func TestStatusUnconfirmed(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(1)
	w.provisioned()
	revoked := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	w.putKeyRecord(keys[0], ledger.KeyRecord{RequestID: "inc-1", RequestSeq: 3, RevokedAt: revoked,
		UnconfirmedAt:     revoked.Add(24 * time.Hour),
		UnconfirmedReason: "not confirmed within 24h0m0s of the revocation: the account still lists the key"})
	out, _, code := w.run2("", "status", keys[0])
	want := "  confirmed     no: given up at 2026-12-02T10:00:00Z: not confirmed within 24h0m0s of the revocation: the account still lists the key\n"
	if code != 0 || !strings.Contains(out, want) {
		t.Errorf("status: exit %d\n%s\nwant the line %q", code, out, want)
	}
	out, _, _ = w.run2("", "status", "--json", keys[0])
	if !strings.Contains(out, `"unconfirmed_at":"2026-12-02T10:00:00Z","unconfirmed_reason":"not confirmed within 24h0m0s`) {
		t.Errorf("status --json: %s", out)
	}
}
