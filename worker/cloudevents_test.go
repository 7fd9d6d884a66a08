package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	cloudevent "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker"
)

// Trace contexts the rotation system sends, one per request.
const (
	tracePlain      = "00-11111111111111111111111111111111-1111111111111111-01"
	traceStructured = "00-22222222222222222222222222222222-2222222222222222-01"
	traceBinary     = "00-33333333333333333333333333333333-3333333333333333-00"
	traceHeader     = "00-44444444444444444444444444444444-4444444444444444-01"
	traceInvalid    = "00-55555555555555555555555555555555-5555555555555555-01"
	traceFailed     = "00-66666666666666666666666666666666-6666666666666666-01"
	stateStructured = "rotation=t61rcWkgMzE,congo=1"
)

// A rotation system's view: it publishes requests as plain JSON and as
// CloudEvents built with the official Go SDK, in structured and binary mode,
// then reads every result back from the streams and decodes it with the SDK
// as a NATS binding message, in both result modes, for every outcome. Each
// result also passes a check written against the NATS protocol binding, and
// carries the request's trace context, which the worker's log names too.
func TestRotationSystemReadsCloudEvents(t *testing.T) {
	for _, mode := range []events.ResultMode{events.Structured, events.Binary} {
		t.Run(string(mode), func(t *testing.T) {
			r := newRig(t)
			keys := r.addKeys(4)
			var logs lockedBuffer
			cfg := r.config()
			cfg.ResultsMode = mode
			cfg.ProtectedKeys = []string{keys[2]}
			cfg.Logger = slog.New(slog.NewJSONHandler(io.MultiWriter(&logs, testWriter{t}), nil))
			r.start(cfg)

			r.publish("plain-1", keys[0], "traceparent", tracePlain)
			r.publishCloudEvent("ce-structured-1", keys[1], false, traceStructured, stateStructured)
			r.publishHeaders("protected-1", fmt.Sprintf(`{"api_key_id":%q}`, keys[2]), nats.Header{"traceparent": {traceHeader}})
			r.publish("invalid-1", "not/a/key", "traceparent", traceInvalid)
			r.waitResults(4, 20*time.Second)
			r.publishCloudEvent("ce-binary-1", keys[0], true, traceBinary, "") // revoked already, by plain-1
			r.waitResults(5, 20*time.Second)
			r.emu.RemoveKey(r.selfID) // Kalshi refuses the worker's credential from now on
			r.publishCloudEvent("ce-binary-2", keys[3], true, traceFailed, "")
			r.waitResults(6, 20*time.Second)

			want := map[string]struct {
				outcome events.Outcome
				code    events.Code
				trace   events.Trace
			}{
				"plain-1":         {events.Revoked, "", events.Trace{Parent: tracePlain}},
				"ce-structured-1": {events.Revoked, "", events.Trace{Parent: traceStructured, State: stateStructured}},
				"ce-binary-1":     {events.AlreadyRevoked, "", events.Trace{Parent: traceBinary}},
				"protected-1":     {events.Rejected, events.CodeProtectedKey, events.Trace{Parent: traceHeader}},
				"invalid-1":       {events.Rejected, events.CodeInvalidRequest, events.Trace{Parent: traceInvalid}},
				"ce-binary-2":     {events.Failed, events.CodeKalshiUnauthorized, events.Trace{Parent: traceFailed}},
			}
			stored := r.stored()
			if len(stored) != len(want) {
				t.Fatalf("%d results stored, want %d", len(stored), len(want))
			}
			for _, s := range stored {
				w, ok := want[s.RequestID]
				if !ok {
					t.Errorf("unexpected result %+v", s.Result)
					continue
				}
				checkNATSBinding(t, mode, s.Header, s.Data)
				ev := sdkEvent(t, s.Header, s.Data)
				if err := ev.Validate(); err != nil {
					t.Errorf("%s: the SDK finds the event invalid: %v", s.RequestID, err)
				}
				var data struct {
					RequestID string         `json:"request_id"`
					APIKeyID  string         `json:"api_key_id"`
					Outcome   events.Outcome `json:"outcome"`
					Error     *events.Error  `json:"error"`
				}
				if err := ev.DataAs(&data); err != nil {
					t.Errorf("%s: data: %v", s.RequestID, err)
				}
				code := events.Code("")
				if data.Error != nil {
					code = data.Error.Code
				}
				tp, _ := ev.Extensions()["traceparent"].(string)
				tstate, _ := ev.Extensions()["tracestate"].(string)
				if ev.SpecVersion() != "1.0" || ev.ID() != s.RequestID || ev.Source() != "revoker" ||
					ev.Type() != w.outcome.Type() || ev.Subject() != s.APIKeyID || ev.DataContentType() != "application/json" ||
					!ev.Time().Equal(s.CompletedAt) || data.RequestID != s.RequestID || data.APIKeyID != s.APIKeyID ||
					data.Outcome != w.outcome || code != w.code || (events.Trace{Parent: tp, State: tstate}) != w.trace {
					t.Errorf("%s: the SDK reads\n%s\ndata %+v\nwant %s %s, trace %+v", s.RequestID, ev, data, w.outcome, w.code, w.trace)
				}
				if s.Trace != w.trace {
					t.Errorf("%s: revoker reads trace %+v, want %+v", s.RequestID, s.Trace, w.trace)
				}
				ended := false
				for _, line := range strings.Split(logs.String(), "\n") {
					ended = ended || strings.Contains(line, `"request_id":"`+s.RequestID+`"`) &&
						strings.Contains(line, `"outcome":"`+string(w.outcome)+`"`) && strings.Contains(line, `"traceparent":"`+w.trace.Parent+`"`)
				}
				if !ended {
					t.Errorf("%s: no log line names the outcome with traceparent %s", s.RequestID, w.trace.Parent)
				}
			}
		})
	}
}

