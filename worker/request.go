package worker

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/leaked"
)

// request is a decoded request, its leaked key parsed.
type request struct {
	events.Request
	leaked *leaked.Key // nil unless the request carries a leaked private key
}

// decode decodes a request and parses its leaked key, if any: a key that
// does not parse makes the request invalid.
func decode(header map[string][]string, body []byte, fallbackID string) (request, error) {
	req, err := events.DecodeRequest(header, body, fallbackID)
	r := request{Request: req}
	if err == nil && !req.LeakedKey.IsZero() {
		r.leaked, err = leaked.Parse(req.LeakedKey)
	}
	return r, err
}

// names is what the request's id names in the ledger: the key ID, or the
// leaked key's fingerprint.
func (r request) names() string {
	if r.leaked != nil {
		return r.leaked.Fingerprint()
	}
	return r.APIKeyID
}

func newResult(req request, meta *jetstream.MsgMetadata, received time.Time) *events.Result {
	fingerprint := ""
	if req.leaked != nil {
		fingerprint = req.leaked.Fingerprint()
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

// endTurn ends the turn on the key a leaked key's request found, if it
// took one.
func (v verdict) endTurn() {
	if v.unlock != nil {
		v.unlock()
	}
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
