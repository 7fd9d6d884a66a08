package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// splitConfirmations separates what revoke printed: the outcome lines, in
// order, and the keys of the "KEY confirmed" and "KEY unconfirmed: ..."
// lines, sorted (keys are confirmed in any order).
func splitConfirmations(out string) (outcomes string, confirmed, unconfirmed []string) {
	var b strings.Builder
	for _, line := range strings.SplitAfter(out, "\n") {
		switch key, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " "); {
		case rest == "confirmed":
			confirmed = append(confirmed, key)
		case strings.HasPrefix(rest, "unconfirmed: "):
			unconfirmed = append(unconfirmed, key)
		default:
			b.WriteString(line)
		}
	}
	slices.Sort(confirmed)
	slices.Sort(unconfirmed)
	return b.String(), confirmed, unconfirmed
}

// fakeWorker plays the worker for the CLI on a provisioned NATS server: the
// test reads the requests, publishes their results and writes the ledger's
// records, each when it chooses.
type fakeWorker struct {
	t        *testing.T
	srv      *natstest.Server
	nc       *nats.Conn
	requests jetstream.Stream
	ledger   jetstream.KeyValue
}

func newFakeWorker(t *testing.T) *fakeWorker {
	t.Helper()
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := provision.Ensure(ctx, js, worker.Config{}.Provisioning()); err != nil {
		t.Fatal(err)
	}
	requests, err := js.Stream(ctx, worker.DefaultRequestsStream)
	if err != nil {
		t.Fatal(err)
	}
	ledgerKV, err := js.KeyValue(ctx, ledger.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeWorker{t: t, srv: srv, nc: nc, requests: requests, ledger: ledgerKV}
}

// storedRequests is how many requests the stream ever stored.
func (f *fakeWorker) storedRequests() uint64 {
	f.t.Helper()
	info, err := f.requests.Info(f.t.Context())
	if err != nil {
		f.t.Fatal(err)
	}
	return info.State.LastSeq
}

// request waits for the request stored under sequence seq and returns it.
func (f *fakeWorker) request(seq uint64) *jetstream.RawStreamMsg {
	f.t.Helper()
	natstest.WaitFor(f.t, 20*time.Second, "the CLI's requests", func() bool { return f.storedRequests() >= seq })
	m, err := f.requests.GetMsg(f.t.Context(), seq)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

// requestID is the id of the request stored under seq.
func (f *fakeWorker) requestID(seq uint64) string {
	f.t.Helper()
	var body struct{ ID string }
	if err := json.Unmarshal(f.request(seq).Data, &body); err != nil {
		f.t.Fatal(err)
	}
	return body.ID
}

// result publishes the result of the request stored under seq.
func (f *fakeWorker) result(seq uint64, r events.Result) {
	f.t.Helper()
	now := time.Now()
	r.RequestID, r.RequestSeq, r.ReceivedAt, r.CompletedAt = f.requestID(seq), seq, now, now
	doc, err := r.MarshalEvent()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.nc.Publish(events.ResultSubject(worker.DefaultResultsSubject, r.Outcome), doc); err != nil {
		f.t.Fatal(err)
	}
}

// record writes the ledger's record of a revoked key (key.<canonical id>,
// as worker/ledger.go lays the bucket out); confirmed zero: not confirmed.
func (f *fakeWorker) record(keyID, requestID string, confirmed time.Time) {
	f.t.Helper()
	v, err := json.Marshal(ledger.KeyRecord{RequestID: requestID, RevokedAt: time.Now(), ConfirmedAt: confirmed})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.ledger.Put(f.t.Context(), "key."+events.CanonicalAPIKeyID(keyID), v); err != nil {
		f.t.Fatal(err)
	}
}

// cli starts one command against f's server and returns a function that
// waits for its end.
func (f *fakeWorker) cli(env map[string]string, stdin string, args ...string) func() (stdout, stderr string, code int) {
	f.t.Helper()
	env = withEnv(map[string]string{"NATS_URL": f.srv.URL()}, env)
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), args, getenv(env), strings.NewReader(stdin), &out, &errOut)
	}()
	return func() (string, string, int) {
		f.t.Helper()
		select {
		case err := <-done:
			f.t.Logf("revoker %s\nstdout:\n%s\nstderr:\n%s\nerr: %v", strings.Join(args, " "), out.String(), errOut.String(), err)
			return out.String(), errOut.String(), exitCode(err)
		case <-time.After(60 * time.Second):
			f.t.Fatalf("revoker %s did not return", strings.Join(args, " "))
			return "", "", 0
		}
	}
}

