package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// storedUntrusted reads the untrusted rejections' stream.
func storedUntrusted(t *testing.T, url string) []events.Result {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	s, err := js.Stream(ctx, provision.UntrustedStream)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Result
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		r, err := events.ParseResultMsg(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// results reads the results stream and the untrusted rejections as one
// log, in the order they were stored, with every filter, and --follow
// shows new rejections too. The junk is stored only in its own stream.
func TestResultsReadsUntrustedRejections(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(3)
	w.env["REVOKER_PROTECTED_KEYS"] = keys[2]
	w.startRun()
	nc := natstest.Connect(t, w.nats.URL())
	junk := func(body string) {
		t.Helper()
		if err := nc.Publish("keys.revoke.requests", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	// Stored one after the other: trusted, junk, trusted, junk, trusted.
	steps := []func(){
		func() { w.run2("", "revoke", keys[0]) },
		func() { junk(`{"id":"junk-1","api_key_id":"x y"}`) },
		func() { w.run2("", "revoke", keys[2]) }, // protected: rejected, trusted
		func() { junk(`{"id":"junk-2",`) },
		func() { w.run2("", "revoke", keys[1]) },
	}
	for i, step := range steps {
		step()
		natstest.WaitFor(t, 10*time.Second, "the step's result", func() bool {
			return len(storedResults(t, w.nats.URL()))+len(storedUntrusted(t, w.nats.URL())) == i+1
		})
	}
	if n := len(storedUntrusted(t, w.nats.URL())); n != 2 || len(storedResults(t, w.nats.URL())) != 3 {
		t.Fatalf("%d untrusted rejections and %d results stored, want 2 apart from the 3 trusted", n, len(storedResults(t, w.nats.URL())))
	}

	order := func(args ...string) []string {
		t.Helper()
		out, stderr, code := w.run2("", append([]string{"results", "--json"}, args...)...)
		if code != 0 || stderr != "" {
			t.Fatalf("results --json %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
		var got []string
		for _, d := range docLines(out) {
			r, err := events.ParseResult([]byte(d))
			if err != nil {
				t.Fatal(err)
			}
			label := r.APIKeyID
			if r.Error != nil && r.Error.Code == events.CodeInvalidRequest {
				label = string(r.Error.Code)
			}
			got = append(got, label)
		}
		return got
	}
	all := []string{keys[0], "invalid_request", keys[2], "invalid_request", keys[1]}
	if got := order(); !slices.Equal(got, all) {
		t.Errorf("results: %q, want both streams in the order stored %q", got, all)
	}
	// The same by single-message gets, as when an operator turned direct
	// gets off on both streams.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"KEY_REVOKE_RESULTS", provision.UntrustedStream} {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.AllowDirect = false
		if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	if got := order(); !slices.Equal(got, all) {
		t.Errorf("results by single gets: %q, want %q", got, all)
	}
	if got := order("--outcome", "rejected"); !slices.Equal(got, []string{"invalid_request", keys[2], "invalid_request"}) {
		t.Errorf("results --outcome rejected: %q", got)
	}
	if got := order("--outcome", "revoked"); !slices.Equal(got, []string{keys[0], keys[1]}) {
		t.Errorf("results --outcome revoked: %q", got)
	}
	if got := order("--request", "untrusted-*"); !slices.Equal(got, []string{"invalid_request", "invalid_request"}) {
		t.Errorf("results --request untrusted-*: %q", got)
	}
	if got := order("--since", time.Now().Add(time.Hour).Format(time.RFC3339)); len(got) != 0 {
		t.Errorf("results --since an hour ahead: %q", got)
	}
	table, _, code := w.run2("", "results")
	if rows := strings.Split(strings.TrimSpace(table), "\n"); code != 0 || len(rows) != 6 || !strings.Contains(rows[2], "rejected         invalid_request") {
		t.Errorf("results table:\n%s", table)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"results", "--follow", "--json"}, getenv(w.env), nil, &out, &errOut)
	}()
	natstest.WaitFor(t, 10*time.Second, "the five stored results", func() bool { return len(docLines(out.String())) == 5 })
	junk(`{"id":"junk-3","api_key_id":"../x"}`)
	natstest.WaitFor(t, 10*time.Second, "the new rejection", func() bool {
		return len(docLines(out.String())) == 6 && strings.Contains(out.String(), `"request_id":"junk-3"`)
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("results --follow after Ctrl-C: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("results --follow did not stop")
	}
}

// A request revoke sends that the worker cannot trust (here: signing is on
// and revoke has no seed) is rejected in the untrusted stream, and revoke
// prints that rejection instead of waiting until its timeout.
func TestRevokeSeesItsUntrustedRejection(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(1)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	w.env["REVOKER_TRUSTED_SIGNERS"] = pub
	w.startRun()
	// Its timeout would end it with a different line: the rejection
	// printed is the proof that it did not wait.
	out, _, code := w.run2("", "revoke", "--timeout", "8s", keys[0])
	if code != exitFailed || !strings.HasPrefix(out, keys[0]+" rejected unauthorized_request: ") {
		t.Errorf("revoke of an unsigned request: exit %d, %q; want its rejection", code, out)
	}
	if !w.emu.HasKey(keys[0]) {
		t.Error("an unsigned request deleted the key")
	}
}
