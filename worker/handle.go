package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/ledger"
)

// handle carries one delivery from the stream to a stored result and the
// ack: decode, verify, guard, delete, store, settle. The pull loop holds it
// in the fleet's view (failover.go) until handle returns. stop is cancelled when
// shutdown begins (no new attempts); ctx when the drain deadline passes
// (abandon everything).
func (w *Worker) handle(ctx, stop context.Context, msg jetstream.Msg) {
	w.cfg.Metrics.InFlight.Inc()
	defer w.cfg.Metrics.InFlight.Dec()
	received := time.Now()

	meta, err := msg.Metadata()
	if err != nil { // not a JetStream delivery; cannot happen on a pull consumer
		w.cfg.Logger.Error("message without JetStream metadata", "err", err)
		_ = msg.TermWithReason("no jetstream metadata")
		return
	}
	defer keepAlive(msg, w.keepAliveInterval())()

	fallbackID := events.FallbackID(meta.Stream, meta.Sequence.Stream)
	req, decodeErr := decode(msg.Headers(), msg.Data(), fallbackID)
	res := newResult(req, meta, received)

	var policyErr error
	if decodeErr == nil && w.cfg.Policy != nil {
		policyErr = w.cfg.Policy.AuthorizeAt(msg.Headers(), msg.Data(), req.Request, meta.Timestamp)
	}
	var v verdict
	switch {
	case decodeErr != nil:
		v = untrusted(res, meta, events.CodeInvalidRequest, decodeErr.Error())
	case policyErr != nil:
		v = untrusted(res, meta, events.CodeUnauthorizedRequest, policyErr.Error())
	default:
		var proceed bool
		if meta, v, proceed = w.schedule(ctx, meta, req, res); !proceed {
			break // too far ahead, waiting for its not_before, or sent back (schedule.go)
		}
		// Requests for one key take turns within the process, from decision to
		// stored result: the second sees the first's delete, and the ledger
		// then names the request that revoked the key. A leaked key's request
		// takes its key's turn once it knows the key.
		defer w.keys.lock(req.names())()
		v = w.decide(ctx, stop, meta, req, res)
		if v.unlock != nil {
			defer v.unlock()
		}
	}

	stored := false
	if v.res != nil {
		// The decision is in the ledger already: a redelivery stores the same.
		stored = w.publish(ctx, v)
		if stored {
			w.cfg.Metrics.observeResult(v.res)
			w.cfg.Metrics.Duration.Observe(time.Since(meta.Timestamp).Seconds())
			if v.res.Outcome == events.Revoked {
				if !w.confirms.add(v.res, req.leaked, v.foreign, v.keyRev) {
					w.cfg.Logger.Warn("too many revocations wait for confirmation; this one is not checked", "api_key_id", v.res.APIKeyID)
				}
				if v.res.APIKeyID == w.cfg.SelfKeyID {
					w.selfRevoked()
				}
			}
		}
	}
	w.settle(msg, meta, v, stored)
}

// request is a decoded request, its leaked key parsed.
type request struct {
	events.Request
	leaked *leakedKey // nil unless the request carries a leaked private key
}

// decode decodes a request and parses its leaked key, if any: a key that
// does not parse makes the request invalid.
func decode(header map[string][]string, body []byte, fallbackID string) (request, error) {
	req, err := events.DecodeRequest(header, body, fallbackID)
	r := request{Request: req}
	if err == nil && !req.LeakedKey.IsZero() {
		r.leaked, err = parseLeakedKey(req.LeakedKey)
	}
	return r, err
}

// names is what the request's id names in the ledger: the key ID, or the
// leaked key's fingerprint.
func (r request) names() string {
	if r.leaked != nil {
		return r.leaked.fingerprint
	}
	return r.APIKeyID
}

