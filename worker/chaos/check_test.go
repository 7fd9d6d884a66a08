package chaos

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator"
)

// stored is one message of a results stream.
type stored struct {
	seq    uint64
	at     time.Time // when JetStream stored it
	stream string
	msgID  string
	res    events.Result
}

// readStream reads every message of stream (none if it does not exist).
func (w *world) readStream(stream string) ([]stored, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := w.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	oc, err := w.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []stored
	for last := uint64(0); last < info.State.LastSeq; {
		if ctx.Err() != nil {
			return out, fmt.Errorf("%s: read %d of %d messages", stream, len(out), info.State.Msgs)
		}
		batch, err := oc.Fetch(500, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return out, err
			}
			last = meta.Sequence.Stream
			res, err := events.ParseResult(m.Data())
			if err != nil {
				return out, fmt.Errorf("%s: message %d does not parse: %w", stream, last, err)
			}
			out = append(out, stored{seq: last, at: meta.Timestamp, stream: stream, msgID: m.Headers().Get(jetstream.MsgIDHeader), res: res})
		}
	}
	return out, nil
}

// verdict is the checker's findings: each broken invariant with its
// instances, and the figures of the run.
type verdict struct {
	broken map[string][]string // invariant -> instances
	notes  []string
}

func (v *verdict) fail(invariant, format string, args ...any) {
	if v.broken == nil {
		v.broken = make(map[string][]string)
	}
	v.broken[invariant] = append(v.broken[invariant], fmt.Sprintf(format, args...))
}

