package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/natstest"
)

// revoke --at sends not_before and returns once the worker has the request
// scheduled, without waiting for it: the key is still there, status shows
// the schedule, and the key is revoked after the time, not before.
func TestRevokeAt(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(2)
	w.startRun()

	out, stderr, code := w.run2("", "revoke", "--at", "+3s", keys[0])
	if code != 0 || !strings.HasPrefix(out, keys[0]+" scheduled for ") || stderr != "" {
		t.Fatalf("revoke --at: exit %d, stdout %q, stderr %q; want the key scheduled, exit 0", code, out, stderr)
	}
	at, err := time.Parse(time.RFC3339Nano, strings.Fields(out)[3])
	if err != nil {
		t.Fatalf("no time in %q: %v", out, err)
	}
	if !w.emu.HasKey(keys[0]) && time.Now().Before(at) {
		t.Error("the key is gone before its time")
	}
	if st, _, _ := w.run2("", "status", keys[0]); time.Now().Before(at) &&
		!strings.Contains(st, "scheduled     for "+at.Format(time.RFC3339Nano)+" by request revoker-cli-") {
		t.Errorf("status before the time:\n%s\nwant the schedule", st)
	}

	var res events.Result
	natstest.WaitFor(t, 20*time.Second, "the scheduled result", func() bool {
		for _, r := range storedResults(t, w.nats.URL()) {
			if r.APIKeyID == keys[0] {
				res = r
				return true
			}
		}
		return false
	})
	if res.Outcome != events.Revoked || res.CompletedAt.Before(at) || !res.NotBefore.Equal(at) {
		t.Errorf("result %+v, want revoked after, and with not_before, %v", res, at)
	}
	for _, c := range w.emu.Calls() {
		if c.KeyID == keys[0] && c.Signed.Before(at) {
			t.Errorf("%s signed at %v, before %v", c.Endpoint, c.Signed, at)
		}
	}
	if w.emu.HasKey(keys[0]) {
		t.Error("the key is still there")
	}

	// --json: one line per request, "outcome":"scheduled".
	out, _, code = w.run2("", "revoke", "--json", "--at", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), keys[1])
	var line struct {
		RequestID string    `json:"request_id"`
		APIKeyID  string    `json:"api_key_id"`
		Outcome   string    `json:"outcome"`
		NotBefore time.Time `json:"not_before"`
	}
	if err := json.Unmarshal([]byte(out), &line); code != 0 || err != nil || line.Outcome != "scheduled" ||
		line.APIKeyID != keys[1] || !strings.HasPrefix(line.RequestID, "revoker-cli-") || line.NotBefore.IsZero() {
		t.Errorf("revoke --json --at: exit %d, %q (%v)", code, out, err)
	}
	if !w.emu.HasKey(keys[1]) {
		t.Error("the key scheduled an hour ahead is gone")
	}
	// results --key shows the request still waiting, as scheduled, with its time.
	table, _, _ := w.run2("", "results", "--key", keys[1])
	want := line.RequestID + " "
	if !strings.Contains(table, want) || !strings.Contains(table, "scheduled") || !strings.Contains(table, "for "+line.NotBefore.UTC().Format("2006-01-02T15:04:05Z")) {
		t.Errorf("results --key before the time:\n%s\nwant %s scheduled with its time", table, line.RequestID)
	}
	jsonOut, _, _ := w.run2("", "results", "--json", "--key", keys[1])
	var got struct {
		RequestID string    `json:"request_id"`
		Outcome   string    `json:"outcome"`
		NotBefore time.Time `json:"not_before"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &got); err != nil || got.RequestID != line.RequestID || got.Outcome != "scheduled" || !got.NotBefore.Equal(line.NotBefore) {
		t.Errorf("results --json --key: %q (%v), want the scheduled request", jsonOut, err)
	}
}

// --at is checked before anything is sent.
func TestRevokeAtRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"revoke", "--at", "tomorrow", "k"}, `--at: "tomorrow" is neither an RFC 3339 time`},
		{[]string{"revoke", "--at", "+-5m", "k"}, `is not a positive duration after +`},
		{[]string{"revoke", "--at", "+1h", "--dry-run", "k"}, "--at and --dry-run do not go together"},
		{[]string{"revoke", "--at", "+1h", "--all"}, "--at and --all do not go together"},
		{[]string{"run", "--max-schedule", "2000h"}, "must be at most 1440h"},
	} {
		out, stderr, code := w.run2("", tc.args...)
		if code != exitConfig || out != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d saying %q", tc.args, code, out, stderr, exitConfig, tc.want)
		}
	}
}
