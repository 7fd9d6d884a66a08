package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/worker/natstest"
)

// notAgainstSandbox are the command lines of the README and docs/ that no
// test runs against the sandbox, each group with the reason. Every other
// command line is run: the README's runbook by TestIncidentRunbook (and,
// with least privilege, TestIncidentRunbookLeastPrivilege), the rest by
// TestDocCommands. A line is listed as docCommands gives it: trimmed, its
// trailing comment cut.
var notAgainstSandbox = []struct {
	why   string
	lines []string
}{
	{"installs or builds revoker itself, from the module proxy or with Docker; the tests build the same code, and deploy's TestDockerfile and TestDockerignore check the image", []string{
		"go install github.com/revoker/revoker/cmd/revoker@latest",
		"docker build -f deploy/Dockerfile --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) -t revoker .",
	}},
	{"the project's own tests, benchmarks and fuzzing, not commands against a deployment: CI runs the suite (.ci/run), the rest are the measurements docs/performance.md reports", []string{
		"go test -race -count=1 ./...",
		"go test -short ./...",
		"go test -c -o wb.test ./worker/ && cd worker",
		"../wb.test -test.run '^$' -test.bench 'Throughput/key=rsa2048/conc=16$' -test.benchtime 2000x",
		"../wb.test -test.run '^$' -test.bench 'Throughput' -test.benchtime 2000x",
		"../wb.test -test.run '^$' -test.bench 'Latency|RateLimited' -test.count 5",
		"../wb.test -test.run '^$' -test.bench 'QueuedDrain' -test.count 5",
		"go test -run '^$' -bench DeployedThroughput -benchtime 1x -timeout 15m ./worker/deployed/ -args -deployed.key rsa2048 -deployed.rounds 5",
		"go test -run '^$' -bench DeployedThroughput -benchtime 1x -timeout 15m ./worker/deployed/ -args -deployed.key ed25519 -deployed.rounds 5",
		"go test -run '^$' -bench DeployedStartToReady -benchtime 1x -timeout 10m ./worker/deployed/",
		"go test -run '^$' -bench DeployedDrainRSS -benchtime 1x -timeout 10m ./worker/deployed/",
		"go test -run '^$' -bench DeployedMass -benchtime 1x -timeout 10m ./worker/deployed/",
		"go test -race -count=1 -v ./worker/resilience/ | grep FIGURE",
		"go test -count=1 -v -run TestChaos ./worker/chaos/",
		"go test -count=1 -v -run TestChaos ./worker/chaos/ -args -chaos.parallel=1",
		"go test -count=1 -v -run TestChaos ./worker/chaos/ -args -chaos.seeds=10",
		"go test -count=1 -v -run TestChaos ./worker/chaos/ -args -chaos.seed=N -chaos.logs=DIR",
		"go test -count=1 -v -run 'TestFailover$|TestFailoverWithNodeLoss' ./worker/resilience/ | grep 'FIGURE failover'",
		"go test -count=1 -run TestIdentityModel -v ./worker/resilience/ -args -model.seeds=20",
		"go test -run '^$' -fuzz FuzzDecodeRequest -fuzztime 3m ./events/",
		"go test -run '^$' -fuzz FuzzResultSize -fuzztime 3m ./events/",
		"go test -run '^$' -fuzz FuzzCheckResponse -fuzztime 3m ./kalshi/",
		"go test -run '^$' -bench BenchmarkResults -benchtime 10x ./cmd/revoker",
		"go test -run '^$' -bench BenchmarkFleetPause -benchtime 40x ./worker",
		"go test -run '^$' -bench BenchmarkFailover -benchtime 3x ./worker/resilience",
		"for i in 1 2; do timeout 1800 sh -c 'while :; do :; done' & done",
	}},
	{"the admin's set-up of a production NATS cluster that runs revoker with --no-provision (the sandbox provisions itself); deploy's TestProvisioningDocsCreateEverything, TestLedgerCommandMatchesProvisioning and TestReplicasCommandMatchesProvisioning hold them to what run provisions, and TestUpgradeFromThePreviousMain runs them", []string{
		"export NATS_INBOX_PREFIX=_INBOX.admin",
		"nats stream add --config deploy/nats/streams/KEY_REVOKE_REQUESTS.json",
		"nats stream add --config deploy/nats/streams/KEY_REVOKE_RESULTS.json",
		"nats stream add --config deploy/nats/streams/KEY_REVOKE_UNTRUSTED.json",
		"nats consumer add KEY_REVOKE_REQUESTS --config deploy/nats/consumers/revoker.json",
		`nats kv add REVOKER_LEDGER --description "revoker: request decisions and revoked keys (ledger)" --history 1 --ttl 2160h --marker-ttl 1m --max-bucket-size 1GiB --max-value-size 16KiB --storage file --replicas 3`,
		`nats kv add REVOKER_REPLICAS --description "revoker: replicas sharing the account's delete budget" --history 1 --ttl 10s --max-bucket-size 8MiB --max-value-size 64KiB --storage file --replicas 3`,
	}},
	{"needs a Kubernetes cluster; deploy's kubernetes tests check the manifests these apply", []string{
		"kubectl create namespace revoker",
		"kubectl -n revoker create secret generic revoker-kalshi --from-literal=api-key-id=KEY_ID --from-file=private-key.pem=kalshi.pem",
		"kubectl -n revoker create secret generic revoker-nats --from-file=revoker.nk=worker.nk",
		"kubectl apply -k deploy/kubernetes",
	}},
}