// revoke waits, within its --timeout, for the ledger to confirm each key it
// revoked: "KEY confirmed" as the confirmation arrives, "KEY unconfirmed:
// ..." at the end for the others; the exit status is the outcomes' alone.
// status shows the confirmation. --json prints no such lines and does not
// wait.
func TestRevokeWaitsForConfirmation(t *testing.T) {
	t.Parallel()
	f := newFakeWorker(t)
	f.record("k-2", "earlier", time.Time{}) // revoked, never confirmed
	wait := f.cli(nil, "", "revoke", "--timeout", "3s", "k-1", "K-2", "k-3")
	f.result(1, events.Result{APIKeyID: "k-1", Outcome: events.Revoked})
	f.result(2, events.Result{APIKeyID: "k-2", Outcome: events.Revoked})
	f.result(3, events.Result{APIKeyID: "k-3", Outcome: events.Failed, Error: &events.Error{Code: events.CodeRetriesExhausted, Message: "kalshi kept failing"}})
	f.record("k-1", f.requestID(1), time.Now())

	out, stderr, code := wait()
	want := "k-1 revoked\nK-2 revoked\nk-3 failed retries_exhausted: kalshi kept failing\n" +
		"k-1 confirmed\n" +
		"K-2 unconfirmed: no confirmation within --timeout 3s; the account may still list the key: check \"revoker status k-2\"\n"
	if out != want || code != exitFailed || stderr != "" {
		t.Errorf("revoke: exit %d\n%s\nwant\n%s\nstderr %q", code, out, want, stderr)
	}

	out, _, code = f.cli(nil, "", "status", "k-1", "k-2")() // no worker's console: the account is unknown
	if code != exitFailed || !strings.Contains(out, "k-1\n  revoked ") || !strings.Contains(out, "  confirmed     "+time.Now().UTC().Format("2006-01-02T")) ||
		!strings.Contains(out, "k-2\n  revoked       ") || !strings.Contains(out, "  confirmed     not yet confirmed: the account may still list the key\n") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	out, _, _ = f.cli(nil, "", "status", "--json", "k-1")()
	if sts := jsonLines[keyStatus](t, out); len(sts) != 1 || sts[0].Revoked == nil || sts[0].Revoked.ConfirmedAt.IsZero() {
		t.Errorf("status --json: %s", out)
	}

	// --json: the result documents only, at once: no confirmation comes,
	// and a wait for one would outlast wait's deadline.
	wait = f.cli(nil, "", "revoke", "--json", "--timeout", "1h", "k-4")
	f.result(4, events.Result{APIKeyID: "k-4", Outcome: events.Revoked})
	out, _, code = wait()
	if docs := docLines(out); code != 0 || len(docs) != 1 || !strings.Contains(docs[0], `"outcome":"revoked"`) {
		t.Errorf("revoke --json: exit %d %q", code, out)
	}
}

// A user the server refuses the ledger (as deploy/nats's requester) still
// gets its outcomes and exit status, and a plain word for the confirmation
// it cannot see: no error, nothing on stderr, no wait.
func TestRevokeConfirmationLedgerRefused(t *testing.T) {
	t.Parallel()
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte(`
jetstream: enabled
accounts: {
  REVOKER: {
    jetstream: enabled
    users: [
      { user: operator, password: op }
      { user: requester, password: rq, permissions: {
          publish: { allow: ["keys.revoke.requests"] }
          subscribe: { allow: ["keys.revoke.results.>", "keys.revoke.untrusted.>", "_INBOX.>"] } } }
    ]
  }
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, natstest.WithConfigFile(conf))
	nc := natstest.Connect(t, srv.URL(), nats.UserInfo("operator", "op"))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := provision.Ensure(t.Context(), js, worker.Config{}.Provisioning()); err != nil {
		t.Fatal(err)
	}
	requests, err := js.Stream(t.Context(), worker.DefaultRequestsStream)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeWorker{t: t, srv: srv, nc: nc, requests: requests}
	// No confirmation comes: a wait for one would outlast wait's deadline.
	wait := f.cli(map[string]string{"NATS_URL": strings.Replace(srv.URL(), "nats://", "nats://requester:rq@", 1), "REVOKER_LOG_FORMAT": "json"},
		"", "revoke", "--timeout", "1h", "k-1")
	f.result(1, events.Result{APIKeyID: "k-1", Outcome: events.Revoked})
	out, stderr, code := wait()
	want := "k-1 revoked\nk-1 unconfirmed: this NATS user may not read the ledger REVOKER_LEDGER, where the worker records confirmations; the account may still list the key: check \"revoker status k-1\"\n"
	if code != 0 || out != want || stderr != "" {
		t.Errorf("revoke as a user without the ledger: exit %d\n%s\nwant\n%s\nstderr %q", code, out, want, stderr)
	}
}
