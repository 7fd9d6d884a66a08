package events_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/revoker/revoker/events"
)

// A worker decodes a request, carries it out, and publishes the result document on the
// subject for its outcome.
func Example() {
	body := []byte(`{"id":"inc-4711-1","api_key_id":"a952bcbe-0d1f","reason":"leaked in a public gist",` +
		`"requested_by":"ir-bot","source":"incident-response","requested_at":"2026-11-25T10:00:00Z"}`)
	req, err := events.DecodeRequest(nil, body, "KEY_REVOKE_REQUESTS-1")
	if err != nil {
		fmt.Println(err)
		return
	}

	received := time.Date(2026, 11, 25, 10, 0, 1, 0, time.UTC)
	completed := received.Add(12 * time.Millisecond)
	res := events.Result{
		RequestID: req.ID, RequestSeq: 1, APIKeyID: req.APIKeyID, Outcome: events.Revoked,
		Attempts: 1, Deliveries: 1, HTTPStatus: 204,
		Reason: req.Reason, RequestedBy: req.RequestedBy, Source: req.Source, RequestedAt: req.RequestedAt,
		ReceivedAt: received, CompletedAt: completed, DurationMS: completed.Sub(received).Milliseconds(),
	}
	doc, err := res.MarshalEvent()
	if err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(events.ResultSubject("keys.revoke.results", res.Outcome))
	var pretty bytes.Buffer
	_ = json.Indent(&pretty, doc, "", "  ")
	fmt.Println(pretty.String())

	// A request that must be rejected still yields the id and key id for the result.
	req, err = events.DecodeRequest(nil, []byte(`{"api_key_id":"../x"}`), "KEY_REVOKE_REQUESTS-2")
	fmt.Printf("%s %q: %v\n", req.ID, req.APIKeyID, err)

	// Output:
	// keys.revoke.results.revoked
	// {
	//   "specversion": "1.0",
	//   "id": "inc-4711-1",
	//   "source": "revoker",
	//   "type": "revoker.key.revoked",
	//   "subject": "a952bcbe-0d1f",
	//   "time": "2026-11-25T10:00:01.012Z",
	//   "datacontenttype": "application/json",
	//   "data": {
	//     "request_id": "inc-4711-1",
	//     "request_seq": 1,
	//     "api_key_id": "a952bcbe-0d1f",
	//     "outcome": "revoked",
	//     "attempts": 1,
	//     "deliveries": 1,
	//     "http_status": 204,
	//     "reason": "leaked in a public gist",
	//     "requested_by": "ir-bot",
	//     "source": "incident-response",
	//     "requested_at": "2026-11-25T10:00:00Z",
	//     "received_at": "2026-11-25T10:00:01Z",
	//     "completed_at": "2026-11-25T10:00:01.012Z",
	//     "duration_ms": 12
	//   }
	// }
	// KEY_REVOKE_REQUESTS-2 "../x": invalid request: api_key_id "../x" has characters outside [A-Za-z0-9_-]
}
