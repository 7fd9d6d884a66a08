package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// world is a NATS server and a Kalshi emulator that knows the worker's key,
// with the environment "revoker run" needs to use them.
type world struct {
	t       *testing.T
	nats    *natstest.Server
	emu     *emulator.Emulator
	selfID  string
	env     map[string]string
	httpURL string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	srv := natstest.Start(t)
	emu := emulatortest.Start(t, emulator.Options{})
	selfID := emu.AddKey("revoker", &emulatortest.Key().PublicKey, "read", "write")
	keyPath := emulatortest.WritePEM(t, emulatortest.Key())
	httpAddr := natstest.FreeAddr(t)
	return &world{
		t: t, nats: srv, emu: emu, selfID: selfID,
		httpURL: "http://" + httpAddr,
		env: map[string]string{
			"NATS_URL":                srv.URL(),
			"KALSHI_BASE_URL":         emu.URL(),
			"KALSHI_API_KEY_ID":       selfID,
			"KALSHI_PRIVATE_KEY_PATH": keyPath,
			"REVOKER_HTTP_ADDR":       httpAddr,
			"REVOKER_LOG_FORMAT":      "json",
		},
	}
}

// seed adds n keys to the emulator.
func (w *world) seed(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = w.emu.AddKey(fmt.Sprintf("key-%d", i), &emulatortest.Key().PublicKey)
	}
	return ids
}

