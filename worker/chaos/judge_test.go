package chaos

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator"
)

// TestJudge holds the checker to each invariant without a deployment: a
// clean run's evidence passes, and each planted violation (among them the
// ones issue 20 lists) breaks the invariant that names it. It always runs.
func TestJudge(t *testing.T) {
	const (
		k1, k2   = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
		unknownK = "33333333-3333-4333-8333-333333333333"
		self     = "44444444-4444-4444-8444-444444444444"
		prot     = "55555555-5555-4555-8555-555555555555"
		byst     = "66666666-6666-4666-8666-666666666666"
	)
	ks := keysOf{self: self, protected: []string{prot}, bystanders: []string{byst}}
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

	newWL := func() *workload {
		wl := &workload{byID: make(map[string]*request), listed: []string{k1, k2}}
		for _, r := range []*request{
			{"a", k1, listed}, {"b", strings.ToUpper(k1), listed}, {"c", unknownK, unknown},
			{"d", self, guardSelf}, {"e", prot, guardProt}, {"f", k2, listed},
		} {
			wl.reqs = append(wl.reqs, r)
			wl.byID[r.id] = r
		}
		return wl
	}
	res := func(id, key string, o events.Outcome) events.Result {
		return events.Result{RequestID: id, APIKeyID: key, Outcome: o, CompletedAt: t0}
	}
	rejected := func(id, key string, c events.Code) events.Result {
		r := res(id, key, events.Rejected)
		r.Error = &events.Error{Code: c, Message: "refused"}
		return r
	}
	ledgerOf := func(r events.Result) []byte {
		doc, err := r.MarshalEvent()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Appendf(nil, `{"key":%q,"seq":1,"result":%s}`, r.APIKeyID, doc)
	}
	clean := func() *evidence {
		b := res("b", k1, events.AlreadyRevoked)
		b.RevokedBy = "a"
		rs := []events.Result{
			res("a", k1, events.Revoked), b, res("c", unknownK, events.AlreadyRevoked),
			rejected("d", self, events.CodeSelfRevocationRefused), rejected("e", prot, events.CodeProtectedKey),
			res("f", k2, events.Revoked),
		}
		ev := &evidence{
			stats: emulator.Stats{
				Deletes:        map[string]int{k1: 1, k2: 1},
				DeleteAttempts: map[string]int{k1: 2, k2: 1, unknownK: 1},
			},
			exists:     func(k string) bool { return k == self || k == prot || k == byst },
			ledger:     make(map[string][]byte),
			keyRecords: map[string]string{k1: "a", k2: "f"},
			calls: []emulator.Call{
				{Arrived: t0, Answered: t0, Endpoint: emulator.EndpointDeleteKey, KeyID: k1, Status: 429, RetryAfter: time.Second},
				{Arrived: t0.Add(100 * time.Millisecond), Endpoint: emulator.EndpointDeleteKey, KeyID: k2, Status: 204}, // within the grace
				{Arrived: t0.Add(1500 * time.Millisecond), Endpoint: emulator.EndpointDeleteKey, KeyID: k1, Status: 204},
			},
		}
		for i, r := range rs {
			ev.results = append(ev.results, stored{seq: uint64(i + 1), stream: resultsStream, msgID: r.RequestID, res: r})
			ev.ledger[r.RequestID] = ledgerOf(r)
		}
		return ev
	}
	find := func(ev *evidence, id string) *events.Result {
		for i := range ev.results {
			if ev.results[i].res.RequestID == id {
				return &ev.results[i].res
			}
		}
		t.Fatalf("no result %s", id)
		return nil
	}

	if v := judge(newWL(), ks, clean()); len(v.broken) != 0 {
		t.Fatalf("a clean run broke %v: %v", v.invariants(), v.broken)
	}
	for _, tc := range []struct {
		name  string
		plant func(*evidence)
		want  []string
	}{
		{"a second result", func(ev *evidence) { ev.results = append(ev.results, ev.results[0]) }, []string{invOneResult}},
		{"a lost request", func(ev *evidence) {
			ev.results = ev.results[:5]
			delete(ev.ledger, "f")
			delete(ev.keyRecords, k2)
		}, []string{invDeletedOnce, invOneResult}},
		{"a result nobody asked for", func(ev *evidence) {
			ev.results = append(ev.results, stored{msgID: "zz", res: res("zz", k1, events.Revoked)})
		}, []string{invOneResult}},
		{"an untrusted rejection of a trusted id", func(ev *evidence) {
			r := rejected("a", k1, events.CodeInvalidRequest)
			ev.results = append(ev.results, stored{msgID: events.UntrustedIDPrefix + "x", res: r})
		}, []string{invOneResult}},
		{"issue 20.1: an unknown key revoked", func(ev *evidence) {
			find(ev, "c").Outcome = events.Revoked
			ev.keyRecords[unknownK] = "c"
			ev.ledger["c"] = ledgerOf(*find(ev, "c"))
		}, []string{invExpected, invRevokedIsReal}},
		{"issue 20.2: two revoked for one key", func(ev *evidence) {
			b := find(ev, "b")
			b.Outcome, b.RevokedBy = events.Revoked, ""
			ev.ledger["b"] = ledgerOf(*b)
		}, []string{invDeletedOnce}},
		{"issue 20.3: already_revoked without revoked_by", func(ev *evidence) {
			find(ev, "b").RevokedBy = ""
		}, []string{invRevokedBy}},
		{"already_revoked naming the wrong request", func(ev *evidence) {
			find(ev, "b").RevokedBy = "f"
		}, []string{invRevokedBy}},
		{"a deleted key reported already_revoked only", func(ev *evidence) {
			a := find(ev, "a")
			a.Outcome = events.AlreadyRevoked
			ev.ledger["a"] = ledgerOf(*a)
			delete(ev.keyRecords, k1)
		}, []string{invRevokedBy, invDeletedOnce}},
		{"a guarded key asked for", func(ev *evidence) { ev.stats.DeleteAttempts[prot] = 1 }, []string{invGuarded}},
		{"a bystander deleted", func(ev *evidence) {
			ev.exists = func(k string) bool { return k == self || k == prot }
		}, []string{invGuarded}},
		{"a protected key revoked", func(ev *evidence) {
			e := find(ev, "e")
			e.Outcome, e.Error = events.AlreadyRevoked, nil
			ev.ledger["e"] = ledgerOf(*e)
		}, []string{invExpected}},
		{"a message left in the queue", func(ev *evidence) { ev.queued = 1 }, []string{invDrained}},
		{"an unacknowledged delivery", func(ev *evidence) { ev.ackPending = 1 }, []string{invDrained}},
		{"issue 20.5: a DELETE inside a Retry-After", func(ev *evidence) {
			ev.calls = append(ev.calls, emulator.Call{Arrived: t0.Add(600 * time.Millisecond), Endpoint: emulator.EndpointDeleteKey, KeyID: k2, Status: 404})
		}, []string{invRetryAfter}},
		{"issue 20.4: the ledger decided otherwise", func(ev *evidence) {
			ev.ledger["a"] = ledgerOf(res("a", k1, events.AlreadyRevoked))
		}, []string{invLedger}},
		{"a key record naming another request", func(ev *evidence) { ev.keyRecords[k1] = "b" }, []string{invLedger}},
		{"no key record for a revoked key", func(ev *evidence) { delete(ev.keyRecords, k2) }, []string{invLedger}},
		{"issue 20.4: the ledger has no decision", func(ev *evidence) {
			ev.ledger["a"] = []byte(`{"key":"` + k1 + `","seq":1,"attempted":true}`)
		}, []string{invLedger}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := clean()
			tc.plant(ev)
			v := judge(newWL(), ks, ev)
			want := slices.Sorted(slices.Values(tc.want))
			if got := v.invariants(); !slices.Equal(got, want) {
				t.Errorf("broke %v, want %v: %v", got, want, v.broken)
			}
		})
	}

	// A 429 answered just as a replica was killed may have reached nobody
	// who could pass it on: it is left out, not judged.
	ev := clean()
	ev.calls = append(ev.calls, emulator.Call{Arrived: t0.Add(600 * time.Millisecond), Endpoint: emulator.EndpointDeleteKey, KeyID: k2, Status: 404})
	ev.outages = []outage{{f: fault{kind: faultKill}, start: t0.Add(-200 * time.Millisecond), end: t0.Add(2 * time.Second)}}
	if v := judge(newWL(), ks, ev); len(v.broken) != 0 {
		t.Errorf("a 429 answered as its replica died was judged: %v", v.broken)
	}
	// Nor is one that a slow link was still carrying to its replica when
	// that replica was cut from NATS (seed 391272); without the slow link
	// the replica heard it before the cut, and it is judged.
	for _, slow := range []bool{true, false} {
		ev := clean()
		ev.calls = append(ev.calls, emulator.Call{Arrived: t0.Add(600 * time.Millisecond), Endpoint: emulator.EndpointDeleteKey, KeyID: k2, Status: 404})
		ev.outages = []outage{{f: fault{kind: faultCutNATS}, start: t0.Add(pauseGrace + 100*time.Millisecond), end: t0.Add(3 * time.Second)}}
		if slow {
			ev.outages = append(ev.outages, outage{f: fault{kind: faultLatency, latency: 200 * time.Millisecond}, start: t0.Add(-time.Second), end: t0.Add(time.Second)})
		}
		if v := judge(newWL(), ks, ev); (len(v.broken) == 0) != slow {
			t.Errorf("slow link %v: broke %v", slow, v.invariants())
		}
	}
}
