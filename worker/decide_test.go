package worker

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// fakeMsg is a delivery that records how it was settled.
type fakeMsg struct {
	meta  jetstream.MsgMetadata
	verb  string
	delay time.Duration
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) { return &m.meta, nil }
func (m *fakeMsg) Data() []byte                              { return nil }
func (m *fakeMsg) Headers() nats.Header                      { return nil }
func (m *fakeMsg) Subject() string                           { return "keys.revoke.requests" }
func (m *fakeMsg) Reply() string                             { return "" }
func (m *fakeMsg) Ack() error                                { m.verb = "ack"; return nil }
func (m *fakeMsg) DoubleAck(context.Context) error           { m.verb = "double-ack"; return nil }
func (m *fakeMsg) Nak() error                                { m.verb = "nak"; return nil }
func (m *fakeMsg) InProgress() error                         { return nil }
func (m *fakeMsg) Term() error                               { m.verb = "term"; return nil }
func (m *fakeMsg) TermWithReason(string) error               { m.verb = "term"; return nil }
func (m *fakeMsg) NakWithDelay(d time.Duration) error {
	m.verb, m.delay = "nak-delay", d
	return nil
}

func apiErr(status int, retryAfter time.Duration) error {
	return fmt.Errorf("kalshi: delete: %w", &kalshi.APIError{StatusCode: status, Message: http.StatusText(status), RetryAfter: retryAfter})
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want events.Outcome
		code events.Code
	}{
		{"204", nil, events.Revoked, ""},
		{"200", apiErr(200, 0), events.Revoked, ""},
		{"404", apiErr(404, 0), events.AlreadyRevoked, ""},
		{"500", apiErr(500, 0), "", ""},
		{"429", apiErr(429, time.Second), "", ""},
		{"no answer", fmt.Errorf("kalshi: delete: %w", io.ErrUnexpectedEOF), "", ""},
		{"401", apiErr(401, 0), events.Failed, events.CodeKalshiUnauthorized},
		{"403", apiErr(403, 0), events.Failed, events.CodeKalshiUnauthorized},
		{"400", apiErr(400, 0), events.Rejected, events.CodeKalshiBadRequest},
		{"409", apiErr(409, 0), events.Rejected, events.CodeKalshiBadRequest},
		{"invalid key ID", fmt.Errorf("kalshi: %w", kalshi.ErrInvalidKeyID), events.Rejected, events.CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, e := classify(tc.err, httpStatus(tc.err))
			code := events.Code("")
			if e != nil {
				code = e.Code
			}
			if got != tc.want || code != tc.code {
				t.Errorf("classify = %q/%q, want %q/%q", got, code, tc.want, tc.code)
			}
		})
	}
}

func TestSettle(t *testing.T) {
	revoked := &events.Result{Outcome: events.Revoked}
	rejected := &events.Result{Outcome: events.Rejected, Error: &events.Error{Code: events.CodeProtectedKey}}
	for _, tc := range []struct {
		name       string
		v          verdict
		stored     bool
		deliveries uint64
		verb       string
		delay      time.Duration
	}{
		{"undecided", verdict{}, false, 1, "nak-delay", time.Second},
		{"waiting for another copy", verdict{waiting: true}, false, 3, "nak-delay", 4 * time.Second},
		{"not stored", verdict{res: revoked}, false, 2, "nak-delay", 2 * time.Second},
		{"not stored, often", verdict{res: revoked}, false, 9, "nak-delay", 30 * time.Second},
		{"stored success", verdict{res: revoked}, true, 1, "ack", 0},
		{"stored refusal", verdict{res: rejected}, true, 1, "term", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &Worker{cfg: Config{}}
			w.cfg.setDefaults()
			m := &fakeMsg{meta: jetstream.MsgMetadata{NumDelivered: tc.deliveries}}
			w.settle(m, &m.meta, tc.v, tc.stored)
			if m.verb != tc.verb || m.delay != tc.delay {
				t.Errorf("settled with %s %v, want %s %v", m.verb, m.delay, tc.verb, tc.delay)
			}
		})
	}
}

// scripted answers DELETEs from a list, the last answer repeating, and
// lists the keys in listed.
// deciding is a worker that deletes through k and records in led, retrying
// at once.
func deciding(k Kalshi, led *ledger.Ledger) *Worker {
	w := &Worker{del: k, ledger: led, cfg: Config{SelfKeyID: "self", RetryInitial: time.Millisecond, RetryMaxDelay: time.Millisecond}}
	w.cfg.setDefaults()
	return w
}

