package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// storeResults stores n results in the results stream of a fresh server, as
// the worker stores them (stream config, subjects, Nats-Msg-Id), with
// direct gets allowed or not, and returns the environment to read them.
func storeResults(tb testing.TB, n int, direct bool) map[string]string {
	tb.Helper()
	srv := natstest.Start(tb)
	js, err := jetstream.New(natstest.Connect(tb, srv.URL()))
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	sc := provision.ResultsStreamConfig(worker.Config{}.Provisioning())
	sc.AllowDirect = direct
	if _, err := js.CreateStream(ctx, sc); err != nil {
		tb.Fatal(err)
	}
	outcomes := []events.Outcome{events.Revoked, events.Revoked, events.AlreadyRevoked, events.Rejected}
	now := time.Now().UTC()
	for i := range n {
		r := events.Result{
			RequestID: fmt.Sprintf("inc-%06d", i), RequestSeq: uint64(i + 1),
			APIKeyID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), Outcome: outcomes[i%len(outcomes)],
			Attempts: 1, Deliveries: 1, HTTPStatus: 204, Reason: "leaked in a public gist", RequestedBy: "ir-bot",
			Source: "incident-response", ReceivedAt: now, CompletedAt: now, DurationMS: 3,
		}
		if r.Outcome == events.Rejected {
			r.HTTPStatus, r.Error = 0, &events.Error{Code: events.CodeProtectedKey, Message: "listed in REVOKER_PROTECTED_KEYS"}
		}
		doc, err := r.MarshalEvent()
		if err != nil {
			tb.Fatal(err)
		}
		// A loaded machine (the race detector, other packages' tests) may ack
		// slowly: wait for room rather than fail.
		if _, err := js.PublishAsync(events.ResultSubject("keys.revoke.results", r.Outcome), doc,
			jetstream.WithMsgID(r.RequestID), jetstream.WithStallWait(30*time.Second)); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		tb.Fatal("storing the results took over a minute")
	}
	return map[string]string{"NATS_URL": srv.URL(), "REVOKER_LOG_FORMAT": "json"}
}

// lineCounter counts the lines written to it.
type lineCounter struct{ lines int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// 10,000 stored results are all read, in order, by direct gets (the results
// stream as provisioned) and by single gets. How fast is BenchmarkResults's
// figure: a test asserts no wall-clock time, which a loaded machine breaks.
func TestResultsReadsTenThousand(t *testing.T) {
	t.Parallel()
	for _, direct := range []bool{false, true} {
		env := storeResults(t, 10_000, direct)
		var out bytes.Buffer
		var errOut syncBuffer
		start := time.Now()
		err := run(context.Background(), []string{"results", "--json"}, getenv(env), nil, &out, &errOut)
		elapsed := time.Since(start)
		if err != nil {
			t.Fatalf("results: %v\n%s", err, &errOut)
		}
		docs := docLines(out.String())
		if len(docs) != 10_000 {
			t.Fatalf("direct=%v: %d results, want 10000", direct, len(docs))
		}
		for i, d := range docs {
			r, err := events.ParseResult([]byte(d))
			if err != nil || r.RequestID != fmt.Sprintf("inc-%06d", i) {
				t.Fatalf("direct=%v: result %d: %v %q", direct, i, err, r.RequestID)
			}
		}
		t.Logf("direct gets %v: 10,000 results in %v", direct, elapsed)
	}
}

// BenchmarkResults reads 10,000 stored results with "revoker results", as a
// table and as documents, by single gets and by direct gets. One op is one
// whole command: connect, read all 10,000, print.
//
//	go test -run '^$' -bench BenchmarkResults -benchtime 10x ./cmd/revoker
func BenchmarkResults(b *testing.B) {
	for _, direct := range []bool{false, true} {
		env := storeResults(b, 10_000, direct)
		mode := "single_gets"
		if direct {
			mode = "direct_gets"
		}
		for _, format := range []string{"table", "json"} {
			b.Run(mode+"/"+format, func(b *testing.B) {
				args := []string{"results"}
				if format == "json" {
					args = append(args, "--json")
				}
				for b.Loop() {
					var out lineCounter
					if err := run(context.Background(), args, getenv(env), nil, &out, io.Discard); err != nil {
						b.Fatal(err)
					}
					if want := 10_000 + map[bool]int{true: 0, false: 1}[format == "json"]; out.lines != want {
						b.Fatalf("%d lines, want %d", out.lines, want)
					}
				}
			})
		}
	}
}
