package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/events/auth"
)

// handle carries one delivery from the stream to a stored result and the ack.
// stop is cancelled when shutdown begins (no new attempts); ctx when the
// drain deadline passes (abandon everything).
func (w *Worker) handle(stop, ctx context.Context, msg jetstream.Msg) {
	w.cfg.Metrics.InFlight.Inc()
	defer w.cfg.Metrics.InFlight.Dec()
	received := time.Now()

	meta, err := msg.Metadata()
	if err != nil { // not a JetStream delivery; cannot happen on a pull consumer
		w.cfg.Logger.Error("message without JetStream metadata", "err", err)
		_ = msg.TermWithReason("no jetstream metadata")
		return
	}
	defer keepAlive(msg, w.cfg.AckWait/3)()

	fallbackID := fmt.Sprintf("%s-%d", meta.Stream, meta.Sequence.Stream)
	req, decodeErr := events.DecodeRequest(msg.Headers(), msg.Data(), fallbackID)

	// Requests for one key take turns, from decision to stored result: the
	// second sees the first's delete (404) instead of racing it, and when
	// both carry one id, the result that tells of the delete is stored
	// first and the other is dropped as its duplicate.
	defer w.keys.lock(req.APIKeyID)()

	// A result decided on an earlier delivery but never stored is stored now,
	// as it was: the key was already deleted then, a new DELETE would only
	// say 404.
	v, ok := w.pending.take(req.ID)
	if !ok {
		v = &verdict{res: newResult(req, received)}
		if interrupted := w.decide(stop, ctx, msg, meta, req, decodeErr, v); interrupted {
			w.settle(msg, meta, nil, false)
			return
		}
		v.res.CompletedAt = time.Now()
		v.res.DurationMS = v.res.CompletedAt.Sub(v.res.ReceivedAt).Milliseconds()
	}
	res := v.res
	res.Deliveries = int(meta.NumDelivered)

	if w.isLateReplay(v) {
		w.cfg.Metrics.Replays.Inc()
		w.cfg.Logger.Warn("dropped a signed request replayed after its result's duplicates window; nothing was deleted",
			"request_id", res.RequestID, "api_key_id", res.APIKeyID, "stream_seq", meta.Sequence.Stream)
		_ = msg.TermWithReason("replay of an old signed request")
		return
	}
	stored := w.publish(ctx, res, v.msgID(fallbackID))
	if !stored {
		w.pending.put(req.ID, v)
	} else {
		w.cfg.Metrics.observeResult(res)
		w.cfg.Metrics.Duration.Observe(time.Since(meta.Timestamp).Seconds())
		if res.Outcome == events.Revoked && res.APIKeyID == w.cfg.SelfKeyID && w.cfg.SelfKeyID != "" {
			w.selfRevoked()
		}
	}
	w.settle(msg, meta, res, stored)
}

func newResult(req events.Request, received time.Time) *events.Result {
	return &events.Result{
		RequestID:   req.ID,
		APIKeyID:    req.APIKeyID,
		Reason:      req.Reason,
		RequestedBy: req.RequestedBy,
		Source:      req.Source,
		RequestedAt: req.RequestedAt,
		ReceivedAt:  received,
	}
}

// verdict is a decided request: its result and, when the policy refused
// it, the policy's reason.
type verdict struct {
	res       *events.Result
	policyErr error
}

