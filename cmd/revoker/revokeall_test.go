package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/console"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// hasLine reports whether a line of out holds every one of parts, in order.
func hasLine(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := line, true
		for _, p := range parts {
			i := strings.Index(rest, p)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(p):]
		}
		if ok {
			return true
		}
	}
	return false
}

// provisioned creates w's streams, consumer and ledger, as "run" would,
// without running a worker: whatever revoke publishes stays in the stream.
func (w *world) provisioned() jetstream.Stream {
	w.t.Helper()
	js, err := jetstream.New(natstest.Connect(w.t, w.nats.URL()))
	if err != nil {
		w.t.Fatal(err)
	}
	if err := provision.Ensure(w.t.Context(), js, worker.Config{}.Provisioning()); err != nil {
		w.t.Fatal(err)
	}
	s, err := js.Stream(w.t.Context(), worker.DefaultRequestsStream)
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

// everStored is how many messages stream s ever stored.
func everStored(t *testing.T, s jetstream.Stream) uint64 {
	t.Helper()
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// revoke --all --dry-run prints the plan, sparing revoker's own key and the
// protected ones, and sends nothing; --match and --except narrow it.
func TestRevokeAllDryRun(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(5) // named key-0 to key-4
	w.env["REVOKER_PROTECTED_KEYS"] = strings.ToUpper(keys[1])
	requests := w.provisioned()

	// No worker runs: the plan is made here, with the Kalshi settings and
	// guards set here, and says so on one line.
	out, stderr, code := w.run2("", "revoke", "--all", "--dry-run")
	if code != 0 || !signedHere(stderr) {
		t.Fatalf("--all --dry-run: exit %d, stderr %q", code, stderr)
	}
	if !strings.HasPrefix(out, "The account lists 6 keys; 4 will be revoked:\n") || !strings.HasSuffix(out, "--dry-run: nothing was sent.\n") {
		t.Errorf("--all --dry-run printed\n%s", out)
	}
	for _, i := range []int{0, 2, 3, 4} {
		if !hasLine(out, "  "+keys[i], fmt.Sprintf("key-%d", i)) {
			t.Errorf("the plan lacks %s (key-%d):\n%s", keys[i], i, out)
		}
	}
	for _, spared := range [][]string{
		{"Spared (2):"},
		{"  " + w.selfID, "revoker", "the key revoker signs with (KALSHI_API_KEY_ID)"},
		{"  " + keys[1], "key-1", "protected (REVOKER_PROTECTED_KEYS)"},
	} {
		if !hasLine(out, spared...) {
			t.Errorf("the plan lacks a line with %q:\n%s", spared, out)
		}
	}
	if strings.Contains(out, "Type the number") {
		t.Error("--dry-run asked to go on")
	}

	// --match keeps the keys whose name matches; --except spares more, and
	// an --except the account does not list is pointed out.
	unknown := "00000000-0000-4000-8000-00000000beef"
	out, _, code = w.run2("", "revoke", "--all", "--dry-run", "--match", "key-[0-3]", "--except", strings.ToUpper(keys[2]), "--except", unknown)
	if code != 0 || !strings.HasPrefix(out, "The account lists 6 keys; 2 will be revoked:\n") {
		t.Errorf("--match --except: exit %d\n%s", code, out)
	}
	for _, want := range [][]string{
		{"  " + keys[0], "key-0"},
		{"  " + keys[3], "key-3"},
		{"Spared (4):"},
		{"  " + keys[2], "key-2", "--except"},
		{"  " + keys[4], "key-4", `name does not match --match "key-[0-3]"`},
		{"Note: --except " + unknown + " names no key the account lists; check the ID."},
	} {
		if !hasLine(out, want...) {
			t.Errorf("--match --except: no line with %q:\n%s", want, out)
		}
	}
	if hasLine(out, keys[2], "key-2\n") || strings.Count(out, keys[4]) != 1 {
		t.Errorf("--match --except revokes a spared key:\n%s", out)
	}

	// --json: one object per key.
	out, _, code = w.run2("", "revoke", "--all", "--dry-run", "--json", "--match", "key-?", "--except", keys[4])
	plans := jsonLines[console.AllPlanLine](t, out)
	got := map[string]string{}
	for _, p := range plans {
		got[p.APIKeyID] = p.Plan + " " + p.Spared
	}
	want := map[string]string{
		keys[0]: "would_revoke ", keys[1]: "spared protected_key", keys[2]: "would_revoke ", keys[3]: "would_revoke ",
		keys[4]: "spared except", w.selfID: "spared own_key",
	}
	if code != 0 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("--all --dry-run --json: exit %d %v\nwant %v", code, got, want)
	}

	// Nothing was sent or deleted.
	if n := everStored(t, requests); n != 0 {
		t.Errorf("the dry runs stored %d requests", n)
	}
	if n := len(w.emu.Stats().DeleteAttempts); n != 0 {
		t.Errorf("the dry runs sent %d deletes", n)
	}
}

// revoke --all goes on only when the operator types the number of keys it
// revokes; anything else sends nothing and exits 1.
func TestRevokeAllWantsTheCount(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(3)
	w.env["REVOKER_PROTECTED_KEYS"] = keys[0]
	requests := w.provisioned()

	for _, c := range []struct{ stdin, why string }{
		{"3\n", `revoker revoke --all: the answer was "3", not 2: nothing was sent`},
		{"yes\n", `revoker revoke --all: the answer was "yes", not 2: nothing was sent`},
		{"", "revoker revoke --all: no answer (end of input): nothing was sent"},
	} {
		out, stderr, code := w.run2(c.stdin, "revoke", "--all")
		if code != exitFailed || !strings.Contains(stderr, c.why) {
			t.Errorf("answer %q: exit %d, stderr %q; want 1 and %q", c.stdin, code, stderr, c.why)
		}
		if !strings.Contains(out, "Type the number of keys to revoke (2) to go on: ") || !hasLine(out, keys[1]) || !hasLine(out, keys[2]) {
			t.Errorf("answer %q: printed\n%s", c.stdin, out)
		}
	}
	if n := everStored(t, requests); n != 0 {
		t.Errorf("refused confirmations stored %d requests", n)
	}
	for _, k := range append(keys, w.selfID) {
		if !w.emu.HasKey(k) {
			t.Errorf("%s was deleted", k)
		}
	}

	// Nothing to revoke: said, not asked, exit 0.
	out, stderr, code := w.run2("", "revoke", "--all", "--match", "nothing-*")
	if code != 0 || !signedHere(stderr) || !strings.Contains(out, "; none will be revoked.\n") || !strings.HasSuffix(out, "No key to revoke: nothing was sent.\n") || strings.Contains(out, "Type the number") {
		t.Errorf("--all with nothing to revoke: exit %d, stderr %q\n%s", code, stderr, out)
	}
	if n := everStored(t, requests); n != 0 {
		t.Errorf("stored %d requests", n)
	}
}

// revoke --all --yes with a worker: every key but revoker's own and the
// protected one is deleted, each outcome printed and confirmed (the
// confirmations come from worker/confirm.go), under request ids
// all-<UTC time>-N that "results --request" finds as a batch. A typed
// count goes on too; with --json, stdout holds only the results.
func TestRevokeAllYes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(5)
	w.env["REVOKER_PROTECTED_KEYS"] = keys[1]
	w.startRun()

	// The typed count, for the one key --match leaves.
	out, stderr, code := w.run2("1\n", "revoke", "--all", "--match", "key-4")
	if outcomes, confirmed, _ := splitConfirmations(out); code != 0 || stderr != "" || !strings.HasSuffix(outcomes, keys[4]+" revoked\n") || !slices.Equal(confirmed, []string{keys[4]}) {
		t.Errorf("--all with the typed count: exit %d, stderr %q\n%s", code, stderr, out)
	}

	// --json: stdout holds the result documents alone; the plan goes to stderr.
	out, stderr, code = w.run2("", "revoke", "--all", "--yes", "--json", "--match", "key-3")
	if docs := docLines(out); code != 0 || len(docs) != 1 || !strings.Contains(docs[0], `"api_key_id":"`+keys[3]+`"`) ||
		!strings.Contains(stderr, "; 1 will be revoked:\n") || !strings.Contains(stderr, "Requesting 1 revocation as all-") {
		t.Errorf("--all --yes --json: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}

	began := time.Now().UTC().Truncate(time.Millisecond)
	out, stderr, code = w.run2("", "revoke", "--all", "--yes", "--reason", "environment compromised")
	if code != 0 || stderr != "" || strings.Contains(out, "Type the number") {
		t.Fatalf("--all --yes: exit %d, stderr %q\n%s", code, stderr, out)
	}
	m := regexp.MustCompile(`(?m)^Requesting 2 revocations as (all-(\d{8}T\d{6}\.\d{3}Z)-)1 to all-\d{8}T\d{6}\.\d{3}Z-2; revoker results --request '(all-\d{8}T\d{6}\.\d{3}Z-)\*' shows the batch\.$`).FindStringSubmatch(out)
	if m == nil || m[1] != m[3] {
		t.Fatalf("--all --yes printed no batch line:\n%s", out)
	}
	prefix := m[1]
	if at, err := time.Parse(allTimeLayout, m[2]); err != nil || at.Before(began) || at.After(time.Now().UTC()) {
		t.Errorf("batch time %s (%v), want the UTC time of the run, not before %v", m[2], err, began)
	}
	outcomes, confirmed, unconfirmed := splitConfirmations(out)
	revoked := []string{keys[0], keys[2]}
	for _, k := range revoked {
		if !strings.Contains(outcomes, "\n"+k+" revoked\n") {
			t.Errorf("no outcome line for %s:\n%s", k, out)
		}
		if w.emu.HasKey(k) {
			t.Errorf("%s is still live", k)
		}
	}
	if want := slices.Sorted(slices.Values(revoked)); !slices.Equal(confirmed, want) || len(unconfirmed) != 0 {
		t.Errorf("confirmed %v, unconfirmed %v; want %v confirmed", confirmed, unconfirmed, want)
	}
	for _, k := range []string{w.selfID, keys[1]} {
		if !w.emu.HasKey(k) {
			t.Errorf("%s (own or protected) was deleted", k)
		}
	}

	ids := map[string]string{}
	for _, r := range storedResults(t, w.nats.URL()) {
		if strings.HasPrefix(r.RequestID, prefix) {
			ids[r.RequestID] = r.APIKeyID
			if r.Outcome != events.Revoked || r.Reason != "environment compromised" {
				t.Errorf("result %+v", r)
			}
		}
	}
	if len(ids) != 2 || ids[prefix+"1"] == "" || ids[prefix+"2"] == "" {
		t.Errorf("the batch's results: %v", ids)
	}
	out, _, code = w.run2("", "results", "--request", prefix+"*")
	if code != 0 || strings.Count(out, prefix) != 2 {
		t.Errorf("results --request %s*: exit %d\n%s", prefix, code, out)
	}

	// Nothing left to revoke.
	out, _, code = w.run2("", "revoke", "--all", "--yes")
	if code != 0 || !strings.Contains(out, "The account lists 2 keys; none will be revoked.\n") {
		t.Errorf("--all --yes again: exit %d\n%s", code, out)
	}
}

// --all, --leaked-key and their flags are refused in the combinations that
// make no sense, before anything connects.
func TestRevokeFormUsageErrors(t *testing.T) {
	t.Parallel()
	pemFile := emulatortest.WritePEM(t, emulatortest.OtherKey())
	env := withEnv(kalshiEnv(t), map[string]string{"NATS_URL": "nats://127.0.0.1:1"})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--all", "k-1"}, "--all takes no KEY_ID and no -f"},
		{[]string{"--all", "-f", "-"}, "--all takes no KEY_ID and no -f"},
		{[]string{"--all", "--match", "[a-"}, `--match: "[a-" is not a valid pattern`},
		{[]string{"--all", "--except", "bad/id"}, `--except: "bad/id" is not a Kalshi API key ID`},
		{[]string{"--match", "key-*", "k-1"}, "--match applies only with --all"},
		{[]string{"--except", "k-2", "k-1"}, "--except applies only with --all"},
		{[]string{"--leaked-key", pemFile, "--all"}, "--leaked-key and --all do not go together"},
		{[]string{"--leaked-key", pemFile, "--dry-run"}, "--leaked-key and --dry-run do not go together"},
		{[]string{"--leaked-key", pemFile, "-f", "keys.txt"}, "--leaked-key and -f do not go together"},
		{[]string{"--leaked-key", pemFile, "k-1", "k-2"}, "--leaked-key takes at most one KEY_ID"},
		{[]string{"--leaked-key", pemFile, "bad/id"}, `--leaked-key hint: "bad/id" is not a Kalshi API key ID`},
	} {
		var out, errOut syncBuffer
		err := run(t.Context(), append([]string{"revoke"}, c.args...), getenv(env), strings.NewReader(""), &out, &errOut)
		if exitCode(err) != exitConfig || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("revoke %s: exit %d, stderr %q; want 2 and %q", strings.Join(c.args, " "), exitCode(err), errOut.String(), c.want)
		}
	}
	// --all needs a worker's console, or the Kalshi settings here.
	var out, errOut syncBuffer
	err := run(t.Context(), []string{"revoke", "--all"}, getenv(map[string]string{"NATS_URL": "nats://127.0.0.1:1"}), nil, &out, &errOut)
	if exitCode(err) == 0 || !strings.Contains(errOut.String(), "cannot ask the worker's console") || out.String() != "" {
		t.Errorf("--all without Kalshi settings or NATS: exit %d %q", exitCode(err), errOut.String())
	}
	if cfg, _ := mustParse(t, "revoke", []string{"--all", "--except", "A-1,b-2", "--except", "a-1", "--yes", "--match", "ci-*"}, kalshiEnv(t)); !cfg.All || !cfg.Yes || cfg.Match != "ci-*" || !slices.Equal(cfg.Except, []string{"a-1", "b-2"}) {
		t.Errorf("--all config: %+v", cfg)
	}
	usage := usage("revoke")
	for _, want := range []string{"--leaked-key FILE", "--all\n", "--match GLOB", "--except ID", "--yes\n", "KEY_ID confirmed", "leaked_key_fingerprint=sha256:"} {
		if !strings.Contains(usage, want) {
			t.Errorf("revoke usage lacks %q", want)
		}
	}
}

