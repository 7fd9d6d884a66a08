package events

import "testing"

// No id a request names may take the form of a fallback id of the stream it
// arrived on: a publisher learns its sequence from the PubAck and could
// otherwise claim the id of the next request that names none.
func TestDecodeReservedFallbackForm(t *testing.T) {
	const squat = "KEY_REVOKE_REQUESTS-43" // the next fallback after fallback (…-42)
	reserved := []string{"reserves for requests without an id"}
	runDecodeCases(t, []decodeCase{
		{name: "plain id", body: `{"id":"` + squat + `","api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{`id "KEY_REVOKE_REQUESTS-43" has the form "KEY_REVOKE_REQUESTS-<sequence>"`}},
		{name: "its own fallback id", body: `{"id":"` + fallback + `","api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: reserved},
		{name: "leading zeros", body: `{"id":"KEY_REVOKE_REQUESTS-0043","api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: reserved},
		{name: "plain id in data", body: `{"specversion":"1.0","id":"ce-1","source":"ir","type":"t","data":{"id":"` + squat + `","api_key_id":"k"}}`,
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{"data.id", "reserves"}},
		{name: "structured CloudEvents id", body: `{"specversion":"1.0","id":"` + squat + `","source":"ir","type":"t","data":{"api_key_id":"k"}}`,
			want: Request{ID: fallback, APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: reserved},
		{name: "ce-id header", header: ceHdr("ce-id", squat), body: `{"api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{"ce-id header", "reserves"}},
		// A Nats-Msg-Id is skipped like any unusable one: the request takes
		// its own fallback, which no other message can have.
		{name: "Nats-Msg-Id is skipped", header: hdr("Nats-Msg-Id", squat), body: `{"api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}},

		// Only that exact form is reserved.
		{name: "another stream's form", body: `{"id":"inc-4711","api_key_id":"k"}`, want: Request{ID: "inc-4711", APIKeyID: "k"}},
		{name: "other case", body: `{"id":"key_revoke_requests-43","api_key_id":"k"}`, want: Request{ID: "key_revoke_requests-43", APIKeyID: "k"}},
		{name: "suffix after digits", body: `{"id":"KEY_REVOKE_REQUESTS-43-1","api_key_id":"k"}`, want: Request{ID: "KEY_REVOKE_REQUESTS-43-1", APIKeyID: "k"}},
		{name: "no digits", body: `{"id":"KEY_REVOKE_REQUESTS-","api_key_id":"k"}`, want: Request{ID: "KEY_REVOKE_REQUESTS-", APIKeyID: "k"}},
		{name: "prefixed", body: `{"id":"X-KEY_REVOKE_REQUESTS-43","api_key_id":"k"}`, want: Request{ID: "X-KEY_REVOKE_REQUESTS-43", APIKeyID: "k"}},
		{name: "Nats-Msg-Id of another form", header: hdr("Nats-Msg-Id", "KEY_REVOKE_REQUESTS-43x"), body: `{"api_key_id":"k"}`,
			want: Request{ID: "KEY_REVOKE_REQUESTS-43x", APIKeyID: "k"}},
	})
}

func TestFallbackPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"KEY_REVOKE_REQUESTS-42": "KEY_REVOKE_REQUESTS-",
		FallbackID("S-1", 7):     "S-1-",
		"S-":                     "",
		"-5":                     "",
		"S-5x":                   "",
		"":                       "",
	} {
		if got := fallbackPrefix(in); got != want {
			t.Errorf("fallbackPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}