// publishCloudEvent publishes a request made with the CloudEvents SDK, in
// binary mode (attributes as ce- headers) or structured mode.
func (r *rig) publishCloudEvent(id, keyID string, binary bool, traceparent, tracestate string) {
	r.t.Helper()
	ev := cloudevent.New()
	ev.SetID(id)
	ev.SetSource("rotation-system")
	ev.SetType("com.example.key.rotate")
	ev.SetTime(time.Now())
	ev.SetExtension("traceparent", traceparent)
	if tracestate != "" {
		ev.SetExtension("tracestate", tracestate)
	}
	if err := ev.SetData("application/json", map[string]string{"api_key_id": keyID}); err != nil {
		r.t.Fatal(err)
	}
	if !binary {
		body, err := format.JSON.Marshal(&ev)
		if err != nil {
			r.t.Fatal(err)
		}
		r.publishHeaders("", string(body), nats.Header{"content-type": {format.JSON.MediaType()}})
		return
	}
	w := &natsBinaryWriter{}
	if _, err := binding.Write(binding.WithForceBinary(context.Background()), (*binding.EventMessage)(&ev), nil, w); err != nil {
		r.t.Fatal(err)
	}
	r.publishHeaders("", w.body.String(), w.header)
}

// publishHeaders publishes a request body with the given headers and, when
// msgID is set, Nats-Msg-Id.
func (r *rig) publishHeaders(msgID, body string, h nats.Header) {
	r.t.Helper()
	m := &nats.Msg{Subject: "keys.revoke.requests", Header: h, Data: []byte(body)}
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.js.PublishMsg(ctx, m); err != nil {
		r.t.Fatalf("publishing request: %v", err)
	}
}

// natsBinaryWriter writes an SDK event as a binary-mode NATS message, as the
// SDK's NATS bindings do: each attribute a "ce-" header, the data the body.
type natsBinaryWriter struct {
	header nats.Header
	body   bytes.Buffer
}

