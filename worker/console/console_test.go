package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/console"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// fixture is a console served beside no worker: a real NATS server, the
// Kalshi emulator, the ledger provisioned, and a client.
type fixture struct {
	t       *testing.T
	srv     *natstest.Server
	emu     *emulator.Emulator
	js      jetstream.JetStream
	selfID  string
	keys    []string // seeded, named key-0, key-1, ...
	limiter *budget.Limiter
	svc     *console.Service
	client  *console.Client
}

// newFixture seeds seed keys, then starts the console with the config
// edit changes (it sees the seeded keys), if not nil.
func newFixture(t *testing.T, seed int, edit func(*fixture, *console.Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, srv: natstest.Start(t), emu: emulatortest.Start(t, emulator.Options{})}
	f.selfID = f.emu.AddKey("revoker", &emulatortest.Key().PublicKey, "read", "write")
	for i := range seed {
		f.keys = append(f.keys, f.emu.AddKey(fmt.Sprintf("key-%d", i), &emulatortest.Key().PublicKey, "read"))
	}
	client, err := kalshi.New(kalshi.Config{BaseURL: f.emu.URL(), KeyID: f.selfID, PrivateKey: emulatortest.Key()})
	if err != nil {
		t.Fatal(err)
	}
	f.js, err = jetstream.New(natstest.Connect(t, f.srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if err := provision.Ensure(t.Context(), f.js, worker.Config{}.Provisioning()); err != nil {
		t.Fatal(err)
	}
	f.limiter = budget.NewLimiter(0, 0)
	cfg := console.Config{
		Kalshi:          client,
		Limiter:         f.limiter,
		Guards:          console.Guards{SelfKeyID: f.selfID},
		JS:              f.js,
		Version:         "v1.2.3",
		KalshiBaseURL:   f.emu.URL(),
		CallTimeout:     5 * time.Second,
		ListingInterval: 100 * time.Millisecond,
	}
	if edit != nil {
		edit(f, &cfg)
	}
	f.svc, err = console.Start(natstest.Connect(t, f.srv.URL()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.svc.Stop() })
	f.client = console.NewClient(natstest.Connect(t, f.srv.URL()))
	return f
}

// raw sends body to subject and returns the answer's data and its micro
// error code and description ("" when none).
func (f *fixture) raw(subject string, body []byte) (data []byte, code, desc string) {
	f.t.Helper()
	nc := natstest.Connect(f.t, f.srv.URL())
	msg, err := nc.Request(subject, body, 10*time.Second)
	if err != nil {
		f.t.Fatalf("%s: %v", subject, err)
	}
	return msg.Data, msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader)
}

func TestKeysEndpoint(t *testing.T) {
	f := newFixture(t, 2, nil)
	r, err := f.client.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]console.Key{}
	for _, k := range r.Keys {
		got[k.ID] = k
	}
	if len(r.Keys) != 3 || !got[f.selfID].Own || got[f.keys[0]].Own || got[f.keys[1]].Name != "key-1" ||
		strings.Join(got[f.keys[0]].Scopes, ",") != "read" || r.SelfKeyID != f.selfID || r.ListedAt.IsZero() {
		t.Errorf("keys: %+v", r)
	}
}