func newResult(req request, meta *jetstream.MsgMetadata, received time.Time) *events.Result {
	fingerprint := ""
	if req.leaked != nil {
		fingerprint = req.leaked.fingerprint
	}
	return &events.Result{
		RequestID:            req.ID,
		RequestSeq:           meta.Sequence.Stream,
		APIKeyID:             req.APIKeyID,
		LeakedKeyFingerprint: fingerprint,
		Deliveries:           int(meta.NumDelivered),
		Reason:               req.Reason,
		RequestedBy:          req.RequestedBy,
		Source:               req.Source,
		RequestedAt:          req.RequestedAt,
		NotBefore:            req.NotBefore,
		ReceivedAt:           received,
		Trace:                req.Trace,
	}
}

// verdict is what became of one delivery.
type verdict struct {
	res   *events.Result // the result to store; nil: undecided, back to the stream
	doc   []byte         // res encoded, or the document the ledger holds for it
	msgID string         // the result's Nats-Msg-Id
	// waiting: another message of the same request, or another request for
	// the same key, is carrying it out; this one comes back later for that
	// decision.
	waiting bool
	keyRev  uint64 // the revision of the key record the decision created, if any
	// unlock, if set, ends the turn a leaked key's request took on the key
	// it found, once the result is stored.
	unlock  func()
	foreign bool // the key is another account's: only the leaked key can confirm it dead
	// untrusted: stored in UntrustedStream, apart from the audit log.
	untrusted bool
	// delay, with waiting: a scheduled request rests in the stream this
	// long, towards its not_before (schedule.go).
	delay time.Duration
}

// untrusted rejects a request whose id cannot be trusted, under a message id
// of its own: it can neither hide nor pre-empt the result of a request that
// rightly claims that id.
func untrusted(res *events.Result, meta *jetstream.MsgMetadata, code events.Code, message string) verdict {
	res.Outcome = events.Rejected
	res.Error = &events.Error{Code: code, Message: message}
	finish(res)
	return verdict{res: res, msgID: events.UntrustedMsgID(meta.Stream, meta.Sequence.Stream), untrusted: true}
}

// finish stamps the completion of res.
func finish(res *events.Result) {
	res.CompletedAt = time.Now()
	res.DurationMS = res.CompletedAt.Sub(res.ReceivedAt).Milliseconds()
}

// decide carries out a valid, verified request: its id is trusted. The
// ledger says whether the id is new, already decided, held by another copy
// of the request, or names another key; a compare-and-set lost to another
// replica is retried with what the ledger says then.
func (w *Worker) decide(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result) verdict {
	for range 3 {
		v, err := w.decideOnce(ctx, stop, meta, req, res)
		if err == nil {
			return v
		}
		if !errors.Is(err, ledger.ErrConflict) {
			if ctx.Err() == nil {
				w.cfg.Logger.Warn("ledger unavailable; the request will be delivered again",
					"request_id", req.ID, "stream_seq", meta.Sequence.Stream, "err", err)
			}
			return verdict{}
		}
		*res = *newResult(req, meta, res.ReceivedAt)
	}
	return verdict{}
}

