package main

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/natstest"
)

// docLines splits --json output into documents.
func docLines(out string) []string {
	var docs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			docs = append(docs, l)
		}
	}
	return docs
}

// setDirect turns direct gets of the results stream on or off, as an
// operator may (nats stream edit KEY_REVOKE_RESULTS --allow-direct).
func setDirect(t *testing.T, url string, on bool) {
	t.Helper()
	js, s := resultsStream(t, url)
	cfg := s.CachedInfo().Config
	cfg.AllowDirect = on
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
}

// results reads the audit log with every filter, as a table and as the
// stored documents, by direct gets and by single-message gets alike.
func TestResults(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(3)
	w.env["REVOKER_PROTECTED_KEYS"] = keys[2]
	w.startRun()
	gone := "00000000-0000-4000-8000-000000000001"

	first, stderr, code := w.run2("", "revoke", "--json", "--reason", "leaked", keys[0], gone)
	if code != exitNotFound || stderr != "revoker revoke: "+gone+": not in this account: a wrong ID, the wrong environment, or deleted outside revoker\n" {
		t.Fatalf("revoke --json of a key not in the account: exit %d, stderr %q", code, stderr)
	}
	// The stream's clock, not this process's: the CLI hears a result as
	// it is stored, and the stored time may come a moment after.
	natstest.WaitFor(t, 10*time.Second, "the first two results stored", func() bool { return len(storedResults(t, w.nats.URL())) == 2 })
	mid := lastStoredAt(t, w.nats.URL()).Add(time.Nanosecond)
	second, _, code := w.run2("", "revoke", "--json", keys[1], keys[2])
	if code != exitFailed {
		t.Fatalf("revoke: exit %d", code)
	}
	// Another system's request, with an id of its own.
	nc := natstest.Connect(t, w.nats.URL())
	if err := nc.Publish("keys.revoke.requests", []byte(`{"id":"inc-4711-1","api_key_id":"`+strings.ToUpper(gone)+`"}`)); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, "five stored results", func() bool { return len(storedResults(t, w.nats.URL())) == 5 })
	docs := append(docLines(first), docLines(second)...)
	stored := storedResults(t, w.nats.URL())

	for _, mode := range []string{"direct gets", "single gets"} { // as provisioned, then turned off
		t.Run(mode, func(t *testing.T) {
			setDirect(t, w.nats.URL(), mode == "direct gets")
			ctx := t.Context()
			l, err := openAuditLog(ctx, natstest.Connect(t, w.nats.URL()), Config{ResultsStream: "KEY_REVOKE_RESULTS"}, "keys.revoke.results.>")
			if err != nil || l.direct != (mode == "direct gets") {
				t.Fatalf("openAuditLog: %v, direct %v", err, l != nil && l.direct)
			}

			// --json: the stored documents, exactly, oldest first.
			out, stderr, code := w.run2("", "results", "--json")
			got := docLines(out)
			if code != 0 || stderr != "" || len(got) != 5 {
				t.Fatalf("results --json: exit %d, %d documents, stderr %q", code, len(got), stderr)
			}
			for _, d := range docs {
				if !slices.Contains(got, d) {
					t.Errorf("results --json lacks the document revoke --json printed:\n%s", d)
				}
			}
			for i, g := range got {
				if r, err := events.ParseResult([]byte(g)); err != nil || r.RequestID != stored[i].RequestID {
					t.Errorf("document %d is not the stream's %d-th: %v %+v", i, i+1, err, r)
				}
			}

			// The table: a header and one row a result.
			out, _, _ = w.run2("", "results")
			rows := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(rows) != 6 || strings.Join(strings.Fields(rows[0]), " ") != "STORED REQUEST KEY OUTCOME CODE ATTEMPTS SCOPES CANCELLED" {
				t.Fatalf("results table:\n%s", out)
			}
			for i, row := range rows[1:] {
				r := stored[i]
				code := "-"
				if r.Error != nil {
					code = string(r.Error.Code)
				}
				want := []string{r.RequestID, r.APIKeyID, string(r.Outcome), code, strconv.Itoa(r.Attempts), cell(blastCell(r)), "-"}
				f := strings.Fields(row)
				if len(f) != 8 || !slices.Equal(f[1:], want) {
					t.Errorf("row %q, want %q", row, want)
				} else if ts, err := time.Parse(time.RFC3339, f[0]); err != nil || ts.Before(mid.Add(-time.Minute)) || ts.After(time.Now()) {
					t.Errorf("stored time %q: %v", f[0], err)
				}
			}
			if !strings.Contains(out, keys[2]+"  rejected         protected_key            0         -                         -\n") {
				t.Errorf("no row of the protected key's rejection:\n%s", out)
			}

			count := func(args ...string) int {
				t.Helper()
				out, _, code := w.run2("", append([]string{"results", "--json"}, args...)...)
				if code != 0 {
					t.Errorf("results %s: exit %d", strings.Join(args, " "), code)
				}
				return len(docLines(out))
			}
			for _, c := range []struct {
				args []string
				want int
			}{
				{[]string{"--key", strings.ToUpper(keys[0])}, 1},
				{[]string{"--key", gone}, 2},
				{[]string{"--request", "inc-4711-1"}, 1},
				{[]string{"--request", "inc-4711"}, 0},
				{[]string{"--request", "revoker-cli-*"}, 4},
				{[]string{"--request", stored[0].RequestID[:len("revoker-cli-")+12] + "*"}, 2},
				{[]string{"--outcome", "rejected"}, 1},
				{[]string{"--outcome", "revoked", "--outcome", "already_revoked"}, 4},
				{[]string{"--outcome", "revoked,rejected"}, 3},
				{[]string{"--since", "1h"}, 5},
				{[]string{"--since", mid.Format(time.RFC3339Nano)}, 3},
				{[]string{"--since", time.Now().Add(time.Hour).Format(time.RFC3339)}, 0},
				{[]string{"--since", mid.Format(time.RFC3339Nano), "--outcome", "already_revoked"}, 1},
				{[]string{"--key", gone, "--outcome", "already_revoked", "--request", "inc-*"}, 1},
			} {
				if got := count(c.args...); got != c.want {
					t.Errorf("results %s: %d results, want %d", strings.Join(c.args, " "), got, c.want)
				}
			}
			if out, stderr, code := w.run2("", "results", "--key", keys[1], "--outcome", "failed"); code != 0 || out != "" || stderr != "no results\n" {
				t.Errorf("no match: exit %d, stdout %q, stderr %q", code, out, stderr)
			}
		})
	}

	// Every problem with the filters at once.
	_, stderr, code = w.run2("", "results", "--since", "yesterday", "--outcome", "gone", "--key", "a b", "--request", "a*b*")
	if code != exitConfig || !strings.Contains(stderr, "4 problems") {
		t.Errorf("bad filters: exit %d\n%s", code, stderr)
	}
}

