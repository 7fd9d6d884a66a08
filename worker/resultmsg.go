package worker

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/provision"
)

// resultMsg is the message that stores v's result: on its outcome's results
// subject (or the untrusted stream's), laid out in the configured results
// mode, under v.msgID so that the stream drops a repeat.
func (w *Worker) resultMsg(v verdict) *nats.Msg {
	subject := events.ResultSubject(w.cfg.ResultsSubject, v.res.Outcome)
	if v.untrusted {
		subject = provision.UntrustedResultSubject(v.res.Error.Code)
	}
	h, body, err := events.ResultMessage(v.doc, w.cfg.ResultsMode)
	if err != nil {
		// Only a document that is not MarshalEvent's could get here; it is
		// stored as it is rather than not at all.
		w.cfg.Logger.Error("cannot lay out a result in binary mode; storing it structured",
			"request_id", v.res.RequestID, "err", err)
		h, body, _ = events.ResultMessage(v.doc, events.Structured)
	}
	m := &nats.Msg{Subject: subject, Header: nats.Header(h), Data: body}
	m.Header.Set(jetstream.MsgIDHeader, v.msgID)
	return m
}

// traceArgs are the log arguments that name a request's trace context, for
// the log lines of one request; none when it carried none.
func traceArgs(t events.Trace) []any {
	if t.IsZero() {
		return nil
	}
	return []any{"traceparent", t.Parent}
}