// deliver decides delivery n of req, stored as stream sequence seq at
// storedAt.
func deliver(w *Worker, req request, seq, n uint64, storedAt time.Time) verdict {
	ctx := context.Background()
	meta := &jetstream.MsgMetadata{Stream: "S", Sequence: jetstream.SequencePair{Stream: seq}, NumDelivered: n, Timestamp: storedAt}
	return w.decide(ctx, ctx, meta, req, newResult(req, meta, time.Now()))
}

type scripted struct {
	answers []error
	calls   int
	listed  []string
}

func (s *scripted) DeleteAPIKey(context.Context, string) error {
	a := s.answers[min(s.calls, len(s.answers)-1)]
	s.calls++
	return a
}
func (s *scripted) ListAPIKeys(context.Context) ([]kalshi.APIKey, error) {
	keys := make([]kalshi.APIKey, len(s.listed))
	for i, id := range s.listed {
		keys[i] = kalshi.APIKey{ID: id}
	}
	return keys, nil
}

func (s *scripted) As(string, crypto.Signer) (*kalshi.Client, error) {
	return nil, errors.New("scripted: no other credential")
}

func (s *scripted) CancelOrders(context.Context, *int) (int, error) {
	return 0, errors.New("scripted: no orders")
}

// newTestLedger is a ledger bucket on a NATS server of the test's own.
func newTestLedger(t *testing.T) *ledger.Ledger {
	srv := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(context.Background(), provision.LedgerConfig(Config{}.Provisioning()))
	if err != nil {
		t.Fatal(err)
	}
	return ledger.New(kv, nil)
}

// decide against a real ledger: what an earlier delivery left there and
// what Kalshi answers now make the verdict.
func TestDecide(t *testing.T) {
	led := newTestLedger(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		before    *ledger.Request // the ledger entry of id "r" left by an earlier delivery
		age       time.Duration   // how long ago before was claimed
		seq       uint64
		deliv     uint64
		key       string
		answers   []error
		outcome   events.Outcome
		code      events.Code
		untrusted bool // stored under an untrusted- id
		waiting   bool
		deletes   int
	}{
		{name: "fresh, deleted", key: "k1", seq: 1, deliv: 1, answers: []error{nil}, outcome: events.Revoked, deletes: 1},
		{name: "fresh, 404", key: "k1", seq: 1, deliv: 1, answers: []error{apiErr(404, 0)}, outcome: events.AlreadyRevoked, deletes: 1},
		{name: "lost answer then 404", key: "k1", seq: 1, deliv: 1, answers: []error{io.EOF, apiErr(404, 0)}, outcome: events.Revoked, deletes: 2},
		// Issue 20 item 1: a key the account never listed is not revoked by
		// an attempt that went unanswered.
		{name: "unlisted key, lost answer then 404", key: "nokey", seq: 1, deliv: 1, answers: []error{io.EOF, apiErr(404, 0)},
			outcome: events.AlreadyRevoked, deletes: 2},
		{name: "unlisted key, 5xx then 404", key: "nokey", seq: 1, deliv: 1, answers: []error{apiErr(503, 0), apiErr(404, 0)},
			outcome: events.AlreadyRevoked, deletes: 2},
		{name: "same id, another key", before: &ledger.Request{Key: "k2", Seq: 1}, key: "k1", seq: 2, deliv: 1,
			outcome: events.Rejected, code: events.CodeConflictingRequestID, untrusted: true},
		{name: "another message holds it", before: &ledger.Request{Key: "k1", Seq: 1, Attempted: true}, key: "k1", seq: 2, deliv: 1, waiting: true},
		{name: "own key", key: "self", seq: 1, deliv: 1, outcome: events.Rejected, code: events.CodeSelfRevocationRefused},
		{name: "delivered too often", key: "k1", seq: 1, deliv: 10, outcome: events.Failed, code: events.CodeMaxDeliveries},
		// Issue 20 item 4: a copy waits for an owner that is gone no longer
		// than a lease (the ack wait), not the retry budget and two minutes.
		{name: "a copy takes over once the owner lease lapsed", before: &ledger.Request{Key: "k1", Seq: 1, Attempted: true}, age: 30 * time.Second,
			key: "k1", seq: 2, deliv: 3, answers: []error{nil}, outcome: events.Revoked, deletes: 1},
		{name: "a copy takes over a claim gone quiet", before: &ledger.Request{Key: "k1", Seq: 1, Attempted: true}, age: time.Hour,
			key: "k1", seq: 2, deliv: 10, answers: []error{io.EOF, apiErr(404, 0)}, outcome: events.Revoked, deletes: 2},
		{name: "a copy taking over still guards the key", before: &ledger.Request{Key: "self", Seq: 1}, age: time.Hour,
			key: "self", seq: 2, deliv: 10, outcome: events.Rejected, code: events.CodeSelfRevocationRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.NewReplacer(" ", "-", ",", "").Replace(tc.name)
			if tc.key != "self" { // every row its own keys: the attempts on a key are remembered
				tc.key += "-" + id
				if tc.before != nil {
					tc.before.Key += "-" + id
				}
			}
			if tc.before != nil {
				tc.before.ClaimedAt = time.Now().Add(-tc.age)
				if _, _, err := led.Claim(ctx, id, *tc.before); err != nil {
					t.Fatal(err)
				}
			}
			k := &scripted{answers: append(tc.answers, nil), listed: []string{"k1-" + id, "k2-" + id, "self"}}
			req := request{Request: events.Request{ID: id, APIKeyID: tc.key}}
			v := deliver(deciding(k, led), req, tc.seq, tc.deliv, time.Now())
			if v.waiting != tc.waiting || (v.res == nil) != tc.waiting {
				t.Fatalf("verdict %+v, want waiting %v", v, tc.waiting)
			}
			if tc.waiting {
				return
			}
			code := events.Code("")
			if v.res.Error != nil {
				code = v.res.Error.Code
			}
			if v.res.Outcome != tc.outcome || code != tc.code || k.calls != tc.deletes {
				t.Errorf("%s/%s after %d DELETEs, want %s/%s after %d", v.res.Outcome, code, k.calls, tc.outcome, tc.code, tc.deletes)
			}
			if untrusted := strings.HasPrefix(v.msgID, events.UntrustedIDPrefix); untrusted != tc.untrusted || !untrusted && v.msgID != id {
				t.Errorf("stored under %q", v.msgID)
			}
		})
	}
}