func (w *natsBinaryWriter) Start(context.Context) error { w.header = nats.Header{}; return nil }
func (w *natsBinaryWriter) End(context.Context) error   { return nil }
func (w *natsBinaryWriter) SetData(data io.Reader) error {
	_, err := w.body.ReadFrom(data)
	return err
}
func (w *natsBinaryWriter) SetAttribute(a spec.Attribute, v any) error {
	if t, ok := v.(time.Time); ok {
		v = t.Format(time.RFC3339Nano)
	}
	w.header.Set("ce-"+a.Name(), fmt.Sprint(v))
	return nil
}
func (w *natsBinaryWriter) SetExtension(name string, v any) error {
	w.header.Set("ce-"+name, fmt.Sprint(v))
	return nil
}

// natsMessage is a stored NATS message as the SDK's binding reads it: the
// NATS protocol binding's rules for telling the modes apart and mapping
// headers, on top of the SDK's binding and event packages.
type natsMessage struct {
	header nats.Header
	body   []byte
}

var ceSpecs = spec.WithPrefix("ce-")

func (m natsMessage) ReadEncoding() binding.Encoding {
	if ct := strings.ToLower(m.header.Get("content-type")); strings.HasPrefix(ct, "application/cloudevents") {
		return binding.EncodingStructured
	}
	if m.header.Get("ce-specversion") != "" {
		return binding.EncodingBinary
	}
	return binding.EncodingUnknown
}

func (m natsMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	if m.ReadEncoding() != binding.EncodingStructured {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, format.JSON, bytes.NewReader(m.body))
}

func (m natsMessage) ReadBinary(ctx context.Context, w binding.BinaryWriter) error {
	if m.ReadEncoding() != binding.EncodingBinary {
		return binding.ErrNotBinary
	}
	version := ceSpecs.Version(m.header.Get("ce-specversion"))
	if version == nil {
		return fmt.Errorf("unknown specversion %q", m.header.Get("ce-specversion"))
	}
	for k, vs := range m.header {
		name := strings.ToLower(k)
		if !strings.HasPrefix(name, "ce-") {
			continue
		}
		v, err := url.PathUnescape(vs[0]) // the binding's percent-encoding
		if err != nil {
			return err
		}
		if a := version.Attribute(name); a != nil {
			err = w.SetAttribute(a, v)
		} else {
			err = w.SetExtension(strings.TrimPrefix(name, "ce-"), v)
		}
		if err != nil {
			return err
		}
	}
	return w.SetData(bytes.NewReader(m.body))
}

func (m natsMessage) GetAttribute(k spec.Kind) (spec.Attribute, any) {
	version := ceSpecs.Version(m.header.Get("ce-specversion"))
	if version == nil {
		return nil, nil
	}
	a := version.AttributeFromKind(k)
	if a == nil {
		return nil, nil
	}
	if v := m.header.Get(a.PrefixedName()); v != "" {
		return a, v
	}
	return a, nil
}

func (m natsMessage) GetExtension(name string) any {
	if v := m.header.Get("ce-" + name); v != "" {
		return v
	}
	return nil
}

func (m natsMessage) Finish(error) error { return nil }

// sdkEvent decodes a stored result message with the SDK.
func sdkEvent(t *testing.T, h nats.Header, body []byte) *cloudevent.Event {
	t.Helper()
	ev, err := binding.ToEvent(context.Background(), natsMessage{h, body})
	if err != nil {
		t.Fatalf("the SDK cannot read the result: %v\n%v\n%s", err, h, body)
	}
	return ev
}

