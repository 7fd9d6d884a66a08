package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/events/auth"
	"github.com/revoker/revoker/worker/natstest"
)

// TestRevokeMsgIDUnpredictable checks the Nats-Msg-Id of the requests
// "revoker revoke" publishes: no signature covers it, so it must not be the
// request id (or anything else a squatter could publish first): derived
// from the signature when signing, random otherwise.
func TestRevokeMsgIDUnpredictable(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(3)
	w.startRun()
	nc := natstest.Connect(t, w.nats.URL())
	sub, err := nc.SubscribeSync("keys.revoke.requests")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	seed, _ := newUserSeedFile(t, t.TempDir())
	if out, err := w.cli("revoke", "--signer-seed", seed, keys[0]); err != nil || out != keys[0]+" revoked\n"+keys[0]+" confirmed\n" {
		t.Fatalf("signed revoke: %v %q", err, out)
	}
	out, err := w.cli("revoke", keys[1], keys[2])
	if outcomes, confirmed, _ := splitConfirmations(out); err != nil || outcomes != keys[1]+" revoked\n"+keys[2]+" revoked\n" || len(confirmed) != 2 {
		t.Fatalf("unsigned revoke: %v %q", err, out)
	}

	seen := map[string]bool{}
	for i := range 3 {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ ID string }
		if err := json.Unmarshal(m.Data, &body); err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get(jetstream.MsgIDHeader)
		switch sig := m.Header.Get(auth.HeaderSignature); {
		case strings.Contains(id, body.ID) || seen[id] || len(id) < 26:
			t.Errorf("request %d (id %s) has Nats-Msg-Id %q: predictable or repeated", i+1, body.ID, id)
		case i == 0 && sig == "":
			t.Error("the first request is not signed")
		case i == 0:
			if sum := sha256.Sum256([]byte(sig)); id != hex.EncodeToString(sum[:]) {
				t.Errorf("signed request: Nats-Msg-Id %q is not derived from its signature", id)
			}
		}
		seen[id] = true
	}
}

// TestRevokeMatchesResultsBySequence plays the worker: a forgery stored
// under another message id claimed the request's id, and its result comes
// first. The CLI must report the result of its own request, the one with
// its stream sequence.
func TestRevokeMatchesResultsBySequence(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEY_REVOKE_REQUESTS", Subjects: []string{"keys.revoke.requests"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	// A request stored before the CLI's, so that its sequence is not 1.
	if _, err := js.Publish(ctx, "keys.revoke.requests", []byte(`{"id":"earlier","api_key_id":"k-0"}`)); err != nil {
		t.Fatal(err)
	}

	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"revoke", "--timeout", "20s", "k-1"}, getenv(map[string]string{"NATS_URL": srv.URL()}), nil, &out, &errOut)
	}()
	var stored *jetstream.RawStreamMsg
	natstest.WaitFor(t, 10*time.Second, "the CLI's request", func() bool {
		stored, err = stream.GetLastMsgForSubject(ctx, "keys.revoke.requests")
		return err == nil && stored.Sequence > 1
	})
	var body struct{ ID string }
	if err := json.Unmarshal(stored.Data, &body); err != nil {
		t.Fatal(err)
	}
	publish := func(seq uint64, outcome events.Outcome, e *events.Error) {
		now := time.Now()
		doc, err := events.Result{RequestID: body.ID, RequestSeq: seq, APIKeyID: "k-1", Outcome: outcome, Error: e, ReceivedAt: now, CompletedAt: now}.MarshalEvent()
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(events.ResultSubject("keys.revoke.results", outcome), doc); err != nil {
			t.Fatal(err)
		}
	}
	publish(stored.Sequence+1, events.Revoked, nil) // the forgery's
	publish(1, events.Revoked, nil)                 // another request's
	publish(stored.Sequence, events.Failed, &events.Error{Code: events.CodeRetriesExhausted, Message: "kalshi kept failing"})

	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("revoke did not return")
	}
	var exit exitError
	if !errors.As(err, &exit) || exit.code != 1 {
		t.Errorf("revoke returned %v, want exit status 1\n%s", err, errOut.String())
	}
	if want := "k-1 failed retries_exhausted: kalshi kept failing\n"; out.String() != want {
		t.Errorf("revoke printed %q, want %q", out.String(), want)
	}
}

// TestPublishRequestChecksTheAck refuses a request the requests stream
// dropped as a duplicate, or that another stream stored.
func TestPublishRequestChecksTheAck(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for name, subject := range map[string]string{"KEY_REVOKE_REQUESTS": "keys.revoke.requests", "OTHER": "other.requests"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
			t.Fatal(err)
		}
	}
	cfg, _ := mustParse(t, "revoke", []string{"k"}, map[string]string{"NATS_URL": srv.URL()})
	msg := func(subject string) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Data = []byte(`{"id":"x","api_key_id":"k"}`)
		m.Header.Set(jetstream.MsgIDHeader, "squatted")
		return m
	}

	if seq, err := publishRequest(ctx, js, cfg, msg("keys.revoke.requests")); err != nil || seq != 1 {
		t.Fatalf("first publish: %d, %v", seq, err)
	}
	if _, err := publishRequest(ctx, js, cfg, msg("keys.revoke.requests")); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("a duplicate: %v, want an error", err)
	}
	if _, err := publishRequest(ctx, js, cfg, msg("other.requests")); err == nil || !strings.Contains(err.Error(), "stored in stream OTHER, not KEY_REVOKE_REQUESTS") {
		t.Errorf("stored by another stream: %v, want an error", err)
	}
}
