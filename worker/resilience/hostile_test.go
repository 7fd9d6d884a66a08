package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/natstest"
)

// TestHostileRequests publishes requests built to break the decoder or to
// trick the worker into deleting a key it must not (every one names an
// existing key somewhere), then two valid ones. Each hostile request gets
// exactly one rejected / invalid_request result and no Kalshi call.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	r := newRig(t, srv.URL(), rigOptions{})
	victim := r.addKeys("victim", 1)[0]
	r.victims = []string{victim}
	cfg := r.workerConfig()
	r.provision(cfg)

	v := victim
	nested := func(depth int, open, close string) string {
		return strings.Repeat(open, depth) + `"` + v + `"` + strings.Repeat(close, depth)
	}
	ceBinary := nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"h-ce-binary-no-source"}, "ce-type": {"revoke"}}
	// Just under the stream's 64 KiB limit (body and headers): valid JSON,
	// a real key, and a reason far over its 1 KiB.
	underLimit := `{"api_key_id":"` + v + `","reason":"` + strings.Repeat("x", 65536-300) + `"}`

	cases := []struct {
		name   string
		body   string
		header nats.Header
	}{
		{"empty", "", nil},
		{"whitespace", " \n\t ", nil},
		{"null", "null", nil},
		{"json-array", `[{"api_key_id":"` + v + `"}]`, nil},
		{"json-string", `"` + v + `"`, nil},
		{"json-number", `42`, nil},
		{"truncated", `{"api_key_id":"` + v + `"`, nil},
		{"trailing-garbage", `{"api_key_id":"` + v + `"} x`, nil},
		{"two-documents", `{"api_key_id":"` + v + `"}{"api_key_id":"` + v + `"}`, nil},
		{"deep-array-key", `{"api_key_id":` + nested(20000, "[", "]") + `}`, nil},
		{"deep-object-key", `{"api_key_id":` + nested(5000, `{"a":`, "}") + `}`, nil},
		{"deep-unknown-field", `{"api_key_id":"` + v + `","x":` + strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + `}`, nil},
		{"utf8-invalid-key", `{"api_key_id":"` + v + "\xff" + `"}`, nil},
		{"utf8-invalid-reason", `{"api_key_id":"` + v + `","reason":"` + "\xc3\x28" + `"}`, nil},
		{"utf8-overlong-slash", `{"api_key_id":"` + v + "\xc0\xaf" + `x"}`, nil},
		{"utf8-surrogate", `{"api_key_id":"` + v + `\ud800"}`, nil},
		{"control-nul-escaped", `{"api_key_id":"` + v + `\u0000"}`, nil},
		{"control-raw-bel", `{"api_key_id":"` + v + "\a" + `"}`, nil},
		{"control-newline", `{"api_key_id":"` + v + `\n"}`, nil},
		{"control-escape-in-reason", `{"api_key_id":"` + v + `","reason":"\u001b[2J\u001b[H"}`, nil},
		{"control-in-source", `{"api_key_id":"` + v + `","source":"a\rb"}`, nil},
		{"path-dotdot", `{"api_key_id":"../` + v + `"}`, nil},
		{"path-dotdot-account", `{"api_key_id":"../../portfolio/balance"}`, nil},
		{"path-slash", `{"api_key_id":"a/` + v + `"}`, nil},
		{"path-suffix", `{"api_key_id":"` + v + `/.."}`, nil},
		{"path-pct-slash", `{"api_key_id":"%2F` + v + `"}`, nil},
		{"path-pct-dots", `{"api_key_id":"%2e%2e%2f` + v + `"}`, nil},
		{"path-pct-encoded-key", `{"api_key_id":"%61` + v[1:] + `"}`, nil},
		{"path-query", `{"api_key_id":"` + v + `?x=1"}`, nil},
		{"path-fragment", `{"api_key_id":"` + v + `#x"}`, nil},
		{"path-backslash", `{"api_key_id":"..\\` + v + `"}`, nil},
		{"path-dot", `{"api_key_id":"."}`, nil},
		{"space-leading", `{"api_key_id":" ` + v + `"}`, nil},
		{"space-trailing", `{"api_key_id":"` + v + ` "}`, nil},
		{"unicode-cyrillic", `{"api_key_id":"ключ"}`, nil},
		{"unicode-division-slash", `{"api_key_id":"a∕` + v + `"}`, nil},
		{"unicode-fullwidth", `{"api_key_id":"` + v + `ａ"}`, nil},
		{"unicode-rtl-override", `{"api_key_id":"\u202e` + v + `"}`, nil},
		{"unicode-zero-width", `{"api_key_id":"` + v[:8] + "\u200b" + v[8:] + `"}`, nil},
		{"key-too-long", `{"api_key_id":"` + strings.Repeat("a", 129) + `"}`, nil},
		{"key-empty", `{"api_key_id":""}`, nil},
		{"key-missing", `{"reason":"` + v + `"}`, nil},
		{"empty-object", `{}`, nil},
		{"type-number", `{"api_key_id":123}`, nil},
		{"type-bool", `{"api_key_id":true}`, nil},
		{"type-null", `{"api_key_id":null}`, nil},
		{"type-array", `{"api_key_id":["` + v + `"]}`, nil},
		{"type-object", `{"api_key_id":{"id":"` + v + `"}}`, nil},
		{"type-reason-number", `{"api_key_id":"` + v + `","reason":7}`, nil},
		{"type-id-number", `{"id":5,"api_key_id":"` + v + `"}`, nil},
		{"huge-number-key", `{"api_key_id":1e999999999}`, nil},
		{"huge-number-time", `{"api_key_id":"` + v + `","requested_at":123456789012345678901234567890}`, nil},
		{"huge-number-long", `{"api_key_id":` + strings.Repeat("9", 20000) + `}`, nil},
		{"bad-time", `{"api_key_id":"` + v + `","requested_at":"yesterday"}`, nil},
		{"duplicate-field", `{"api_key_id":"` + r.kept[0] + `","api_key_id":"` + v + `"}`, nil},
		{"field-name-case", `{"API_KEY_ID":"` + v + `"}`, nil}, // JSON names are case-sensitive; encoding/json's are not
		{"id-too-long", `{"id":"` + strings.Repeat("i", 300) + `","api_key_id":"` + v + `"}`, nil},
		{"id-control", `{"id":"a\r\nNats-Msg-Id: b","api_key_id":"` + v + `","reason":"\u0007"}`, nil},
		{"ce-wrong-version", `{"specversion":"0.3","id":"h-ce-wrong-version","source":"s","type":"t","data":{"api_key_id":"` + v + `"}}`, nil},
		{"ce-data-string", `{"specversion":"1.0","id":"h-ce-data-string","source":"s","type":"t","data":"{\"api_key_id\":\"` + v + `\"}"}`, nil},
		{"ce-no-type", `{"specversion":"1.0","id":"h-ce-no-type","source":"s","data":{"api_key_id":"` + v + `"}}`, nil},
		{"ce-binary-no-source", `{"api_key_id":"` + v + `"}`, ceBinary},
		{"trailing-nul", `{"api_key_id":"` + v + `","x":1,"y":[]}` + "\n\x00", nil},
		{"just-under-limit", underLimit, nil},
	}
	p := plan{name: "hostile"}
	rejected := expect{outcomes: []events.Outcome{events.Rejected}, code: events.CodeInvalidRequest}
	for _, c := range cases {
		id := "h-" + c.name // the CloudEvents cases carry it as their id too
		p.add(request{id: id, msgID: id, data: []byte(c.body), header: c.header}, rejected)
	}
	// Two valid requests after them: the worker is alive and deletes.
	for i, k := range r.addKeys("control", 2) {
		p.add(plainRequest(fmt.Sprintf("hostile-control-%d", i), k), revokedOrGone)
		p.gone = append(p.gone, k)
	}

	// Over the stream's 64 KiB: JetStream itself refuses it, and says so.
	big := request{id: "h-oversized", msgID: "h-oversized",
		data: []byte(`{"api_key_id":"` + v + `","reason":"` + strings.Repeat("x", 70<<10) + `"}`)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := r.js.PublishMsg(ctx, big.msg())
	var apiErr *jetstream.APIError
	if err == nil {
		t.Error("a request over 64 KiB was accepted by the requests stream")
	} else if !errors.As(err, &apiErr) {
		t.Logf("oversized publish refused: %v", err)
	} else {
		t.Logf("oversized publish refused by JetStream: %v (error code %d)", err, apiErr.ErrorCode)
	}
	if n := r.streamMsgs(requestsStream); n != 0 {
		t.Errorf("the requests stream holds %d messages after a refused publish", n)
	}

	if len(underLimit) > events.MaxRequestSize {
		t.Fatalf("the under-limit case is %d bytes", len(underLimit))
	}
	r.publish(p.reqs)
	wk := r.startWorker(cfg, "")
	r.waitResults(len(p.want), 30*time.Second)
	r.waitDrained(time.Minute)
	if err := wk.stop(); err != nil {
		t.Error(err)
	}
	for _, s := range r.readResults() {
		if s.res.Outcome == events.Rejected && (s.res.Error == nil || s.res.Error.Message == "") {
			t.Errorf("%s: rejected without a message", s.res.RequestID)
		}
		if s.res.Outcome == events.Rejected && s.res.Error != nil {
			t.Logf("%-28s %s", s.res.RequestID, trim(s.res.Error.Message, 110))
		}
	}
	st := r.emu.Stats()
	deletes := 0
	for _, n := range st.DeleteAttempts {
		deletes += n
	}
	// Besides the two DELETEs, Kalshi sees only the worker's credential
	// check (GET /api_keys).
	if deletes != 2 || st.Requests-deletes != st.ByStatus[200] {
		t.Errorf("Kalshi saw %d requests (%d DELETEs, %d answered 200); want only the 2 valid DELETEs besides credential checks",
			st.Requests, deletes, st.ByStatus[200])
	}
	r.checkInvariants(p, fmt.Sprintf("%d hostile requests + 1 oversized refused at publish", len(cases)))
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