// The plan is the worker's: its own key is refused even if the asker
// would allow it, protected keys are refused in any letter case, a key
// the account does not list is not_found, an odd ID is refused, not a
// crash; --all spares the own and protected keys, and match and except.
func TestPlanEndpoint(t *testing.T) {
	f := newFixture(t, 4, func(f *fixture, c *console.Config) { c.Guards.ProtectedKeys = []string{f.keys[1]} })
	protected := f.keys[1]
	missing := "00000000-0000-4000-8000-00000000abcd"
	odd := []string{"../../x", "\x1b[2J", strings.Repeat("a", 129), ""}
	r, err := f.client.Plan(t.Context(), console.PlanRequest{Keys: append([]string{f.keys[0], strings.ToUpper(protected), f.selfID, missing}, odd...)})
	if err != nil {
		t.Fatal(err)
	}
	want := []console.KeyPlan{
		{APIKeyID: f.keys[0], Plan: console.PlanWouldRevoke},
		{APIKeyID: strings.ToUpper(protected), Plan: console.PlanRefused, Code: events.CodeProtectedKey},
		{APIKeyID: f.selfID, Plan: console.PlanRefused, Code: events.CodeSelfRevocationRefused},
		{APIKeyID: missing, Plan: console.PlanNotFound},
	}
	for _, id := range odd {
		want = append(want, console.KeyPlan{APIKeyID: id, Plan: console.PlanRefused, Code: events.CodeInvalidRequest})
	}
	if fmt.Sprint(r.Keys) != fmt.Sprint(want) {
		t.Errorf("plan\n%v\nwant\n%v", r.Keys, want)
	}
	if r.Guards.SelfKeyID != f.selfID || r.Guards.AllowSelfRevoke || len(r.Guards.ProtectedKeys) != 1 {
		t.Errorf("guards %+v", r.Guards)
	}

	r, err = f.client.Plan(t.Context(), console.PlanRequest{All: true, Match: "key-[0-2]", Except: []string{strings.ToUpper(f.keys[2]), missing}})
	if err != nil {
		t.Fatal(err)
	}
	spared := map[string]string{}
	for _, l := range r.All.Spared {
		spared[l.APIKeyID] = l.Spared
	}
	if r.All.Listed != 5 || len(r.All.Revoke) != 1 || r.All.Revoke[0].APIKeyID != f.keys[0] || r.All.Revoke[0].Name != "key-0" ||
		spared[f.selfID] != console.SparedOwn || spared[protected] != console.SparedProtected ||
		spared[f.keys[2]] != console.SparedExcept || spared[f.keys[3]] != console.SparedNotMatching ||
		fmt.Sprint(r.All.ExceptUnlisted) != "["+missing+"]" {
		t.Errorf("--all plan %+v", r.All)
	}
	for _, k := range append(f.keys, f.selfID) {
		if !f.emu.HasKey(k) {
			t.Errorf("a plan deleted %s", k)
		}
	}
}

// status: per key, the ledger's record and whether the account lists it.
func TestStatusEndpoint(t *testing.T) {
	f := newFixture(t, 2, nil)
	kv, err := f.js.KeyValue(t.Context(), ledger.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	gone := "00000000-0000-4000-8000-000000000001"
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	rec, _ := json.Marshal(ledger.KeyRecord{RequestID: "inc-1", RevokedAt: at, RequestedBy: "oncall", Reason: "leaked"})
	if _, err := kv.Put(t.Context(), "key."+gone, rec); err != nil {
		t.Fatal(err)
	}
	r, err := f.client.Status(t.Context(), []string{strings.ToUpper(f.keys[0]), gone})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Keys) != 2 || r.Keys[0].APIKeyID != f.keys[0] || !r.Keys[0].Listed || r.Keys[0].Revoked != nil ||
		r.Keys[1].Listed || r.Keys[1].Revoked == nil || r.Keys[1].Revoked.RequestID != "inc-1" || !r.Keys[1].Revoked.RevokedAt.Equal(at) {
		t.Errorf("status %+v", r)
	}
}

