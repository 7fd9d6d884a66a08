package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/metrics"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// unconfirmedAlert is the rule on revoked keys still alive (issue 14).
const unconfirmedAlert = "RevokerRevocationUnconfirmed"

// unconfirmedRule returns the rule unconfirmedAlert, checked for what the
// issue asks of it: critical, firing when a key is still alive 60 s after its
// delete, and telling the on-call what to do.
func unconfirmedRule(t *testing.T) alertRule {
	t.Helper()
	for _, r := range alertRules(t) {
		if r.Alert != unconfirmedAlert {
			continue
		}
		if r.Labels["severity"] != "critical" {
			t.Errorf("%s: severity %q, want critical: the key may still be live", r.Alert, r.Labels["severity"])
		}
		// The gauge rises at the first check, about a second after the delete.
		if d, ok := promDuration(r.For); !ok || d != time.Minute {
			t.Errorf("%s: for %q, want 1m (a key still alive 60 s after its delete)", r.Alert, r.For)
		}
		for _, want := range []string{"revoker status KEY_ID", "Kalshi's UI", "by hand"} {
			if !strings.Contains(r.Annotations["description"], want) {
				t.Errorf("%s: the description does not say %q", r.Alert, want)
			}
		}
		return r
	}
	t.Fatalf("no %s alert on revoker_unconfirmed_revocations", unconfirmedAlert)
	return alertRule{}
}

// maxAbove is a rule expression of exactly the shape max(METRIC) > NUMBER,
// evaluated as Prometheus does over the samples of one scrape: the maximum
// over every series of METRIC, kept (the alert is active) when above NUMBER;
// no series at all gives an empty vector, which does not fire.
type maxAbove struct {
	metric    string
	threshold float64
}

var maxAboveRE = regexp.MustCompile(`^max\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\)\s*>\s*([0-9]+(?:\.[0-9]+)?)$`)

// parseMaxAbove reads expr, refusing any other shape (label matchers,
// "bool", another aggregation or comparison, more terms): a rule rewritten
// to something else must be taught to this evaluator, not escape the test.
func parseMaxAbove(expr string) (maxAbove, error) {
	m := maxAboveRE.FindStringSubmatch(strings.TrimSpace(expr))
	if m == nil {
		return maxAbove{}, fmt.Errorf("expression %q is not of the shape max(METRIC) > NUMBER this test evaluates", expr)
	}
	v, err := strconv.ParseFloat(m[2], 64)
	if err != nil {
		return maxAbove{}, fmt.Errorf("expression %q: threshold: %v", expr, err)
	}
	return maxAbove{metric: m[1], threshold: v}, nil
}

// eval reports whether the expression yields a sample (the alert is
// pending or firing) over the gathered families, and the value it yields
// (the maximum, NaN when there is no series).
func (e maxAbove) eval(families []*dto.MetricFamily) (bool, float64) {
	best, seen := math.Inf(-1), false
	for _, f := range families {
		if f.GetName() != e.metric {
			continue
		}
		for _, m := range f.GetMetric() {
			var v float64
			switch {
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Untyped != nil:
				v = m.GetUntyped().GetValue()
			default:
				continue // a histogram or summary has no sample under its own name
			}
			if !seen || v > best {
				best = v
			}
			seen = true
		}
	}
	if !seen {
		return false, math.NaN()
	}
	return best > e.threshold, best
}

func gauge(name string, values ...float64) *dto.MetricFamily {
	f := &dto.MetricFamily{Name: &name, Type: dto.MetricType_GAUGE.Enum()}
	for _, v := range values {
		f.Metric = append(f.Metric, &dto.Metric{Gauge: &dto.Gauge{Value: &v}})
	}
	return f
}