// results --follow prints what is stored, then each new result as it is
// stored, until Ctrl-C.
func TestResultsFollow(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(3)
	w.startRun()
	if _, _, code := w.run2("", "revoke", keys[0]); code != 0 {
		t.Fatal("revoke failed")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := func(args ...string) (*syncBuffer, chan error) {
		var out, errOut syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, append([]string{"results", "--follow"}, args...), getenv(w.env), nil, &out, &errOut)
		}()
		return &out, done
	}
	jsonOut, jsonDone := follow("--json")
	tableOut, tableDone := follow("--outcome", "revoked", "--key", keys[1])

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--json follower printed:\n%s\ntable follower printed:\n%s", jsonOut, tableOut)
		}
	})
	natstest.WaitFor(t, 10*time.Second, "the stored result and the table's header", func() bool {
		return strings.Contains(jsonOut.String(), keys[0]) && strings.HasPrefix(tableOut.String(), "STORED")
	})
	start := time.Now()
	if _, _, code := w.run2("", "revoke", keys[1], keys[2]); code != 0 {
		t.Fatal("revoke failed")
	}
	natstest.WaitFor(t, 10*time.Second, "the new results", func() bool {
		return len(docLines(jsonOut.String())) == 3 && strings.Contains(tableOut.String(), keys[1]+" ")
	})
	t.Logf("new results printed %v after the revoke began", time.Since(start))
	if strings.Contains(tableOut.String(), keys[0]) || strings.Contains(tableOut.String(), keys[2]) {
		t.Errorf("the filtered follower printed other keys:\n%s", tableOut.String())
	}
	for i, d := range docLines(jsonOut.String()) {
		var doc map[string]any
		if err := json.Unmarshal([]byte(d), &doc); err != nil {
			t.Errorf("line %d: %v", i, err)
		}
	}
	cancel()
	for _, done := range []chan error{jsonDone, tableDone} {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("results --follow after Ctrl-C: %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("results --follow did not stop")
		}
	}
}

