package events

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// hdr builds a header from name, value pairs.
func hdr(kv ...string) map[string][]string {
	h := make(map[string][]string)
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

// ceHdr is a complete set of binary CloudEvents headers; the pairs given add to or
// replace them.
func ceHdr(kv ...string) map[string][]string {
	h := hdr("ce-specversion", "1.0", "ce-id", "ce-1", "ce-source", "ir", "ce-type", "com.example.revoke")
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = []string{kv[i+1]}
	}
	return h
}

const fallback = "KEY_REVOKE_REQUESTS-42"

var requestedAt = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

type decodeCase struct {
	name    string
	header  map[string][]string
	body    string
	want    Request
	wantErr []string // substrings of the reason; nil means no error
}

func runDecodeCases(t *testing.T, cases []decodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRequest(tc.header, []byte(tc.body), fallback)
			checkRequest(t, got, tc.want)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				if got.APIKeyID == "" || checkAPIKeyID("", got.APIKeyID) != "" {
					t.Errorf("accepted an invalid api_key_id %q", got.APIKeyID)
				}
				return
			}
			var ire *InvalidRequestError
			if !errors.As(err, &ire) {
				t.Fatalf("err = %v (%T), want *InvalidRequestError", err, err)
			}
			if !strings.HasPrefix(err.Error(), "invalid request: ") {
				t.Errorf("err.Error() = %q, want the prefix %q", err.Error(), "invalid request: ")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(ire.Reason, w) {
					t.Errorf("reason = %q, want it to contain %q", ire.Reason, w)
				}
			}
		})
	}
}

func checkRequest(t *testing.T, got, want Request) {
	t.Helper()
	if got.ID != want.ID || got.APIKeyID != want.APIKeyID || got.Reason != want.Reason ||
		got.RequestedBy != want.RequestedBy || got.Source != want.Source ||
		!got.RequestedAt.Equal(want.RequestedAt) || got.CloudEvent != want.CloudEvent {
		t.Errorf("request =\n%+v\nwant\n%+v", got, want)
	}
	if got.RequestedAt.Location() != time.UTC {
		t.Errorf("RequestedAt location = %v, want UTC", got.RequestedAt.Location())
	}
}

