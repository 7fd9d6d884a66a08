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
		// No more than is left: a fetch waits out its MaxWait for a batch
		// it cannot fill.
		batch, err := oc.Fetch(int(min(500, info.State.LastSeq-last)), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return out, err
			}
			last = meta.Sequence.Stream
			res, err := events.ParseResultMsg(m.Headers(), m.Data())
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

// evidence is everything the checker looks at, gathered from outside the
// replicas: the queue and the consumer, both results streams, the
// emulator's stats, call log and keys, the ledger's request entries, and
// the faults as they happened.
type evidence struct {
	queued, pending, ackPending int // -1: could not be read
	results                     []stored
	readErrs                    []string
	stats                       emulator.Stats
	calls                       []emulator.Call
	exists                      func(key string) bool // the account still lists the key
	ledger                      map[string][]byte     // request id -> its req. entry
	keyRecords                  map[string]string     // key -> the request its key. record names
	outages                     []outage
	senders                     *senders // who sent each call; nil: unknown
}

// gather collects the evidence. It is called once the replicas are done
// (or the deadline passed), with them still running.
func (w *world) gather(outages []outage) *evidence {
	ev := &evidence{queued: -1, pending: -1, ackPending: -1, exists: w.emu.HasKey, outages: outages,
		stats: w.emu.Stats(), calls: w.emu.Calls(), senders: w.senders}
	if info := w.streamInfo(requestsStream); info != nil {
		ev.queued = int(info.State.Msgs)
	}
	if p, a, ok := w.consumerState(); ok {
		ev.pending, ev.ackPending = int(p), int(a)
	}
	for _, s := range []string{resultsStream, untrustedStream} {
		got, err := w.readStream(s)
		if err != nil {
			ev.readErrs = append(ev.readErrs, fmt.Sprintf("reading %s: %v", s, err))
		}
		ev.results = append(ev.results, got...)
	}
	ev.ledger = make(map[string][]byte)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := w.js.KeyValue(ctx, ledgerBucket)
	if err != nil {
		ev.readErrs = append(ev.readErrs, fmt.Sprintf("ledger bucket: %v", err))
		return ev
	}
	lister, err := kv.ListKeysFiltered(ctx, "req.>", "key.>")
	if err != nil {
		ev.readErrs = append(ev.readErrs, fmt.Sprintf("listing the ledger: %v", err))
		return ev
	}
	ev.keyRecords = make(map[string]string)
	for key := range lister.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			ev.readErrs = append(ev.readErrs, fmt.Sprintf("ledger %s: %v", key, err))
			continue
		}
		if k, ok := strings.CutPrefix(key, "key."); ok {
			var rec struct {
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				ev.readErrs = append(ev.readErrs, fmt.Sprintf("ledger %s does not decode: %v", key, err))
			}
			ev.keyRecords[k] = rec.RequestID
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(key, "req."))
		if err != nil {
			ev.readErrs = append(ev.readErrs, fmt.Sprintf("ledger key %q does not decode", key))
			continue
		}
		ev.ledger[string(raw)] = e.Value()
	}
	return ev
}

// keysOf is what the judge needs to know of the deployment: the worker's
// own key, the protected keys and the bystanders (no request names them).
type keysOf struct {
	self       string
	protected  []string
	bystanders []string
}

func (w *world) keys() keysOf { return keysOf{w.selfID, w.protected, w.bystanders} }

