// Package events defines the messages revoker exchanges with the systems around it: the
// "revoke key" request it consumes and the result it publishes for every request. It
// decodes and validates requests, encodes and parses results, and knows nothing of NATS
// or Kalshi: the transport hands it a header map and a body, and gets bytes back.
//
// # Requests
//
// [DecodeRequest] accepts a request in any of three forms, at most [MaxRequestSize]
// bytes of UTF-8 JSON:
//
//  1. plain JSON: an object holding the fields described below.
//  2. a CloudEvents 1.0 structured event: a body with "specversion":"1.0", "id",
//     "source", "type" and a "data" object holding the plain fields. "datacontenttype",
//     when present, must name JSON (application/json, text/json or any +json type).
//     "data_base64" is refused: send data as a JSON object.
//  3. a CloudEvents 1.0 binary event: the headers ce-specversion ("1.0"), ce-id,
//     ce-source and ce-type, and the plain JSON as the body. Header names match in any
//     case. A header value that is validly percent-encoded (as the CloudEvents protocol
//     bindings prescribe) is decoded; anything else is taken literally. A
//     ce-datacontenttype or Content-Type header, when present, must name JSON.
//
// A plain request:
//
//	{"id":"inc-4711-1","api_key_id":"a952bcbe-...","reason":"leaked in a public gist",
//	 "requested_by":"ir-bot","source":"incident-response","requested_at":"2026-11-25T10:00:00Z"}
//
// A body whose top-level object has a "specversion" key is a structured event. Otherwise
// a message carrying any of ce-specversion, ce-id, ce-source or ce-type is a binary
// event, and every other message is plain. Of a header with several values the first
// counts; of a header sent under several spellings, the spelling that sorts first.
//
// The fields:
//
//   - id: the request's idempotency key. The first of these that is present is used: the
//     plain "id" (top level, or inside "data" for a structured event), the CloudEvents id
//     (attribute or ce-id header), the Nats-Msg-Id header, and finally the fallback the
//     caller passes ("<stream>-<sequence>"). An id is 1 to [MaxIDLength] bytes with no
//     control character and no leading or trailing space, because it becomes a
//     Nats-Msg-Id header value. An invalid plain or CloudEvents id rejects the request,
//     and the id falls through to the next link of the chain, so a rejected result can
//     still be published. An invalid Nats-Msg-Id is not the request's fault: it is
//     skipped silently. The fallback's form is reserved: an id of the form
//     "<stream>-<digits>", for the stream the caller's fallback names, is invalid as a
//     plain or CloudEvents id (the request is rejected) and skipped as a Nats-Msg-Id (the
//     request then takes its own fallback), so no publisher can claim, from the sequence
//     a PubAck tells it, the id of a later request that names none.
//   - api_key_id: required unless leaked_private_key is given; 1 to 128 characters of
//     [A-Za-z0-9_-] (anything else could change the signed request path). It is kept in
//     its canonical, lower-case form ([CanonicalAPIKeyID]).
//   - leaked_private_key: optional; the PEM of a leaked private key (at most
//     [MaxLeakedKeyLength] bytes, holding a PRIVATE KEY block): revoker finds and deletes
//     the key it belongs to, and api_key_id, if given, is a hint. It is a [LeakedKey],
//     which never prints; whether it parses is the caller's to check.
//   - reason, requested_by, source: optional strings of at most [MaxTextLength] bytes
//     each, with no control character except tab. For a CloudEvent without a "source"
//     field, the CloudEvents source attribute is used.
//   - requested_at: an optional RFC 3339 time. For a CloudEvent without it, the
//     CloudEvents "time" attribute (if any) is used.
//   - not_before: an optional RFC 3339 time before which the key must not be deleted.
//     How far ahead it may be depends on when the request was stored and on the
//     deployment: [CheckNotBefore].
//
// JSON null counts as absent. Unknown fields are ignored; a known field that appears twice
// in the same object is refused, because two parsers could disagree on which one counts.
// Field names match exactly (case-sensitively).
//
// DecodeRequest always returns the best [Request] it can: its ID follows the chain above
// and its APIKeyID is the key id received (canonical, cut to 128 bytes), so that a rejected
// result can name both. When the request must be rejected, the error is an
// [*InvalidRequestError] whose Reason names every problem in plain words.
//
// # Results
//
// Every request ends with one [Result], published as a CloudEvents 1.0 structured JSON
// document made by [Result.MarshalEvent] on the subject [ResultSubject] gives:
//
//	{"specversion":"1.0","id":"inc-4711-1","source":"revoker","type":"revoker.key.revoked",
//	 "subject":"a952bcbe-...","time":"...","datacontenttype":"application/json",
//	 "data":{"request_id":"inc-4711-1","api_key_id":"a952bcbe-...","outcome":"revoked",
//	         "attempts":1,"deliveries":1,"http_status":204,"reason":"...",
//	         "requested_by":"...","source":"...","requested_at":"...","received_at":"...",
//	         "completed_at":"...","duration_ms":12}}
//
// Times are RFC 3339 in UTC with as many fractional digits as they need. http_status is
// left out when no HTTP answer was received; reason, requested_by, source and
// requested_at when the request had none; "error" ({"code","message"}) appears exactly on
// the [Rejected] and [Failed] outcomes. [Result.Validate] checks those rules; MarshalEvent
// refuses a result that breaks them. [ParseResult] reads such a document back.
//
// On NATS a result follows the CloudEvents NATS protocol binding in either [ResultMode]
// ([ResultMessage]): structured, the document as the body with "content-type:
// application/cloudevents+json"; or binary, the data object as the body and every other
// attribute a percent-encoded "ce-" header. [ParseResultMsg] reads a stored message in
// either mode (and one stored before results carried headers); [ResultDoc] gives its
// structured document. subject is left out when the key ID is empty.
//
// # Trace context
//
// A request may carry a W3C traceparent and tracestate: as fields (top level, or in a
// CloudEvent's data), as CloudEvents extension attributes (structured, or ce- headers), or
// as NATS headers. A valid one is carried to the result as the distributed-tracing
// extension attributes; a malformed one is dropped, never a reason to reject ([Trace]).
package events
