package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/revoker/revoker/worker/natstest"
)

// run2 runs one short command with stdin and returns both outputs and the
// exit status run implies (0 for nil, -1 for an error that is not one).
func (w *world) run2(stdin string, args ...string) (stdout, stderr string, code int) {
	w.t.Helper()
	var out, errOut syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := run(ctx, args, getenv(w.env), strings.NewReader(stdin), &out, &errOut)
	w.t.Logf("revoker %s\nstdout:\n%s\nstderr:\n%s\nerr: %v", strings.Join(args, " "), out.String(), errOut.String(), err)
	return out.String(), errOut.String(), exitCode(err)
}

func exitCode(err error) int {
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	}
	return -1
}

// jsonLines decodes one JSON object a line into T.
func jsonLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var all []T
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		all = append(all, v)
	}
	return all
}

// revoke -f reads key IDs one a line from a file or standard input, skipping
// blank lines and comments, each key once; "-" is never a key ID; a list
// with a bad line sends nothing and names every bad line.
func TestRevokeKeyFile(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(4)
	w.startRun()

	file := filepath.Join(t.TempDir(), "leaked.txt")
	content := "# leaked in the gist of 25 Nov\n\n" + keys[0] + "\n  " + keys[1] + "  # the CI key\n" + strings.ToUpper(keys[0]) + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := w.run2("", "revoke", "-f", file, keys[2])
	outcomes, _, _ := splitConfirmations(out)
	want := fmt.Sprintf("%s revoked\n%s revoked\n%s revoked\n", keys[2], keys[0], keys[1])
	if code != 0 || outcomes != want || stderr != "" {
		t.Errorf("revoke -f FILE: exit %d\n%s\nwant\n%s\nstderr %q", code, out, want, stderr)
	}

	out, _, code = w.run2(keys[3]+"\n", "revoke", "--filename", "-")
	if outcomes, _, _ := splitConfirmations(out); code != 0 || outcomes != keys[3]+" revoked\n" {
		t.Errorf("revoke --filename - (standard input): exit %d %q", code, out)
	}
	for _, k := range keys {
		if w.emu.HasKey(k) {
			t.Errorf("%s is still live", k)
		}
	}

	// "-" as an argument is refused before anything is sent.
	before := len(storedResults(t, w.nats.URL()))
	_, stderr, code = w.run2("", "revoke", "-")
	if code != exitConfig || !strings.Contains(stderr, `"-" is not a key ID; to read key IDs from standard input, use -f -`) {
		t.Errorf(`revoke -: exit %d, stderr %q`, code, stderr)
	}
	// Every bad line is named; nothing is sent.
	_, stderr, code = w.run2("ok-key_1\nnot a key\n-\n\n"+strings.Repeat("x", 129)+"\n", "revoke", "-f", "-")
	for _, want := range []string{"3 problems", `standard input line 2: "not a key" is not a Kalshi API key ID`, `standard input line 3: "-" is not a key ID`, "standard input line 5: "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if code != exitConfig {
		t.Errorf("a bad list: exit %d, want %d", code, exitConfig)
	}
	_, stderr, code = w.run2("# nothing\n\n", "revoke", "-f", "-")
	if code != exitConfig || !strings.Contains(stderr, "standard input lists no key IDs") {
		t.Errorf("an empty list: exit %d %q", code, stderr)
	}
	_, stderr, code = w.run2("", "revoke", "-f", filepath.Join(t.TempDir(), "missing.txt"))
	if code != exitConfig || !strings.Contains(stderr, "no such file or directory") {
		t.Errorf("a missing file: exit %d %q", code, stderr)
	}
	if after := len(storedResults(t, w.nats.URL())); after != before {
		t.Errorf("refused lists sent %d requests", after-before)
	}
}

// signedHere reports whether stderr is the one line saying that no
// worker's console answered, so the command signed its Kalshi calls here.
func signedHere(stderr string) bool {
	return strings.Count(stderr, "\n") == 1 && strings.Contains(stderr, "no worker's console answered; signing Kalshi calls here")
}

// revoke --dry-run lists the account's keys once, deletes nothing, and says
// per key would_revoke, not_found or refused with the guard's code. With no
// worker to ask and the Kalshi settings given here, it plans here, with
// the guards set here, and says so on one line.
func TestRevokeDryRun(t *testing.T) {
	t.Parallel()
	w := newWorld(t) // no worker and no NATS: the plan is made here
	w.env["NATS_URL"] = "nats://127.0.0.1:1"
	keys := w.seed(3)
	w.env["REVOKER_PROTECTED_KEYS"] = keys[1]
	missing := "00000000-0000-4000-8000-00000000abcd"

	requests := w.emu.Stats().Requests
	out, stderr, code := w.run2("", "revoke", "--dry-run", keys[0], strings.ToUpper(keys[1]), w.selfID, "bad.id", missing)
	want := keys[0] + " would_revoke\n" +
		strings.ToUpper(keys[1]) + " refused protected_key: listed in REVOKER_PROTECTED_KEYS\n" +
		w.selfID + " refused self_revocation_refused: the key revoker signs with (KALSHI_API_KEY_ID); REVOKER_ALLOW_SELF_REVOKE=true allows it\n" +
		"bad.id refused invalid_request: \"bad.id\" is not a Kalshi API key ID (1 to 128 letters, digits, '-' or '_')\n" +
		missing + " not_found (not in this account: a wrong ID, the wrong environment, or deleted outside revoker)\n"
	if out != want || code != exitFailed || !signedHere(stderr) {
		t.Errorf("dry run: exit %d\n%s\nwant\n%s\nstderr %q", code, out, want, stderr)
	}
	if got := w.emu.Stats().Requests - requests; got != 1 {
		t.Errorf("the dry run made %d Kalshi requests, want 1 (one key list)", got)
	}
	for _, k := range append(keys, w.selfID) {
		if !w.emu.HasKey(k) {
			t.Errorf("the dry run deleted %s", k)
		}
	}
	if n := len(w.emu.Stats().DeleteAttempts); n != 0 {
		t.Errorf("the dry run sent %d deletes", n)
	}

	// An ID read from a file that holds terminal escapes is refused, and
	// printed quoted: nothing reaches the terminal raw.
	out, _, _ = w.run2("\x1b[2Jx\n", "revoke", "--dry-run", "-f", "-")
	if strings.ContainsRune(out, '\x1b') || !strings.Contains(out, `"\x1b[2Jx" refused invalid_request`) {
		t.Errorf("dry run of an ID with an escape printed %q", out)
	}

	out, _, code = w.run2(keys[2]+"\n"+missing+"\n", "revoke", "--dry-run", "--json", "-f", "-", keys[1])
	plans := jsonLines[map[string]any](t, out)
	wantPlans := []map[string]any{
		{"api_key_id": keys[1], "plan": "refused", "code": "protected_key"},
		{"api_key_id": keys[2], "plan": "would_revoke"},
		{"api_key_id": missing, "plan": "not_found"},
	}
	if code != exitFailed || len(plans) != 3 || fmt.Sprint(plans) != fmt.Sprint(wantPlans) {
		t.Errorf("dry run --json: exit %d %v\nwant %v", code, plans, wantPlans)
	}

	// Exit 0 only when every key would be revoked; 3 for a key not in the
	// account, unless --ignore-not-found.
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{keys[0], keys[2]}, 0},
		{[]string{keys[0], missing}, exitNotFound},
		{[]string{"--ignore-not-found", keys[0], missing}, 0},
		{[]string{"--allow-self-revoke", w.selfID}, 0},
	} {
		if _, _, code := w.run2("", append([]string{"revoke", "--dry-run"}, c.args...)...); code != c.code {
			t.Errorf("revoke --dry-run %s: exit %d, want %d", strings.Join(c.args, " "), code, c.code)
		}
	}

	// Without a worker to ask nor the Kalshi settings, the dry run says whom
	// it could not ask; a real revoke does not read the Kalshi settings.
	delete(w.env, "KALSHI_API_KEY_ID")
	delete(w.env, "KALSHI_PRIVATE_KEY_PATH")
	if out, stderr, code := w.run2("", "revoke", "--dry-run", keys[0]); code == 0 || out != "" || !strings.Contains(stderr, "cannot ask the worker's console") {
		t.Errorf("dry run without a worker or KALSHI_API_KEY_ID: exit %d %q", code, stderr)
	}
	w.env["KALSHI_PRIVATE_KEY_PATH"] = filepath.Join(t.TempDir(), "nowhere.pem")
	if _, err := parseConfigFor(t, w.env, "revoke", keys[0]); err != nil {
		t.Errorf("revoke without --dry-run read the Kalshi settings: %v", err)
	}
}

