package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// runbookFile is the README whose "## Incident runbook" section
// TestIncidentRunbook runs. To run a draft's:
//
//	go test -run TestIncidentRunbook -ldflags "-X github.com/revoker/revoker/cmd/revoker.runbookFile=PATH" ./cmd/revoker
var runbookFile = "../../README.md"

var shBlockRE = regexp.MustCompile("(?s)```sh\n(.*?)```")

// runbookCommands returns the lines of the ```sh blocks of the README's
// "## Incident runbook" section, or nil when it has none.
func runbookCommands(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	from, to := runbookSpan(text)
	if from < 0 {
		return nil
	}
	section := text[from:to]
	var lines []string
	for _, block := range shBlockRE.FindAllStringSubmatch(section, -1) {
		for _, line := range strings.Split(block[1], "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				lines = append(lines, line)
			}
		}
	}
	if len(lines) == 0 {
		t.Fatalf("%s: the Incident runbook section has no ```sh commands", runbookFile)
	}
	return lines
}

// runbookSpan returns where the "## Incident runbook" section of a README's
// text begins and ends, or -1, -1 when it has none.
func runbookSpan(text string) (from, to int) {
	from = strings.Index(text, "\n## Incident runbook\n")
	if from < 0 {
		return -1, -1
	}
	from++
	if end := strings.Index(text[from:], "\n## "); end >= 0 {
		return from, from + end
	}
	return from, len(text)
}

// The README's incident runbook runs as written against the sandbox: from
// "revoker sandbox" and ". sandbox.env" to the audited result, every command
// succeeds and says what the runbook says it does.
func TestIncidentRunbook(t *testing.T) {
	lines := runbookCommands(t)
	if lines == nil {
		t.Skipf("%s has no \"## Incident runbook\" section yet", runbookFile)
	}
	t.Chdir(t.TempDir())
	env := map[string]string{"REVOKER_LOG_FORMAT": "json"}
	runRunbook(t, lines, env, runbookHooks{
		sandbox: func(args []string) { startSandbox(t, args...) },
		source: func(path string) {
			source(t, path, env)
			if env["LEAKED_KEY_ID"] == "" || env["NATS_URL"] == "" {
				t.Fatalf("%s sets no LEAKED_KEY_ID or NATS_URL", path)
			}
		},
	})
	if _, err := os.Stat(filepath.Join("rehearsal", "sandbox.env")); err != nil {
		t.Errorf("the sandbox's --dir: %v", err)
	}
}

// runbookHooks are what runRunbook does for the lines that are not revoker
// commands an operator runs against a deployment.
type runbookHooks struct {
	sandbox func(args []string) // "revoker sandbox ARGS"
	source  func(path string)   // ". FILE"
	// as, if not nil, returns the environment a command runs with, for
	// the words of its line: the NATS user it runs as.
	as func(words []string) map[string]string
}

// runRunbook runs the runbook's lines with env, checking that each command
// succeeds, prints only its answer and says what the runbook says it does.
func runRunbook(t *testing.T, lines []string, env map[string]string, h runbookHooks) {
	t.Helper()
	sandboxUp, revoked, allRevoked := false, false, false
	contained, scheduled := "", "" // the keys revoke --cancel-orders and revoke --at asked for
	planned := ""                  // the number of keys revoke --all --dry-run planned
	for _, line := range lines {
		words := shellWords(t, line, env)
		switch {
		case len(words) == 2 && (words[0] == "." || words[0] == "source"):
			h.source(words[1])
			continue
		case len(words) >= 2 && words[0] == "revoker" && words[1] == "sandbox":
			h.sandbox(words[2:])
			sandboxUp = true
			continue
		case len(words) < 2 || words[0] != "revoker":
			t.Fatalf("runbook line %q: this test runs only revoker commands and \". FILE\"", line)
		}
		if !sandboxUp {
			t.Fatalf("runbook line %q comes before revoker sandbox", line)
		}
		w := &world{t: t, env: env}
		if h.as != nil {
			w.env = h.as(words)
		}
		all, leaked, dry := slices.Contains(words, "--all"), slices.Contains(words, "--leaked-key"), slices.Contains(words, "--dry-run")
		cancel, at := slices.Contains(words, "--cancel-orders"), slices.Contains(words, "--at")
		last := words[len(words)-1]
		stdin := ""
		if all && !dry && !slices.Contains(words, "--yes") {
			stdin = planned + "\n" // the operator types the count the plan printed
		}
		out, stderr, code := w.run2(stdin, words[1:]...)
		if code != 0 || stderr != "" {
			t.Errorf("runbook line %q: exit %d, stderr %q", line, code, stderr)
		}
		key := env["LEAKED_KEY_ID"]
		var want []string
		switch cmd := words[1]; {
		case cmd == "revoke" && all && dry:
			want = []string{"will be revoked:", "Spared (1):", "the key revoker signs with"}
			if m := regexp.MustCompile(`; (\d+) will be revoked:`).FindStringSubmatch(out); m != nil {
				planned = m[1]
			}
		case cmd == "revoke" && all:
			want, allRevoked = []string{" revoked\n", " confirmed\n", "revoker results --request 'all-"}, true
		case cmd == "revoke" && leaked:
			want = []string{" revoked\n", " leaked_key_fingerprint=sha256:", " confirmed\n"}
		case cmd == "revoke" && dry:
			want = []string{key + " would_revoke"}
		case cmd == "revoke" && cancel:
			// The sandbox's trading key, restricted to subaccount 1.
			want, contained = []string{last + " revoked\n", last + " confirmed\n"}, last
		case cmd == "revoke" && at:
			want, scheduled = []string{last + " scheduled for ", "(request revoker-cli-"}, last
		case cmd == "revoke":
			want, revoked = []string{key + " revoked\n"}, true
		case cmd == "status" && last == contained:
			// Subaccount 1 had 3 orders, the primary account 2: only the 3 go.
			want = []string{"  scopes        read,write::trade\n", "  subaccount    1 (the key was restricted to it)\n",
				"  orders        3 resting orders cancelled after the DELETE\n", "does not list the key"}
		case cmd == "status" && last == scheduled:
			want = []string{"  scheduled     for ", "waiting in the requests stream", "lists the key: it is live"}
		case cmd == "status" && revoked:
			want = []string{"by request revoker-cli-", "does not list the key"}
		case cmd == "status":
			want = []string{"lists the key: it is live"}
		case cmd == "results" && revoked:
			want = []string{key, "revoked"}
		}
		for _, s := range want {
			if !strings.Contains(out, s) {
				t.Errorf("runbook line %q printed\n%s\nwithout %q", line, out, s)
			}
		}
		if cmd := words[1]; cmd == "keys" && revoked && strings.Contains(out, key) {
			t.Errorf("runbook line %q still lists the revoked key:\n%s", line, out)
		}
	}
	if !revoked {
		t.Error("the runbook revokes nothing")
	}
	if contained == "" || scheduled == "" {
		t.Errorf("the runbook contains no trading key (%q) or schedules no rotation (%q)", contained, scheduled)
	}
	if allRevoked {
		w := &world{t: t, env: env}
		if h.as != nil {
			w.env = h.as([]string{"revoker", "keys"})
		}
		if out, _, _ := w.run2("", "keys"); strings.Contains(out, "sandbox-key-") || !strings.Contains(out, "revoker-sandbox") {
			t.Errorf("after revoke --all the account lists more than revoker's own key:\n%s", out)
		}
	}
}
