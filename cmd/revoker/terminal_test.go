package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/natstest"
)

// The characters a terminal must never receive raw from a request or from
// Kalshi: right-to-left override, zero-width space, line separator.
const (
	rlo  = "\u202e"
	zwsp = "\u200b"
	lsep = "\u2028"
)

// rawTricks reports which of the characters appear raw in out.
func rawTricks(out string) []string {
	var found []string
	for _, c := range []string{rlo, zwsp, lsep} {
		if strings.Contains(out, c) {
			found = append(found, strings.Trim(events.Quote(c), `"`))
		}
	}
	return found
}

// Request ids, reasons and key names holding U+202E, U+200B or U+2028
// reach the terminal quoted (or, in JSON, as \u escapes) in results,
// status, keys and the --all plan.
func TestTerminalSafeOutput(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	revoked := w.seed(3)
	// Listed and left alone: keys and the --all plan show their names.
	w.emu.AddKey("invoice"+rlo+"txt.exe", &emulatortest.Key().PublicKey)
	w.emu.AddKey("prod"+zwsp+"key"+lsep+"line", &emulatortest.Key().PublicKey)
	w.startRun()

	js, err := jetstream.New(natstest.Connect(t, w.nats.URL()))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"inc" + rlo + "1-tneser", "inc" + zwsp + "2", "inc" + lsep + "3"}
	for i, key := range revoked {
		body, _ := json.Marshal(map[string]string{"id": ids[i], "api_key_id": key, "reason": "leaked" + rlo + zwsp + lsep + "!", "requested_by": "bot" + zwsp})
		if _, err := js.Publish(t.Context(), worker.DefaultRequestsSubject, body); err != nil {
			t.Fatal(err)
		}
	}
	natstest.WaitFor(t, 20*time.Second, "three results", func() bool {
		out, _ := w.cli("results", "--json")
		return strings.Count(out, "\n") >= 3
	})

	for _, args := range [][]string{
		{"results"},
		{"results", "--json"},
		{"status", revoked[0], revoked[1]},
		{"status", "--json", revoked[0], revoked[1]},
		{"keys"},
		{"keys", "--json"},
	} {
		out, _, _ := w.run2("", args...)
		if raw := rawTricks(out); len(raw) > 0 {
			t.Errorf("revoker %s printed %v raw:\n%s", strings.Join(args, " "), raw, out)
		}
		switch {
		case strings.Contains(strings.Join(args, " "), "--json"):
			if !strings.Contains(out, `\u202e`) {
				t.Errorf("revoker %s: no \\u202e escape:\n%s", strings.Join(args, " "), out)
			}
		case args[0] == "keys":
			if !strings.Contains(out, `"invoice\u202etxt.exe"`) || !strings.Contains(out, `"prod\u200bkey\u2028line"`) {
				t.Errorf("keys: names not quoted:\n%s", out)
			}
		case args[0] == "results":
			if !strings.Contains(out, `"inc\u202e1-tneser"`) || !strings.Contains(out, `"inc\u200b2"`) {
				t.Errorf("results: ids not quoted:\n%s", out)
			}
		case args[0] == "status":
			if !strings.Contains(out, `by request "inc\u202e1-tneser"`) || !strings.Contains(out, `reason        "leaked\u202e\u200b\u2028!"`) {
				t.Errorf("status: id or reason not quoted:\n%s", out)
			}
		}
	}

	// The --all plan: names as Kalshi lists them.
	for _, args := range [][]string{{"revoke", "--all", "--dry-run"}, {"revoke", "--all", "--dry-run", "--json"}} {
		out, _, _ := w.run2("", args...)
		if raw := rawTricks(out); len(raw) > 0 || !strings.Contains(out, `invoice\u202etxt.exe`) {
			t.Errorf("revoker %s printed %v raw:\n%s", strings.Join(args, " "), raw, out)
		}
	}
}

// revoke's own lines: a result whose message holds the characters (as a
// forged one, or Kalshi's text, could) is printed escaped.
func TestTerminalSafeRevokeLines(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(1)
	reqs := w.provisioned() // no worker: the result below is the only one
	nc := natstest.Connect(t, w.nats.URL())
	forge := func(seq uint64) {
		natstest.WaitFor(t, 20*time.Second, "the request", func() bool { return everStored(t, reqs) == seq })
		doc, err := (&events.Result{RequestID: "x", RequestSeq: seq, APIKeyID: keys[0], Outcome: events.Rejected,
			Error: &events.Error{Code: events.CodeKalshiBadRequest, Message: "Kalshi said: " + rlo + "lave" + zwsp + lsep}}).MarshalEvent()
		if err != nil {
			t.Error(err)
			return
		}
		if err := nc.PublishMsg(&nats.Msg{Subject: events.ResultSubject(worker.DefaultResultsSubject, events.Rejected), Data: doc}); err != nil {
			t.Error(err)
		}
	}
	for i, args := range [][]string{{"revoke", "--timeout", "20s", keys[0]}, {"revoke", "--timeout", "20s", "--json", keys[0]}} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			forge(uint64(i + 1))
		}()
		out, _, _ := w.run2("", args...)
		<-done
		if raw := rawTricks(out); len(raw) > 0 || !strings.Contains(out, `\u202elave\u200b\u2028`) {
			t.Errorf("revoker %s printed %v raw:\n%s", strings.Join(args, " "), raw, out)
		}
	}
}
