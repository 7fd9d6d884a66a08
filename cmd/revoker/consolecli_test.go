package main

import (
	"strings"
	"testing"
)

// operator is the environment of someone holding NATS credentials only:
// w's NATS, no Kalshi setting, no guard.
func (w *world) operator() *world {
	return &world{t: w.t, nats: w.nats, emu: w.emu, selfID: w.selfID, httpURL: w.httpURL,
		env: map[string]string{"NATS_URL": w.env["NATS_URL"], "REVOKER_LOG_FORMAT": "json"}}
}

// Every command that needs the account works with no Kalshi setting here:
// the worker's console answers. (Before the console they exited 2: the
// Kalshi settings were required.)
func TestCommandsWithoutKalshiKey(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(3)
	w.env["REVOKER_PROTECTED_KEYS"] = keys[2]
	w.startRun()
	op := w.operator()
	requests := w.emu.Stats().Requests

	out, stderr, code := op.run2("", "keys")
	if code != 0 || stderr != "" || !strings.Contains(out, "* "+w.selfID) || !hasLine(out, keys[0], "key-0", "read") {
		t.Errorf("keys: exit %d, stderr %q\n%s", code, stderr, out)
	}
	out, _, code = op.run2("", "keys", "--json")
	if listed := jsonLines[listedKey](t, out); code != 0 || len(listed) != 4 {
		t.Errorf("keys --json: exit %d %+v", code, listed)
	}

	missing := "00000000-0000-4000-8000-00000000abcd"
	out, stderr, code = op.run2("", "revoke", "--dry-run", keys[0], keys[2], w.selfID, missing, "bad.id")
	want := keys[0] + " would_revoke\n" +
		keys[2] + " refused protected_key: listed in REVOKER_PROTECTED_KEYS\n" +
		w.selfID + " refused self_revocation_refused: the key revoker signs with (KALSHI_API_KEY_ID); REVOKER_ALLOW_SELF_REVOKE=true allows it\n" +
		missing + " not_found (not in this account: a wrong ID, the wrong environment, or deleted outside revoker)\n" +
		"bad.id refused invalid_request: \"bad.id\" is not a Kalshi API key ID (1 to 128 letters, digits, '-' or '_')\n"
	if out != want || code != exitFailed || stderr != "" {
		t.Errorf("revoke --dry-run: exit %d, stderr %q\n%s\nwant\n%s", code, stderr, out, want)
	}
	out, stderr, code = op.run2("", "revoke", "--all", "--dry-run")
	if code != 0 || stderr != "" || !strings.HasPrefix(out, "The account lists 4 keys; 2 will be revoked:\n") ||
		!hasLine(out, keys[2], "protected (REVOKER_PROTECTED_KEYS)") || !hasLine(out, w.selfID, "the key revoker signs with") {
		t.Errorf("revoke --all --dry-run: exit %d, stderr %q\n%s", code, stderr, out)
	}

	out, stderr, code = op.run2("", "revoke", keys[0])
	if code != 0 || stderr != "" || !strings.HasPrefix(out, keys[0]+" revoked\n") {
		t.Fatalf("revoke: exit %d, stderr %q\n%s", code, stderr, out)
	}
	out, stderr, code = op.run2("", "status", keys[0], keys[1])
	if code != 0 || stderr != "" || !strings.Contains(out, "by request revoker-cli-") || !strings.Contains(out, "does not list the key") ||
		!strings.Contains(out, "lists the key: it is live") {
		t.Errorf("status: exit %d, stderr %q\n%s", code, stderr, out)
	}
	out, _, code = op.run2("", "status", "--json", keys[1])
	if st := jsonLines[keyStatus](t, out); code != 0 || len(st) != 1 || st[0].Listed == nil || !*st[0].Listed {
		t.Errorf("status --json: exit %d %s", code, out)
	}

	out, stderr, code = op.run2("1\n", "revoke", "--all", "--match", "key-1")
	if code != 0 || stderr != "" || !strings.Contains(out, keys[1]+" revoked\n") || strings.Contains(out, keys[2]+" revoked") {
		t.Errorf("revoke --all: exit %d, stderr %q\n%s", code, stderr, out)
	}

	out, stderr, code = op.run2("", "check")
	for _, line := range []string{"ok    worker console: replica ", "ok    kalshi accepts the worker's credential: key " + w.selfID, "ok    worker ready: taking requests", "ok    replica plan: 1 replica: ", "all checks passed"} {
		if !strings.Contains(out, line) {
			t.Errorf("check lacks %q: exit %d, stderr %q\n%s", line, code, stderr, out)
		}
	}
	if code != 0 || stderr != "" || strings.Contains(out, "FAIL") {
		t.Errorf("check: exit %d, stderr %q\n%s", code, stderr, out)
	}

	// The commands signed nothing here: every Kalshi request was the
	// worker's, signed with its own key.
	if signers := w.emu.Stats().BySigner; len(signers) != 1 || signers[w.selfID] == nil {
		t.Errorf("Kalshi saw requests signed by %v", signers)
	}
	if w.emu.Stats().Requests == requests {
		t.Error("no Kalshi request was made for the commands")
	}
}

