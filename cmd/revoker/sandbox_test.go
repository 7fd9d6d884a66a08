package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/natstest"
)

// startSandbox runs "revoker sandbox args..." on free ports until the test
// ends (or stop is called, which reports what run returned), and waits for
// its banner.
func startSandbox(t *testing.T, args ...string) (out *syncBuffer, stop func() error) {
	t.Helper()
	out = &syncBuffer{}
	var errOut syncBuffer
	args = append(append([]string{"sandbox"}, args...), "--nats-listen", "127.0.0.1:0", "--http-addr", natstest.FreeAddr(t))
	stop, done := natstest.Go(t, 30*time.Second, "sandbox did not stop within 30s", func(ctx context.Context) error {
		return run(ctx, args, getenv(nil), nil, out, &errOut)
	})
	natstest.WaitFor(t, 60*time.Second, "the sandbox's banner", func() bool {
		select {
		case <-done:
			t.Fatalf("sandbox returned %v\n%s\n%s", stop(), out, &errOut)
		default:
		}
		return strings.Contains(out.String(), "\nOr publish a request")
	})
	return out, stop
}

// shellWords splits line as a POSIX shell would for the little the README
// and sandbox.env use: blanks, '...', "..." with $VAR inside, $VAR and
// ${VAR}, and a # comment; env gives the variables.
func shellWords(t *testing.T, line string, env map[string]string) []string {
	t.Helper()
	var words []string
	var word strings.Builder
	inWord := false
	expand := func(i int) int { // line[i] == '$'; returns the index after the name
		j := i + 1
		if j < len(line) && line[j] == '{' {
			end := strings.IndexByte(line[j:], '}')
			if end < 0 {
				t.Fatalf("unbalanced ${ in %q", line)
			}
			word.WriteString(env[line[j+1:j+end]])
			return j + end + 1
		}
		for j < len(line) && (line[j] == '_' || unicode.IsLetter(rune(line[j])) || unicode.IsDigit(rune(line[j]))) {
			j++
		}
		word.WriteString(env[line[i+1:j]])
		return j
	}
	for i := 0; i < len(line); {
		switch c := line[i]; {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
			i++
		case c == '#' && !inWord:
			i = len(line)
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				t.Fatalf("unbalanced ' in %q", line)
			}
			word.WriteString(line[i+1 : i+1+end])
			i += end + 2
			inWord = true
		case c == '"':
			i++
			for i < len(line) && line[i] != '"' {
				if line[i] == '$' {
					i = expand(i)
					continue
				}
				if line[i] == '\\' || line[i] == '`' {
					t.Fatalf("%q: this test reads no escapes or commands in quotes", line)
				}
				word.WriteByte(line[i])
				i++
			}
			if i == len(line) {
				t.Fatalf(`unbalanced " in %q`, line)
			}
			i++
			inWord = true
		case c == '$':
			i = expand(i)
			inWord = true
		case strings.IndexByte("\\`|&;<>()*?", c) >= 0:
			t.Fatalf("%q: this test runs no %q", line, c)
		default:
			word.WriteByte(c)
			i++
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}

// source reads a file of "export NAME=VALUE ..." and "NAME=VALUE" lines into
// env, as ". FILE" does.
func source(t *testing.T, path string, env map[string]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		words := shellWords(t, line, env)
		if len(words) > 0 && words[0] == "export" {
			words = words[1:]
		}
		for _, w := range words {
			name, value, ok := strings.Cut(w, "=")
			if !ok {
				t.Fatalf("%s: %q is not NAME=VALUE", path, w)
			}
			env[name] = value
		}
	}
}

var envFileRE = regexp.MustCompile(`\(or: \. (\S+)\):\n  (export [^\n]*)\n`)

// bannerTryRE finds the commands the banner suggests, one a line.
var bannerTryRE = regexp.MustCompile(`\nthen try[^\n]*:\n((?:  [^\n]+\n)+)`)