// docCommand is one command line of a ```sh block of a document.
type docCommand struct {
	file, line string
	runbook    bool // in the README's "## Incident runbook" section
}

var trailingCommentRE = regexp.MustCompile(`\s+#(\s.*)?$`)

// docCommands returns the command lines of the ```sh blocks of README.md and
// docs/*.md, trimmed, without comment lines and trailing comments.
func docCommands(t *testing.T) []docCommand {
	t.Helper()
	var cmds []docCommand
	for _, file := range docFiles(t) {
		if file == "ARCHITECTURE.md" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(repoRoot, file))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		from, to := -1, -1 // the runbook section
		if file == "README.md" {
			from, to = runbookSpan(text)
		}
		for _, m := range shBlockRE.FindAllStringSubmatchIndex(text, -1) {
			for _, line := range strings.Split(text[m[2]:m[3]], "\n") {
				line = strings.TrimSpace(trailingCommentRE.ReplaceAllString(line, ""))
				if line != "" && !strings.HasPrefix(line, "#") {
					cmds = append(cmds, docCommand{file: file, line: line, runbook: m[0] > from && m[0] < to})
				}
			}
		}
	}
	return cmds
}

// Every command line of the README and docs/ is either run against the
// sandbox by a test or listed in notAgainstSandbox with the reason, and
// that list names no line the documents no longer hold.
func TestDocCommandsAccountedFor(t *testing.T) {
	t.Parallel()
	cmds := docCommands(t)
	if !slices.ContainsFunc(cmds, func(c docCommand) bool { return c.runbook }) {
		t.Error("README.md has no runbook commands")
	}
	for _, group := range notAgainstSandbox {
		for _, line := range group.lines {
			if !slices.ContainsFunc(cmds, func(c docCommand) bool { return c.line == line }) {
				t.Errorf("notAgainstSandbox lists %q, which no document holds any more", line)
			}
		}
	}
	for _, c := range cmds {
		if !c.runbook && skippedDocCommand(c.line) == "" && !sandboxRunnable(c.line) {
			t.Errorf("%s: %q runs against the sandbox in no test: teach TestDocCommands to run it, or list it in notAgainstSandbox with the reason", c.file, c.line)
		}
	}
}

// skippedDocCommand returns why line is not run against the sandbox, or "".
func skippedDocCommand(line string) string {
	for _, group := range notAgainstSandbox {
		if slices.Contains(group.lines, line) {
			return group.why
		}
	}
	return ""
}

