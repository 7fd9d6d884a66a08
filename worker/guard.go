package worker

import (
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/ledger"
)

// guard applies the key's guards and the delivery limit before anything
// is recorded for the request, and returns what this message proposes to
// claim: a refusal is decided at once. The key's guards come first: a
// copy taking over drops a max_deliveries refusal, never a guard's.
func (w *Worker) guard(meta *jetstream.MsgMetadata, req request, res *events.Result) ledger.Request {
	proposal := ledger.Request{Key: req.names(), Seq: meta.Sequence.Stream, ClaimedAt: time.Now()}
	var refusal *events.Error
	if req.leaked == nil {
		if refusal = w.guardKey(req.APIKeyID); refusal != nil {
			// Refused before any Kalshi call: a few hundred bytes that expire.
			proposal.Refused, proposal.Message = refusal.Code, refusal.Message
		}
	}
	if refusal == nil {
		refusal = w.guardDeliveries(meta)
	}
	if refusal != nil {
		refuse(res, refusal.Code, refusal.Message)
		if proposal.Refused == "" { // max_deliveries: the whole result is kept
			proposal.Result = w.encode(res)
		}
	} else {
		// Kept for replicas of earlier versions during a rolling upgrade:
		// they read it as "a DELETE may have been sent".
		proposal.Attempted = req.leaked == nil
	}
	return proposal
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

// guardKey is KeyGuard with the worker's settings, and its message; nil
// when the key may be deleted.
func (w *Worker) guardKey(keyID string) *events.Error {
	code := KeyGuard(keyID, w.cfg.SelfKeyID, w.cfg.AllowSelfRevoke, w.cfg.ProtectedKeys)
	var message string
	switch code {
	case "":
		return nil
	case events.CodeSelfRevocationRefused:
		message = fmt.Sprintf("%s is the key this worker signs with; set REVOKER_ALLOW_SELF_REVOKE=true to allow it", keyID)
	case events.CodeProtectedKey:
		message = fmt.Sprintf("%s is listed in REVOKER_PROTECTED_KEYS", keyID)
	}
	return &events.Error{Code: code, Message: message}
}

// guardDeliveries refuses a request delivered too often; nil when it may
// go on.
func (w *Worker) guardDeliveries(meta *jetstream.MsgMetadata) *events.Error {
	if int(meta.NumDelivered) < w.cfg.MaxDeliveries {
		return nil
	}
	return &events.Error{Code: events.CodeMaxDeliveries, Message: fmt.Sprintf(
		"delivered %d times without a stored result; not attempted again", meta.NumDelivered)}
}