func (w *Worker) decideOnce(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result) (verdict, error) {
	seq := meta.Sequence.Stream
	proposal := ledger.Request{Key: req.names(), Seq: seq, ClaimedAt: time.Now()}
	// The key's guards come first: a copy taking over below drops a
	// max_deliveries refusal, never a guard's.
	var code events.Code
	var message string
	if req.leaked == nil {
		code, message = w.guardKey(req.APIKeyID)
		// Refused before any Kalshi call: a few hundred bytes that expire.
		proposal.Refused, proposal.Message = code, message
	}
	if code == "" {
		code, message = w.guardDeliveries(meta)
	}
	if code != "" {
		refuse(res, code, message)
		if proposal.Refused == "" {
			proposal.Result = w.encode(res)
		}
	} else {
		// Kept for replicas of earlier versions during a rolling upgrade:
		// they read it as "a DELETE may have been sent".
		proposal.Attempted = req.leaked == nil
	}

	c, fresh, err := w.ledger.Claim(ctx, req.ID, proposal)
	if err != nil {
		return verdict{}, err
	}
	if !fresh {
		switch {
		case c.Key != proposal.Key:
			return untrusted(res, meta, events.CodeConflictingRequestID, fmt.Sprintf(
				"request id %s already names request %d for %s; nothing was deleted",
				events.Quote(req.ID), c.Seq, describeNamed(c.Key))), nil
		case c.Decided():
			return w.republish(ctx, meta, req, res, c)
		case c.Seq != seq:
			alive, err := w.ownerAlive(ctx, req, c)
			if err != nil {
				return verdict{}, err
			}
			if alive {
				return verdict{waiting: true}, nil
			}
		}
		// This message carries the request out: a redelivery of the one that
		// claimed it, or a copy taking over from one that is gone. A copy's
		// deliveries were spent waiting for the other, not failing; so were
		// the ones this message spent waiting for another request's key.
		if res.Error != nil && res.Error.Code == events.CodeMaxDeliveries &&
			(c.Seq != seq || int(meta.NumDelivered-min(c.Waits, meta.NumDelivered)) < w.cfg.MaxDeliveries) {
			*res = *newResult(req, meta, res.ReceivedAt)
			proposal.Result, proposal.Attempted = nil, req.leaked == nil
		}
		next := c.Request
		if c.Seq != seq {
			next.Seq, next.ClaimedAt, next.Waits = seq, proposal.ClaimedAt, 0
		}
		next.Result, next.Refused, next.Message = proposal.Result, proposal.Refused, proposal.Message
		next.Attempted = c.Attempted || proposal.Attempted
		if c, err = w.ledger.Update(ctx, req.ID, c, next); err != nil {
			return verdict{}, err
		}
	}
	if c.Decided() {
		return verdict{res: res, doc: c.Result, msgID: req.ID}, nil
	}
	if req.leaked != nil {
		return w.revokeLeaked(ctx, stop, meta, req, res, c)
	}
	return w.attempt(ctx, stop, meta, req, res, c, w.del, true, func() (*kalshi.APIKey, error) {
		return w.listedForAttempt(ctx, stop, meta.Timestamp, req.APIKeyID)
	})
}

// ownerAlive reports whether the message that claimed request c is still
// carrying it out: it claimed it less than a lease ago, or it holds the
// key's attempt lease. A copy waits only that long for an owner that is
// gone; taking over is safe either way, every write being a compare-and-set.
func (w *Worker) ownerAlive(ctx context.Context, req request, c ledger.Claim) (bool, error) {
	if time.Since(c.ClaimedAt) < w.leaseLength() {
		return true, nil
	}
	key := c.Target
	if req.leaked == nil {
		key = req.APIKeyID
	}
	if key == "" {
		return false, nil
	}
	e, _, found, err := w.ledger.AttemptOn(ctx, key)
	return found && e.RequestID == req.ID && e.Seq == c.Seq && time.Now().Before(e.Until), err
}

// listedForAttempt is listed for a request's first attempt: a listing that
// Kalshi refuses for good leaves the key unlisted, and the DELETE's own
// answer then says what is wrong.
func (w *Worker) listedForAttempt(ctx, stop context.Context, storedAt time.Time, keyID string) (*kalshi.APIKey, error) {
	k, err := w.listed(ctx, stop, storedAt, keyID)
	var be *budgetError
	if err == nil || errors.Is(err, errStopped) || errors.As(err, &be) {
		return k, err
	}
	return nil, nil
}