// The sandbox prints the export line once and writes it to sandbox.env
// beside sandbox.json, so ". sandbox.env" makes every later command work,
// the banner's suggested revoker commands too; it removes the temporary directory it made when it stops; --faults makes
// the emulator misbehave.
func TestSandboxEnvFile(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	out, stop := startSandbox(t, "--keys", "2", "--faults", "latency=150ms-200ms,seed=3")
	text := out.String()
	m := envFileRE.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("the banner names no sandbox.env and export line:\n%s", text)
	}
	envFile, export := m[1], m[2]
	if strings.Count(text, "export NATS_URL=") != 1 || !strings.Contains(text, "Kalshi faults    latency 150ms-200ms") {
		t.Errorf("banner:\n%s", text)
	}
	dir := filepath.Dir(envFile)
	if !strings.HasPrefix(dir, tmp) {
		t.Errorf("sandbox.env is in %s, not in a temporary directory under %s", dir, tmp)
	}
	if _, err := os.Stat(filepath.Join(dir, "sandbox.json")); err != nil {
		t.Errorf("sandbox.json is not beside sandbox.env: %v", err)
	}
	data, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "\n"+export+"\n") {
		t.Errorf("sandbox.env lacks the export line the banner printed:\n%s", data)
	}
	env := map[string]string{}
	source(t, envFile, env)
	for _, name := range []string{"NATS_URL", "KALSHI_BASE_URL", "KALSHI_API_KEY_ID", "KALSHI_PRIVATE_KEY_PATH", "LEAKED_KEY_ID", "TRADING_KEY_ID", "OLD_KEY_ID"} {
		if env[name] == "" {
			t.Errorf("sandbox.env sets no %s", name)
		}
	}

	// Every command works with nothing but sandbox.env; Kalshi answers slowly.
	w := &world{t: t, env: env}
	start := time.Now()
	out2, _, code := w.run2("", "keys")
	if code != 0 || !strings.Contains(out2, env["LEAKED_KEY_ID"]) {
		t.Errorf("keys: exit %d\n%s", code, out2)
	}
	// The trading key the runbook contains: restricted to subaccount 1.
	if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(env["TRADING_KEY_ID"]) + `\s+sandbox-trading-bot\s+read,write::trade\s+1$`).MatchString(out2) {
		t.Errorf("keys does not list the trading key %q restricted to subaccount 1:\n%s", env["TRADING_KEY_ID"], out2)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("keys took %v; the emulator adds 150ms to 200ms", d)
	}
	// The banner's "then try" lines are revoker commands, as in the README,
	// and each of them works as printed.
	try := bannerTryRE.FindStringSubmatch(text)
	if try == nil {
		t.Fatalf("the banner has no \"then try\" lines:\n%s", text)
	}
	for _, line := range strings.Split(strings.TrimSuffix(try[1], "\n"), "\n") {
		words := shellWords(t, line, env)
		if len(words) < 2 || words[0] != "revoker" {
			t.Errorf("banner line %q is not a revoker command, as the README's are", line)
			continue
		}
		if _, _, code := w.run2("", words[1:]...); code != 0 {
			t.Errorf("banner line %q with sandbox.env: exit %d", line, code)
		}
	}
	for _, args := range [][]string{
		{"results", "--key", env["LEAKED_KEY_ID"]},
		{"check"},
	} {
		if _, _, code := w.run2("", args...); code != 0 {
			t.Errorf("revoker %s with sandbox.env: exit %d", strings.Join(args, " "), code)
		}
	}

	if err := stop(); err != nil {
		t.Fatalf("sandbox after Ctrl-C: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the sandbox's temporary directory is still there: %v", err)
	}
}

// A --dir the user gave is left in place, sandbox.env in it.
func TestSandboxKeepsItsDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "rehearsal")
	_, stop := startSandbox(t, "--dir", dir, "--keys", "1")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"sandbox.json", "sandbox.env", "revoker-sandbox.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestParseFaults(t *testing.T) {
	t.Parallel()
	f, why := parseFaults("5xx=0.2, 429=0.1,latency=50ms-300ms,lost=0.05,hang=0.01,seed=42")
	if len(why) > 0 {
		t.Fatal(why)
	}
	ef := f.emulatorFaults()
	if ef.ServerError != 0.2 || ef.TooMany != 0.1 || ef.LostResponse != 0.05 || ef.Hang != 0.01 || ef.Seed != 42 ||
		ef.Latency != 50*time.Millisecond || f.latencyMax != 300*time.Millisecond {
		t.Errorf("parsed %+v, emulator faults %+v", f, ef)
	}
	if got := f.String(); got != "5xx 20%, 429 10%, lost responses 5%, hangs 1%, latency 50ms-300ms" {
		t.Errorf("String() = %q", got)
	}
	if f, _ := parseFaults("latency=80ms"); f.latencyMin != 80*time.Millisecond || f.latencyMax != 80*time.Millisecond || f.String() != "latency 80ms" {
		t.Errorf("a fixed latency: %+v", f)
	}
	if f, why := parseFaults(""); f.active() || len(why) > 0 {
		t.Errorf("no faults: %+v %v", f, why)
	}
	if _, why = parseFaults("5xx=2,429=x,latency=300ms-50ms,lost,boom=1,seed=1.5,5xx=0.1"); len(why) != 7 {
		t.Errorf("problems: %q", why)
	}
	_, _, err := parseConfig("sandbox", []string{"--faults", "5xx=2,teapot=0.1"}, nil)
	if got := problems(t, err); len(got) != 2 || !strings.Contains(got[0], "--faults: 5xx=2: want a fraction from 0 to 1") {
		t.Errorf("parseConfig --faults: %q", got)
	}
}

// A sandbox asked to listen on every address still hands out a loopback
// URL: plain http to the emulator is allowed only there.
func TestEmulatorURLIsLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr *net.TCPAddr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "http://127.0.0.1:8080/trade-api/v2"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}, "http://127.0.0.1:8080/trade-api/v2"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8080}, "http://[::1]:8080/trade-api/v2"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, "http://127.0.0.1:9/trade-api/v2"},
	} {
		if got := emulatorURL(tc.addr); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.addr, got, tc.want)
		}
		if _, err := kalshi.ResolveBaseURL(emulatorURL(tc.addr)); err != nil {
			t.Errorf("%v: %v", tc.addr, err)
		}
	}
}