// The dry run and the --all plan apply the worker's guards: the laptop
// allowing self-revocation and protecting nothing changes no plan, and
// says so.
func TestPlansUseTheWorkersGuards(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(2)
	w.env["REVOKER_PROTECTED_KEYS"] = keys[1]
	w.env["REVOKER_ALLOW_SELF_REVOKE"] = "false"
	w.startRun()
	op := w.operator()
	op.env["REVOKER_ALLOW_SELF_REVOKE"] = "true"

	out, stderr, code := op.run2("", "revoke", "--dry-run", w.selfID, keys[1], keys[0])
	want := w.selfID + " refused self_revocation_refused: the key revoker signs with (KALSHI_API_KEY_ID); REVOKER_ALLOW_SELF_REVOKE=true allows it\n" +
		keys[1] + " refused protected_key: listed in REVOKER_PROTECTED_KEYS\n" +
		keys[0] + " would_revoke\n"
	if out != want || code != exitFailed {
		t.Errorf("dry run: exit %d\n%s\nwant\n%s", code, out, want)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "differ from the worker's and have no effect") {
		t.Errorf("dry run with other guards here: stderr %q, want one line saying they do not apply", stderr)
	}
	// A laptop that holds the Kalshi settings too still gets the worker's
	// plan while a worker answers (before the console it said would_revoke,
	// and the worker then refused).
	for _, k := range []string{"KALSHI_BASE_URL", "KALSHI_API_KEY_ID", "KALSHI_PRIVATE_KEY_PATH"} {
		op.env[k] = w.env[k]
	}
	if out, _, code := op.run2("", "revoke", "--dry-run", w.selfID); code != exitFailed || !strings.HasPrefix(out, w.selfID+" refused self_revocation_refused") {
		t.Errorf("dry run with the Kalshi settings here: exit %d %q", code, out)
	}
	out, _, code = op.run2("", "revoke", "--all", "--dry-run", "--json")
	plans := map[string]string{}
	for _, l := range jsonLines[map[string]string](t, out) {
		plans[l["api_key_id"]] = l["plan"] + " " + l["spared"]
	}
	if code != 0 || plans[w.selfID] != "spared own_key" || plans[keys[1]] != "spared protected_key" || plans[keys[0]] != "would_revoke " {
		t.Errorf("--all plan: exit %d %v", code, plans)
	}
	for _, k := range append(keys, w.selfID) {
		if !w.emu.HasKey(k) {
			t.Errorf("a plan deleted %s", k)
		}
	}
}

// With no worker answering and no Kalshi settings here, each command says
// why and what to do; status still prints what the ledger knows.
func TestCommandsWithoutAWorker(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(1)
	w.provisioned() // the ledger exists; no worker runs
	op := w.operator()
	for _, args := range [][]string{{"keys"}, {"revoke", "--dry-run", keys[0]}, {"revoke", "--all", "--dry-run"}} {
		out, stderr, code := op.run2("", args...)
		if code == 0 || out != "" || !strings.Contains(stderr, `no revoker worker answered on revoker.console.`) || !strings.Contains(stderr, `start \"revoker run\"`) {
			t.Errorf("revoker %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, stderr)
		}
	}
	out, stderr, code := op.run2("", "status", keys[0])
	if code != exitFailed || !strings.Contains(out, "account       unknown: no worker answered") || !strings.Contains(out, "not by revoker") ||
		!strings.Contains(stderr, "no revoker worker answered on revoker.console.status") {
		t.Errorf("status: exit %d, stderr %q\n%s", code, stderr, out)
	}
	out, _, code = op.run2("", "check")
	if code != exitFailed || !strings.Contains(out, "FAIL  worker console: no revoker worker answered on revoker.console.health") {
		t.Errorf("check: exit %d\n%s", code, out)
	}
	if n := w.emu.Stats().Requests; n != 0 {
		t.Errorf("%d Kalshi requests without a worker or a key", n)
	}
}