func parseConfigFor(t *testing.T, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	cfg, _, err := parseConfig(args[0], args[1:], getenv(env))
	return cfg, err
}

// keys --json and check --json print one object a line; the commands an
// operator runs print only their answer: their NATS connection's lines go
// to debug.
func TestJSONOutputAndQuietCommands(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(2)
	w.startRun()
	w.env["REVOKER_LOG_FORMAT"] = "text"

	out, stderr, code := w.run2("", "keys", "--json")
	type key struct {
		ID     string   `json:"api_key_id"`
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
		Own    bool     `json:"own"`
	}
	listed := jsonLines[key](t, out)
	ids := map[string]bool{}
	for _, k := range listed {
		ids[k.ID] = true
		if k.Own != (k.ID == w.selfID) {
			t.Errorf("key %s own=%v", k.ID, k.Own)
		}
	}
	if code != 0 || stderr != "" || len(listed) != 3 || !ids[w.selfID] || !ids[keys[0]] || !ids[keys[1]] {
		t.Errorf("keys --json: exit %d %+v stderr %q", code, listed, stderr)
	}

	out, stderr, code = w.run2("", "check", "--json")
	lines := jsonLines[checkLine](t, out)
	if code != 0 || stderr != "" || len(lines) < 8 || !slices.ContainsFunc(lines, func(l checkLine) bool { return l.Check == "ledger REVOKER_LEDGER" && l.OK }) {
		t.Errorf("check --json: exit %d %+v stderr %q", code, lines, stderr)
	}
	for _, l := range lines {
		if !l.OK {
			t.Errorf("check --json: %+v", l)
		}
	}

	for _, args := range [][]string{
		{"revoke", keys[0]},
		{"keys"},
		{"check"},
		{"results"},
		{"status", keys[0]},
	} {
		if _, stderr, code := w.run2("", args...); code != 0 || stderr != "" {
			t.Errorf("revoker %s: exit %d, stderr %q; want only the answer", strings.Join(args, " "), code, stderr)
		}
	}
	// The lines are there at debug.
	w.env["REVOKER_LOG_LEVEL"] = "debug"
	if _, stderr, _ := w.run2("", "results"); !strings.Contains(stderr, "DBG connected to NATS") {
		t.Errorf("results at debug: stderr %q", stderr)
	}
}

// The metrics say which build runs, and a success has a code of its own.
func TestMetricsBuildInfoAndCodes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(1)
	w.startRun()
	if _, _, code := w.run2("", "revoke", keys[0]); code != 0 {
		t.Fatal("revoke failed")
	}
	natstest.WaitFor(t, 10*time.Second, "the result counted", func() bool {
		return strings.Contains(w.body("/metrics"), `revoker_results_total{code="none",outcome="revoked"} 1`)
	})
	m := w.body("/metrics")
	ver, rev, goVersion := buildInfo()
	want := fmt.Sprintf(`revoker_build_info{commit=%q,go_version=%q,version=%q} 1`, rev, goVersion, ver)
	if !strings.Contains(m, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	if strings.Contains(m, `code=""`) {
		t.Error(`/metrics has an empty code label`)
	}
}