// judge holds the evidence against every invariant.
func judge(wl *workload, ks keysOf, ev *evidence) *verdict {
	v := &verdict{}
	for _, e := range ev.readErrs {
		v.fail(invOneResult, "%s", e)
	}

	// The queue and the consumer.
	if ev.queued != 0 {
		v.fail(invDrained, "the requests stream holds %d messages (-1: unreadable)", ev.queued)
	}
	if ev.pending != 0 || ev.ackPending != 0 {
		v.fail(invDrained, "the consumer has %d pending and %d unacknowledged (-1: unreadable)", ev.pending, ev.ackPending)
	}

	// One result per request id, over both results streams.
	byID := make(map[string][]stored)
	for _, s := range ev.results {
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
	st := ev.stats
	revokedBy := make(map[string][]string) // canonical key -> ids of revoked results
	for _, r := range wl.reqs {
		if res, ok := final[r.id]; ok && res.Outcome == events.Revoked {
			k := strings.ToLower(res.APIKeyID)
			revokedBy[k] = append(revokedBy[k], r.id)
		}
	}
	for k, n := range st.Deletes {
		if ids := revokedBy[k]; len(ids) != 1 {
			v.fail(invDeletedOnce, "key %s deleted %d× at Kalshi, named by %d revoked results %v", k, n, len(ids), ids)
		}
	}
	account := make(map[string]bool)
	for _, k := range append(append(append([]string{ks.self}, ks.protected...), ks.bystanders...), wl.listed...) {
		account[k] = true
	}
	for k, ids := range revokedBy {
		if st.Deletes[k] == 0 {
			v.fail(invRevokedIsReal, "key %s (in the account: %v) never deleted, yet revoked by %v", k, account[k], ids)
		}
	}
	for _, r := range wl.reqs {
		res, ok := final[r.id]
		k := strings.ToLower(res.APIKeyID)
		if !ok || res.Outcome != events.AlreadyRevoked || st.Deletes[k] == 0 {
			continue
		}
		ids := revokedBy[k]
		if len(ids) != 1 || res.RevokedBy != ids[0] {
			v.fail(invRevokedBy, "%s: already_revoked %s names revoked_by=%q; revoked by %v", r.id, k, res.RevokedBy, ids)
		}
	}
	for _, k := range append(append([]string{ks.self}, ks.protected...), ks.bystanders...) {
		if !ev.exists(k) || st.DeleteAttempts[k] != 0 {
			v.fail(invGuarded, "key %s: exists %v, %d DELETEs", k, ev.exists(k), st.DeleteAttempts[k])
		}
	}

	judgeRetryAfter(v, ev.calls, ev.outages, ev.senders)
	judgeLedger(v, wl, final, ev.ledger)
	// The ledger's key records: every key revoked names its one revoked
	// request (what `revoker status` shows), and no other key has one.
	for k, ids := range revokedBy {
		if len(ids) == 1 && ev.keyRecords[k] != ids[0] {
			v.fail(invLedger, "key %s: revoked by %s, the ledger's key record names %q", k, ids[0], ev.keyRecords[k])
		}
	}
	for k, id := range ev.keyRecords {
		if len(revokedBy[k]) == 0 {
			v.fail(invLedger, "key %s: no revoked result, the ledger's key record names %q", k, id)
		}
	}
	return v
}

// judgeRetryAfter finds DELETEs sent (signed) while a Retry-After was in
// force: after a 429 was sent (plus the grace for the pause to reach every
// replica, and any latency then on a Kalshi link) and before its
// Retry-After passed. A 429 that may have reached no replica able to pass
// it on is left out, and counted.
func judgeRetryAfter(v *verdict, calls []emulator.Call, faults []outage, senders *senders) {
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
		near := func(o outage) bool { return !o.end.Before(from.Add(-time.Second)) && !o.start.After(until) }
		// A slow Kalshi link delays the 429 to its replica, and so its pause.
		grace := pauseGrace
		for _, o := range faults {
			if near(o) && o.f.kind == faultLatency && !o.f.onNATS {
				grace = max(grace, pauseGrace+o.f.latency*5/4)
			}
		}
		cut := false
		for _, o := range faults {
			if !near(o) {
				continue
			}
			inForce := !o.start.After(from) && !o.end.Before(from)
			// Began before the replica that got the 429 heard it and
			// passed it on (seed 391272: a cut from NATS 0.1 s after a
			// 429 that a 198 ms link was still carrying).
			startedThen := o.start.After(from.Add(-time.Second)) && o.start.Before(from.Add(grace))
			switch o.f.kind {
			case faultKill, faultStop:
				// The one that got the 429 may have died or frozen
				// before it could pass the pause on.
				cut = cut || startedThen
			case faultCutKalshi:
				// A blackhole drops the 429 on its way back.
				cut = cut || startedThen || o.f.hole && inForce
			case faultCutNATS:
				// Its pause cannot reach the others.
				cut = cut || inForce || startedThen
			}
		}
		if cut {
			skipped++
			continue
		}
		pauses++
		for i, d := range deletes {
			// When the replica sent it: its signing time. On a loaded
			// machine the proxies and the emulator (in this process) may
			// take longer to pass a request on than any pause's grace.
			// The signing time is whole milliseconds (Kalshi's timestamp
			// header): the DELETE left at most 1 ms after it (seed 391272:
			// "sent 1s after" a 1 s Retry-After, inside it by the rounding).
			sent := d.Signed.Add(time.Millisecond - time.Nanosecond)
			if d.Signed.IsZero() {
				sent = d.Arrived
			}
			if sent.After(from.Add(grace)) && sent.Before(until) && !insideDel[i] {
				insideDel[i] = true
				if len(insideDel) <= 10 {
					v.fail(invRetryAfter, "DELETE %s sent by %s %v after a 429 with Retry-After %v to %s of %s (arrived %v after; status %d)",
						d.KeyID, senders.of(d), sent.Sub(from).Round(time.Millisecond), c.RetryAfter, c.Endpoint, senders.of(c), d.Arrived.Sub(from).Round(time.Millisecond), d.Status)
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

// judgeLedger compares each req.<id> entry's decided result with the
// stored result of that id: the decision is durable before the result, so
// an entry with no decision beside a stored result disagrees too. An id
// without an entry (a refusal's entry may have expired) is not judged.
func judgeLedger(v *verdict, wl *workload, final map[string]events.Result, ledger map[string][]byte) {
	entries, agree := 0, 0
	for _, r := range wl.reqs {
		res, stored := final[r.id]
		value, ok := ledger[r.id]
		if !stored || !ok {
			continue
		}
		entries++
		decided, ok := ledgerOutcome(value)
		switch {
		case !ok:
			v.fail(invLedger, "%s: stored %s, the ledger has no decision", r.id, res.Outcome)
		case decided != res.Outcome:
			v.fail(invLedger, "%s: stored %s, the ledger decided %s", r.id, res.Outcome, decided)
		default:
			agree++
		}
	}
	v.notes = append(v.notes, fmt.Sprintf("ledger: %d request entries with a stored result, %d agree", entries, agree))
}

// ledgerOutcome is the outcome a request entry decided: its "result" (a
// result document), the code of a refusal recorded alone ("refused"), or an
// "outcome" of its own.
func ledgerOutcome(value []byte) (events.Outcome, bool) {
	var e struct {
		Result  json.RawMessage `json:"result"`
		Refused events.Code     `json:"refused"`
		Outcome events.Outcome  `json:"outcome"`
	}
	if json.Unmarshal(value, &e) != nil {
		return "", false
	}
	if e.Outcome != "" {
		return e.Outcome, true
	}
	if e.Refused != "" {
		return e.Refused.Outcome(), true
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
