package ledger

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/revoker/revoker/events"
)

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

// MaxSchedulesPerName bounds the list of one key (or leaked key): a
// request beyond it is rejected rather than waiting unrecorded.
const MaxSchedulesPerName = 16

// ErrTooManySchedules: the list of the key is full.
var ErrTooManySchedules = errors.New("too many scheduled requests")

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

// NoteSchedule records item in the list of the requests scheduled for
// name, unless there (then, if item is due, it records that delivery as
// the first due one, once), and returns the request's entry as recorded.
// A request not yet listed and not due is listed only if admit allows it.
// Schedules more than keep past their time leave the list.
func (l *Ledger) NoteSchedule(ctx context.Context, name string, item ScheduledRequest, now time.Time, keep time.Duration, admit func(context.Context) error) (ScheduledRequest, error) {
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
			e.Requests = pruneSchedules(e.Requests, now, keep)
			if len(e.Requests) >= MaxSchedulesPerName {
				return ScheduledRequest{}, ErrTooManySchedules
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
		if errors.Is(err, ErrConflict) {
			continue
		}
		return item, err
	}
	return ScheduledRequest{}, ErrConflict
}

func indexSchedule(list []ScheduledRequest, item ScheduledRequest) int {
	for i, s := range list {
		if s.RequestID == item.RequestID && s.RequestSeq == item.RequestSeq {
			return i
		}
	}
	return -1
}

func pruneSchedules(list []ScheduledRequest, now time.Time, keep time.Duration) []ScheduledRequest {
	kept := list[:0]
	for _, s := range list {
		if now.Sub(s.NotBefore) < keep {
			kept = append(kept, s)
		}
	}
	return kept
}

// Scheduled returns the requests the ledger lists as scheduled for the key,
// due or not (for as long as the worker keeps them after their time), or
// none. apiKeyID is canonicalised first.
func (l *Ledger) Scheduled(ctx context.Context, apiKeyID string) ([]ScheduledRequest, error) {
	var e scheduleEntry
	_, _, err := l.getEntry(ctx, scheduleKey(events.CanonicalAPIKeyID(apiKeyID)), &e)
	return e.Requests, err
}