func TestMaxAboveEvaluator(t *testing.T) {
	e, err := parseMaxAbove(" max( revoker_unconfirmed_revocations )  >  0 ")
	if err != nil || e != (maxAbove{"revoker_unconfirmed_revocations", 0}) {
		t.Fatalf("parse: %+v, %v", e, err)
	}
	for _, c := range []struct {
		name     string
		families []*dto.MetricFamily
		want     bool
	}{
		{"no series", nil, false},
		{"other metric", []*dto.MetricFamily{gauge("revoker_ready", 5)}, false},
		{"zero", []*dto.MetricFamily{gauge("revoker_unconfirmed_revocations", 0)}, false},
		{"one", []*dto.MetricFamily{gauge("revoker_unconfirmed_revocations", 1)}, true},
		{"max over instances", []*dto.MetricFamily{gauge("revoker_unconfirmed_revocations", 0, 2, 0)}, true},
	} {
		if got, _ := e.eval(c.families); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if got, _ := (maxAbove{"m", 1.5}).eval([]*dto.MetricFamily{gauge("m", 1.5)}); got {
		t.Error("1.5 > 1.5")
	}
	for _, bad := range []string{
		`sum(revoker_unconfirmed_revocations) > 0`,
		`max(revoker_unconfirmed_revocations) >= 0`,
		`max(revoker_unconfirmed_revocations) > bool 0`,
		`max(revoker_unconfirmed_revocations{job="revoker"}) > 0`,
		`max by (instance) (revoker_unconfirmed_revocations) > 0`,
		`max(revoker_unconfirmed_revocations) > 0 or vector(1)`,
		`max(revoker_unconfirmed_revocations) > -1`,
		`revoker_unconfirmed_revocations > 0`,
		`max(max_over_time(revoker_unconfirmed_revocations[5m])) > 0`,
	} {
		if _, err := parseMaxAbove(bad); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// confirmRig is an embedded NATS server, a Kalshi emulator with revoker's own
// key and two others, and a worker confirming its revocations every 100 ms,
// its metrics in reg.
type confirmRig struct {
	t    *testing.T
	js   jetstream.JetStream
	emu  *emulator.Emulator
	reg  *prometheus.Registry
	keys []string // the two keys the test revokes
	expr string   // the alert's expression
	rule maxAbove // expr, parsed
}

func startConfirmRig(t *testing.T) *confirmRig {
	t.Helper()
	expr := unconfirmedRule(t).Expr
	rule, err := parseMaxAbove(expr)
	if err != nil {
		t.Fatalf("%s: %v", unconfirmedAlert, err)
	}
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	emu := emulatortest.Start(t, emulator.Options{Refill: -1})
	selfID := emu.AddKey("revoker", &emulatortest.Key().PublicKey, "read", "write")
	keys := []string{
		emu.AddKey("leaked-1", &emulatortest.OtherKey().PublicKey),
		emu.AddKey("leaked-2", &emulatortest.OtherKey().PublicKey),
	}
	client, err := kalshi.New(kalshi.Config{BaseURL: emu.URL(), KeyID: selfID, PrivateKey: emulatortest.Key()})
	if err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	cfg := worker.Config{
		Provision:       true,
		SelfKeyID:       selfID,
		MaxRetry:        time.Minute,
		AttemptTimeout:  2 * time.Second,
		RetryInitial:    5 * time.Millisecond,
		RetryMaxDelay:   50 * time.Millisecond,
		RequeueDelay:    100 * time.Millisecond,
		PullWait:        200 * time.Millisecond,
		DrainTimeout:    10 * time.Second,
		CredentialRetry: 50 * time.Millisecond,
		ConfirmDelay:    100 * time.Millisecond,
		ConfirmInterval: 100 * time.Millisecond,
		Metrics:         metrics.New(reg),
		Logger:          slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := provision.Ensure(ctx, js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(js, client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Go(t, 30*time.Second, "the worker's Run did not return within 30s of cancellation", w.Run)
	natstest.WaitFor(t, 20*time.Second, "the worker to be ready", func() bool { return w.Ready() == nil })
	return &confirmRig{t: t, js: js, emu: emu, reg: reg, keys: keys, expr: expr, rule: rule}
}

// testLog writes the worker's log to the test's log.
type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// revokeAll publishes a plain request for each key, with Nats-Msg-Id set to
// its id, waits for their results and checks that each key was revoked.
func (r *confirmRig) revokeAll() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids := map[string]string{} // request id → key
	for i, key := range r.keys {
		id := fmt.Sprintf("confirm-%d", i)
		ids[id] = key
		m := nats.NewMsg(worker.DefaultRequestsSubject)
		m.Data, _ = json.Marshal(map[string]string{"id": id, "api_key_id": key})
		m.Header.Set(jetstream.MsgIDHeader, id)
		if _, err := r.js.PublishMsg(ctx, m); err != nil {
			r.t.Fatalf("publishing request %s: %v", id, err)
		}
	}
	var got map[string]events.Result
	natstest.WaitFor(r.t, 30*time.Second, fmt.Sprintf("%d results", len(ids)), func() bool {
		got = r.results()
		return len(got) >= len(ids)
	})
	for id, key := range ids {
		res, ok := got[id]
		switch {
		case !ok:
			r.t.Fatalf("no result for request %s", id)
		case res.Outcome != events.Revoked || res.APIKeyID != key:
			r.t.Fatalf("request %s: %s for key %q, want revoked for %s (error %v)", id, res.Outcome, res.APIKeyID, key, res.Error)
		}
		if r.emu.HasKey(key) {
			r.t.Fatalf("key %s revoked but the emulator still has it", key)
		}
	}
}

// results reads every result stored in the results stream, by request id.
func (r *confirmRig) results() map[string]events.Result {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, worker.DefaultResultsStream)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]events.Result{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		} else if err != nil {
			r.t.Fatal(err)
		}
		res, err := events.ParseResultMsg(m.Header, m.Data)
		if err != nil {
			r.t.Fatalf("result %d: %v\n%s", seq, err, m.Data)
		}
		out[res.RequestID] = res
	}
	return out
}

// firing gathers the worker's metrics and evaluates the alert's expression
// over them; it returns the gauge's value too.
func (r *confirmRig) firing() (active bool, value float64) {
	r.t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	value = math.NaN()
	for _, f := range families {
		if f.GetName() == "revoker_unconfirmed_revocations" && len(f.GetMetric()) == 1 {
			value = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	active, _ = r.rule.eval(families)
	return active, value
}

// confirmedAt is the confirmed_at the ledger holds for key (zero when none).
func (r *confirmRig) confirmedAt(key string) time.Time {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := ledger.Open(ctx, r.js)
	if err != nil {
		r.t.Fatal(err)
	}
	rec, err := l.Lookup(ctx, key)
	if err != nil {
		r.t.Fatal(err)
	}
	if rec == nil {
		return time.Time{}
	}
	return rec.ConfirmedAt
}

// A key Kalshi keeps listing after its delete raises the gauge to 1 (the
// other key, confirmed, does not count) and makes the alert's expression true.
func TestRevocationUnconfirmedAlertFires(t *testing.T) {
	t.Parallel()
	r := startConfirmRig(t)
	if active, v := r.firing(); active || v != 0 {
		t.Fatalf("before any revocation: the expression is %v with revoker_unconfirmed_revocations %v, want false with 0", active, v)
	}
	alive, gone := r.keys[0], r.keys[1]
	r.emu.KeepListing(alive)
	r.revokeAll()

	natstest.WaitFor(t, 30*time.Second, "revoker_unconfirmed_revocations to be 1", func() bool {
		_, v := r.firing()
		return v == 1
	})
	natstest.WaitFor(t, 30*time.Second, "confirmed_at of the key no longer listed", func() bool {
		return !r.confirmedAt(gone).IsZero()
	})
	if active, v := r.firing(); !active || v != 1 {
		t.Errorf("a revoked key still listed: the expression %q is %v with revoker_unconfirmed_revocations %v, want true with 1", r.expr, active, v)
	}
	if at := r.confirmedAt(alive); !at.IsZero() {
		t.Errorf("key %s, still listed, has confirmed_at %v", alive, at)
	}
}

// Without a key kept listed, both revocations are confirmed and the
// expression is never true, before, during or after.
func TestRevocationUnconfirmedAlertQuiet(t *testing.T) {
	t.Parallel()
	r := startConfirmRig(t)
	fired := false
	check := func() {
		active, v := r.firing()
		if active || v != 0 {
			if !fired {
				t.Errorf("no key kept listed, yet the expression %q is %v with revoker_unconfirmed_revocations %v", r.expr, active, v)
			}
			fired = true
		}
	}
	check()
	r.revokeAll()
	natstest.WaitFor(t, 30*time.Second, "confirmed_at of both keys", func() bool {
		check()
		return !r.confirmedAt(r.keys[0]).IsZero() && !r.confirmedAt(r.keys[1]).IsZero()
	})
	check()
}
