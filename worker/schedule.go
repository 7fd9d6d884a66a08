package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/provision"
)

// A request with a not_before later than when it was stored is scheduled:
// no DELETE before that time. It waits in the requests stream, not in a
// worker: every delivery before not_before goes straight back with a NAK
// delayed until then (at most Config.ScheduleRecheck). The consumer's
// pending state, replicated with the stream, remembers when to deliver it
// again, so no slot is held and a replica's death loses nothing. Once due,
// the request goes on as any other, but its retry budget starts at
// not_before and only the deliveries since then count towards
// Config.MaxDeliveries: the ledger records the first delivery that found it
// due (ScheduledRequest.DueDelivery).
//
// JetStream message schedules (nats-server 2.12+) were the other way: they
// need the publisher to set headers on a subject of its own, and the message
// they produce is a new one (another sequence, no Nats-Msg-Id, stored at the
// due time, after a signed request's maximum age). A delayed NAK keeps the
// request as it was published.

// scheduleKeep is how long after its not_before a schedule stays in the
// ledger's list: as long as the stream keeps a request by default.
const scheduleKeep = provision.RequestsMaxAge

// schedule applies the request's not_before before anything else is
// recorded for it, and says whether the request goes on (proceed). A
// request not scheduled after it was stored goes on unchanged. Otherwise
// it is rejected when too far ahead, or recorded in the ledger and, until
// due, sent back to wait (v.waiting with v.delay); a ledger that cannot be
// written sends it back as usual. A due request goes on with due, meta as
// its attempt must see it: stored at not_before, delivered only as often
// as since then. res counts those deliveries too.
func (w *Worker) schedule(ctx context.Context, meta *jetstream.MsgMetadata, req request, res *events.Result) (due *jetstream.MsgMetadata, v verdict, proceed bool) {
	if !req.Scheduled(meta.Timestamp) {
		return meta, verdict{}, true
	}
	limit, why, err := w.scheduleLimit(ctx)
	if err != nil {
		w.cfg.Logger.Warn("cannot read the requests stream's max age; the scheduled request will be delivered again",
			"request_id", req.ID, "stream_seq", meta.Sequence.Stream, "err", err)
		return meta, verdict{}, false
	}
	if err := events.CheckNotBefore(req.NotBefore, meta.Timestamp, limit, why); err != nil {
		return meta, untrusted(res, meta, events.CodeInvalidRequest, err.Error()), false
	}
	now := time.Now()
	item := ledger.ScheduledRequest{RequestID: req.ID, RequestSeq: meta.Sequence.Stream, NotBefore: req.NotBefore}
	if !now.Before(req.NotBefore) {
		item.DueDelivery = meta.NumDelivered
	}
	got, err := w.ledger.NoteSchedule(ctx, req.names(), item, now, scheduleKeep, w.admitSchedule)
	var full *scheduleFullError
	switch {
	case errors.Is(err, ledger.ErrTooManySchedules):
		return meta, untrusted(res, meta, events.CodeInvalidRequest, fmt.Sprintf(
			"not scheduled: %d requests for %s already wait for their not_before; at most %d may",
			ledger.MaxSchedulesPerName, describeNamed(req.names()), ledger.MaxSchedulesPerName)), false
	case errors.As(err, &full):
		return meta, untrusted(res, meta, events.CodeInvalidRequest, full.Error()), false
	case err != nil:
		if ctx.Err() == nil {
			w.cfg.Logger.Warn("ledger unavailable; the scheduled request will be delivered again",
				"request_id", req.ID, "stream_seq", meta.Sequence.Stream, "err", err)
		}
		return meta, verdict{}, false
	case item.DueDelivery == 0:
		return meta, verdict{waiting: true, delay: min(req.NotBefore.Sub(now), w.cfg.ScheduleRecheck)}, false
	}
	d := *meta
	d.Timestamp = req.NotBefore
	if got.DueDelivery > 0 && got.DueDelivery <= d.NumDelivered { // a recreated consumer counts afresh
		d.NumDelivered -= got.DueDelivery - 1
	}
	res.Deliveries = int(d.NumDelivered)
	return &d, verdict{}, true
}

// scheduleLimit is how far after it was stored a request may be scheduled,
// and what sets that: Config.MaxSchedule, or less when the requests stream
// would drop the request (its max age) before it could end, within the
// retry budget and an hour, after its not_before.
func (w *Worker) scheduleLimit(ctx context.Context) (time.Duration, string, error) {
	keep, err := w.sched.requestsKeep(ctx, w.js, w.cfg.RequestsStream)
	if err != nil {
		return 0, "", err
	}
	if byStream := keep - w.cfg.MaxRetry - time.Hour; keep > 0 && byStream < w.cfg.MaxSchedule {
		return max(byStream, 0), fmt.Sprintf("the stream %s keeps a request %s, and a request must end within REVOKER_MAX_RETRY + 1h of its not_before",
			w.cfg.RequestsStream, events.Span(keep)), nil
	}
	return w.cfg.MaxSchedule, "REVOKER_MAX_SCHEDULE", nil
}

// schedState caches the requests stream's max age for scheduleLimit.
type schedState struct {
	mu   sync.Mutex
	keep time.Duration // 0: the stream keeps requests without a limit
	read time.Time     // zero until first read
}

// requestsKeep returns the requests stream's max age, read at most once a
// minute (a failed read keeps the last one); an error until it was read once.
func (s *schedState) requestsKeep(ctx context.Context, js jetstream.JetStream, stream string) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.read.IsZero() && time.Since(s.read) < time.Minute {
		return s.keep, nil
	}
	ctx, cancel := context.WithTimeout(ctx, ledger.CallTimeout)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	switch {
	case err == nil:
		s.keep, s.read = st.CachedInfo().Config.MaxAge, time.Now()
	case s.read.IsZero():
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	return s.keep, nil
}

// admitSchedule refuses a request that would start waiting while the
// consumer holds more than half its max ack pending unacknowledged: a
// waiting request keeps its slot (a delayed NAK does not give it back), and
// a consumer at its max delivers nothing more, so scheduled requests may
// fill at most half; the rest is for requests that act now.
func (w *Worker) admitSchedule(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ledger.CallTimeout)
	defer cancel()
	c, err := w.js.Consumer(ctx, w.cfg.RequestsStream, w.cfg.Consumer)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", w.cfg.Consumer, err)
	}
	info := c.CachedInfo()
	if max := info.Config.MaxAckPending; max > 0 && info.NumAckPending > max/2 {
		return &scheduleFullError{consumer: w.cfg.Consumer, pending: info.NumAckPending, max: max}
	}
	return nil
}

// scheduleFullError is admitSchedule's refusal.
type scheduleFullError struct {
	consumer     string
	pending, max int
}

func (e *scheduleFullError) Error() string {
	return fmt.Sprintf("not scheduled: consumer %s holds %d unacknowledged requests of at most %d; a scheduled request holds one until its not_before, and half are kept for requests that act now: send it closer to its time",
		e.consumer, e.pending, e.max)
}