// checkNATSBinding checks a stored result message against the CloudEvents
// NATS protocol binding (cloudevents/spec, bindings/nats-protocol-binding.md)
// and the JSON event format, for the mode it was published in.
func checkNATSBinding(t *testing.T, mode events.ResultMode, h nats.Header, body []byte) {
	t.Helper()
	id := h.Get(jetstream.MsgIDHeader)
	if id == "" {
		t.Errorf("no %s header: %v", jetstream.MsgIDHeader, h)
	}
	required := []string{"specversion", "id", "source", "type"}
	switch mode {
	case events.Structured:
		// 3: structured mode is marked by a content-type of application/cloudevents…
		if ct := h.Get("content-type"); ct != "application/cloudevents+json" {
			t.Errorf("%s: content-type %q, want application/cloudevents+json", id, ct)
		}
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("%s: the body is not a JSON event: %v", id, err)
		}
		for _, a := range required {
			if s, _ := doc[a].(string); s == "" {
				t.Errorf("%s: required attribute %s missing: %s", id, a, body)
			}
		}
		if doc["specversion"] != "1.0" {
			t.Errorf("%s: specversion %v", id, doc["specversion"])
		}
		if _, ok := doc["data"].(map[string]any); !ok {
			t.Errorf("%s: data is not a JSON object: %s", id, body)
		}
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "ce-") {
				t.Errorf("%s: header %s in structured mode", id, k)
			}
		}
	case events.Binary:
		// 3: anything but application/cloudevents… is binary mode.
		if ct := h.Get("content-type"); strings.HasPrefix(strings.ToLower(ct), "application/cloudevents") {
			t.Errorf("%s: content-type %q marks structured mode", id, ct)
		}
		// 3.1.3.1: every attribute a header named ce-<attribute>; written lower-case here.
		for k, vs := range h {
			if !strings.HasPrefix(strings.ToLower(k), "ce-") {
				continue
			}
			if k != strings.ToLower(k) {
				t.Errorf("%s: header %s is not lower-case", id, k)
			}
			if len(vs) != 1 {
				t.Errorf("%s: header %s has %d values", id, k, len(vs))
			}
			// 3.1.3.2: values are printable ASCII; space, '"' and '%' percent-encoded.
			for _, v := range vs {
				for i := 0; i < len(v); i++ {
					c := v[i]
					bad := c <= ' ' || c > '~' || c == '"'
					if c == '%' {
						_, err := url.PathUnescape(v[i:min(i+3, len(v))])
						bad = err != nil
					}
					if bad {
						t.Errorf("%s: header %s value %q is not percent-encoded", id, k, v)
						break
					}
				}
			}
		}
		for _, a := range required {
			if h.Get("ce-"+a) == "" {
				t.Errorf("%s: required attribute ce-%s missing: %v", id, a, h)
			}
		}
		if h.Get("ce-specversion") != "1.0" {
			t.Errorf("%s: ce-specversion %q", id, h.Get("ce-specversion"))
		}
		if _, err := time.Parse(time.RFC3339, h.Get("ce-time")); err != nil {
			t.Errorf("%s: ce-time: %v", id, err)
		}
		// 2.1, 3.1.3.1: datacontenttype maps to ce-datacontenttype; content-type agrees.
		if dct, ct := h.Get("ce-datacontenttype"), h.Get("content-type"); dct != "application/json" || ct != dct {
			t.Errorf("%s: ce-datacontenttype %q, content-type %q, want application/json", id, dct, ct)
		}
		if h.Get("ce-data") != "" {
			t.Errorf("%s: data as a header", id)
		}
		// 3.1.1: the body is the data.
		var data map[string]any
		if err := json.Unmarshal(body, &data); err != nil || data["request_id"] == nil {
			t.Errorf("%s: the body is not the data object: %v\n%s", id, err, body)
		}
	}
}

// A results mode the binding does not have is a configuration error, not a
// worker that stores results nobody can read.
func TestUnknownResultsModeIsRefused(t *testing.T) {
	cfg := worker.Config{ResultsMode: "batch"}
	if _, err := worker.New(nil, nil, cfg); err == nil || !strings.Contains(err.Error(), `results mode: "batch" is not structured or binary`) {
		t.Errorf("worker.New with results mode batch: %v", err)
	}
}