// A result that cannot be encoded still settles its delivery: a minimal
// valid one with the same outcome is stored instead.
func TestEncodeFallsBackToAMinimalResult(t *testing.T) {
	w := &Worker{}
	w.cfg.setDefaults()
	res := &events.Result{RequestID: "r", RequestSeq: 7, APIKeyID: "k", Outcome: events.Revoked, Attempts: 1,
		HTTPStatus: 204, ReceivedAt: time.Now(), CompletedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := res.MarshalEvent(); err == nil {
		t.Fatal("the test result encodes: it proves nothing")
	}
	got, err := events.ParseResult(w.encode(res))
	if err != nil {
		t.Fatal(err)
	}
	if got.Outcome != events.Revoked || got.RequestID != "r" || got.RequestSeq != 7 || got.Detail == "" {
		t.Errorf("minimal result %+v, want the outcome and ids kept and a detail", got)
	}
}

// Chaos seed 772897: request r1's DELETE deleted the key but its answer was
// lost and its replica froze; r2 took the lapsed key, got a 404 and ended
// already_revoked naming r1. When r1 comes back, the key is no longer
// listed and its new DELETE gets a 404: it must still count its first
// attempt (listed before it, unanswered) and end revoked, or the key's one
// delete is named by no revoked result.
//
// And again (the seed, once that was mended): r2's own decision said its
// attempts may have deleted the key (an earlier delivery of r2 had held it
// too), but the account did not list the key before r2's first attempt:
// r2 cannot have deleted it, and r1 is still the one that did.
func TestRequestTakingItsKeyBackKeepsItsFirstAttempt(t *testing.T) {
	for _, r2MayHaveDeleted := range []bool{false, true} {
		t.Run(fmt.Sprintf("r2 may have deleted=%v", r2MayHaveDeleted), func(t *testing.T) {
			takeKeyBack(t, r2MayHaveDeleted)
		})
	}
}

func takeKeyBack(t *testing.T, r2MayHaveDeleted bool) {
	led := newTestLedger(t)
	ctx := context.Background()
	const key = "k-back"
	first := time.Now().Add(-time.Minute)
	// r2 decided already_revoked, its own attempt answered (404).
	if _, _, err := led.Claim(ctx, "r2", ledger.Request{Key: key, Seq: 2, ClaimedAt: first, Attempted: true, Result: json.RawMessage(`{}`), MayHaveDeleted: r2MayHaveDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := led.Claim(ctx, "r1", ledger.Request{Key: key, Seq: 1, ClaimedAt: first, Attempted: true}); err != nil {
		t.Fatal(err)
	}
	held := ledger.Attempt{RequestID: "r2", Seq: 2, At: first.Add(time.Second), Until: first.Add(11 * time.Second), Listed: false,
		Others: []ledger.OtherAttempt{{RequestID: "r1", At: first, Listed: true, Key: &kalshi.APIKey{ID: key, Name: "bot", Scopes: []string{"write"}}}}}
	if _, err := led.PutAttempt(ctx, key, held, 0); err != nil {
		t.Fatal(err)
	}
	k := &scripted{answers: []error{apiErr(404, 0)}} // the account lists it no more
	req := request{Request: events.Request{ID: "r1", APIKeyID: key}}
	v := deliver(deciding(k, led), req, 1, 2, first)
	if v.res == nil || v.res.Outcome != events.Revoked || v.res.KeyName != "bot" {
		t.Fatalf("verdict %+v, want revoked by r1's first attempt, with the key as listed then", v.res)
	}
}

// A request that waits for another request's decision on its key sends its
// message back again and again: those deliveries are not failures, and must
// not end it failed/max_deliveries while the other retries (issue 20: one
// key, one attempt at a time, fleet-wide).
func TestWaitingForAnotherRequestsKeyDoesNotCountDeliveries(t *testing.T) {
	led := newTestLedger(t)
	ctx := context.Background()
	const key = "k-wait"
	now := time.Now()
	owner, _, err := led.Claim(ctx, "owner", ledger.Request{Key: key, Seq: 1, ClaimedAt: now, Attempted: true})
	if err != nil {
		t.Fatal(err)
	}
	held := ledger.Attempt{RequestID: "owner", Seq: 1, At: now, Until: now.Add(time.Hour), Listed: true, Key: &kalshi.APIKey{ID: key, Scopes: []string{"read"}}}
	if _, err := led.PutAttempt(ctx, key, held, 0); err != nil {
		t.Fatal(err)
	}
	k := &scripted{answers: []error{apiErr(404, 0)}, listed: []string{key}}
	w := deciding(k, led)
	req := request{Request: events.Request{ID: "waiter", APIKeyID: key}}
	for n := uint64(1); n <= uint64(w.cfg.MaxDeliveries)+2; n++ {
		if v := deliver(w, req, 2, n, now); !v.waiting {
			t.Fatalf("delivery %d while the owner holds the key: %+v, want waiting", n, v.res)
		}
	}
	if err := owner.Decide(ctx, json.RawMessage(`{}`), true); err != nil {
		t.Fatal(err)
	}
	v := deliver(w, req, 2, uint64(w.cfg.MaxDeliveries)+3, now)
	if v.res == nil || v.res.Outcome != events.AlreadyRevoked || v.res.RevokedBy != "owner" {
		t.Fatalf("after the owner's decision: %+v, want already_revoked naming it", v.res)
	}
}

// A lease renewal whose answer is lost (a NATS node's loss) may still have
// been stored: the next renewal then meets its own write as a conflict.
// The lease is not lost while the entry names this request, and a 404
// after an unanswered attempt is still this request's revocation (chaos
// seed 391272: already_revoked naming nobody for a key it deleted). An
// entry another request took is a lost lease.
func TestLeaseSurvivesItsOwnUnansweredRenewal(t *testing.T) {
	for _, takenBy := range []string{"r1", "r2"} {
		t.Run("entry now names "+takenBy, func(t *testing.T) {
			led := newTestLedger(t)
			ctx := context.Background()
			const key = "k-renew"
			now := time.Now()
			e := ledger.Attempt{RequestID: "r1", Seq: 1, At: now, Until: now.Add(time.Minute), Listed: true}
			rev, err := led.PutAttempt(ctx, key, e, 0)
			if err != nil {
				t.Fatal(err)
			}
			le := &lease{l: led, key: key, length: 30 * time.Millisecond, e: e, rev: rev}
			other := e
			other.RequestID, other.Seq = takenBy, 2
			if _, err := led.PutAttempt(ctx, key, other, rev); err != nil {
				t.Fatal(err)
			}
			stop := le.renewEvery(ctx)
			natstest.WaitFor(t, 10*time.Second, "a renewal to meet the changed entry", func() bool {
				le.mu.Lock()
				defer le.mu.Unlock()
				return le.takenBy != nil || le.rev > rev+1
			})
			stop()
			if wantLost := takenBy != "r1"; (le.takenBy != nil) != wantLost {
				t.Fatalf("lease lost=%v, want %v", le.takenBy != nil, wantLost)
			}
			w := &Worker{ledger: led}
			res := &events.Result{RequestID: "r1", APIKeyID: key, Outcome: events.AlreadyRevoked}
			w.judge404(ctx, le, res, true)
			want, by := events.Revoked, ""
			if takenBy != "r1" {
				want, by = events.AlreadyRevoked, takenBy
			}
			if res.Outcome != want || res.RevokedBy != by {
				t.Fatalf("after a 404: %s revoked_by=%q, want %s revoked_by=%q", res.Outcome, res.RevokedBy, want, by)
			}
		})
	}
}

// Another request may take a key while this one's DELETE goes unanswered
// (its lease lapsed: a replica paused past the ack wait). The 404 that
// follows cannot say whose attempt deleted the key, so the delivery comes
// back for the other's decision: when the other decided on its own 404,
// this request's first attempt is the one that deleted it; when the other
// got the 204, that one did (without the wait: two revoked for one key).
func TestKeyTakenWhileUnansweredComesBackForTheOthersDecision(t *testing.T) {
	for _, r2Deleted := range []bool{false, true} {
		t.Run(fmt.Sprintf("r2 deleted=%v", r2Deleted), func(t *testing.T) {
			keyTakenWhileUnanswered(t, r2Deleted)
		})
	}
}

func keyTakenWhileUnanswered(t *testing.T, r2Deleted bool) {
	led := newTestLedger(t)
	ctx := context.Background()
	const key = "k-taken"
	k := &takenOnFirstDelete{scripted: scripted{answers: []error{io.EOF, apiErr(404, 0)}, listed: []string{key}}, take: func() {
		cur, rev, _, err := led.AttemptOn(ctx, key)
		if err != nil {
			t.Error(err)
			return
		}
		now := time.Now()
		// r2's listing came before r1's DELETE landed.
		next := ledger.Attempt{RequestID: "r2", Seq: 2, At: now, Until: now.Add(time.Minute), Listed: true, Key: cur.Key,
			Others: []ledger.OtherAttempt{{RequestID: "r1", At: cur.At, Listed: cur.Listed, Key: cur.Key}}}
		if _, err := led.PutAttempt(ctx, key, next, rev); err != nil {
			t.Error(err)
		}
	}}
	w := deciding(k, led)
	req := request{Request: events.Request{ID: "r1", APIKeyID: key}}
	if v := deliver(w, req, 1, 1, time.Now()); !v.waiting || v.res != nil {
		t.Fatalf("first delivery: verdict %+v, want to wait for r2's decision", v.res)
	}
	if _, _, err := led.Claim(ctx, "r2", ledger.Request{Key: key, Seq: 2, ClaimedAt: time.Now(), Attempted: true,
		Result: json.RawMessage(`{}`), MayHaveDeleted: r2Deleted}); err != nil {
		t.Fatal(err)
	}
	k.answers, k.calls, k.take = []error{apiErr(404, 0)}, 0, nil
	want, by := events.Revoked, ""
	if r2Deleted {
		want, by = events.AlreadyRevoked, "r2"
	}
	if v := deliver(w, req, 1, 2, time.Now()); v.res == nil || v.res.Outcome != want || v.res.RevokedBy != by {
		t.Fatalf("second delivery: verdict %+v, want %s revoked_by=%q", v.res, want, by)
	}
}

// takenOnFirstDelete is scripted Kalshi that calls take during the first
// DELETE: another request takes the key meanwhile.
type takenOnFirstDelete struct {
	scripted
	take func()
}

func (k *takenOnFirstDelete) DeleteAPIKey(ctx context.Context, id string) error {
	if k.take != nil && k.calls == 0 {
		k.take()
	}
	return k.scripted.DeleteAPIKey(ctx, id)
}