// attempt deletes res.APIKeyID for the request claimed as c, holding the
// key's attempt lease, judges the answer and records the decision. del signs
// the DELETE; own says it signs with the worker's credential.
func (w *Worker) attempt(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result, c ledger.Claim, del deleter, own bool, listed func() (*kalshi.APIKey, error)) (verdict, error) {
	le, err := w.acquire(ctx, res.APIKeyID, req.ID, meta.Sequence.Stream, listed)
	var be *budgetError
	switch {
	case errors.Is(err, errWaitForKey):
		// This delivery waits for another request's decision: it does not
		// count toward max deliveries. A lost count costs one delivery.
		next := c.Request
		next.Waits++
		_, _ = w.ledger.Update(ctx, req.ID, c, next)
		return verdict{waiting: true}, nil
	case errors.Is(err, errStopped):
		return verdict{}, nil
	case errors.As(err, &be):
		exhausted(res, meta.Timestamp, "listing the account's keys: "+be.why)
		return w.decided(ctx, req, c, res, false)
	case err != nil:
		return verdict{}, err
	}
	stopRenewing := le.renewEvery(ctx)
	unanswered, interrupted := w.revoke(ctx, stop, meta.Timestamp, res, del, own)
	stopRenewing()
	if interrupted {
		return verdict{}, nil
	}
	// An earlier delivery that held the lease may have sent a DELETE too.
	mayHaveDeleted := unanswered || le.ours
	if res.Outcome == events.AlreadyRevoked {
		w.judge404(ctx, le, res, mayHaveDeleted)
	}
	blastRadius(res, le.e.Key)
	if c, err = w.contain(ctx, stop, meta.Timestamp, req, res, c, le.e.Key, own); err != nil {
		return verdict{}, ignoreStopped(err)
	}
	return w.decided(ctx, req, c, res, mayHaveDeleted || res.Outcome == events.Revoked)
}

// revokeLeaked carries out a leaked key's request once claimed: it finds
// the key (or reads it from the claim, when an earlier delivery found it),
// guards it, records it with the claim before the first DELETE, and deletes
// it during the key's turn.
func (w *Worker) revokeLeaked(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result, c ledger.Claim) (verdict, error) {
	f := found{keyID: c.Target, foreign: c.Foreign}
	if f.keyID == "" {
		// Each listed key that refused the leaked key is recorded with the
		// claim, so that a redelivery resumes the search after it.
		s := search{from: c.ProbedThrough, refused: func(id string) {
			next := c.Request
			next.ProbedThrough = id
			if nc, err := w.ledger.Update(ctx, req.ID, c, next); err == nil {
				c = nc
			}
		}}
		var fail *events.Error
		var err error
		switch f, fail, err = w.findLeaked(ctx, stop, meta, req, s); {
		case errors.Is(err, errStopped):
			return verdict{}, nil
		case err != nil:
			return verdict{}, err
		case fail != nil:
			refuse(res, fail.Code, fail.Message)
			return w.decided(ctx, req, c, res, false)
		}
	}
	res.APIKeyID = f.keyID
	if code, message := w.guardKey(f.keyID); code != "" {
		refuse(res, code, message)
		return w.decided(ctx, req, c, res, false)
	}
	unlock := w.keys.lock(f.keyID)
	next := c.Request
	next.Target, next.Foreign, next.Attempted = f.keyID, f.foreign, true
	c, err := w.ledger.Update(ctx, req.ID, c, next)
	if err != nil {
		unlock()
		return verdict{}, err
	}
	var del deleter = w.del
	if f.foreign {
		as, err := w.del.As(f.keyID, req.leaked.signer)
		if err != nil { // cannot be: identify signed as this key already
			unlock()
			return verdict{}, err
		}
		del = as
		res.Detail = "the key is not this account's: it deleted itself, signed with the leaked private key"
	}
	// The leaked key was accepted as this key moments ago: it was listed
	// (or, another account's, alive) before the first attempt.
	v, err := w.attempt(ctx, stop, meta, req, res, c, del, !f.foreign, func() (*kalshi.APIKey, error) {
		return w.listedLeaked(ctx, stop, meta.Timestamp, f), nil
	})
	if err != nil || v.res == nil {
		unlock()
		return v, err
	}
	v.unlock, v.foreign = unlock, f.foreign
	return v, nil
}