// sandboxRunnable says whether TestDocCommands knows how to run line.
func sandboxRunnable(line string) bool {
	return strings.HasPrefix(line, "revoker ") || strings.HasPrefix(line, "nats pub ")
}

// The command lines of the README and docs/ outside the runbook run as
// written against the sandbox: "revoker sandbox ..." starts one of its own
// and must come up (and, with --demo, revoke two keys); any other revoker
// command succeeds against the test's sandbox and prints nothing on stderr;
// "nats pub SUBJECT BODY" is published as the nats CLI publishes it, and the
// request gets its result.
func TestDocCommands(t *testing.T) {
	var lines []docCommand
	for _, c := range docCommands(t) {
		if !c.runbook && skippedDocCommand(c.line) == "" && sandboxRunnable(c.line) {
			lines = append(lines, c)
		}
	}
	if len(lines) == 0 {
		t.Skip("the documents hold no command for this test outside the runbook")
	}
	t.Chdir(t.TempDir())
	startSandbox(t, "--dir", "sb")
	env := map[string]string{"REVOKER_LOG_FORMAT": "json"}
	source(t, filepath.Join("sb", "sandbox.env"), env)
	w := &world{t: t, env: env}
	for _, c := range lines {
		words := shellWords(t, c.line, env)
		switch {
		case len(words) >= 2 && words[0] == "revoker" && words[1] == "sandbox":
			out, stop := startSandbox(t, words[2:]...)
			if slices.Contains(words, "--demo") {
				natstest.WaitFor(t, 60*time.Second, c.line+" revoking two keys", func() bool {
					return strings.Contains(out.String(), "The sandbox keeps serving")
				})
				if n := strings.Count(out.String(), " revoked\n"); n != 2 {
					t.Errorf("%s: %q revoked %d keys, not 2:\n%s", c.file, c.line, n, out)
				}
			}
			if err := stop(); err != nil {
				t.Errorf("%s: %q stopped with %v", c.file, c.line, err)
			}
		case words[0] == "revoker":
			if _, stderr, code := w.run2("", words[1:]...); code != 0 || stderr != "" {
				t.Errorf("%s: %q: exit %d, stderr %q", c.file, c.line, code, stderr)
			}
		case len(words) == 4 && words[1] == "pub":
			publishAndAwait(t, w, c, words[2], words[3])
		default:
			t.Errorf("%s: %q: this test runs \"nats pub SUBJECT BODY\" only", c.file, c.line)
		}
	}
}

// publishAndAwait publishes body on subject with core NATS, as "nats pub"
// does, and waits for the audit log to hold the result of the request id the
// body names; a trace context the body carries must come back on it.
func publishAndAwait(t *testing.T, w *world, c docCommand, subject, body string) {
	t.Helper()
	var req struct {
		ID          string `json:"id"`
		TraceParent string `json:"traceparent"`
		TraceState  string `json:"tracestate"`
	}
	if err := json.Unmarshal([]byte(body), &req); err != nil || req.ID == "" {
		t.Fatalf("%s: %q: the body names no request id (%v)", c.file, c.line, err)
	}
	nc, err := nats.Connect(w.env["NATS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish(subject, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var out string
	natstest.WaitFor(t, 30*time.Second, "the result of "+req.ID, func() bool {
		out, _, _ = w.run2("", "results", "--request", req.ID, "--json")
		return out != ""
	})
	docs := jsonLines[struct {
		TraceParent string `json:"traceparent"`
		TraceState  string `json:"tracestate"`
		Data        struct {
			RequestID string `json:"request_id"`
			Outcome   string `json:"outcome"`
		} `json:"data"`
	}](t, out)
	if len(docs) != 1 || docs[0].Data.RequestID != req.ID || docs[0].Data.Outcome == "" {
		t.Errorf("%s: %q: results for %s:\n%s", c.file, c.line, req.ID, out)
	} else if docs[0].TraceParent != req.TraceParent || docs[0].TraceState != req.TraceState {
		t.Errorf("%s: %q: the result's trace context is %q, %q, not the request's:\n%s", c.file, c.line, docs[0].TraceParent, docs[0].TraceState, out)
	}
}
