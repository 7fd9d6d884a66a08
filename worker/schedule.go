package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
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

// maxSchedulesPerName bounds the list of one key (or leaked key): a
// request beyond it is rejected rather than waiting unrecorded.
const maxSchedulesPerName = 16

// ScheduledRequest is a request the ledger knows to be scheduled.
type ScheduledRequest struct {
	RequestID  string    `json:"request_id"`
	RequestSeq uint64    `json:"request_seq"`
	NotBefore  time.Time `json:"not_before"`
	// DueDelivery is the first delivery of the request at or after
	// NotBefore; the ones before it were spent waiting. 0 until then.
	DueDelivery uint64 `json:"due_delivery,omitempty"`
}

// scheduleEntry is the ledger's list of the scheduled requests of one key
// (or leaked key), under scheduleKey.
type scheduleEntry struct {
	Requests []ScheduledRequest `json:"requests"`
}

// scheduleKey is where the ledger lists the requests scheduled for what a
// request names: key.<id>.scheduled (readable by the roles that read key
// records, for status) or leaked.<sha256 hex>.scheduled. A key ID has no
// dot, so neither collides with a key record.
func scheduleKey(name string) string {
	if fp, ok := strings.CutPrefix(name, "sha256:"); ok {
		return leakedKeyKey(fp) + ".scheduled"
	}
	return keyKey(name) + ".scheduled"
}

// errTooManySchedules: the list of the key is full.
var errTooManySchedules = errors.New("too many scheduled requests")

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
	item := ScheduledRequest{RequestID: req.ID, RequestSeq: meta.Sequence.Stream, NotBefore: req.NotBefore}
	if !now.Before(req.NotBefore) {
		item.DueDelivery = meta.NumDelivered
	}
	got, err := w.ledger.noteSchedule(ctx, req.names(), item, now, w.admitSchedule)
	var full *scheduleFullError
	switch {
	case errors.Is(err, errTooManySchedules):
		return meta, untrusted(res, meta, events.CodeInvalidRequest, fmt.Sprintf(
			"not scheduled: %d requests for %s already wait for their not_before; at most %d may",
			maxSchedulesPerName, describeNamed(req.names()), maxSchedulesPerName)), false
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
	ctx, cancel := context.WithTimeout(ctx, ledgerTimeout)
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
	ctx, cancel := context.WithTimeout(ctx, ledgerTimeout)
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

// noteSchedule records item in the list of the requests scheduled for
// name, unless there (then, if item is due, it records that delivery as
// the first due one, once), and returns the request's entry as recorded.
// A request not yet listed and not due is listed only if admit allows it.
// Schedules more than scheduleKeep past their time leave the list.
func (l *ledger) noteSchedule(ctx context.Context, name string, item ScheduledRequest, now time.Time, admit func(context.Context) error) (ScheduledRequest, error) {
	admitted := false
	key := scheduleKey(name)
	for range 3 {
		var e scheduleEntry
		rev, _, err := l.getEntry(ctx, key, &e)
		if err != nil {
			return ScheduledRequest{}, err
		}
		i := indexSchedule(e.Requests, item)
		switch {
		case i >= 0 && (e.Requests[i].DueDelivery > 0 || item.DueDelivery == 0):
			return e.Requests[i], nil
		case i >= 0:
			e.Requests[i].DueDelivery = item.DueDelivery
		default:
			e.Requests = pruneSchedules(e.Requests, now)
			if len(e.Requests) >= maxSchedulesPerName {
				return ScheduledRequest{}, errTooManySchedules
			}
			if item.DueDelivery == 0 && !admitted {
				if err := admit(ctx); err != nil {
					return ScheduledRequest{}, err
				}
				admitted = true
			}
			e.Requests = append(e.Requests, item)
		}
		_, err = l.putEntry(ctx, key, e, rev)
		if errors.Is(err, errLedgerConflict) {
			continue
		}
		return item, err
	}
	return ScheduledRequest{}, errLedgerConflict
}

func indexSchedule(list []ScheduledRequest, item ScheduledRequest) int {
	for i, s := range list {
		if s.RequestID == item.RequestID && s.RequestSeq == item.RequestSeq {
			return i
		}
	}
	return -1
}

func pruneSchedules(list []ScheduledRequest, now time.Time) []ScheduledRequest {
	kept := list[:0]
	for _, s := range list {
		if now.Sub(s.NotBefore) < scheduleKeep {
			kept = append(kept, s)
		}
	}
	return kept
}

// Scheduled returns the requests the ledger lists as scheduled for the key,
// due or not (for as long as scheduleKeep after their time), or none.
func (k *KeyLedger) Scheduled(ctx context.Context, apiKeyID string) ([]ScheduledRequest, error) {
	var e scheduleEntry
	_, _, err := k.l.getEntry(ctx, scheduleKey(events.CanonicalAPIKeyID(apiKeyID)), &e)
	return e.Requests, err
}
