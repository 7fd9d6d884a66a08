package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/events/auth"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// rig is one embedded NATS server, one Kalshi emulator and a client of it.
type rig struct {
	t      *testing.T
	srv    *natstest.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	emu    *emulator.Emulator
	client *kalshi.Client
	selfID string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	emu := emulatortest.Start(t, emulator.Options{Refill: -1})
	selfID := emu.AddKey("revoker", &emulatortest.Key().PublicKey, "read", "write")
	client, err := kalshi.New(kalshi.Config{BaseURL: emu.URL(), KeyID: selfID, PrivateKey: emulatortest.Key()})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, srv: srv, nc: nc, js: js, emu: emu, client: client, selfID: selfID}
}

// config is a worker configuration with fast retries, for tests.
func (r *rig) config() worker.Config {
	return worker.Config{
		Provision:      true,
		SelfKeyID:      r.selfID,
		Concurrency:    8,
		MaxRetry:       time.Minute,
		AttemptTimeout: 2 * time.Second,
		RetryInitial:   5 * time.Millisecond,
		RetryMaxDelay:  50 * time.Millisecond,
		RequeueDelay:   100 * time.Millisecond,
		PullWait:       200 * time.Millisecond,
		DrainTimeout:   10 * time.Second,
		// Emulator faults apply to the credential check too.
		CredentialRetry: 50 * time.Millisecond,
		ConfirmDelay:    50 * time.Millisecond,
		ConfirmInterval: 100 * time.Millisecond,
		Logger:          testLogger(r.t),
	}
}

// start runs a worker until the returned stop is called (or the test ends),
// once it is ready; stop waits for Run to return and reports its error.
func (r *rig) start(cfg worker.Config) (w *worker.Worker, stop func() error) {
	r.t.Helper()
	return r.startWith(r.client, cfg)
}

func (r *rig) startWith(del worker.Kalshi, cfg worker.Config) (w *worker.Worker, stop func() error) {
	r.t.Helper()
	if cfg.Provision {
		if err := provision.Ensure(context.Background(), r.js, cfg.Provisioning()); err != nil {
			r.t.Fatal(err)
		}
	}
	w, stop = r.launch(r.js, del, cfg)
	natstest.WaitFor(r.t, 20*time.Second, "the worker to be ready", func() bool { return w.Ready() == nil })
	return w, stop
}

// launch runs a worker on js until stop is called (or the test ends),
// without waiting for it to be ready.
func (r *rig) launch(js jetstream.JetStream, del worker.Kalshi, cfg worker.Config) (w *worker.Worker, stop func() error) {
	r.t.Helper()
	w, err := worker.New(js, del, cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	stop, _ = natstest.Go(r.t, 30*time.Second, "Run did not return within 30s of cancellation", w.Run)
	return w, stop
}

// signedConfig is config with request authentication on, trusting the
// returned signer.
func (r *rig) signedConfig() (worker.Config, nkeys.KeyPair) {
	r.t.Helper()
	kp, pub := newUser(r.t)
	cfg := r.config()
	cfg.Policy = &auth.Policy{TrustedSigners: []string{pub}}
	return cfg, kp
}

// publish sends a plain request with Nats-Msg-Id set to id.
func (r *rig) publish(id, keyID string, extra ...string) {
	r.t.Helper()
	body := map[string]string{"id": id, "api_key_id": keyID}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i]] = extra[i+1]
	}
	data, _ := json.Marshal(body)
	r.publishRaw(id, data)
}

func (r *rig) publishRaw(msgID string, data []byte) {
	r.t.Helper()
	m := nats.NewMsg("keys.revoke.requests")
	m.Data = data
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.js.PublishMsg(ctx, m); err != nil {
		r.t.Fatalf("publishing request: %v", err)
	}
}

// results reads every result stored in the results stream.
func (r *rig) results() []events.Result {
	r.t.Helper()
	var out []events.Result
	for _, s := range r.stored() {
		out = append(out, s.Result)
	}
	return out
}

