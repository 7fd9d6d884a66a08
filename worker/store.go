package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/confirm"
)

// store stores a decided verdict's result (the decision is in the ledger
// already: a redelivery stores the same) and reports whether JetStream
// acknowledged it. A stored revocation joins the confirmations.
func (w *Worker) store(ctx context.Context, req request, meta *jetstream.MsgMetadata, v verdict) bool {
	stored := v.res != nil && w.publish(ctx, v)
	if stored {
		w.cfg.Metrics.ObserveResult(v.res)
		w.cfg.Metrics.Duration.Observe(time.Since(meta.Timestamp).Seconds())
	}
	if stored && v.res.Outcome == events.Revoked {
		k := confirm.Revoked{ID: v.res.APIKeyID, Record: keyRecordOf(v.res), Rev: v.keyRev, Foreign: v.foreign}
		if req.leaked != nil {
			k.Leaked = req.leaked.Signer()
		}
		if !w.confirms.Add(k) {
			w.cfg.Logger.Warn("too many revocations wait for confirmation; this one is not checked", "api_key_id", v.res.APIKeyID)
		}
		if v.res.APIKeyID == w.cfg.SelfKeyID {
			w.selfRevoked()
		}
	}
	return stored
}

// publish stores v's result on the results subject under v.msgID; the stream
// drops a repeat. It reports whether JetStream acknowledged it.
func (w *Worker) publish(ctx context.Context, v verdict) bool {
	res := v.res
	if v.doc == nil {
		v.doc = w.encode(res)
	}
	m := w.resultMsg(v)
	// Tried again while the message is kept alive: through the election
	// that follows a NATS node's loss (a few seconds) a NAK would add its
	// growing requeue delay. The stream drops a repeat by its Nats-Msg-Id.
	// This loop is the only retry: the client's own (no responders) is off.
	pctx, cancel := context.WithTimeout(ctx, publishRetryFor)
	defer cancel()
	var ack *jetstream.PubAck
	var err error
	for {
		actx, cancel := context.WithTimeout(pctx, publishTry)
		ack, err = w.js.PublishMsg(actx, m, jetstream.WithRetryAttempts(0))
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		if sleep(pctx, publishTry/4); pctx.Err() != nil {
			break
		}
	}
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

// How long one result publish waits for JetStream's acknowledgement, and
// for how long in all it is tried before the delivery is sent back.
const (
	publishTry      = time.Second
	publishRetryFor = 8 * time.Second
)

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
