package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/revoker/revoker/worker/natstest"
)

// runSandbox runs "revoker sandbox --dir dir" on free ports until the test
// ends or stop is called; done closes when it returned.
func runSandbox(t *testing.T, dir string) (out, logs *syncBuffer, stop func() error, done <-chan struct{}) {
	t.Helper()
	out, logs = &syncBuffer{}, &syncBuffer{}
	args := []string{"sandbox", "--dir", dir, "--keys", "2", "--nats-listen", "127.0.0.1:0", "--http-addr", natstest.FreeAddr(t)}
	stop, done = natstest.Go(t, 30*time.Second, "sandbox did not stop within 30s", func(ctx context.Context) error {
		return run(ctx, args, getenv(map[string]string{"REVOKER_LOG_FORMAT": "json"}), nil, out, logs)
	})
	return out, logs, stop, done
}

func readSandboxInfo(t *testing.T, dir string) sandboxInfo {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, sandboxJSON))
	if err != nil {
		t.Fatal(err)
	}
	var info sandboxInfo
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

// A --dir reused after an earlier sandbox run starts clean, and says so:
// the earlier run's results must not sit beside the new run's keys. A
// --dir a sandbox still serves from, or one holding a store no sandbox
// wrote, is refused, saying why, and left as it is.
func TestSandboxDirReused(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "rehearsal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "notes.txt") // the user's: never removed
	if err := os.WriteFile(mine, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out, logs, stop, _ := runSandbox(t, dir)
	natstest.WaitFor(t, 60*time.Second, "the first sandbox is ready", func() bool { return strings.Contains(out.String(), "\nOr publish a request") })
	first := readSandboxInfo(t, dir)
	env := map[string]string{"NATS_URL": first.NATSURL, "REVOKER_LOG_FORMAT": "json"}
	var revokeOut, revokeErr syncBuffer
	if err := run(t.Context(), []string{"revoke", first.Keys[0]}, getenv(env), nil, &revokeOut, &revokeErr); err != nil {
		t.Fatalf("revoke in the first sandbox: %v\n%s%s", err, revokeOut.String(), revokeErr.String())
	}
	if strings.Contains(logs.String(), "earlier sandbox run") {
		t.Errorf("a fresh --dir is said to hold an earlier run:\n%s", logs)
	}

	// While it runs, a second sandbox may not take its directory.
	_, logs2, stop2, done2 := runSandbox(t, dir)
	select {
	case <-done2:
	case <-time.After(30 * time.Second):
		t.Fatal("a second sandbox on a --dir in use did not stop")
	}
	if err := stop2(); err == nil || !strings.Contains(err.Error(), "belongs to a sandbox that is still running (NATS answers at "+first.NATSURL+")") {
		t.Errorf("second sandbox on a --dir in use: %v\n%s", err, logs2)
	}
	if got := readSandboxInfo(t, dir); got.NATSURL != first.NATSURL {
		t.Error("the refused sandbox changed sandbox.json")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Run again on the same --dir: clean, and said.
	out, logs, stop, _ = runSandbox(t, dir)
	natstest.WaitFor(t, 60*time.Second, "the second sandbox is ready", func() bool { return strings.Contains(out.String(), "\nOr publish a request") })
	if !strings.Contains(logs.String(), "--dir held an earlier sandbox run: removed its JetStream store (results, ledger, requests) and files; this run starts clean") {
		t.Errorf("the reused --dir is not said to start clean:\n%s", logs)
	}
	second := readSandboxInfo(t, dir)
	env["NATS_URL"] = second.NATSURL
	var resultsOut, resultsErr syncBuffer
	if err := run(t.Context(), []string{"results", "--json"}, getenv(env), nil, &resultsOut, &resultsErr); err != nil || resultsOut.String() != "" {
		t.Errorf("results of the new run: %v\n%s%s", err, resultsOut.String(), resultsErr.String())
	}
	if first.Keys[0] == second.Keys[0] {
		t.Error("the new run has the old run's keys")
	}
	if data, err := os.ReadFile(mine); err != nil || string(data) != "mine\n" {
		t.Errorf("the user's file in --dir: %q, %v", data, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A store no sandbox wrote is not the sandbox's to remove.
	other := t.TempDir()
	if err := os.MkdirAll(filepath.Join(other, sandboxStore, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, _, stop3, done3 := runSandbox(t, other)
	select {
	case <-done3:
	case <-time.After(30 * time.Second):
		t.Fatal("a sandbox on a --dir with a foreign store did not stop")
	}
	if err := stop3(); err == nil || !strings.Contains(err.Error(), "holds jetstream but no sandbox.json: not an earlier sandbox run") {
		t.Errorf("sandbox on a --dir with a foreign store: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, sandboxStore, "data")); err != nil {
		t.Errorf("the foreign store was touched: %v", err)
	}
}