// cli runs one short command and returns its output and error.
func (w *world) cli(args ...string) (string, error) {
	w.t.Helper()
	var out, errOut syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := run(ctx, args, getenv(w.env), nil, &out, &errOut)
	w.t.Logf("revoker %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), out.String(), errOut.String())
	return out.String(), err
}

// startRun runs "revoker run" until the returned stop is called; stop
// reports what run returned.
func (w *world) startRun() (stop func() error, logs *syncBuffer) {
	w.t.Helper()
	logs = &syncBuffer{}
	stop, _ = natstest.Go(w.t, 30*time.Second, "run did not return within 30s of cancellation", func(ctx context.Context) error {
		return run(ctx, []string{"run"}, getenv(w.env), nil, io.Discard, logs)
	})
	natstest.WaitFor(w.t, 20*time.Second, "/readyz answers 200", func() bool { return w.get("/readyz") == http.StatusOK })
	return stop, logs
}

func (w *world) get(path string) int {
	resp, err := http.Get(w.httpURL + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (w *world) body(path string) string {
	w.t.Helper()
	resp, err := http.Get(w.httpURL + path)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// storedResults reads the results stream.
func storedResults(t *testing.T, url string) []events.Result {
	t.Helper()
	nc := natstest.Connect(t, url)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	s, err := js.Stream(ctx, "KEY_REVOKE_RESULTS")
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Result
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		r, err := events.ParseResultMsg(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestRunEndToEnd(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(1)
	stop, logs := w.startRun()

	if code := w.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	nc := natstest.Connect(t, w.nats.URL())
	body := fmt.Sprintf(`{"id":"e2e-1","api_key_id":%q,"reason":"leaked in a public gist","requested_by":"ir-bot","source":"incident-response"}`, keys[0])
	if err := nc.Publish("keys.revoke.requests", []byte(body)); err != nil {
		t.Fatal(err)
	}
	var results []events.Result
	natstest.WaitFor(t, 20*time.Second, "a stored result", func() bool {
		results = storedResults(t, w.nats.URL())
		return len(results) > 0
	})
	r := results[0]
	if r.RequestID != "e2e-1" || r.Outcome != events.Revoked || r.Reason != "leaked in a public gist" || r.Source != "incident-response" {
		t.Errorf("result %+v", r)
	}
	if w.emu.HasKey(keys[0]) {
		t.Error("the key still exists")
	}
	// A single replica's share of the plan is the whole budget once recorded.
	natstest.WaitFor(t, 10*time.Second, "the whole budget in the rate gauge", func() bool {
		return strings.Contains(w.body("/metrics"), "revoker_rate_limit_tokens_per_second 18\n")
	})
	metrics := w.body("/metrics")
	for _, want := range []string{`revoker_results_total{code="none",outcome="revoked"} 1`, "revoker_ready 1", `revoker_attempts_total{status="204"} 1`,
		"revoker_rate_limit_tokens_per_second 18", // 90% of 200 tokens/s at 10 a delete
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("run after cancellation returned %v, want nil", err)
	}
	if w.get("/healthz") != 0 {
		t.Error("the HTTP server still answers after run returned")
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("the log shows the private key")
	}
}

func TestRunReportsEveryConfigurationProblem(t *testing.T) {
	t.Parallel()
	var out, errOut syncBuffer
	env := map[string]string{"REVOKER_CONCURRENCY": "0", "REVOKER_MAX_RETRY": "15x", "NATS_URL": "nats://127.0.0.1:1"}
	err := run(context.Background(), []string{"run"}, getenv(env), nil, &out, &errOut)
	var exit exitError
	if !errors.As(err, &exit) || exit.code != 2 {
		t.Fatalf("got %v, want exit status 2", err)
	}
	msg := errOut.String()
	for _, want := range []string{"KALSHI_API_KEY_ID", "REVOKER_CONCURRENCY", "REVOKER_MAX_RETRY", "4 problems"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr lacks %q:\n%s", want, msg)
		}
	}
}

func TestRevokeKeysAndCheck(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(2)
	w.env["REVOKER_PROTECTED_KEYS"] = keys[1]
	w.startRun()

	// revoke: one line per key; exit 0 only when every key is gone, 3 when
	// one was never in the account.
	gone := "00000000-0000-4000-8000-000000000001"
	out, err := w.cli("revoke", "--reason", "test", keys[0], gone)
	var exit exitError
	if !errors.As(err, &exit) || exit.code != exitNotFound {
		t.Fatalf("revoke: %v, want exit status 3", err)
	}
	want := fmt.Sprintf("%s revoked\n%s already_revoked (not in this account: a wrong ID, the wrong environment, or deleted outside revoker)\n%s confirmed\n", keys[0], gone, keys[0])
	if out != want {
		t.Errorf("revoke printed\n%s\nwant\n%s", out, want)
	}
	out, err = w.cli("revoke", "--ignore-not-found", keys[0], gone)
	if err != nil || out != fmt.Sprintf("%s already_revoked\n%s already_revoked\n", keys[0], gone) {
		t.Errorf("revoke --ignore-not-found: %v\n%s", err, out)
	}
	out, err = w.cli("revoke", keys[1])
	if !errors.As(err, &exit) || exit.code != 1 {
		t.Errorf("revoking a protected key: %v, want exit status 1", err)
	}
	if !strings.HasPrefix(out, keys[1]+" rejected protected_key: ") {
		t.Errorf("revoke printed %q", out)
	}
	out, err = w.cli("revoke", "--json", "--source", "pager", "--ignore-not-found", gone)
	if err != nil {
		t.Fatal(err)
	}
	r, err := events.ParseResult([]byte(strings.TrimSpace(out)))
	if err != nil || r.APIKeyID != gone || r.Source != "pager" || r.Outcome != events.AlreadyRevoked {
		t.Errorf("--json printed %q (%v)", out, err)
	}

	// keys: a table with the worker's own key starred.
	out, err = w.cli("keys")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "* "+w.selfID) || !strings.Contains(out, keys[1]) || strings.Contains(out, keys[0]) {
		t.Errorf("keys printed:\n%s", out)
	}

	// check: every line ok, the ledger and the settings included.
	out, err = w.cli("check")
	if err != nil || !strings.Contains(out, "all checks passed") || strings.Contains(out, "FAIL") ||
		!strings.Contains(out, "ok    ledger REVOKER_LEDGER") || !strings.Contains(out, "ok    settings the guarantees need") {
		t.Errorf("check: %v\n%s", err, out)
	}
}

// A consumer whose ack wait breaks the failover guarantee is refused by
// check and by run, in plain words, before run takes any request.
func TestBrokenSettingsAreRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	nc := natstest.Connect(t, w.nats.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	wc := worker.Config{}
	if err := provision.Ensure(ctx, js, wc.Provisioning()); err != nil {
		t.Fatal(err)
	}
	cc := provision.ConsumerConfig(wc.Provisioning())
	cc.AckWait = time.Minute
	if _, err := js.UpdateConsumer(ctx, "KEY_REVOKE_REQUESTS", cc); err != nil {
		t.Fatal(err)
	}
	out, err := w.cli("check")
	if err == nil || !strings.Contains(out, "FAIL  settings the guarantees need") || !strings.Contains(out, "ack wait of 1m0s") {
		t.Errorf("check: %v\n%s", err, out)
	}
	_, err = w.cli("run")
	if err == nil || !strings.Contains(err.Error(), "ack wait of 1m0s") {
		t.Errorf("run: %v, want the refusal", err)
	}
}

func TestCheckFailures(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.env["KALSHI_PRIVATE_KEY_PATH"] = emulatortest.WritePEM(t, emulatortest.OtherKey())
	w.env["NATS_URL"] = "nats://127.0.0.1:1"
	out, err := w.cli("check", "--no-provision")
	var exit exitError
	if !errors.As(err, &exit) || exit.code != 1 {
		t.Fatalf("check with a wrong key and no NATS: %v, want exit status 1", err)
	}
	for _, want := range []string{"FAIL  kalshi accepts the signature", "INCORRECT_API_KEY_SIGNATURE", "FAIL  nats reachable", "2 checks failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q", want)
		}
	}
	if strings.Contains(out, "PRIVATE KEY") {
		t.Error("check printed key material")
	}
}

func TestSandboxDemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out, errOut syncBuffer
	args := []string{"sandbox", "--demo", "--dir", dir, "--nats-listen", "127.0.0.1:0", "--http-addr", natstest.FreeAddr(t), "--keys", "3"}
	stop, _ := natstest.Go(t, 30*time.Second, "sandbox did not stop within 30s", func(ctx context.Context) error {
		return run(ctx, args, getenv(nil), nil, &out, &errOut)
	})
	defer func() {
		if err := stop(); errors.Is(err, natstest.ErrStillRunning) {
			t.Error(err)
		} else if err != nil {
			t.Errorf("sandbox returned %v after Ctrl-C", err)
		}
	}()
	natstest.WaitFor(t, 60*time.Second, "the demo's outcomes", func() bool {
		return strings.Contains(out.String(), "keeps serving")
	})
	var info sandboxInfo
	data, err := os.ReadFile(filepath.Join(dir, "sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Keys) != 3 || info.NATSURL == "" || info.KalshiBaseURL == "" || info.APIKeyID == "" {
		t.Fatalf("sandbox.json: %+v", info)
	}
	text := out.String()
	for _, k := range info.Keys[:2] {
		if !strings.Contains(text, k+" revoked\n") {
			t.Errorf("the demo did not print %s revoked:\n%s", k, text)
		}
	}
	// The PEM it names signs for the key it names, and the sandbox keeps
	// serving: revoke the third key through it.
	env := map[string]string{
		"NATS_URL": info.NATSURL, "KALSHI_BASE_URL": info.KalshiBaseURL,
		"KALSHI_API_KEY_ID": info.APIKeyID, "KALSHI_PRIVATE_KEY_PATH": info.PrivateKeyPath,
	}
	var out2, err2 syncBuffer
	if err := run(context.Background(), []string{"revoke", info.Keys[2]}, getenv(env), nil, &out2, &err2); err != nil {
		t.Fatalf("revoke through the sandbox: %v\n%s", err, err2.String())
	}
	var keysOut syncBuffer
	if err := run(context.Background(), []string{"keys"}, getenv(env), nil, &keysOut, &err2); err != nil {
		t.Fatalf("keys through the sandbox: %v\n%s", err, err2.String())
	}
	if strings.Contains(keysOut.String(), info.Keys[2]) || !strings.Contains(keysOut.String(), "* "+info.APIKeyID) {
		t.Errorf("keys after revoking:\n%s", keysOut.String())
	}
}

func TestSelfRevocationWhenAllowed(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.env["REVOKER_ALLOW_SELF_REVOKE"] = "true"
	w.startRun()
	// Its own key's death is not confirmed: the worker's credential is gone.
	out, err := w.cli("revoke", "--timeout", "10s", w.selfID)
	if err != nil || !strings.HasPrefix(out, w.selfID+" revoked\n") {
		t.Fatalf("revoke own key: %v %q", err, out)
	}
	natstest.WaitFor(t, 10*time.Second, "/readyz to answer 503", func() bool { return w.get("/readyz") == http.StatusServiceUnavailable })
	if !strings.Contains(w.body("/readyz"), "own key") {
		t.Errorf("/readyz says %q", w.body("/readyz"))
	}
	if w.get("/healthz") != http.StatusOK {
		t.Error("/healthz must still answer: the process is alive")
	}
}
