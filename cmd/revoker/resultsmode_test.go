package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// With REVOKER_RESULTS_MODE=binary the worker stores every result, trusted
// or not, as a binary CloudEvent (the data as the body, the attributes in
// ce- headers), and every reader here reads it: revoke waiting for its
// outcomes, and results, by direct and by single-message gets, printing the
// structured document either way.
func TestBinaryResultsAreReadEverywhere(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(2)
	w.env["REVOKER_PROTECTED_KEYS"] = keys[1]
	w.env["REVOKER_RESULTS_MODE"] = "binary"
	w.startRun()

	out, stderr, code := w.run2("", "revoke", "--json", keys[0], keys[1])
	printed := docLines(out)
	if code != exitFailed || len(printed) != 2 {
		t.Fatalf("revoke --json: exit %d, %d documents, stderr %q", code, len(printed), stderr)
	}
	outcomes := map[string]events.Outcome{}
	for _, d := range printed {
		r, err := events.ParseResult([]byte(d))
		if err != nil {
			t.Fatalf("revoke printed %s: %v", d, err)
		}
		outcomes[r.APIKeyID] = r.Outcome
	}
	if outcomes[keys[0]] != events.Revoked || outcomes[keys[1]] != events.Rejected {
		t.Errorf("revoke saw %v, want %s revoked and %s rejected", outcomes, keys[0], keys[1])
	}
	nc := natstest.Connect(t, w.nats.URL())
	if err := nc.Publish("keys.revoke.requests", []byte(`{"id":"junk-1","api_key_id":"x y"}`)); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, "the rejection of the junk", func() bool { return len(storedUntrusted(t, w.nats.URL())) == 1 })

	// As stored: binary, in both streams.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"KEY_REVOKE_RESULTS", provision.UntrustedStream} {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetMsg(t.Context(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get("ce-specversion") != "1.0" || m.Header.Get("content-type") != "application/json" ||
			!bytes.HasPrefix(m.Data, []byte(`{"request_id":`)) {
			t.Errorf("%s stores %v\n%s\nwant a binary CloudEvent", name, m.Header, m.Data)
		}
	}

	for _, direct := range []bool{true, false} {
		setDirect(t, w.nats.URL(), direct)
		out, stderr, code := w.run2("", "results", "--json")
		got := docLines(out)
		if code != 0 || stderr != "" || len(got) != 3 {
			t.Fatalf("results --json (direct %v): exit %d, %d documents, stderr %q", direct, code, len(got), stderr)
		}
		for _, d := range printed {
			if !slices.Contains(got, d) {
				t.Errorf("results --json (direct %v) lacks the document revoke printed:\n%s", direct, d)
			}
		}
		for _, d := range got {
			if _, err := events.ParseResult([]byte(d)); err != nil || !strings.HasPrefix(d, `{"specversion":"1.0","id":`) {
				t.Errorf("results --json (direct %v) printed %s: %v", direct, d, err)
			}
		}
		table, _, code := w.run2("", "results", "--outcome", "rejected")
		if rows := strings.Split(strings.TrimSpace(table), "\n"); code != 0 || len(rows) != 3 ||
			!strings.Contains(table, "protected_key") || !strings.Contains(table, "invalid_request") {
			t.Errorf("results --outcome rejected (direct %v):\n%s", direct, table)
		}
	}
}