// findLeaked finds the key a leaked request's PEM is: as the ledger
// remembers it from an earlier request with the same PEM (after whose
// delete no listed key is it, and Kalshi's 404 then says already_revoked),
// or by identify, whose find it records before any DELETE. It returns the
// key, or the refusal that ends the request, or the error that sends it
// back (errStopped on shutdown).
func (w *Worker) findLeaked(ctx, stop context.Context, meta *jetstream.MsgMetadata, req request, s search) (found, *events.Error, error) {
	known := func() (found, error) {
		e, err := w.ledger.LeakedKeyOf(ctx, req.leaked.fingerprint)
		if err != nil || e == nil {
			return found{}, err
		}
		return found{keyID: e.Key, foreign: e.Foreign}, nil
	}
	if f, err := known(); err != nil || f.keyID != "" {
		return f, nil, err
	}
	f, fail, err := w.identifyOnce(ctx, stop, meta.Timestamp, req.leaked, req.APIKeyID, s)
	if err != nil || fail != nil {
		if fail != nil && fail.Code == events.CodeLeakedKeyNotFound {
			// Another request with this PEM may have recorded the key and
			// deleted it while this one listed the account's keys.
			if f, err := known(); err != nil || f.keyID != "" {
				return f, nil, err
			}
		}
		return found{}, fail, err
	}
	return f, nil, w.ledger.RecordLeaked(ctx, req.leaked.fingerprint, ledger.Leaked{Key: f.keyID, Foreign: f.foreign})
}

// decided finishes res, the outcome of the request claimed as c, records
// it in the ledger (and a revoked key's record) and returns its verdict.
// The result is stored only once the ledger holds the decision, so the two
// never disagree: a failed write sends the delivery back undecided.
// mayHaveDeleted says whether an attempt of the request got a 2xx or went
// unanswered.
func (w *Worker) decided(ctx context.Context, req request, c ledger.Claim, res *events.Result, mayHaveDeleted bool) (verdict, error) {
	uncontained(req, res)
	finish(res)
	doc := w.encode(res)
	next := c.Request
	next.Result, next.MayHaveDeleted = doc, mayHaveDeleted
	var keyRev uint64
	var decisionErr, keyErr error
	// What Kalshi answered a DELETE is known only here: a NAK would leave
	// the next delivery a 404 to judge. So the writes are retried while the
	// message is kept alive, through a NATS node's election (a few seconds).
	decisionDone, keyDone := false, res.Outcome != events.Revoked
	wctx, cancel := context.WithTimeout(ctx, decisionRetryFor)
	defer cancel()
	for wait := decisionRetry; ; wait *= 2 {
		var wg sync.WaitGroup
		if !decisionDone {
			wg.Go(func() { _, decisionErr = w.ledger.Update(wctx, req.ID, c, next); decisionDone = decisionErr == nil })
		}
		if !keyDone {
			wg.Go(func() {
				keyRev, keyErr = w.ledger.RecordRevoked(wctx, res.APIKeyID, keyRecordOf(res))
				keyDone = keyErr == nil
			})
		}
		wg.Wait()
		if errors.Join(decisionErr, keyErr) == nil || errors.Is(decisionErr, ledger.ErrConflict) || !mayHaveDeleted {
			break
		}
		if sleep(wctx, wait); wctx.Err() != nil {
			break
		}
	}
	if err := errors.Join(decisionErr, keyErr); err != nil {
		if errors.Is(decisionErr, ledger.ErrConflict) {
			return verdict{}, ledger.ErrConflict
		}
		return verdict{}, err
	}
	return verdict{res: res, doc: doc, msgID: req.ID, keyRev: keyRev}, nil
}

// How a decision after a DELETE is retried when the ledger does not answer:
// after 250 ms, then twice as long each time, for 8 s in all (the writes
// included: one may wait seconds for an answer that never comes).
const (
	decisionRetry    = 250 * time.Millisecond
	decisionRetryFor = 8 * time.Second
)

// refuse ends res with the error code and message, before any DELETE.
func refuse(res *events.Result, code events.Code, message string) {
	res.Outcome = code.Outcome()
	res.Error = &events.Error{Code: code, Message: message}
	finish(res)
}

// describeNamed says what a ledger entry's Key names, in a message.
func describeNamed(key string) string {
	if strings.HasPrefix(key, "sha256:") {
		return "the leaked key " + key
	}
	return "key " + key
}