func TestDecodePlain(t *testing.T) {
	runDecodeCases(t, []decodeCase{
		{
			name: "all fields",
			body: `{"id":"inc-4711-1","api_key_id":"a952bcbe-0d1f-4f0e-9c3a-1b2c3d4e5f60","reason":"leaked in a public gist",` +
				`"requested_by":"ir-bot","source":"incident-response","requested_at":"2026-11-25T10:00:00Z"}`,
			want: Request{ID: "inc-4711-1", APIKeyID: "a952bcbe-0d1f-4f0e-9c3a-1b2c3d4e5f60", Reason: "leaked in a public gist",
				RequestedBy: "ir-bot", Source: "incident-response", RequestedAt: requestedAt},
		},
		{
			name: "only api_key_id",
			body: `{"api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"},
		},
		{
			name: "whitespace everywhere",
			body: " \n{ \"api_key_id\" :\t\"k\" , \"id\" : \"x\" }\n ",
			want: Request{ID: "x", APIKeyID: "k"},
		},
		{
			name: "unknown fields ignored",
			body: `{"api_key_id":"k","extra":{"deep":[1,2,{"x":null}]},"n":1e999999,"API_KEY_ID":"bad/"}`,
			want: Request{ID: fallback, APIKeyID: "k"},
		},
		{
			name: "escaped key and values",
			body: `{"api\u005fkey_id":"\u006b","reason":"caf\u00e9 \"quoted\" \\ tab\there","id":"inc-\u00e9"}`,
			want: Request{ID: "inc-é", APIKeyID: "k", Reason: "café \"quoted\" \\ tab\there"},
		},
		{
			name: "null optional fields are absent",
			body: `{"id":null,"api_key_id":"k","reason":null,"requested_by":null,"source":null,"requested_at":null}`,
			want: Request{ID: fallback, APIKeyID: "k"},
		},
		{
			name: "requested_at with offset and fraction becomes UTC",
			body: `{"api_key_id":"k","requested_at":"2026-11-25T11:30:00.123456789+01:30"}`,
			want: Request{ID: fallback, APIKeyID: "k", RequestedAt: requestedAt.Add(123456789 * time.Nanosecond)},
		},
		{
			name: "reason at the limit, with tabs and non-ASCII",
			body: `{"api_key_id":"k","reason":"` + strings.Repeat("é", MaxTextLength/2-1) + "\\t\\t" + `"}`,
			want: Request{ID: fallback, APIKeyID: "k", Reason: strings.Repeat("é", MaxTextLength/2-1) + "\t\t"},
		},
		{
			name: "api_key_id of 128 characters",
			body: `{"api_key_id":"` + strings.Repeat("aZ0_-", 25) + `abc"}`,
			want: Request{ID: fallback, APIKeyID: strings.Repeat("az0_-", 25) + "abc"}, // canonical: lower case
		},
		{
			name: "body of exactly MaxRequestSize bytes",
			body: `{"api_key_id":"k"}` + strings.Repeat(" ", MaxRequestSize-len(`{"api_key_id":"k"}`)),
			want: Request{ID: fallback, APIKeyID: "k"},
		},
		{
			name: "moderately nested unknown field",
			body: `{"api_key_id":"k","x":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}`,
			want: Request{ID: fallback, APIKeyID: "k"},
		},
		{
			name: "lone surrogate escape decodes to U+FFFD",
			body: `{"api_key_id":"k","reason":"\ud800"}`,
			want: Request{ID: fallback, APIKeyID: "k", Reason: "\uFFFD"},
		},
		{
			name: "data without specversion is just an unknown field",
			body: `{"api_key_id":"k","data":{"api_key_id":"other"}}`,
			want: Request{ID: fallback, APIKeyID: "k"},
		},
	})
}

func TestDecodeIDChain(t *testing.T) {
	long := strings.Repeat("i", MaxIDLength)
	runDecodeCases(t, []decodeCase{
		{name: "plain id wins over Nats-Msg-Id", header: hdr("Nats-Msg-Id", "msg-1"),
			body: `{"id":"plain","api_key_id":"k"}`, want: Request{ID: "plain", APIKeyID: "k"}},
		{name: "Nats-Msg-Id when no id", header: hdr("Nats-Msg-Id", "msg-1"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "msg-1", APIKeyID: "k"}},
		{name: "Nats-Msg-Id in any case", header: hdr("nats-msg-id", "msg-1"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "msg-1", APIKeyID: "k"}},
		{name: "fallback when nothing else", header: hdr("Other", "x"),
			body: `{"api_key_id":"k"}`, want: Request{ID: fallback, APIKeyID: "k"}},
		{name: "empty header slice is absent", header: map[string][]string{"Nats-Msg-Id": {}},
			body: `{"api_key_id":"k"}`, want: Request{ID: fallback, APIKeyID: "k"}},
		{name: "invalid Nats-Msg-Id is skipped without rejecting", header: hdr("Nats-Msg-Id", long+"x"),
			body: `{"api_key_id":"k"}`, want: Request{ID: fallback, APIKeyID: "k"}},
		{name: "id of MaxIDLength bytes", body: `{"id":"` + long + `","api_key_id":"k"}`,
			want: Request{ID: long, APIKeyID: "k"}},
		{name: "id too long falls through", header: hdr("Nats-Msg-Id", "msg-1"),
			body: `{"id":"` + long + `x","api_key_id":"k"}`, want: Request{ID: "msg-1", APIKeyID: "k"},
			wantErr: []string{"id is 257 bytes; at most 256 are allowed"}},
		{name: "empty id falls through", header: hdr("Nats-Msg-Id", "msg-1"),
			body: `{"id":"","api_key_id":"k"}`, want: Request{ID: "msg-1", APIKeyID: "k"},
			wantErr: []string{"id is empty"}},
		{name: "id with CR LF", body: `{"id":"a\r\nNats-Msg-Id: b","api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{`id "a\r\nNats-Msg-Id: b" contains a control character`}},
		{name: "id with NUL", body: `{"id":"a\u0000b","api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"id", "control character"}},
		{name: "id with tab", body: `{"id":"a\tb","api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"control character"}},
		{name: "id with C1 control", body: `{"id":"a\u0085b","api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"control character"}},
		{name: "id with leading space", body: `{"id":" a","api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{`id " a" starts or ends with a space`}},
		{name: "id with trailing space", body: `{"id":"a ","api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"starts or ends with a space"}},
		{name: "id a number", header: hdr("Nats-Msg-Id", "msg-1"), body: `{"id":17,"api_key_id":"k"}`,
			want: Request{ID: "msg-1", APIKeyID: "k"}, wantErr: []string{"id must be a string, not a number"}},
		{name: "id an object", body: `{"id":{},"api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"id must be a string, not an object"}},
		{name: "unparsable body still takes the id from the headers", header: hdr("Nats-Msg-Id", "msg-1"),
			body: `{"id":"plain",`, want: Request{ID: "msg-1"}, wantErr: []string{"body is not valid JSON"}},
	})
}

func TestDecodeValidation(t *testing.T) {
	huge := strings.Repeat("x", 10000)
	runDecodeCases(t, []decodeCase{
		{name: "api_key_id missing", body: `{"reason":"r"}`,
			want: Request{ID: fallback, Reason: "r"}, wantErr: []string{"api_key_id is required"}},
		{name: "api_key_id null", body: `{"api_key_id":null}`,
			want: Request{ID: fallback}, wantErr: []string{"api_key_id is required"}},
		{name: "api_key_id empty", body: `{"api_key_id":""}`,
			want: Request{ID: fallback}, wantErr: []string{"api_key_id is empty"}},
		{name: "api_key_id a number", body: `{"api_key_id":12345}`,
			want: Request{ID: fallback}, wantErr: []string{"api_key_id must be a string, not a number"}},
		{name: "api_key_id a huge number", body: `{"api_key_id":1e999999999}`,
			want: Request{ID: fallback}, wantErr: []string{"api_key_id must be a string, not a number"}},
		{name: "api_key_id a boolean", body: `{"api_key_id":true}`,
			want: Request{ID: fallback}, wantErr: []string{"api_key_id must be a string, not a boolean"}},
		{name: "api_key_id an array", body: `{"api_key_id":["k"]}`,
			want: Request{ID: fallback}, wantErr: []string{"api_key_id must be a string, not an array"}},
		{name: "api_key_id in upper case is canonical", body: `{"api_key_id":"A952BCBE-EC3B"}`,
			want: Request{ID: fallback, APIKeyID: "a952bcbe-ec3b"}},
		{name: "id with the reserved prefix", body: `{"id":"untrusted-KEY_REVOKE_REQUESTS-5","api_key_id":"k"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{`id "untrusted-KEY_REVOKE_REQUESTS-5" starts with "untrusted-", which revoker reserves`}},
		{name: "requested_at before year 1 in UTC", body: `{"api_key_id":"k","requested_at":"0001-01-01T00:00:00+01:00"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"requested_at", "outside the years 0001 to 9999 in UTC"}},
		{name: "api_key_id with a slash", body: `{"api_key_id":"a/b"}`,
			want: Request{ID: fallback, APIKeyID: "a/b"}, wantErr: []string{`api_key_id "a/b" has characters outside [A-Za-z0-9_-]`}},
		{name: "api_key_id path traversal", body: `{"api_key_id":"../x"}`,
			want: Request{ID: fallback, APIKeyID: "../x"}, wantErr: []string{`api_key_id "../x" has characters outside`}},
		{name: "api_key_id percent-encoded slash", body: `{"api_key_id":"a%2Fb"}`,
			want: Request{ID: fallback, APIKeyID: "a%2fb"}, wantErr: []string{`"a%2Fb" has characters outside`}},
		{name: "api_key_id query", body: `{"api_key_id":"k?x=1"}`,
			want: Request{ID: fallback, APIKeyID: "k?x=1"}, wantErr: []string{"has characters outside"}},
		{name: "api_key_id with a space", body: `{"api_key_id":"a b"}`,
			want: Request{ID: fallback, APIKeyID: "a b"}, wantErr: []string{"has characters outside"}},
		{name: "api_key_id with NUL", body: `{"api_key_id":"a\u0000b"}`,
			want: Request{ID: fallback, APIKeyID: "a\x00b"}, wantErr: []string{`api_key_id "a\x00b" has characters outside`}},
		{name: "api_key_id non-ASCII look-alike", body: `{"api_key_id":"kеy"}`,
			want: Request{ID: fallback, APIKeyID: "kеy"}, wantErr: []string{"has characters outside"}},
		{name: "api_key_id of 129 characters", body: `{"api_key_id":"` + strings.Repeat("a", 129) + `"}`,
			want: Request{ID: fallback, APIKeyID: strings.Repeat("a", 128)}, wantErr: []string{"api_key_id is 129 characters; at most 128 are allowed"}},
		{name: "huge api_key_id is cut and quoted short", body: `{"api_key_id":"/` + huge + `"}`,
			want: Request{ID: fallback, APIKeyID: "/" + huge[:127]}, wantErr: []string{`api_key_id "/xxx`, `"... has characters outside`}},
		{name: "api_key_id cut on a rune boundary", body: `{"api_key_id":"` + strings.Repeat("é", 100) + `"}`,
			want: Request{ID: fallback, APIKeyID: strings.Repeat("é", 64)}, wantErr: []string{"has characters outside"}},
		{name: "reason too long is cut", body: `{"api_key_id":"k","reason":"` + huge + `"}`,
			want: Request{ID: fallback, APIKeyID: "k", Reason: huge[:MaxTextLength]}, wantErr: []string{"reason is 10000 bytes; at most 1024 are allowed"}},
		{name: "requested_by too long", body: `{"api_key_id":"k","requested_by":"` + huge[:1025] + `"}`,
			want: Request{ID: fallback, APIKeyID: "k", RequestedBy: huge[:1024]}, wantErr: []string{"requested_by is 1025 bytes"}},
		{name: "source too long", body: `{"api_key_id":"k","source":"` + huge[:1025] + `"}`,
			want: Request{ID: fallback, APIKeyID: "k", Source: huge[:1024]}, wantErr: []string{"source is 1025 bytes"}},
		{name: "reason with a newline", body: `{"api_key_id":"k","reason":"a\nb"}`,
			want: Request{ID: fallback, APIKeyID: "k", Reason: "a\nb"}, wantErr: []string{`reason "a\nb" contains a control character`}},
		{name: "reason with DEL", body: `{"api_key_id":"k","reason":"a\u007fb"}`,
			want: Request{ID: fallback, APIKeyID: "k", Reason: "a\x7fb"}, wantErr: []string{"reason", "control character"}},
		{name: "reason with C1 NEL", body: `{"api_key_id":"k","reason":"a\u0085b"}`,
			want: Request{ID: fallback, APIKeyID: "k", Reason: "a\u0085b"}, wantErr: []string{"reason", "control character"}},
		{name: "requested_by with escape sequence", body: `{"api_key_id":"k","requested_by":"\u001b[31mred"}`,
			want: Request{ID: fallback, APIKeyID: "k", RequestedBy: "\x1b[31mred"}, wantErr: []string{"requested_by", "control character"}},
		{name: "source with NUL", body: `{"api_key_id":"k","source":"\u0000"}`,
			want: Request{ID: fallback, APIKeyID: "k", Source: "\x00"}, wantErr: []string{"source", "control character"}},
		{name: "reason a number", body: `{"api_key_id":"k","reason":1}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"reason must be a string, not a number"}},
		{name: "requested_by an object", body: `{"api_key_id":"k","requested_by":{}}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"requested_by must be a string, not an object"}},
		{name: "source an array", body: `{"api_key_id":"k","source":[]}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"source must be a string, not an array"}},
		{name: "requested_at not a time", body: `{"api_key_id":"k","requested_at":"yesterday"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{`requested_at "yesterday" is not an RFC 3339 time`}},
		{name: "requested_at without zone", body: `{"api_key_id":"k","requested_at":"2026-11-25T10:00:00"}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"is not an RFC 3339 time"}},
		{name: "requested_at a number", body: `{"api_key_id":"k","requested_at":1764064800}`,
			want: Request{ID: fallback, APIKeyID: "k"}, wantErr: []string{"requested_at must be a string, not a number"}},
		{name: "duplicate api_key_id", body: `{"api_key_id":"k","api_key_id":"other"}`,
			want: Request{ID: fallback, APIKeyID: "other"}, wantErr: []string{`body has the key "api_key_id" more than once`}},
		{name: "duplicate by escape", body: `{"id":"a","i\u0064":"b","api_key_id":"k"}`,
			want: Request{ID: "b", APIKeyID: "k"}, wantErr: []string{`body has the key "id" more than once`}},
		{name: "every problem is named", body: `{"id":"","api_key_id":"a/b","reason":1,"requested_at":"x"}`,
			want:    Request{ID: fallback, APIKeyID: "a/b"},
			wantErr: []string{"id is empty", `api_key_id "a/b"`, "reason must be a string", "requested_at \"x\""}},
	})
}

func TestDecodeBody(t *testing.T) {
	deep := `{"api_key_id":"k","x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`
	runDecodeCases(t, []decodeCase{
		{name: "empty", body: ``, want: Request{ID: fallback}, wantErr: []string{"body is empty"}},
		{name: "only spaces", body: " \n\t ", want: Request{ID: fallback}, wantErr: []string{"body is empty"}},
		{name: "too large", header: hdr("Nats-Msg-Id", "msg-1"),
			body: `{"api_key_id":"k"}` + strings.Repeat(" ", MaxRequestSize), want: Request{ID: "msg-1"},
			wantErr: []string{"body is 65554 bytes; at most 65536 are allowed"}},
		{name: "invalid UTF-8", body: "{\"api_key_id\":\"k\",\"reason\":\"\xff\xfe\"}",
			want: Request{ID: fallback}, wantErr: []string{"body is not valid UTF-8"}},
		{name: "not JSON", body: `api_key_id=k`, want: Request{ID: fallback}, wantErr: []string{"body is not valid JSON"}},
		{name: "truncated", body: `{"api_key_id":"k"`, want: Request{ID: fallback}, wantErr: []string{"body is not valid JSON: unexpected end"}},
		{name: "an array", body: `[{"api_key_id":"k"}]`, want: Request{ID: fallback}, wantErr: []string{"body must be a JSON object, not an array"}},
		{name: "a string", body: `"k"`, want: Request{ID: fallback}, wantErr: []string{"body must be a JSON object, not a string"}},
		{name: "a number", body: `123456789012345678901234567890`, want: Request{ID: fallback}, wantErr: []string{"body must be a JSON object, not a number"}},
		{name: "null", body: `null`, want: Request{ID: fallback}, wantErr: []string{"body must be a JSON object, not null"}},
		{name: "trailing garbage", body: `{"api_key_id":"k"} x`, want: Request{ID: fallback}, wantErr: []string{"body has more after the JSON object"}},
		{name: "two objects", body: `{"api_key_id":"k"}{"api_key_id":"j"}`, want: Request{ID: fallback}, wantErr: []string{"body has more after the JSON object"}},
		{name: "raw NUL", body: "{\"api_key_id\":\"k\x00\"}", want: Request{ID: fallback}, wantErr: []string{"body is not valid JSON"}},
		{name: "raw newline in a string", body: "{\"api_key_id\":\"k\n\"}", want: Request{ID: fallback}, wantErr: []string{"body is not valid JSON"}},
		{name: "too deeply nested", body: deep, want: Request{ID: fallback}, wantErr: []string{"body is not valid JSON", "depth"}},
		{name: "single quotes", body: `{'api_key_id':'k'}`, want: Request{ID: fallback}, wantErr: []string{"body is not valid JSON"}},
	})
}

func TestDecodeStructured(t *testing.T) {
	ce := func(attrs, data string) string {
		return `{"specversion":"1.0","id":"ce-1","source":"ir","type":"com.example.revoke"` + attrs + `,"data":` + data + `}`
	}
	runDecodeCases(t, []decodeCase{
		{
			name: "all fields",
			body: ce(`,"datacontenttype":"application/json"`,
				`{"id":"inc-1","api_key_id":"k","reason":"r","requested_by":"bot","source":"incident-response","requested_at":"2026-11-25T10:00:00Z"}`),
			want: Request{ID: "inc-1", APIKeyID: "k", Reason: "r", RequestedBy: "bot", Source: "incident-response", RequestedAt: requestedAt, CloudEvent: true},
		},
		{
			name: "CloudEvents id, source and time when data lacks them",
			body: ce(`,"time":"2026-11-25T10:00:00Z"`, `{"api_key_id":"k"}`),
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", RequestedAt: requestedAt, CloudEvent: true},
		},
		{name: "datacontenttype with parameters", body: ce(`,"datacontenttype":"application/json; charset=utf-8"`, `{"api_key_id":"k"}`),
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}},
		{name: "datacontenttype +json", body: ce(`,"datacontenttype":"application/vnd.revoke+json"`, `{"api_key_id":"k"}`),
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}},
		{name: "CloudEvents id beats Nats-Msg-Id", header: hdr("Nats-Msg-Id", "msg-1"), body: ce(``, `{"api_key_id":"k"}`),
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}},
		{name: "binary headers are ignored for a structured body", header: ceHdr("ce-id", "other"), body: ce(``, `{"api_key_id":"k"}`),
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}},
		{name: "datacontenttype not JSON", body: ce(`,"datacontenttype":"text/plain"`, `{"api_key_id":"k"}`),
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{`datacontenttype "text/plain" is not JSON`}},
		{name: "datacontenttype a number", body: ce(`,"datacontenttype":1`, `{"api_key_id":"k"}`),
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{"datacontenttype must be a string"}},
		{name: "specversion 0.3", body: `{"specversion":"0.3","id":"ce-1","source":"ir","type":"t","data":{"api_key_id":"k"}}`,
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{`specversion "0.3" is not supported (want "1.0")`}},
		{name: "specversion a number", body: `{"specversion":1.0,"id":"ce-1","source":"ir","type":"t","data":{"api_key_id":"k"}}`,
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{"specversion must be a string, not a number"}},
		{name: "specversion null", body: `{"specversion":null,"id":"ce-1","source":"ir","type":"t","data":{"api_key_id":"k"}}`,
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{`specversion must be "1.0"`}},
		{name: "attributes missing", header: hdr("Nats-Msg-Id", "msg-1"), body: `{"specversion":"1.0","data":{"api_key_id":"k"}}`,
			want:    Request{ID: "msg-1", APIKeyID: "k", CloudEvent: true},
			wantErr: []string{"id is required", "source is required", "type is required"}},
		{name: "attributes empty", body: `{"specversion":"1.0","id":"","source":"","type":"","data":{"api_key_id":"k"}}`,
			want:    Request{ID: fallback, APIKeyID: "k", CloudEvent: true},
			wantErr: []string{"id is empty", "source is empty", "type is empty"}},
		{name: "attributes of the wrong type", body: `{"specversion":"1.0","id":1,"source":{},"type":[],"data":{"api_key_id":"k"}}`,
			want:    Request{ID: fallback, APIKeyID: "k", CloudEvent: true},
			wantErr: []string{"id must be a string, not a number", "source must be a string, not an object", "type must be a string, not an array"}},
		{name: "CloudEvents id with a control character", body: `{"specversion":"1.0","id":"a\nb","source":"ir","type":"t","data":{"api_key_id":"k"}}`,
			want: Request{ID: fallback, APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{`id "a\nb" contains a control character`}},
		{name: "invalid CloudEvents id but valid data.id", body: `{"specversion":"1.0","id":"a\nb","source":"ir","type":"t","data":{"id":"inc-1","api_key_id":"k"}}`,
			want: Request{ID: "inc-1", APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{"contains a control character"}},
		{name: "invalid data.id falls back to the CloudEvents id", body: ce(``, `{"id":"","api_key_id":"k"}`),
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{"data.id is empty"}},
		{name: "time not RFC 3339", body: ce(`,"time":"now"`, `{"api_key_id":"k"}`),
			want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{`time "now" is not an RFC 3339 time`}},
		{name: "data missing", body: `{"specversion":"1.0","id":"ce-1","source":"ir","type":"t","api_key_id":"k"}`,
			want: Request{ID: "ce-1", Source: "ir", CloudEvent: true}, wantErr: []string{"data is required: the request fields go inside a data object"}},
		{name: "data null", body: ce(``, `null`),
			want: Request{ID: "ce-1", Source: "ir", CloudEvent: true}, wantErr: []string{"data is required"}},
		{name: "data a string", body: ce(``, `"{\"api_key_id\":\"k\"}"`),
			want: Request{ID: "ce-1", Source: "ir", CloudEvent: true}, wantErr: []string{"data must be a JSON object, not a string"}},
		{name: "data_base64", body: `{"specversion":"1.0","id":"ce-1","source":"ir","type":"t","data_base64":"eyJhcGlfa2V5X2lkIjoiayJ9"}`,
			want: Request{ID: "ce-1", Source: "ir", CloudEvent: true}, wantErr: []string{"data_base64 is not supported; send data as a JSON object"}},
		{name: "data.api_key_id invalid", body: ce(``, `{"api_key_id":"a/b"}`),
			want: Request{ID: "ce-1", APIKeyID: "a/b", Source: "ir", CloudEvent: true}, wantErr: []string{`data.api_key_id "a/b" has characters outside [A-Za-z0-9_-]`}},
		{name: "data.api_key_id missing", body: ce(``, `{}`),
			want: Request{ID: "ce-1", Source: "ir", CloudEvent: true}, wantErr: []string{"data.api_key_id is required"}},
		{name: "duplicate key in data", body: ce(``, `{"api_key_id":"k","api_key_id":"j"}`),
			want: Request{ID: "ce-1", APIKeyID: "j", Source: "ir", CloudEvent: true}, wantErr: []string{`data has the key "api_key_id" more than once`}},
		{name: "duplicate attribute", body: `{"specversion":"1.0","id":"ce-1","id":"ce-2","source":"ir","type":"t","data":{"api_key_id":"k"}}`,
			want: Request{ID: "ce-2", APIKeyID: "k", Source: "ir", CloudEvent: true}, wantErr: []string{`body has the key "id" more than once`}},
		{name: "CloudEvents source with a control character is not used", body: `{"specversion":"1.0","id":"ce-1","source":"a\u0007","type":"t","data":{"api_key_id":"k"}}`,
			want: Request{ID: "ce-1", APIKeyID: "k", CloudEvent: true}, wantErr: []string{"source", "control character"}},
	})
}

func TestDecodeBinary(t *testing.T) {
	runDecodeCases(t, []decodeCase{
		{name: "all headers, plain body", header: ceHdr(),
			body: `{"id":"inc-1","api_key_id":"k","reason":"r","source":"incident-response"}`,
			want: Request{ID: "inc-1", APIKeyID: "k", Reason: "r", Source: "incident-response", CloudEvent: true}},
		{name: "ce-id, ce-source and ce-time when the body lacks them", header: ceHdr("ce-time", "2026-11-25T10:00:00Z", "Nats-Msg-Id", "msg-1"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", RequestedAt: requestedAt, CloudEvent: true}},
		{name: "header names in any case",
			header: hdr("CE-SpecVersion", "1.0", "Ce-Id", "ce-9", "CE-SOURCE", "ir", "ce-Type", "t", "NATS-MSG-ID", "msg-1"),
			body:   `{"api_key_id":"k"}`, want: Request{ID: "ce-9", APIKeyID: "k", Source: "ir", CloudEvent: true}},
		{name: "percent-encoded values are decoded", header: ceHdr("ce-id", "inc%2047%C3%A9", "ce-source", "ir"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "inc 47é", APIKeyID: "k", Source: "ir", CloudEvent: true}},
		{name: "invalid percent-encoding is literal", header: hdr("ce-specversion", "1.0", "ce-id", "50%off", "ce-source", "ir", "ce-type", "t"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "50%off", APIKeyID: "k", Source: "ir", CloudEvent: true}},
		{name: "percent-encoded CR LF in ce-id is refused", header: hdr("ce-specversion", "1.0", "ce-id", "a%0D%0Ab", "ce-source", "ir", "ce-type", "t", "Nats-Msg-Id", "msg-1"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "msg-1", APIKeyID: "k", Source: "ir", CloudEvent: true},
			wantErr: []string{`ce-id header "a\r\nb" contains a control character`}},
		{name: "content types that name JSON", header: ceHdr("Content-Type", "application/json", "ce-datacontenttype", "text/json; charset=utf-8"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true}},
		{name: "Content-Type not JSON", header: ceHdr("content-type", "text/plain"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true},
			wantErr: []string{`Content-Type header "text/plain" is not JSON`}},
		{name: "ce-datacontenttype not JSON", header: ceHdr("ce-datacontenttype", "application/xml"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true},
			wantErr: []string{`ce-datacontenttype header "application/xml" is not JSON`}},
		{name: "ce-specversion 0.3", header: hdr("ce-specversion", "0.3", "ce-id", "ce-1", "ce-source", "ir", "ce-type", "t"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true},
			wantErr: []string{`ce-specversion header "0.3" is not supported (want "1.0")`}},
		{name: "only ce-id", header: hdr("ce-id", "ce-1"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "ce-1", APIKeyID: "k", CloudEvent: true},
			wantErr: []string{"ce-specversion header is required", "ce-source header is required", "ce-type header is required"}},
		{name: "ce-id missing", header: hdr("ce-specversion", "1.0", "ce-source", "ir", "ce-type", "t"),
			body: `{"api_key_id":"k"}`, want: Request{ID: fallback, APIKeyID: "k", Source: "ir", CloudEvent: true},
			wantErr: []string{"ce-id header is required"}},
		{name: "ce-id empty", header: hdr("ce-specversion", "1.0", "ce-id", "", "ce-source", "ir", "ce-type", "t"),
			body: `{"api_key_id":"k"}`, want: Request{ID: fallback, APIKeyID: "k", Source: "ir", CloudEvent: true},
			wantErr: []string{"ce-id header is empty"}},
		{name: "ce-time not RFC 3339", header: ceHdr("ce-time", "noon"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "ce-1", APIKeyID: "k", Source: "ir", CloudEvent: true},
			wantErr: []string{`ce-time header "noon" is not an RFC 3339 time`}},
		{name: "invalid UTF-8 in ce-source", header: ceHdr("ce-source", "\xff"),
			body: `{"api_key_id":"k"}`, want: Request{ID: "ce-1", APIKeyID: "k", CloudEvent: true},
			wantErr: []string{"ce-source header is not valid UTF-8"}},
		{name: "unparsable body keeps ce-id", header: ceHdr(), body: `nope`,
			want: Request{ID: "ce-1", Source: "ir", CloudEvent: true}, wantErr: []string{"body is not valid JSON"}},
		{name: "other ce- headers alone do not make a CloudEvent", header: hdr("ce-traceparent", "00-abc"),
			body: `{"api_key_id":"k"}`, want: Request{ID: fallback, APIKeyID: "k"}},
	})
}

// When a header appears under two spellings, the choice must not depend on map order.
func TestDecodeHeaderSpellingsStable(t *testing.T) {
	h := ceHdr("Ce-Id", "upper", "CE-ID", "all-upper")
	for range 50 {
		got, err := DecodeRequest(h, []byte(`{"api_key_id":"k"}`), fallback)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != "all-upper" { // "CE-ID" sorts before "Ce-Id" and "ce-id"
			t.Fatalf("ID = %q, want %q", got.ID, "all-upper")
		}
	}
}

func TestCheckAPIKeyID(t *testing.T) {
	for id, want := range map[string]bool{
		"a952bcbe-0d1f-4f0e-9c3a-1b2c3d4e5f60": true,
		"A_z-09":                               true,
		strings.Repeat("a", 128):               true,
		"":                                     false,
		strings.Repeat("a", 129):               false,
		"a/b":                                  false,
		"..":                                   false,
		"a.b":                                  false,
		"a%2F":                                 false,
		"é":                                    false,
		"a\x00":                                false,
	} {
		if got := id != "" && checkAPIKeyID("", id) == ""; got != want {
			t.Errorf("valid api_key_id %q = %v, want %v", id, got, want)
		}
	}
}