// status says what the ledger knows of each key and whether the account
// still lists it.
func TestStatus(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(2)
	stopRun, _ := w.startRun()
	out, _, code := w.run2("", "revoke", "--json", "--reason", "leaked in a public gist", "--requested-by", "oncall", keys[0])
	if code != 0 {
		t.Fatal("revoke failed")
	}
	res, err := events.ParseResult([]byte(strings.TrimSpace(out)))
	if err != nil {
		t.Fatal(err)
	}

	out, stderr, code := w.run2("", "status", strings.ToUpper(keys[0]), keys[1])
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || stderr != "" || len(lines) != 13 {
		t.Fatalf("status: exit %d stderr %q\n%s", code, stderr, out)
	}
	for i, want := range []string{
		keys[0],
		"  revoked       " + res.CompletedAt.Format("2006-01-02T15:04:05Z") + " by request " + res.RequestID + " (sequence ",
		"  confirmed     ", // a time, or not yet confirmed: revoke --json does not wait for it
		"  requested by  oncall",
		"  reason        leaked in a public gist",
		"  name          key-0", // the blast radius, as the account listed the key before the DELETE
		"  scopes        read,write",
		"  subaccount    none: the key could act on every subaccount",
		"  account       does not list the key",
		"",
		keys[1],
		"  revoked       no (the ledger has no record of it)",
		"  account       lists the key: it is live",
	} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("status line %d: %q, want %q", i, lines[i], want)
		}
	}

	out, _, code = w.run2("", "status", "--json", keys[0], keys[1])
	sts := jsonLines[keyStatus](t, out)
	if code != 0 || len(sts) != 2 {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	if r := sts[0].Revoked; r == nil || r.RequestID != res.RequestID || r.RequestSeq != res.RequestSeq || r.RequestedBy != "oncall" ||
		r.Reason != "leaked in a public gist" || sts[0].Listed == nil || *sts[0].Listed {
		t.Errorf("status --json of the revoked key: %+v %+v", sts[0], sts[0].Revoked)
	}
	if sts[1].Revoked != nil || sts[1].Listed == nil || !*sts[1].Listed {
		t.Errorf("status --json of the live key: %+v", sts[1])
	}

	// When no worker answers, the ledger still does: with the Kalshi
	// settings here, status lists the account itself and says so, and when
	// Kalshi does not answer either, it says that.
	stopRun()
	out, stderr, code = w.run2("", "status", keys[1])
	if code != 0 || !strings.Contains(out, "lists the key: it is live") || !signedHere(stderr) {
		t.Errorf("status without a worker: exit %d\n%s\n%s", code, out, stderr)
	}
	kalshiURL := w.env["KALSHI_BASE_URL"]
	w.env["KALSHI_BASE_URL"] = "http://127.0.0.1:1/trade-api/v2"
	out, stderr, code = w.run2("", "status", keys[0])
	if code != exitFailed || !strings.Contains(out, "by request "+res.RequestID) || !strings.Contains(out, "unknown: Kalshi did not answer") ||
		!strings.Contains(stderr, "cannot ask Kalshi") {
		t.Errorf("status with Kalshi down: exit %d\n%s\n%s", code, out, stderr)
	}
	w.env["KALSHI_BASE_URL"] = kalshiURL

	// Without the Kalshi settings nor a worker, only the ledger answers.
	delete(w.env, "KALSHI_API_KEY_ID")
	if _, stderr, code := w.run2("", "status", keys[0]); code != exitConfig || !strings.Contains(stderr, "go together") {
		t.Errorf("status with a key file but no key ID: exit %d %q", code, stderr)
	}
	delete(w.env, "KALSHI_PRIVATE_KEY_PATH")
	out, _, code = w.run2("", "status", "--json", keys[0])
	if code != exitFailed || !strings.Contains(out, `"listed":null`) || !strings.Contains(out, `"request_id":"`+res.RequestID+`"`) {
		t.Errorf("status without Kalshi or a worker: exit %d %s", code, out)
	}
	if out, _, _ := w.run2("", "status", keys[1]); !strings.Contains(out, "account       unknown: no worker answered") {
		t.Errorf("status without Kalshi or a worker:\n%s", out)
	}
	for _, args := range [][]string{{"status"}, {"status", "not a key"}, {"status", "-"}} {
		if _, _, code := w.run2("", args...); code != exitConfig {
			t.Errorf("revoker %s: exit %d, want %d", strings.Join(args, " "), code, exitConfig)
		}
	}
}

// lastStoredAt is when the results stream stored its last message.
func lastStoredAt(t *testing.T, url string) time.Time {
	t.Helper()
	_, s := resultsStream(t, url)
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(t.Context(), info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	return m.Time
}

// resultsStream is the results stream, on a connection of the test's own.
func resultsStream(t *testing.T, url string) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), "KEY_REVOKE_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	return js, s
}