// KeyGuard is the refusal of a key that must never be deleted, or "": the
// key that signs (selfID), unless allowSelf, and the protected keys. Every
// ID is canonical. The worker applies it before any DELETE; the CLI's plans
// (revoke --dry-run, --all) foretell it with the same rule.
func KeyGuard(keyID, selfID string, allowSelf bool, protected []string) events.Code {
	switch {
	case keyID == selfID && !allowSelf:
		return events.CodeSelfRevocationRefused
	case slices.Contains(protected, keyID):
		return events.CodeProtectedKey
	}
	return ""
}

// guardKey is KeyGuard with the worker's settings, and its message.
func (w *Worker) guardKey(keyID string) (events.Code, string) {
	switch code := KeyGuard(keyID, w.cfg.SelfKeyID, w.cfg.AllowSelfRevoke, w.cfg.ProtectedKeys); code {
	case events.CodeSelfRevocationRefused:
		return code, fmt.Sprintf("%s is the key this worker signs with; set REVOKER_ALLOW_SELF_REVOKE=true to allow it", keyID)
	case events.CodeProtectedKey:
		return code, fmt.Sprintf("%s is listed in REVOKER_PROTECTED_KEYS", keyID)
	}
	return "", ""
}

// guardDeliveries refuses a request delivered too often.
func (w *Worker) guardDeliveries(meta *jetstream.MsgMetadata) (events.Code, string) {
	if int(meta.NumDelivered) >= w.cfg.MaxDeliveries {
		return events.CodeMaxDeliveries, fmt.Sprintf(
			"delivered %d times without a stored result; not attempted again", meta.NumDelivered)
	}
	return "", ""
}

// republish stores again the result the ledger holds for a decided request,
// counting this delivery too: the results stream drops it as a duplicate
// unless the first store was lost. A refusal recorded by its code alone is
// made again from this delivery; a revoked key's record is written first,
// in case the delivery that decided died before it.
func (w *Worker) republish(ctx context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result, c ledger.Claim) (verdict, error) {
	if c.Refused != "" {
		refuse(res, c.Refused, c.Message)
		return verdict{res: res, msgID: req.ID}, nil
	}
	stored, err := events.ParseResult(c.Result)
	if err != nil {
		return verdict{}, fmt.Errorf("ledger: decided result of request %d: %w", c.Seq, err)
	}
	stored.Deliveries = int(meta.NumDelivered)
	v := verdict{res: &stored, msgID: stored.RequestID, foreign: c.Foreign}
	if stored.Outcome == events.Revoked {
		if v.keyRev, err = w.ledger.RecordRevoked(ctx, stored.APIKeyID, keyRecordOf(&stored)); err != nil {
			return verdict{}, err
		}
	}
	return v, nil
}

// keyRecordOf is the ledger's record of the key res revoked.
func keyRecordOf(res *events.Result) ledger.KeyRecord {
	return ledger.KeyRecord{
		RequestID: res.RequestID, RequestSeq: res.RequestSeq, RevokedAt: res.CompletedAt,
		RequestedBy: res.RequestedBy, Reason: res.Reason, Fingerprint: res.LeakedKeyFingerprint,
		KeyName: res.KeyName, KeyScopes: res.KeyScopes, KeySubaccount: res.KeySubaccount, Containment: res.Containment,
	}
}

// encode returns the result document of res. A result that cannot be
// encoded (a bug: DecodeRequest bounds every field) is replaced by a minimal
// valid one with the same outcome, so no delivery is left without a result.
func (w *Worker) encode(res *events.Result) []byte {
	doc, err := res.MarshalEvent()
	if err == nil {
		return doc
	}
	w.cfg.Logger.Error("cannot encode a result; storing a minimal one", "request_id", res.RequestID, "err", err)
	minimal := events.Result{
		RequestID: res.RequestID, RequestSeq: res.RequestSeq, APIKeyID: res.APIKeyID,
		Outcome: res.Outcome, Attempts: res.Attempts, HTTPStatus: res.HTTPStatus,
		ReceivedAt: time.Now(), CompletedAt: time.Now(), Error: res.Error,
	}
	if !minimal.Outcome.Valid() || minimal.Outcome.Succeeded() != (minimal.Error == nil) {
		minimal.Outcome, minimal.Error = events.Rejected, &events.Error{Code: events.CodeInvalidRequest}
	}
	minimal.Detail = "the full result could not be encoded"
	if doc, err = minimal.MarshalEvent(); err != nil {
		minimal.RequestID, minimal.APIKeyID, minimal.Error.Message = "unencodable", "", ""
		doc, _ = minimal.MarshalEvent()
	}
	return doc
}