// health: the answering replica's readiness and credential, and the
// replica plan's members, here one real share.
func TestHealthEndpoint(t *testing.T) {
	var ready, cred error = errors.New("not bound to consumer revoker"), nil
	var mu sync.Mutex
	f := newFixture(t, 0, func(f *fixture, c *console.Config) {
		c.Ready = func() error { mu.Lock(); defer mu.Unlock(); return ready }
		c.Credential = func() error { mu.Lock(); defer mu.Unlock(); return cred }
		c.Replica = "replica-a"
	})
	bucket := provision.ReplicasConfig(worker.Config{}.Provisioning())
	share := budget.NewShare(f.js, budget.ShareConfig{Limiter: f.limiter, ID: "replica-a", Bucket: &bucket})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); share.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	var h console.Health
	natstest.WaitFor(t, 10*time.Second, "the plan lists the replica", func() bool {
		var err error
		h, err = f.client.Health(t.Context())
		return err == nil && len(h.Replicas) == 1 && h.Replicas[0].ID == "replica-a"
	})
	if h.Replica != "replica-a" || h.Ready || h.NotReady != "not bound to consumer revoker" || !h.Credential ||
		h.SelfKeyID != f.selfID || h.KalshiBaseURL != f.emu.URL() || h.Version != "v1.2.3" || h.ReplicasErr != "" {
		t.Errorf("health %+v", h)
	}
	mu.Lock()
	ready, cred = errors.New("kalshi has not yet accepted the credential"), errors.New("kalshi has not yet accepted the credential")
	mu.Unlock()
	if h, err := f.client.Health(t.Context()); err != nil || h.Credential || h.CredentialErr == "" || h.Ready {
		t.Errorf("health without the credential: %+v %v", h, err)
	}
	if n := f.emu.Stats().Requests; n != 0 {
		t.Errorf("health made %d Kalshi requests", n)
	}
}

// Hostile requests are bounded and answered with a micro error, one line,
// the odd input quoted; the console keeps serving.
func TestHostileInput(t *testing.T) {
	f := newFixture(t, 1, nil)
	many := make([]string, console.MaxKeys+1)
	for i := range many {
		many[i] = fmt.Sprintf("k%d", i)
	}
	body := func(v any) []byte { b, _ := json.Marshal(v); return b }
	for _, c := range []struct {
		subject string
		body    []byte
		want    string
	}{
		{console.SubjectPlan, []byte("{not json"), "not the JSON"},
		{console.SubjectPlan, []byte(`{"keys":["a"],"drop":"tables"}`), "unknown field"},
		{console.SubjectPlan, []byte(`{}`), "no keys to plan"},
		{console.SubjectPlan, body(console.PlanRequest{Keys: many}), "1001 keys in one request: at most 1000"},
		{console.SubjectPlan, body(console.PlanRequest{Keys: []string{"a"}, All: true}), "not both"},
		{console.SubjectPlan, body(console.PlanRequest{Match: "x"}), "only with all"},
		{console.SubjectPlan, body(console.PlanRequest{All: true, Match: "[\n"}), `match: "[\n" is not a valid pattern`},
		{console.SubjectPlan, body(console.PlanRequest{All: true, Except: []string{"a/b"}}), `except: "a/b" is not a Kalshi API key ID`},
		{console.SubjectPlan, body(console.PlanRequest{All: true, Match: strings.Repeat("*", 2000)}), "match pattern of 2000 bytes"},
		{console.SubjectStatus, body(console.StatusRequest{Keys: []string{"\x1b[2J\u202e"}}), `"\x1b[2J\u202e" is not a Kalshi API key ID`},
		{console.SubjectStatus, body(console.StatusRequest{Keys: many}), "at most 1000"},
		{console.SubjectStatus, []byte(`[]`), "not the JSON"},
		{console.SubjectKeys, []byte(`{"x":1}`), "unknown field"},
		{console.SubjectKeys, []byte(strings.Repeat(" ", console.MaxRequestBytes+1)), "at most 262144"},
	} {
		data, code, desc := f.raw(c.subject, c.body)
		if code != console.CodeBadRequest || !strings.Contains(desc, c.want) || strings.ContainsAny(desc, "\r\n\x1b") || len(data) != 0 {
			t.Errorf("%s %.60q: code %q desc %q data %q; want 400 and %q", c.subject, c.body, code, desc, data, c.want)
		}
	}
	// Nothing above listed the account, and the console still answers.
	if n := f.emu.Stats().Requests; n != 0 {
		t.Errorf("refused requests made %d Kalshi requests", n)
	}
	if r, err := f.client.Keys(t.Context()); err != nil || len(r.Keys) != 2 {
		t.Errorf("keys after the hostile requests: %+v %v", r, err)
	}
	var refused *console.Error
	if _, err := f.client.Plan(t.Context(), console.PlanRequest{}); !errors.As(err, &refused) || refused.Code != "400" {
		t.Errorf("client: %v, want a *console.Error 400", err)
	}
}