// storedResult is a result as stored, with its Nats-Msg-Id and the message
// it was read from.
type storedResult struct {
	MsgID string
	events.Result
	Header nats.Header
	Data   []byte
}

// stored reads every result stored in the results stream, then every
// rejection in the untrusted stream, with its message id. Each is on its
// stream's subject for it; a rejection is there only under an untrusted- id.
func (r *rig) stored() []storedResult {
	r.t.Helper()
	out := r.storedIn("KEY_REVOKE_RESULTS", func(res events.Result) string {
		return events.ResultSubject("keys.revoke.results", res.Outcome)
	})
	untrusted := r.storedIn(provision.UntrustedStream, func(res events.Result) string {
		if res.Error == nil {
			return "a rejection with an error"
		}
		return "keys.revoke.untrusted." + string(res.Error.Code)
	})
	for _, s := range out {
		if strings.HasPrefix(s.MsgID, events.UntrustedIDPrefix) {
			r.t.Errorf("%s in the results stream under %s: an untrusted rejection belongs in %s", s.RequestID, s.MsgID, provision.UntrustedStream)
		}
	}
	for _, s := range untrusted {
		if !strings.HasPrefix(s.MsgID, events.UntrustedIDPrefix) {
			r.t.Errorf("%s in %s under %s, not an untrusted- id", s.RequestID, provision.UntrustedStream, s.MsgID)
		}
	}
	return append(out, untrusted...)
}

// storedIn reads every result stored in stream, checking its subject.
func (r *rig) storedIn(stream string, subject func(events.Result) string) []storedResult {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	} else if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []storedResult
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		} else if err != nil {
			r.t.Fatal(err)
		}
		res, err := events.ParseResultMsg(m.Header, m.Data)
		if err != nil {
			r.t.Fatalf("%s message %d does not parse: %v\n%v\n%s", stream, seq, err, m.Header, m.Data)
		}
		if want := subject(res); m.Subject != want {
			r.t.Errorf("result %s stored on %s, want %s", res.RequestID, m.Subject, want)
		}
		out = append(out, storedResult{MsgID: m.Header.Get(jetstream.MsgIDHeader), Result: res, Header: m.Header, Data: m.Data})
	}
	return out
}

// waitResults polls until n results are stored and returns them by request id.
func (r *rig) waitResults(n int, timeout time.Duration) map[string]events.Result {
	r.t.Helper()
	var got []events.Result
	natstest.WaitFor(r.t, timeout, fmt.Sprintf("%d results", n), func() bool {
		got = r.results()
		return len(got) >= n
	})
	byID := make(map[string]events.Result, len(got))
	for _, res := range got {
		if _, dup := byID[res.RequestID]; dup {
			r.t.Errorf("second result for request %s", res.RequestID)
		}
		byID[res.RequestID] = res
	}
	if len(got) != n {
		r.t.Errorf("got %d results, want exactly %d", len(got), n)
	}
	return byID
}

// requestsLeft is the number of requests still in the work queue.
func (r *rig) requestsLeft() uint64 {
	r.t.Helper()
	s, err := r.js.Stream(context.Background(), "KEY_REVOKE_REQUESTS")
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return info.State.Msgs
}

// waitNoPull waits until no worker has a pull waiting at the server: a
// request published then stays in the queue unless a worker pulls again.
func (r *rig) waitNoPull() {
	r.t.Helper()
	ctx := context.Background()
	cons, err := r.js.Consumer(ctx, "KEY_REVOKE_REQUESTS", "revoker")
	if err != nil {
		r.t.Fatal(err)
	}
	natstest.WaitFor(r.t, 10*time.Second, "no pull waiting", func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumWaiting == 0
	})
}

func (r *rig) waitQueueEmpty() {
	r.t.Helper()
	natstest.WaitFor(r.t, 10*time.Second, "the requests stream to be empty", func() bool { return r.requestsLeft() == 0 })
}

// addKeys registers n keys in the emulator.
func (r *rig) addKeys(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = r.emu.AddKey(fmt.Sprintf("k%d", i), &emulatortest.Key().PublicKey)
	}
	return ids
}

// testLogger writes the worker's log to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
