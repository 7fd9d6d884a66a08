package ledger

import (
	"context"
	"time"

	"github.com/revoker/revoker/kalshi"
)

// Attempt is what the ledger knows of the attempts on one key: the one
// request that may send its DELETE now, under a lease its owner renews
// (worker's attempt.go says how it is taken).
type Attempt struct {
	RequestID string    `json:"request_id"`
	Seq       uint64    `json:"seq"`
	At        time.Time `json:"at"`    // when RequestID took the key
	Until     time.Time `json:"until"` // the lease: another request may take over after it
	// Listed: the account listed the key before RequestID's first attempt;
	// Key is how it listed it (name, scopes, subaccount): after the DELETE
	// nothing else can tell.
	Listed bool           `json:"listed"`
	Key    *kalshi.APIKey `json:"key,omitempty"`
	// Others are earlier requests whose attempts may have deleted the key,
	// the latest last (at most maxOthers).
	Others []OtherAttempt `json:"others,omitempty"`
}

// OtherAttempt is an earlier request whose attempts may have deleted the key.
type OtherAttempt struct {
	RequestID string    `json:"request_id"`
	At        time.Time `json:"at"`
	// Listed and Key are the attempt entry's when that request held it:
	// if it takes the key again, its first attempt is still the one that
	// counts.
	Listed bool           `json:"listed,omitempty"`
	Key    *kalshi.APIKey `json:"key,omitempty"`
}

// maxOthers bounds Attempt.Others.
const maxOthers = 4

// Remember adds o to the earlier requests whose attempts may have deleted
// the key, forgetting the oldest beyond maxOthers.
func (e *Attempt) Remember(o OtherAttempt) {
	e.Others = append(e.Others, o)
	if n := len(e.Others); n > maxOthers {
		e.Others = e.Others[n-maxOthers:]
	}
}

// AttemptOn reads the attempt entry of the key and its revision; found is
// false when there is none.
func (l *Ledger) AttemptOn(ctx context.Context, key string) (e Attempt, rev uint64, found bool, err error) {
	rev, found, err = l.getEntry(ctx, attemptKey(key), &e)
	return e, rev, found, err
}

// PutAttempt writes the key's attempt entry: created when rev is 0, else
// replacing revision rev. ErrConflict means another request came first.
func (l *Ledger) PutAttempt(ctx context.Context, key string, e Attempt, rev uint64) (uint64, error) {
	return l.putEntry(ctx, attemptKey(key), e, rev)
}