// A flood of requests costs Kalshi one listing per interval, and every
// answer comes from a listing that began after its request: a key deleted
// before the request is never listed.
func TestListingsShared(t *testing.T) {
	f := newFixture(t, 2, func(_ *fixture, c *console.Config) { c.ListingInterval, c.ListingBurst = 500*time.Millisecond, 1 })
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for range n {
		wg.Go(func() {
			_, err := f.client.Keys(t.Context())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d concurrent keys requests answered in %v with %d Kalshi listings", n, elapsed, f.emu.Stats().Requests)
	// One listing per interval begun, plus the first.
	if got, most := f.emu.Stats().Requests, 2+int(elapsed/(500*time.Millisecond)); got > most {
		t.Errorf("%d requests in %v made %d Kalshi listings, want at most %d", n, elapsed, got, most)
	}
	if !f.emu.RemoveKey(f.keys[0]) {
		t.Fatal("remove")
	}
	r, err := f.client.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range r.Keys {
		if k.ID == f.keys[0] {
			t.Errorf("a key deleted before the request is listed: the listing is older than the request")
		}
	}
}

// Every Kalshi call goes through the worker's budget: while the limiter
// holds every call (a 429's pause), the console answers 503 and calls
// nothing.
func TestListingWaitsForTheBudget(t *testing.T) {
	f := newFixture(t, 1, func(_ *fixture, c *console.Config) { c.CallTimeout = 300 * time.Millisecond })
	f.limiter.Pause(budget.MaxPause)
	_, err := f.client.Keys(t.Context())
	var refused *console.Error
	if !errors.As(err, &refused) || refused.Code != console.CodeUnavailable || !strings.Contains(refused.Message, "budget") {
		t.Errorf("keys during a pause: %v, want 503 naming the budget", err)
	}
	if n := f.emu.Stats().Requests; n != 0 {
		t.Errorf("%d Kalshi requests during the pause", n)
	}
}

// nats micro discovery finds the service "revoker" and its four endpoints.
func TestDiscovery(t *testing.T) {
	f := newFixture(t, 0, nil)
	nc := natstest.Connect(t, f.srv.URL())
	msg, err := nc.Request("$SRV.PING.revoker", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ping micro.Ping
	if err := json.Unmarshal(msg.Data, &ping); err != nil || ping.Name != "revoker" || ping.Version != "1.2.3" {
		t.Errorf("ping: %s %v", msg.Data, err)
	}
	msg, err = nc.Request("$SRV.INFO.revoker", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	subjects := map[string]string{}
	for _, e := range info.Endpoints {
		subjects[e.Name] = e.Subject
	}
	want := map[string]string{"keys": console.SubjectKeys, "plan": console.SubjectPlan, "status": console.SubjectStatus, "health": console.SubjectHealth}
	if fmt.Sprint(subjects) != fmt.Sprint(want) {
		t.Errorf("endpoints %v, want %v", subjects, want)
	}
}

// With no console running, the client says so, naming the cause and the
// fix, at once: from NATS's no-responders answer, not a timeout.
func TestNoWorker(t *testing.T) {
	srv := natstest.Start(t)
	c := console.NewClient(natstest.Connect(t, srv.URL()))
	_, err := c.Keys(t.Context())
	var none *console.NoWorkerError
	if !errors.As(err, &none) || !errors.Is(err, nats.ErrNoResponders) || !strings.Contains(err.Error(), `start "revoker run"`) ||
		!strings.Contains(err.Error(), "may publish to revoker.console.keys") {
		t.Errorf("no worker: %v", err)
	}
}

// No answer carries a secret: not the private key, nor a request
// signature, not even when Kalshi refuses the worker's signature.
func TestNoSecretInAnswers(t *testing.T) {
	f := newFixture(t, 1, nil)
	bad, err := kalshi.New(kalshi.Config{BaseURL: f.emu.URL(), KeyID: f.selfID, PrivateKey: emulatortest.OtherKey()})
	if err != nil {
		t.Fatal(err)
	}
	refused := newFixture(t, 0, func(_ *fixture, c *console.Config) {
		c.Kalshi = bad
		c.Credential = func() error { return errors.New("kalshi did not answer GET /api_keys with a key list") }
	})
	var answers []string
	for _, fx := range []*fixture{f, refused} {
		for _, c := range []struct {
			subject string
			body    any
		}{
			{console.SubjectKeys, struct{}{}},
			{console.SubjectPlan, console.PlanRequest{Keys: []string{f.keys[0]}}},
			{console.SubjectPlan, console.PlanRequest{All: true}},
			{console.SubjectStatus, console.StatusRequest{Keys: []string{f.keys[0]}}},
			{console.SubjectHealth, struct{}{}},
		} {
			b, _ := json.Marshal(c.body)
			data, code, desc := fx.raw(c.subject, b)
			answers = append(answers, string(data)+code+desc)
		}
	}
	all := strings.Join(answers, "\n")
	if !strings.Contains(all, "INCORRECT_API_KEY_SIGNATURE") {
		t.Errorf("the refused listing is not reported:\n%s", all)
	}
	secrets := append(f.emu.Signatures(), "PRIVATE KEY", emulatortest.Key().D.String()[:20])
	for _, s := range append(refused.emu.Signatures(), secrets...) {
		if s != "" && strings.Contains(all, s) {
			t.Errorf("an answer holds a secret (%.12s…)", s)
		}
	}
}

// An operator's commands in a row are answered at once (the burst), each
// from a fresh listing.
func TestCommandsInARowDoNotWait(t *testing.T) {
	// Past the burst, the next listing is an hour away: a command that
	// waited for it would outlast the deadline.
	f := newFixture(t, 1, func(_ *fixture, c *console.Config) { c.ListingInterval, c.ListingBurst = time.Hour, 4 })
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for i := range 4 {
		if _, err := f.client.Keys(ctx); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	if n := f.emu.Stats().ByEndpoint[emulator.EndpointListKeys][200]; n != 4 {
		t.Errorf("4 requests in a row made %d listings, want 4", n)
	}
}

// The client splits a long dry run into requests the console takes, and
// joins the plans in order.
func TestLongPlanIsSplit(t *testing.T) {
	f := newFixture(t, 1, nil)
	ids := make([]string, 2*console.MaxKeys+500)
	for i := range ids {
		ids[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	}
	ids[1234] = f.keys[0]
	r, err := f.client.Plan(t.Context(), console.PlanRequest{Keys: ids})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Keys) != len(ids) {
		t.Fatalf("%d plans for %d keys", len(r.Keys), len(ids))
	}
	for i, p := range r.Keys {
		want := console.PlanNotFound
		if i == 1234 {
			want = console.PlanWouldRevoke
		}
		if p.APIKeyID != ids[i] || p.Plan != want {
			t.Fatalf("plan %d: %+v, want %s %s", i, p, ids[i], want)
		}
	}
}

// NATS lets the asker choose the reply subject: the console answers only
// an inbox, never a subject the worker may write to (a result, the ledger),
// where its answer would be taken for a result or a ledger entry.
func TestAnswersOnlyInboxes(t *testing.T) {
	f := newFixture(t, 1, nil)
	nc := natstest.Connect(t, f.srv.URL())
	forged, err := nc.SubscribeSync("keys.revoke.results.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest("revoker.console.health", "keys.revoke.results.revoked", nil); err != nil {
		t.Fatal(err)
	}
	// An inbox request sent after it is answered, so the forged one was
	// handled (or dropped) before the check below.
	if _, _, desc := f.raw("revoker.console.health", nil); desc != "" {
		t.Fatalf("health: %s", desc)
	}
	if m, err := forged.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("the console answered on %s: %s", m.Subject, m.Data)
	}
}
