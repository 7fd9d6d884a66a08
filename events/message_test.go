package events

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseResultMode(t *testing.T) {
	for in, want := range map[string]ResultMode{"structured": Structured, "binary": Binary} {
		if got, err := ParseResultMode(in); err != nil || got != want {
			t.Errorf("ParseResultMode(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "batch", "Binary "} {
		if _, err := ParseResultMode(in); err == nil || !strings.Contains(err.Error(), "is not structured or binary") {
			t.Errorf("ParseResultMode(%q) error = %v", in, err)
		}
	}
}

func TestResultMessageStructured(t *testing.T) {
	doc, err := revokedResult().MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []ResultMode{Structured, ""} {
		h, body, err := ResultMessage(doc, mode)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string][]string{"content-type": {"application/cloudevents+json"}}; !reflect.DeepEqual(h, want) {
			t.Errorf("mode %q: header %v, want %v", mode, h, want)
		}
		if !bytes.Equal(body, doc) {
			t.Errorf("mode %q: body %s, want the document", mode, body)
		}
	}
	if _, _, err := ResultMessage(doc, "batch"); err == nil {
		t.Error("an unknown mode was accepted")
	}
}

// In binary mode every attribute is a lower-case ce- header, percent-encoded
// as the NATS binding says, and the body is the data object; ResultDoc makes
// the very same document again, and ParseResultMsg the very same Result.
func TestResultMessageBinaryRoundTrip(t *testing.T) {
	odd := revokedResult()
	odd.RequestID, odd.APIKeyID = `inc 4711 "€" 100%`, "a952bcbe"
	for name, r := range map[string]Result{
		"revoked": revokedResult(), "rejected": rejectedResult(), "failed": failedResult(),
		"traced": tracedResult(), "odd id": odd, "no key": {RequestID: "x", Outcome: Failed, Error: &Error{Code: CodeMaxDeliveries}},
	} {
		t.Run(name, func(t *testing.T) {
			doc, err := r.MarshalEvent()
			if err != nil {
				t.Fatal(err)
			}
			h, body, err := ResultMessage(doc, Binary)
			if err != nil {
				t.Fatal(err)
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(doc, &top); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, top["data"]) {
				t.Errorf("body %s, want the data object %s", body, top["data"])
			}
			for name, raw := range top {
				if name == "data" {
					continue
				}
				var v string
				_ = json.Unmarshal(raw, &v)
				if got := h["ce-"+name]; len(got) != 1 || got[0] != percentEncode(v) {
					t.Errorf("ce-%s = %q, want %q", name, got, percentEncode(v))
				}
			}
			if got := h["content-type"]; len(got) != 1 || got[0] != "application/json" {
				t.Errorf("content-type = %q, want application/json", got)
			}
			if len(h) != len(top) { // the attributes and content-type
				t.Errorf("%d headers, want %d: %v", len(h), len(top), h)
			}
			back, err := ResultDoc(h, body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, doc) {
				t.Errorf("ResultDoc() =\n%s\nwant\n%s", back, doc)
			}
			got, err := ParseResultMsg(h, body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("ParseResultMsg() = %+v\nwant %+v", got, r)
			}
		})
	}
}

func TestPercentEncode(t *testing.T) {
	for in, want := range map[string]string{
		"inc-4711-1":             "inc-4711-1",
		"Euro € 😀":               "Euro%20%E2%82%AC%20%F0%9F%98%80", // the binding's example
		`"q" 100%`:               "%22q%22%20100%25",
		"tab\there\x7f":          "tab%09here%7F",
		"2026-11-25T10:00:01.5Z": "2026-11-25T10:00:01.5Z",
	} {
		if got := percentEncode(in); got != want {
			t.Errorf("percentEncode(%q) = %q, want %q", in, got, want)
		}
		if back, err := percentDecodeStrict(percentEncode(in)); err != nil || back != in {
			t.Errorf("percentDecodeStrict(percentEncode(%q)) = %q, %v", in, back, err)
		}
	}
}

func TestPercentDecodeStrict(t *testing.T) {
	for in, want := range map[string]string{
		"a%e2%82%acb": "a€b", // lower case hex
		"%41":         "A",   // unnecessarily encoded
		`"a b"`:       "a b", // a quoted value, as older senders wrote
		`"a\"b"`:      `a"b`,
	} {
		if got, err := percentDecodeStrict(in); err != nil || got != want {
			t.Errorf("percentDecodeStrict(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"%C0%A0", "%", "%4", "%zz", "\xff"} {
		if got, err := percentDecodeStrict(in); err == nil {
			t.Errorf("percentDecodeStrict(%q) = %q, want an error", in, got)
		}
	}
}

// ResultDoc tells the modes apart as the binding does: a content-type of
// application/cloudevents… is structured; otherwise ce-specversion means binary;
// a message with neither (stored before results had headers) is structured.
func TestResultDocModes(t *testing.T) {
	doc, err := tracedResult().MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	h, data, err := ResultMessage(doc, Binary)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		header map[string][]string
		body   []byte
	}{
		"legacy, no header":                {nil, doc},
		"structured":                       {map[string][]string{"Content-Type": {"Application/CloudEvents+JSON; charset=utf-8"}}, doc},
		"structured with stray ce- header": {map[string][]string{"content-type": {CloudEventsJSONType}, "ce-specversion": {"1.0"}}, doc},
		"binary":                           {h, data},
		"binary, headers in another case":  {upperKeys(h), data},
	} {
		got, err := ParseResultMsg(tc.header, tc.body)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(got, tracedResult()) {
			t.Errorf("%s: %+v", name, got)
		}
	}
}

func upperKeys(h map[string][]string) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[strings.ToUpper(k[:1])+k[1:]] = v
	}
	return out
}

func TestParseResultMsgErrors(t *testing.T) {
	doc, err := revokedResult().MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	h, data, err := ResultMessage(doc, Binary)
	if err != nil {
		t.Fatal(err)
	}
	with := func(k, v string) map[string][]string {
		out := make(map[string][]string, len(h)+1)
		for k, v := range h {
			out[k] = v
		}
		if v == "" {
			delete(out, k)
		} else {
			out[k] = []string{v}
		}
		return out
	}
	for name, tc := range map[string]struct {
		header map[string][]string
		body   string
		want   string
	}{
		"bad specversion":    {with("ce-specversion", "0.3"), string(data), "specversion"},
		"type and outcome":   {with("ce-type", "revoker.key.failed"), string(data), "does not match"},
		"overlong encoding":  {with("ce-id", "%C0%A0"), string(data), "not UTF-8"},
		"body not JSON":      {h, "{", "not JSON"},
		"two spellings":      {with("CE-ID", "other"), string(data), "two spellings"},
		"ce-data":            {with("ce-data", "x"), string(data), "ce-data"},
		"structured garbage": {map[string][]string{"content-type": {CloudEventsJSONType}}, "[]", "parse result"},
	} {
		if _, err := ParseResultMsg(tc.header, []byte(tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", name, err, tc.want)
		}
	}
}