// The plan holds up against an odd key list: the own and protected keys in
// another letter case are spared, a key listed twice is planned once, and a
// name with control characters prints quoted, so it cannot fake a plan line.
func TestPlanAllOddLists(t *testing.T) {
	t.Parallel()
	own, protected, other := "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002", "cccccccc-0000-4000-8000-000000000003"
	cfg := Config{KalshiKeyID: own, ProtectedKeys: []string{protected}}
	keys := []kalshi.APIKey{
		{ID: strings.ToUpper(own), Name: "revoker"},
		{ID: strings.ToUpper(protected), Name: "prod"},
		{ID: other, Name: "ci\n  " + own + "  fake"},
		{ID: strings.ToUpper(other), Name: "ci again"},
	}
	p := console.PlanAll(localGuards(cfg), keys, "", nil)
	if len(p.Revoke) != 1 || p.Revoke[0].APIKeyID != other {
		t.Fatalf("revoke %+v, want only %s, once", p.Revoke, other)
	}
	spared := map[string]string{}
	for _, l := range p.Spared {
		spared[l.APIKeyID] = l.Spared
	}
	if spared[own] != sparedOwn || spared[protected] != sparedProtected || len(spared) != 2 {
		t.Errorf("spared %v, want %s as own and %s as protected", spared, own, protected)
	}
	var out strings.Builder
	if err := printAllPlan(&out, cfg, p); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 5 { // header, one key, spared header, two spared
		t.Errorf("the plan has %d lines, want 5 (a name's newline must not add one):\n%s", lines, out.String())
	}
}
