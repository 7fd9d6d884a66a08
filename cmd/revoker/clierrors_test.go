package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/revoker/revoker/worker/natstest"
)

// jsonOnly fails unless every line of out is a JSON object, and returns
// them.
func jsonOnly(t *testing.T, what, out string) []map[string]any {
	t.Helper()
	var all []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" && out == "" {
			break
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("%s: a line of stdout is not JSON: %q: %v", what, line, err)
			continue
		}
		all = append(all, v)
	}
	return all
}

// revoke --json with no worker running: every line of stdout is JSON, a
// request without an outcome is {"outcome":"pending",...} naming its key,
// request and sequence; the words go to stderr; the exit status is 1.
// With no stream either (no worker ever ran), stdout stays empty and
// stderr says which stream is missing.
func TestRevokeJSONWithoutWorker(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(2)

	out, stderr, code := w.run2("", "revoke", "--json", keys[0])
	if code == 0 || out != "" || !strings.Contains(stderr, `no JetStream stream stores keys.revoke.requests: \"revoker run\" creates KEY_REVOKE_REQUESTS`) {
		t.Errorf("revoke --json before any worker ran: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	requests := w.provisioned()
	out, stderr, code = w.run2("", "revoke", "--json", "--timeout", "1s", keys[0], keys[1])
	lines := jsonOnly(t, "revoke --json", out)
	if code != exitFailed || len(lines) != 2 {
		t.Fatalf("revoke --json without a worker: exit %d, %d lines\n%s", code, len(lines), out)
	}
	for i, l := range lines {
		if l["outcome"] != "pending" || l["api_key_id"] != keys[i] || !strings.HasPrefix(l["request_id"].(string), "revoker-cli-") ||
			l["request_seq"] != float64(i+1) || !strings.Contains(l["detail"].(string), "no outcome within 1s") {
			t.Errorf("line %d: %v", i, l)
		}
		if !strings.Contains(stderr, "revoker revoke: "+keys[i]+" pending: no outcome within 1s: request "+l["request_id"].(string)+" stays queued") {
			t.Errorf("stderr does not say that %s is pending:\n%s", keys[i], stderr)
		}
	}
	if n := everStored(t, requests); n != 2 {
		t.Errorf("%d requests stored, want 2", n)
	}

	// In text, the same line goes to stdout.
	out, _, code = w.run2("", "revoke", "--timeout", "1s", keys[0])
	if code != exitFailed || !strings.HasPrefix(out, keys[0]+" pending: no outcome within 1s: request revoker-cli-") {
		t.Errorf("revoke without a worker: exit %d\n%s", code, out)
	}
}

// noJetStream starts a NATS server without JetStream and returns it with
// the sentence every command must say of it.
func noJetStream(t *testing.T) (*natstest.Server, string) {
	conf := filepath.Join(t.TempDir(), "nojs.conf")
	if err := os.WriteFile(conf, []byte("# no jetstream block: JetStream is off\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, natstest.WithConfigFile(conf))
	return srv, "JetStream is not enabled on the NATS server at " + srv.URL() + ": start nats-server with -js / jetstream {} in its config"
}

// Against a NATS server without JetStream, every command that needs it
// names JetStream and the fix on stderr, once (check on its FAIL line),
// instead of "no responders"; run says it once and keeps retrying.
func TestJetStreamOffIsNamed(t *testing.T) {
	t.Parallel()
	srv, want := noJetStream(t)
	w := newWorld(t)
	w.env["NATS_URL"] = srv.URL()
	for _, args := range [][]string{
		{"revoke", "k1"},
		{"revoke", "--json", "k1"},
		{"results"},
		{"results", "--json", "--key", "k1"},
		{"status", "k1"},
		{"status", "--json", "k1"},
	} {
		out, stderr, code := w.run2("", args...)
		if code == 0 || out != "" || strings.Count(stderr, want) != 1 {
			t.Errorf("revoker %s: exit %d, stdout %q, stderr %q; want stderr to say once %q", strings.Join(args, " "), code, out, stderr, want)
		}
	}
	out, _, code := w.run2("", "check")
	if code != exitFailed || strings.Count(out, "FAIL  jetstream: "+want+"\n") != 1 {
		t.Errorf("check: exit %d\n%s", code, out)
	}
	out, _, code = w.run2("", "check", "--json")
	lines := jsonOnly(t, "check --json", out)
	if code != exitFailed || len(lines) == 0 || lines[len(lines)-1]["check"] != "jetstream" || lines[len(lines)-1]["detail"] != want {
		t.Errorf("check --json: exit %d\n%s", code, out)
	}

	logs := &syncBuffer{}
	stop, _ := natstest.Go(t, 30*time.Second, "run did not return within 30s of cancellation", func(ctx context.Context) error {
		return run(ctx, []string{"run"}, getenv(w.env), nil, logs, logs)
	})
	// Said once, while the worker keeps retrying.
	natstest.WaitFor(t, 20*time.Second, "run names JetStream, then retries twice more", func() bool {
		l := logs.String()
		i := strings.Index(l, want+"; revoker keeps retrying until it is")
		return i >= 0 && strings.Count(l[i:], "cannot bind to the consumer; retrying") >= 2
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), want); n != 1 {
		t.Errorf("run said it %d times, want once:\n%s", n, logs)
	}
}

// Ctrl-C while revoke waits: it says "interrupted", not "no outcome within
// ...", prints each pending request (still queued), and exits 130.
func TestRevokeInterrupted(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(2)
	requests := w.provisioned()
	for i, asJSON := range []bool{false, true} {
		args := []string{"revoke", "--timeout", "2m", keys[i]}
		if asJSON {
			args = append(args, "--json")
		}
		var out, errOut syncBuffer
		stop, _ := natstest.Go(t, 30*time.Second, "revoke did not return within 30s of Ctrl-C", func(ctx context.Context) error {
			return run(ctx, args, getenv(w.env), nil, &out, &errOut)
		})
		natstest.WaitFor(t, 20*time.Second, "the request is stored", func() bool { return everStored(t, requests) == uint64(i+1) })
		err := stop()
		t.Logf("revoker %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), out.String(), errOut.String())
		if code := exitCode(err); code != 130 {
			t.Errorf("revoker %s: exit %d (%v), want 130", strings.Join(args, " "), code, err)
		}
		if !strings.Contains(errOut.String(), "revoker revoke: interrupted\n") || strings.Contains(out.String()+errOut.String(), "no outcome within") {
			t.Errorf("revoker %s does not say it was interrupted", strings.Join(args, " "))
		}
		const wantText = " pending: interrupted before its outcome came: request revoker-cli-"
		if !asJSON && !strings.HasPrefix(out.String(), keys[i]+wantText) {
			t.Errorf("revoke: stdout %q", out.String())
		}
		if asJSON {
			if l := jsonOnly(t, "revoke --json", out.String()); len(l) != 1 || l[0]["outcome"] != "pending" || !strings.Contains(l[0]["detail"].(string), "interrupted") {
				t.Errorf("revoke --json: %v", l)
			}
		}
	}
}

// The real process: SIGINT exits 130 and SIGTERM 143, as a shell reports a
// process those signals end, after saying "interrupted".
func TestRevokeSignalExitStatus(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(2)
	requests := w.provisioned()
	for i, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		var out, errOut syncBuffer
		cmd := exec.Command(os.Args[0], "revoke", "--timeout", "2m", keys[i])
		cmd.Env = []string{"REVOKER_TEST_MAIN=1", "NATS_URL=" + w.nats.URL(), "REVOKER_LOG_FORMAT=json"}
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		natstest.WaitFor(t, 30*time.Second, "the request is stored", func() bool { return everStored(t, requests) == uint64(i+1) })
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		var err error
		select {
		case err = <-exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("revoke did not exit within 30s of %v", sig)
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 128+int(sig) {
			t.Errorf("revoke after %v: %v, want exit status %d", sig, err, 128+int(sig))
		}
		if !strings.Contains(errOut.String(), "revoker revoke: interrupted") || !strings.HasPrefix(out.String(), keys[i]+" pending: interrupted") {
			t.Errorf("revoke after %v:\nstdout:\n%s\nstderr:\n%s", sig, out.String(), errOut.String())
		}
	}
}

// Ctrl-C ends any command's wait with "interrupted" and exit status 130:
// revoke --all at its question (nothing sent), and a command still waiting
// for a NATS server that does not answer.
func TestCommandsInterrupted(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.seed(2)
	requests := w.provisioned()
	w.startRun()
	stdin, answer := io.Pipe() // never answered
	t.Cleanup(func() { answer.Close() })
	var out, errOut syncBuffer
	stop, _ := natstest.Go(t, 30*time.Second, "revoke --all did not return within 30s of Ctrl-C", func(ctx context.Context) error {
		return run(ctx, []string{"revoke", "--all"}, getenv(w.env), stdin, &out, &errOut)
	})
	natstest.WaitFor(t, 20*time.Second, "the question", func() bool { return strings.Contains(out.String(), "Type the number of keys to revoke (2)") })
	if code := exitCode(stop()); code != 130 || !strings.Contains(errOut.String(), "revoker revoke --all: interrupted: nothing was sent") {
		t.Errorf("revoke --all interrupted at its question: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	if n := everStored(t, requests); n != 0 {
		t.Errorf("%d requests sent", n)
	}

	// A "server" that accepts and never speaks: the command waits for it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	var out2, errOut2 syncBuffer
	env := map[string]string{"NATS_URL": "nats://" + ln.Addr().String(), "REVOKER_LOG_FORMAT": "json"}
	stop, _ = natstest.Go(t, 30*time.Second, "results did not return within 30s of Ctrl-C", func(ctx context.Context) error {
		return run(ctx, []string{"results"}, getenv(env), nil, &out2, &errOut2)
	})
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(20 * time.Second):
		t.Fatal("results did not connect")
	}
	if code := exitCode(stop()); code != 130 || errOut2.String() != "revoker results: interrupted\n" || out2.String() != "" {
		t.Errorf("results interrupted while connecting: exit %d, stdout %q, stderr %q", code, out2.String(), errOut2.String())
	}
}