func (v *verdict) invariants() []string {
	names := make([]string, 0, len(v.broken))
	for k := range v.broken {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// The invariants, by the names the report uses.
const (
	invOneResult     = "one-result-per-request"
	invExpected      = "expected-outcome"
	invDeletedOnce   = "deleted-key-named-by-one-revoked"
	invRevokedIsReal = "no-revoked-without-delete"
	invRevokedBy     = "already-revoked-names-revoker"
	invGuarded       = "guarded-keys-untouched"
	invDrained       = "queue-empty"
	invRetryAfter    = "no-delete-during-retry-after"
	invLedger        = "ledger-agrees-with-results"
)

// pauseGrace is how long after a 429 was sent another replica may still
// send: the contract's 250 ms for the pause to reach every replica.
const pauseGrace = 250 * time.Millisecond

// check judges the run from outside: the results streams, the emulator,
// the ledger and the consumer. It is called once the replicas are done
// (or the deadline passed), with them still running.
func (w *world) check(wl *workload, faults []outage) (*verdict, []stored) {
	v := &verdict{}

	// The queue and the consumer.
	if info := w.streamInfo(requestsStream); info == nil || info.State.Msgs != 0 {
		n := -1
		if info != nil {
			n = int(info.State.Msgs)
		}
		v.fail(invDrained, "the requests stream holds %d messages", n)
	}
	if p, a, ok := w.consumerState(); !ok || p != 0 || a != 0 {
		v.fail(invDrained, "the consumer has %d pending and %d unacknowledged (readable: %v)", p, a, ok)
	}

	// One result per request id, over both results streams.
	var all []stored
	for _, s := range []string{resultsStream, untrustedStream} {
		got, err := w.readStream(s)
		if err != nil {
			v.fail(invOneResult, "reading %s: %v", s, err)
		}
		all = append(all, got...)
	}
	byID := make(map[string][]stored)
	for _, s := range all {
		if strings.HasPrefix(s.msgID, events.UntrustedIDPrefix) {
			v.fail(invOneResult, "untrusted rejection %s (%s) for a trusted request %q", s.msgID, s.res.Error, s.res.RequestID)
			continue
		}
		if wl.byID[s.res.RequestID] == nil {
			v.fail(invOneResult, "a result for %q, never requested", s.res.RequestID)
			continue
		}
		byID[s.res.RequestID] = append(byID[s.res.RequestID], s)
	}
	final := make(map[string]events.Result, len(wl.reqs))
	for _, r := range wl.reqs {
		got := byID[r.id]
		switch len(got) {
		case 0:
			v.fail(invOneResult, "%s (%s %s): no result", r.id, r.kind, r.key)
			continue
		case 1:
		default:
			outs := make([]string, len(got))
			for i, s := range got {
				outs[i] = string(s.res.Outcome)
			}
			v.fail(invOneResult, "%s: %d results (%s)", r.id, len(got), strings.Join(outs, ", "))
		}
		res := got[0].res
		final[r.id] = res
		code := events.Code("")
		if res.Error != nil {
			code = res.Error.Code
		}
		ok := false
		switch r.kind {
		case listed:
			ok = res.Outcome == events.Revoked || res.Outcome == events.AlreadyRevoked ||
				res.Outcome == events.Failed && code == events.CodeRetriesExhausted
		case unknown:
			ok = res.Outcome == events.AlreadyRevoked && res.RevokedBy == "" ||
				res.Outcome == events.Failed && code == events.CodeRetriesExhausted
		case guardSelf:
			ok = res.Outcome == events.Rejected && code == events.CodeSelfRevocationRefused
		case guardProt:
			ok = res.Outcome == events.Rejected && code == events.CodeProtectedKey
		}
		if !ok {
			v.fail(invExpected, "%s (%s %s): %s %s revoked_by=%q detail=%q", r.id, r.kind, r.key, res.Outcome, code, res.RevokedBy, res.Detail)
		}
	}

	// Kalshi's side: what was deleted against what was reported.
	st := w.emu.Stats()
	revokedBy := make(map[string][]string) // canonical key -> ids of revoked results
	for id, res := range final {
		if res.Outcome == events.Revoked {
			k := strings.ToLower(res.APIKeyID)
			revokedBy[k] = append(revokedBy[k], id)
		}
	}
	for k, n := range st.Deletes {
		if ids := revokedBy[k]; len(ids) != 1 {
			v.fail(invDeletedOnce, "key %s deleted %d× at Kalshi, named by %d revoked results %v", k, n, len(ids), ids)
		}
	}
	account := make(map[string]bool)
	for _, k := range append(append(append([]string{w.selfID}, w.protected...), w.bystanders...), wl.listed...) {
		account[k] = true
	}
	for k, ids := range revokedBy {
		if st.Deletes[k] == 0 {
			v.fail(invRevokedIsReal, "key %s (in the account: %v) never deleted, yet revoked by %v", k, account[k], ids)
		}
	}
	for id, res := range final {
		k := strings.ToLower(res.APIKeyID)
		if res.Outcome != events.AlreadyRevoked || st.Deletes[k] == 0 {
			continue
		}
		ids := revokedBy[k]
		if len(ids) != 1 || res.RevokedBy != ids[0] {
			v.fail(invRevokedBy, "%s: already_revoked %s names revoked_by=%q; revoked by %v", id, k, res.RevokedBy, ids)
		}
	}
	for _, k := range append(append([]string{w.selfID}, w.protected...), w.bystanders...) {
		if !w.emu.HasKey(k) || st.DeleteAttempts[k] != 0 {
			v.fail(invGuarded, "key %s: exists %v, %d DELETEs", k, w.emu.HasKey(k), st.DeleteAttempts[k])
		}
	}

	w.checkRetryAfter(v, faults)
	w.checkLedger(v, final)
	return v, all
}

// checkRetryAfter finds DELETEs that arrived while a Retry-After was in
// force: after a 429 was sent (plus the grace for the pause to reach every
// replica, and any latency then on a link) and before its Retry-After
// passed. A 429 sent while a replica's Kalshi link was cut may never have
// reached a replica; those are left out, and counted.
func (w *world) checkRetryAfter(v *verdict, faults []outage) {
	calls := w.emu.Calls()
	var deletes []emulator.Call
	for _, c := range calls {
		if c.Endpoint == emulator.EndpointDeleteKey {
			deletes = append(deletes, c)
		}
	}
	sort.Slice(deletes, func(i, j int) bool { return deletes[i].Arrived.Before(deletes[j].Arrived) })
	pauses, skipped := 0, 0
	insideDel := make(map[int]bool)   // index in deletes
	insideOther := make(map[int]bool) // index in calls
	for _, c := range calls {
		if c.Status != 429 || c.RetryAfter <= 0 {
			continue
		}
		from, until := c.Answered, c.Answered.Add(c.RetryAfter)
		grace := pauseGrace
		cut := false
		for _, o := range faults {
			if o.end.Before(from.Add(-time.Second)) || o.start.After(until) {
				continue
			}
			inForce := !o.start.After(from) && !o.end.Before(from)
			startedThen := o.start.After(from.Add(-time.Second)) && o.start.Before(from.Add(pauseGrace))
			switch o.f.kind {
			case faultLatency:
				if !o.f.onNATS {
					grace = max(grace, pauseGrace+o.f.latency*5/4)
				}
			case faultKill, faultStop:
				// The one that got the 429 may have died or frozen
				// before it could pass the pause on.
				cut = cut || startedThen
			case faultCutKalshi:
				// A blackhole drops the 429 on its way back.
				cut = cut || startedThen || o.f.hole && inForce
			case faultCutNATS:
				// Its pause cannot reach the others.
				cut = cut || inForce
			}
		}
		if cut {
			skipped++
			continue
		}
		pauses++
		for i, d := range deletes {
			if d.Arrived.After(from.Add(grace)) && d.Arrived.Before(until) && !insideDel[i] {
				insideDel[i] = true
				if len(insideDel) <= 10 {
					v.fail(invRetryAfter, "DELETE %s arrived %v after a 429 with Retry-After %v (status %d)",
						d.KeyID, d.Arrived.Sub(from).Round(time.Millisecond), c.RetryAfter, d.Status)
				}
			}
		}
		for i, o := range calls {
			if o.Endpoint != emulator.EndpointDeleteKey && o.Arrived.After(from.Add(grace)) && o.Arrived.Before(until) {
				insideOther[i] = true
			}
		}
	}
	inside, others := len(insideDel), len(insideOther)
	if inside > 10 {
		v.fail(invRetryAfter, "... %d DELETEs inside a Retry-After in all", inside)
	}
	v.notes = append(v.notes, fmt.Sprintf("retry-after: %d pauses judged (%d left out: the replica that got it may have been cut, stopped or killed), %d DELETEs and %d other calls inside them",
		pauses, skipped, inside, others))
}

// checkLedger compares each req.<id> entry's decided result with the
// stored result of that id: the decision is durable before the result, so
// an entry with no decision beside a stored result disagrees too.
func (w *world) checkLedger(v *verdict, final map[string]events.Result) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := w.js.KeyValue(ctx, ledgerBucket)
	if err != nil {
		v.fail(invLedger, "ledger bucket: %v", err)
		return
	}
	lister, err := kv.ListKeysFiltered(ctx, "req.>")
	if err != nil {
		v.fail(invLedger, "listing the ledger: %v", err)
		return
	}
	entries, agree := 0, 0
	for key := range lister.Keys() {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(key, "req."))
		if err != nil {
			v.fail(invLedger, "ledger key %q does not decode", key)
			continue
		}
		id := string(raw)
		res, stored := final[id]
		if !stored {
			continue // no result to compare (already reported)
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			v.fail(invLedger, "%s: reading its entry: %v", id, err)
			continue
		}
		entries++
		decided, ok := ledgerOutcome(e.Value())
		switch {
		case !ok:
			v.fail(invLedger, "%s: stored %s, the ledger has no decision", id, res.Outcome)
		case decided != res.Outcome:
			v.fail(invLedger, "%s: stored %s, the ledger decided %s", id, res.Outcome, decided)
		default:
			agree++
		}
	}
	v.notes = append(v.notes, fmt.Sprintf("ledger: %d request entries with a stored result, %d agree", entries, agree))
}

// ledgerOutcome is the outcome a request entry decided: its "result" (a
// result document) or an "outcome" of its own.
func ledgerOutcome(value []byte) (events.Outcome, bool) {
	var e struct {
		Result  json.RawMessage `json:"result"`
		Outcome events.Outcome  `json:"outcome"`
	}
	if json.Unmarshal(value, &e) != nil {
		return "", false
	}
	if e.Outcome != "" {
		return e.Outcome, true
	}
	if len(e.Result) == 0 || string(e.Result) == "null" {
		return "", false
	}
	if res, err := events.ParseResult(e.Result); err == nil {
		return res.Outcome, true
	}
	var doc struct {
		Outcome events.Outcome `json:"outcome"`
		Data    struct {
			Outcome events.Outcome `json:"outcome"`
		} `json:"data"`
	}
	if json.Unmarshal(e.Result, &doc) != nil {
		return "", false
	}
	if doc.Outcome != "" {
		return doc.Outcome, true
	}
	return doc.Data.Outcome, doc.Data.Outcome != ""
}