// decide fills v with the outcome of the request: refused by validation
// or a guard, or the end of the delete. interrupted means shutdown came
// first and the request must go back to the stream undecided.
func (w *Worker) decide(stop, ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata,
	req events.Request, decodeErr error, v *verdict) (interrupted bool) {
	res := v.res
	reject := func(code events.Code, format string, args ...any) bool {
		res.Outcome = events.Rejected
		res.Error = &events.Error{Code: code, Message: fmt.Sprintf(format, args...)}
		return false
	}
	switch {
	case decodeErr != nil:
		return reject(events.CodeInvalidRequest, "%v", decodeErr)
	case w.cfg.Policy != nil:
		if err := w.cfg.Policy.AuthorizeAt(msg.Headers(), msg.Data(), req, meta.Timestamp); err != nil {
			v.policyErr = err
			return reject(events.CodeUnauthorizedRequest, "%v", err)
		}
	}
	switch {
	case req.APIKeyID == w.cfg.SelfKeyID && !w.cfg.AllowSelfRevoke:
		return reject(events.CodeSelfRevocationRefused,
			"%s is the key this worker signs with; set REVOKER_ALLOW_SELF_REVOKE=true to allow it", req.APIKeyID)
	case slices.Contains(w.cfg.ProtectedKeys, req.APIKeyID):
		return reject(events.CodeProtectedKey, "%s is listed in REVOKER_PROTECTED_KEYS", req.APIKeyID)
	case int(meta.NumDelivered) >= w.cfg.MaxDeliveries:
		res.Outcome = events.Failed
		res.Error = &events.Error{Code: events.CodeMaxDeliveries, Message: fmt.Sprintf(
			"delivered %d times without a stored result; not attempted again", meta.NumDelivered)}
		return false
	}

	return w.revoke(stop, ctx, meta.Timestamp, res)
}

// publish stores res on the results subject; the stream drops a repeat of
// the same request id. It reports whether JetStream acknowledged it.
func (w *Worker) publish(ctx context.Context, res *events.Result, msgID string) bool {
	doc, err := res.MarshalEvent()
	if err != nil { // only for values JSON cannot hold; none come from here
		w.cfg.Logger.Error("encoding result", "request_id", res.RequestID, "err", err)
		return false
	}
	m := nats.NewMsg(events.ResultSubject(w.cfg.ResultsSubject, res.Outcome))
	m.Data = doc
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := w.js.PublishMsg(pctx, m)
	if err != nil {
		w.cfg.Logger.Warn("cannot store result; the request will be delivered again",
			"request_id", res.RequestID, "outcome", res.Outcome, "err", err)
		return false
	}
	// One LogAttrs call: Logger.With would build a handler per result.
	attrs := append(make([]slog.Attr, 0, 7),
		slog.String("request_id", res.RequestID), slog.String("api_key_id", res.APIKeyID),
		slog.String("outcome", string(res.Outcome)), slog.Int("attempts", res.Attempts),
		slog.Int("deliveries", res.Deliveries))
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

// msgID is the result's Nats-Msg-Id: the request id, except for a
// request refused by the policy without a verified signature. Its id is
// unauthenticated, and a forger who claims a genuine request's id must not
// make the stream drop the genuine result as a duplicate.
func (v *verdict) msgID(fallbackID string) string {
	var stale *auth.StaleError
	if v.policyErr != nil && !errors.As(v.policyErr, &stale) {
		return "unauthorized-" + fallbackID
	}
	return v.res.RequestID
}

// isLateReplay reports a signed request whose signature verified but that
// was stored so long after it was made that the result of the original is
// past the results stream's duplicates window: storing a rejection now
// would give the request id a second result. Such a copy can only be a
// replay.
func (w *Worker) isLateReplay(v *verdict) bool {
	var stale *auth.StaleError
	return errors.As(v.policyErr, &stale) && stale.Age > w.cfg.MaxRetry+time.Hour-time.Minute
}

// settle is the one place that decides how a delivery ends:
//   - not decided or not stored: back to the stream after a delay that grows
//     with the deliveries, never at once;
//   - stored success: ack;
//   - stored refusal or failure: terminate, with the error as the reason.
//
// Both ack and terminate remove the request from the work queue.
func (w *Worker) settle(msg jetstream.Msg, meta *jetstream.MsgMetadata, res *events.Result, stored bool) {
	var err error
	switch {
	case res == nil:
		err = msg.NakWithDelay(w.cfg.RequeueDelay)
	case !stored:
		err = msg.NakWithDelay(requeueDelay(w.cfg.RequeueDelay, meta.NumDelivered))
	case res.Outcome.Succeeded():
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = msg.DoubleAck(actx)
		cancel()
	default:
		err = msg.TermWithReason(fmt.Sprintf("%s: %s", res.Error.Code, res.Error.Message))
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