// publish stores v's result on the results subject under v.msgID; the stream
// drops a repeat. It reports whether JetStream acknowledged it.
func (w *Worker) publish(ctx context.Context, v verdict) bool {
	res := v.res
	if v.doc == nil {
		v.doc = w.encode(res)
	}
	m := w.resultMsg(v)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := w.js.PublishMsg(pctx, m)
	if err != nil {
		w.cfg.Logger.Warn("cannot store result; the request will be delivered again",
			append([]any{"request_id", res.RequestID, "outcome", res.Outcome, "err", err}, traceArgs(res.Trace)...)...)
		return false
	}
	// One LogAttrs call: Logger.With would build a handler per result.
	attrs := append(make([]slog.Attr, 0, 10),
		slog.String("request_id", res.RequestID), slog.Uint64("request_seq", res.RequestSeq),
		slog.String("api_key_id", res.APIKeyID), slog.String("outcome", string(res.Outcome)),
		slog.Int("attempts", res.Attempts), slog.Int("deliveries", res.Deliveries))
	if res.Trace.Parent != "" {
		attrs = append(attrs, slog.String("traceparent", res.Trace.Parent))
	}
	level, msg := slog.LevelInfo, "request ended"
	switch {
	case ack.Duplicate:
		msg = "result was already stored"
	case res.Error != nil:
		level = slog.LevelWarn
		attrs = append(attrs, slog.String("code", string(res.Error.Code)), slog.String("message", res.Error.Message))
	default:
		attrs = append(attrs, slog.Int("http_status", res.HTTPStatus), slog.Int64("duration_ms", res.DurationMS))
	}
	w.cfg.Logger.LogAttrs(ctx, level, msg, attrs...)
	return true
}

// settle is the one place that decides how a delivery ends:
//   - not decided, waiting for another copy, or not stored: back to the
//     stream after a delay that grows with the deliveries, never at once;
//   - scheduled for later: back to the stream until its not_before;
//   - stored success: ack;
//   - stored refusal or failure: terminate, with the error as the reason.
//
// Both ack and terminate remove the request from the work queue.
func (w *Worker) settle(msg jetstream.Msg, meta *jetstream.MsgMetadata, v verdict, stored bool) {
	var err error
	switch {
	case v.res == nil && !v.waiting:
		err = msg.NakWithDelay(w.cfg.RequeueDelay)
	case v.delay > 0:
		err = msg.NakWithDelay(v.delay)
	case !stored:
		err = msg.NakWithDelay(requeueDelay(w.cfg.RequeueDelay, meta.NumDelivered))
	case v.res.Outcome.Succeeded():
		// Not waiting for the server to confirm: a lost ack redelivers the
		// request, which finds its decision in the ledger and stores the
		// same result again, dropped as a duplicate.
		err = msg.Ack()
	default:
		err = msg.TermWithReason(fmt.Sprintf("%s: %.200s", v.res.Error.Code, v.res.Error.Message))
	}
	if err != nil {
		// The ack wait redelivers it; the stored result makes that harmless.
		w.cfg.Logger.Warn("cannot settle delivery", "err", err, "stream_seq", meta.Sequence.Stream)
	}
}

// requeueDelay doubles base for every earlier delivery, up to 30 s.
func requeueDelay(base time.Duration, deliveries uint64) time.Duration {
	d := base
	for i := uint64(1); i < deliveries && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// keepAlive tells the server every interval that msg is still being
// worked on, until the returned stop is called.
func keepAlive(msg jetstream.Msg, interval time.Duration) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock() // the callback reads t
	defer mu.Unlock()
	t = time.AfterFunc(interval, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		t.Reset(interval)
	})
	return func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		t.Stop()
	}
}
