package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/ledger"
)

// newLedger is the ledger on a server of the test's own, and its bucket.
func newLedger(t *testing.T) (*ledger.Ledger, jetstream.KeyValue) {
	t.Helper()
	kv := createBucket(t, startJS(t))
	return ledger.New(kv, nil), kv
}

// Every entry is written under the key, and as the JSON, that the previous
// main wrote and reads: replicas of both versions share the bucket during a
// rolling upgrade.
func TestEntriesOnTheWire(t *testing.T) {
	l, kv := newLedger(t)
	ctx := t.Context()
	at := time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)
	sub := 7

	c, fresh, err := l.Claim(ctx, "inc-1", ledger.Request{Key: "k1", Seq: 3, ClaimedAt: at, Attempted: true})
	if err != nil || !fresh {
		t.Fatalf("claim: fresh %v, %v", fresh, err)
	}
	if err := c.Found(ctx, "k2", true); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordCancel(ctx, ledger.Cancel{StartedAt: at, Done: true, Cancelled: 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.Decide(ctx, json.RawMessage(`{"outcome":"revoked"}`), true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Claim(ctx, "refused", ledger.Request{Key: "self", Seq: 4, ClaimedAt: at, Refused: events.CodeSelfRevocationRefused, Message: "no"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RecordRevoked(ctx, "k2", ledger.KeyRecord{RequestID: "inc-1", RequestSeq: 3, RevokedAt: at, Reason: "leaked",
		Fingerprint: "sha256:ab", BlastRadius: events.BlastRadius{KeyName: "bot", KeyScopes: []string{"write"}, KeySubaccount: &sub},
		Containment: &events.Containment{OrdersCancelled: 2}}); err != nil {
		t.Fatal(err)
	}
	a := ledger.Attempt{RequestID: "inc-1", Seq: 3, At: at, Until: at.Add(30 * time.Second), Listed: true,
		Key: &kalshi.APIKey{ID: "k2", Name: "bot", Scopes: []string{"write"}}}
	a.Remember(ledger.OtherAttempt{RequestID: "inc-0", At: at, Listed: true})
	if _, err := l.PutAttempt(ctx, "k2", a, 0); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordLeaked(ctx, "sha256:ab", ledger.Leaked{Key: "k2", Foreign: true}); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordMiss(ctx, "sha256:cd", ledger.Miss{At: at, Hint: "k9"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	admit := func(context.Context) error { return nil }
	if _, err := l.NoteSchedule(ctx, "k3", ledger.ScheduledRequest{RequestID: "later", RequestSeq: 9, NotBefore: at}, at.Add(-time.Hour), time.Hour, admit); err != nil {
		t.Fatal(err)
	}
	if _, err := l.NoteSchedule(ctx, "sha256:ef", ledger.ScheduledRequest{RequestID: "later2", RequestSeq: 10, NotBefore: at, DueDelivery: 2}, at, time.Hour, admit); err != nil {
		t.Fatal(err)
	}

	for key, want := range map[string]string{
		"req.aW5jLTE":         `{"key":"k1","seq":3,"claimed_at":"2026-12-06T21:00:00Z","attempted":true,"result":{"outcome":"revoked"},"target":"k2","foreign":true,"may_have_deleted":true,"cancel":{"started_at":"2026-12-06T21:00:00Z","done":true,"cancelled":2}}`,
		"req.cmVmdXNlZA":      `{"key":"self","seq":4,"claimed_at":"2026-12-06T21:00:00Z","refused":"self_revocation_refused","message":"no"}`,
		"key.k2":              `{"request_id":"inc-1","request_seq":3,"revoked_at":"2026-12-06T21:00:00Z","reason":"leaked","leaked_key_fingerprint":"sha256:ab","key_name":"bot","key_scopes":["write"],"key_subaccount":7,"containment":{"orders_cancelled":2}}`,
		"attempt.k2":          `{"request_id":"inc-1","seq":3,"at":"2026-12-06T21:00:00Z","until":"2026-12-06T21:00:30Z","listed":true,"key":{"api_key_id":"k2","name":"bot","scopes":["write"]},"others":[{"request_id":"inc-0","at":"2026-12-06T21:00:00Z","listed":true}]}`,
		"leaked.ab":           `{"key":"k2","foreign":true}`,
		"miss.cd":             `{"at":"2026-12-06T21:00:00Z","hint":"k9"}`,
		"key.k3.scheduled":    `{"requests":[{"request_id":"later","request_seq":9,"not_before":"2026-12-06T21:00:00Z"}]}`,
		"leaked.ef.scheduled": `{"requests":[{"request_id":"later2","request_seq":10,"not_before":"2026-12-06T21:00:00Z","due_delivery":2}]}`,
	} {
		e, err := kv.Get(ctx, key)
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if got := string(e.Value()); got != want {
			t.Errorf("%s:\n got %s\nwant %s", key, got, want)
		}
	}
}

// Each step of a claim is a compare-and-set on the revision the claim
// holds: a claim another message changed meanwhile gets ErrConflict and
// stays as it was, and the entry keeps the other message's write.
func TestClaimStepsAreCompareAndSet(t *testing.T) {
	l, _ := newLedger(t)
	ctx := t.Context()
	mine, fresh, err := l.Claim(ctx, "r", ledger.Request{Key: "k", Seq: 1, ClaimedAt: time.Now()})
	if err != nil || !fresh {
		t.Fatalf("claim: fresh %v, %v", fresh, err)
	}
	copyOf, fresh, err := l.Claim(ctx, "r", ledger.Request{Key: "k", Seq: 2, ClaimedAt: time.Now()})
	if err != nil || fresh || copyOf.Seq != 1 {
		t.Fatalf("second claim: fresh %v, seq %d, %v; want the first's entry", fresh, copyOf.Seq, err)
	}
	if err := copyOf.CarryOut(ctx, ledger.Request{Key: "k", Seq: 2, ClaimedAt: time.Now(), Attempted: true}); err != nil {
		t.Fatal(err)
	}
	if copyOf.Seq != 2 || !copyOf.Attempted {
		t.Errorf("after CarryOut the claim holds seq %d, attempted %v", copyOf.Seq, copyOf.Attempted)
	}

	before := mine.Request
	if err := mine.Waited(ctx); !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("a step on a stale claim: %v, want ErrConflict", err)
	}
	if mine.Waits != before.Waits || mine.Seq != 1 {
		t.Errorf("a step that lost changed the claim: %+v", mine.Request)
	}
	if err := mine.Decide(ctx, json.RawMessage(`{}`), false); !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("a decision on a stale claim: %v, want ErrConflict", err)
	}

	if err := copyOf.Decide(ctx, json.RawMessage(`{"outcome":"revoked"}`), true); err != nil {
		t.Fatal(err)
	}
	got, err := l.DecisionOf(ctx, "r")
	if err != nil || got == nil || got.Seq != 2 || !got.MayHaveDeleted {
		t.Fatalf("decision: %+v, %v; want the copy's", got, err)
	}
}

// The key record embeds the result's blast radius: a key the account
// listed with no scopes keeps [] (the result's "listed, none"), told apart
// from a key not listed, as a record stored before (no key_scopes) reads.
func TestKeyRecordBlastRadiusIsTheResults(t *testing.T) {
	l, kv := newLedger(t)
	ctx := t.Context()
	at := time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)
	if _, err := l.RecordRevoked(ctx, "none", ledger.KeyRecord{RequestID: "r", RevokedAt: at, BlastRadius: events.BlastRadius{KeyScopes: []string{}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "key.old", []byte(`{"request_id":"o","request_seq":1,"revoked_at":"2026-12-06T21:00:00Z","key_name":"bot"}`)); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "key.none")
	if err != nil || string(e.Value()) != `{"request_id":"r","request_seq":0,"revoked_at":"2026-12-06T21:00:00Z","key_scopes":[]}` {
		t.Errorf("key.none = %s, %v", e.Value(), err)
	}
	none, err := l.Lookup(ctx, "none")
	if err != nil || none == nil || none.KeyScopes == nil {
		t.Errorf("listed with no scopes reads back %+v, %v; want empty scopes, not nil", none, err)
	}
	old, err := l.Lookup(ctx, "old")
	if err != nil || old == nil || old.KeyName != "bot" || old.KeyScopes != nil {
		t.Errorf("a record stored before reads %+v, %v", old, err)
	}
}
