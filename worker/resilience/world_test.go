package resilience_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

const (
	requestsStream  = "KEY_REVOKE_REQUESTS"
	resultsStream   = "KEY_REVOKE_RESULTS"
	requestsSubject = "keys.revoke.requests"
	resultsPrefix   = "keys.revoke.results"
	consumerName    = "revoker"
)

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("long resilience scenario; runs without -short")
	}
}

// rig is one scenario's world: NATS (a node or a cluster, started by the
// test), a Kalshi emulator that knows the worker's key, keys that must
// survive, and the test's own NATS connection to publish and inspect.
type rig struct {
	t        testing.TB
	start    time.Time
	natsURL  string
	nc       *nats.Conn
	js       jetstream.JetStream
	emu      *emulator.Emulator
	rec      *recorder // nil unless rigOptions.record
	kalshi   string    // the emulator's base URL
	selfID   string
	keyPath  string   // the worker key's PEM, mode 0600
	victims  []string // keys named only by hostile requests: must survive
	kept     []string // protected, bystander and the worker's own key: must survive, never DELETEd
	protect  []string // the protected ones (REVOKER_PROTECTED_KEYS)
	logs     *logSink
	keyCount int
}

type rigOptions struct {
	emu    emulator.Options
	record bool // record every DELETE attempt (fault storms)
	// answerDelay holds every answer this long after the emulator carried
	// the request out: a delete is done at Kalshi well before the worker
	// learns it. (Lost responses then become 502s.)
	answerDelay time.Duration
	// wrap, if set, wraps the emulator's handler (outermost).
	wrap func(http.Handler) http.Handler
}

func newRig(t testing.TB, natsURL string, o rigOptions) *rig {
	t.Helper()
	r := &rig{t: t, start: time.Now(), natsURL: natsURL, logs: newLogSink(t)}
	r.nc = natstest.Connect(t, natsURL)
	js, err := jetstream.New(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	r.js = js

	if o.emu.Refill == 0 {
		o.emu.Refill = -1 // the worker runs unlimited (REVOKER_RATE=0); so does Kalshi here
	}
	r.emu = emulator.New(o.emu)
	var h http.Handler = r.emu
	if o.record {
		r.rec = &recorder{next: r.emu}
		h = r.rec
	}
	if o.answerDelay > 0 {
		h = delayedAnswers{next: h, delay: o.answerDelay}
	}
	if o.wrap != nil {
		h = o.wrap(h)
	}
	r.kalshi = serveHTTP(t, h) + emulator.BasePath
	t.Cleanup(func() { _ = r.emu.Close() }) // releases hanging requests first

	r.selfID = r.emu.AddKey("revoker", &emulatortest.Key().PublicKey, "read", "write")
	r.keyPath = emulatortest.WritePEM(t, emulatortest.Key())
	r.protect = r.addKeys("protected", 2)
	r.kept = append(append(r.addKeys("bystander", 3), r.protect...), r.selfID)
	return r
}

// serveHTTP serves h on a free loopback port until the test ends.
func serveHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func (r *rig) addKeys(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		r.keyCount++
		ids[i] = r.emu.AddKey(fmt.Sprintf("%s-%d", prefix, r.keyCount), &emulatortest.Key().PublicKey)
	}
	return ids
}

// client is a Kalshi client signing as the worker.
func (r *rig) client() *kalshi.Client {
	r.t.Helper()
	c, err := kalshi.New(kalshi.Config{BaseURL: r.kalshi, KeyID: r.selfID, PrivateKey: emulatortest.Key()})
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// workerConfig is an in-process worker with production timings except for
// faster retries; the ack wait is the production 30 s.
func (r *rig) workerConfig() worker.Config {
	return worker.Config{
		Provision:      true,
		SelfKeyID:      r.selfID,
		ProtectedKeys:  r.protect,
		Concurrency:    8,
		MaxRetry:       5 * time.Minute,
		AttemptTimeout: time.Second,
		RetryInitial:   20 * time.Millisecond,
		RetryMaxDelay:  500 * time.Millisecond,
		Logger:         r.logs.logger(),
	}
}

func (r *rig) provision(cfg worker.Config) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := provision.Ensure(ctx, r.js, cfg.Provisioning()); err != nil {
		r.t.Fatal(err)
	}
}

// inproc is a worker running in the test process on its own connection.
type inproc struct {
	w  *worker.Worker
	nc *nats.Conn
	// stop is a graceful shutdown; it reports what Run returned.
	stop func() error
}

// startWorker runs a worker on a new connection to url (the rig's NATS
// when empty); opts tune that connection.
func (r *rig) startWorker(cfg worker.Config, url string, opts ...nats.Option) *inproc {
	r.t.Helper()
	return r.startWorkerWith(r.client(), cfg, url, opts...)
}

// startWorkerWith is startWorker with another Deleter.
func (r *rig) startWorkerWith(del worker.Kalshi, cfg worker.Config, url string, opts ...nats.Option) *inproc {
	r.t.Helper()
	if url == "" {
		url = r.natsURL
	}
	nc := natstest.Connect(r.t, url, opts...)
	js, err := jetstream.New(nc)
	if err != nil {
		r.t.Fatal(err)
	}
	w, err := worker.New(js, del, cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	stop, _ := natstest.Go(r.t, 60*time.Second, "Run did not return within 60s of cancellation", w.Run)
	return &inproc{w: w, nc: nc, stop: stop}
}

// request is one message to publish.
type request struct {
	id     string // the request id the result must carry
	msgID  string // Nats-Msg-Id; "" for none
	data   []byte
	header nats.Header
}

// expect is what a request's one result must say.
type expect struct {
	outcomes []events.Outcome
	code     events.Code
}

var revokedOrGone = expect{outcomes: []events.Outcome{events.Revoked, events.AlreadyRevoked}}

// plan is a scenario's requests and what must come of them.
type plan struct {
	name string
	reqs []request
	want map[string]expect // by request id
	gone []string          // keys that must end deleted
}

func (p *plan) add(req request, e expect) {
	if p.want == nil {
		p.want = make(map[string]expect)
	}
	p.reqs = append(p.reqs, req)
	p.want[req.id] = e
}

func (p *plan) merge(q plan) {
	for _, req := range q.reqs {
		p.add(req, q.want[req.id])
	}
	p.gone = append(p.gone, q.gone...)
}

func plainRequest(id, keyID string) request {
	body, _ := json.Marshal(map[string]string{
		"id": id, "api_key_id": keyID, "reason": "resilience suite", "requested_by": "go test", "source": "resilience",
	})
	return request{id: id, msgID: id, data: body}
}

// plan makes n fresh keys and one request for each, plus requests that must
// be refused: each protected key and the worker's own. Every 25th request is
// published a second time without Nats-Msg-Id, so the stream keeps both
// copies and only the worker can keep the result single.
func (r *rig) plan(name string, n int) plan {
	p := plan{name: name}
	for i, k := range r.addKeys(name, n) {
		req := plainRequest(fmt.Sprintf("%s-%04d", name, i), k)
		p.add(req, revokedOrGone)
		p.gone = append(p.gone, k)
		if i%25 == 0 {
			again := req
			again.msgID = ""
			p.reqs = append(p.reqs, again)
		}
	}
	for i, k := range r.protect {
		p.add(plainRequest(fmt.Sprintf("%s-protected-%d", name, i), k),
			expect{[]events.Outcome{events.Rejected}, events.CodeProtectedKey})
	}
	p.add(plainRequest(name+"-self", r.selfID), expect{[]events.Outcome{events.Rejected}, events.CodeSelfRevocationRefused})
	return p
}

// publish stores every request in the requests stream: asynchronously in
// chunks, and again (same Nats-Msg-Id, so never twice) for those whose
// publish failed, as a careful client does while NATS fails over.
func (r *rig) publish(reqs []request) {
	r.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	todo := reqs
	for round := 0; len(todo) > 0; round++ {
		if time.Now().After(deadline) {
			r.t.Fatalf("%d requests could not be published within 90s", len(todo))
		}
		if round > 0 {
			time.Sleep(100 * time.Millisecond) // back off between rounds of a failing publisher
		}
		var failed []request
		for start := 0; start < len(todo); start += 500 {
			chunk := todo[start:min(start+500, len(todo))]
			futures := make([]jetstream.PubAckFuture, len(chunk))
			for i, req := range chunk {
				f, err := r.js.PublishMsgAsync(req.msg())
				if err != nil {
					failed = append(failed, req)
					continue
				}
				futures[i] = f
			}
			timeout := time.After(10 * time.Second)
			for i, f := range futures {
				if f == nil {
					continue
				}
				select {
				case <-f.Ok():
				case <-f.Err():
					failed = append(failed, chunk[i])
				case <-timeout:
					failed = append(failed, chunk[i])
				}
			}
		}
		if len(failed) > 0 {
			r.t.Logf("publish round %d: %d of %d failed; publishing them again", round, len(failed), len(todo))
		}
		todo = failed
	}
}

func (req request) msg() *nats.Msg {
	m := nats.NewMsg(requestsSubject)
	m.Data = req.data
	for k, v := range req.header {
		m.Header[k] = v
	}
	if req.msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, req.msgID)
	}
	return m
}

// streamMsgs is how many messages stream holds, or -1 if it cannot be read now.
func (r *rig) streamMsgs(stream string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, stream)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// resultCount is how many results are stored: in the results stream and,
// for untrusted rejections, in their own.
func (r *rig) resultCount() int {
	return r.streamMsgs(resultsStream) + max(r.streamMsgs(provision.UntrustedStream), 0)
}

// waitResults waits until at least n results are stored. It does not stop
// the test on a timeout: checkInvariants then tells what is missing.
func (r *rig) waitResults(n int, timeout time.Duration) bool {
	r.t.Helper()
	if !natstest.Poll(timeout, func() bool { return r.resultCount() >= n }) {
		r.t.Errorf("timed out after %v waiting for %d results; %d stored", timeout, n, r.resultCount())
		return false
	}
	return true
}

// logf logs with the time since the scenario began.
func (r *rig) logf(format string, args ...any) {
	r.t.Helper()
	r.t.Logf("[%6.1fs] %s", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// waitDrained waits, with the workers still running, until the requests
// stream is empty: every request, repeats included, was settled. Stopping
// a worker earlier hands back what it holds, by design.
func (r *rig) waitDrained(timeout time.Duration) {
	r.t.Helper()
	if !natstest.Poll(timeout, func() bool { return r.streamMsgs(requestsStream) == 0 }) {
		r.t.Errorf("timed out after %v waiting for the requests stream to empty; %d left", timeout, r.streamMsgs(requestsStream))
	}
}

// storedResult is one message of the results stream.
type storedResult struct {
	seq     uint64
	subject string
	msgID   string
	res     events.Result
	doc     string // as stored
}

// readResults reads every message stored in the results stream, then
// every untrusted rejection in theirs, with ordered consumers.
func (r *rig) readResults() []storedResult {
	r.t.Helper()
	return append(r.readStream(resultsStream, true), r.readStream(provision.UntrustedStream, false)...)
}

// readStream reads every message stored in stream; a missing stream is
// an error if must.
func (r *rig) readStream(stream string, must bool) []storedResult {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := r.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) && !must {
		return nil
	}
	if err != nil {
		r.t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		r.t.Fatalf("results stream: %v", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	oc, err := r.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		r.t.Fatalf("reading results: %v", err)
	}
	var out []storedResult
	read := 0
	for last := uint64(0); last < info.State.LastSeq; {
		if ctx.Err() != nil {
			r.t.Fatalf("reading results: %d of %d after 2 minutes", len(out), info.State.Msgs)
		}
		// Asking for no more than are left lets the last fetch return at
		// once rather than wait out its 2 s for a batch that cannot fill.
		batch, err := oc.Fetch(max(1, min(1000, int(info.State.Msgs)-read)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			continue
		}
		for m := range batch.Messages() {
			read++
			meta, err := m.Metadata()
			if err != nil {
				r.t.Fatal(err)
			}
			last = meta.Sequence.Stream
			res, err := events.ParseResultMsg(m.Headers(), m.Data())
			if err != nil {
				r.t.Errorf("result %d does not parse: %v", last, err)
				continue
			}
			out = append(out, storedResult{seq: last, subject: m.Subject(), msgID: m.Headers().Get(jetstream.MsgIDHeader), res: res, doc: string(m.Data())})
		}
	}
	return out
}

// figure is a scenario's one-line summary for the README.
type figure struct {
	requests, published, results, duplicates, lost, unexpected int
	outcomes                                                   map[events.Outcome]int
}

// checkInvariants is what every scenario ends with, once the requests
// stream drained (waitDrained) and the workers were stopped, so nothing
// more can arrive:
//   - every request has exactly one result, counted by request id over every
//     message stored in the results stream, with the expected outcome; no
//     result for anything not requested;
//   - every key in p.gone is deleted at Kalshi;
//   - the requests stream is empty and the consumer holds nothing;
//   - the kept keys (protected, bystanders, the worker's own) and the
//     victims exist and got no DELETE; no key was deleted more than once,
//     and none that no request asked to delete.
//
// It logs the scenario's figure line.
func (r *rig) checkInvariants(p plan, faults string) figure {
	t := r.t
	t.Helper()
	f := figure{requests: len(p.want), published: len(p.reqs), outcomes: make(map[events.Outcome]int)}

	if n := r.streamMsgs(requestsStream); n != 0 {
		t.Errorf("the requests stream still holds %d messages", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := r.js.Consumer(ctx, requestsStream, consumerName); err == nil {
		if ci, err := c.Info(ctx); err == nil && (ci.NumPending != 0 || ci.NumAckPending != 0) {
			t.Errorf("the consumer still has %d pending and %d unacknowledged", ci.NumPending, ci.NumAckPending)
		}
	}

	results := r.readResults()
	f.results = len(results)
	count := make(map[string]int, len(results))
	for _, s := range results {
		id := s.res.RequestID
		count[id]++
		f.outcomes[s.res.Outcome]++
		// A rejection whose id was not trusted is stored under a message id
		// of its own, in its own stream; every other result under its
		// request id.
		untrusted := strings.HasPrefix(s.msgID, events.UntrustedIDPrefix)
		want := events.ResultSubject(resultsPrefix, s.res.Outcome)
		if untrusted && s.res.Error != nil {
			want = provision.UntrustedResultSubject(s.res.Error.Code)
		}
		if s.subject != want {
			t.Errorf("result %s (seq %d) stored on %s, want %s", id, s.seq, s.subject, want)
		}
		if untrusted && s.res.Outcome != events.Rejected || !untrusted && s.msgID != id {
			t.Errorf("result %s (seq %d, %s) stored with Nats-Msg-Id %q", id, s.seq, s.res.Outcome, s.msgID)
		}
		e, ok := p.want[id]
		if !ok {
			f.unexpected++
			t.Errorf("result for %q, which was never requested: %+v", id, s.res)
			continue
		}
		code := events.Code("")
		if s.res.Error != nil {
			code = s.res.Error.Code
		}
		if !containsOutcome(e.outcomes, s.res.Outcome) || code != e.code {
			t.Errorf("result %s: %s/%q (%+v), want one of %v with code %q", id, s.res.Outcome, code, s.res.Error, e.outcomes, e.code)
		}
	}
	var lost, dups []string
	for id := range p.want {
		switch n := count[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			f.duplicates += n - 1
			dups = append(dups, fmt.Sprintf("%s×%d", id, n))
		}
	}
	f.lost = len(lost)
	if len(lost) > 0 {
		sort.Strings(lost)
		t.Errorf("%d requests have no result: %s", len(lost), head(lost, 20))
	}
	if len(dups) > 0 {
		sort.Strings(dups)
		t.Errorf("%d extra results: %s", f.duplicates, head(dups, 20))
	}

	st := r.emu.Stats()
	goneSet := make(map[string]bool, len(p.gone))
	for _, k := range p.gone {
		goneSet[k] = true
		if r.emu.HasKey(k) {
			t.Errorf("key %s should be revoked but still exists", k)
		}
	}
	for _, k := range append(append([]string(nil), r.kept...), r.victims...) {
		if !r.emu.HasKey(k) {
			t.Errorf("key %s must survive but was deleted", k)
		}
		if n := st.DeleteAttempts[k]; n != 0 {
			t.Errorf("key %s must never be asked for, but got %d DELETEs", k, n)
		}
	}
	for k, n := range st.Deletes {
		if n > 1 {
			t.Errorf("key %s deleted %d times", k, n)
		}
		if !goneSet[k] {
			t.Errorf("key %s was deleted but no request asked for it", k)
		}
	}

	outs := make([]string, 0, len(f.outcomes))
	for o, n := range f.outcomes {
		outs = append(outs, fmt.Sprintf("%s=%d", o, n))
	}
	sort.Strings(outs)
	t.Logf("FIGURE %s: requests=%d (messages published=%d) faults=[%s] results=%d duplicates=%d lost=%d (%s) time=%s",
		p.name, f.requests, f.published, faults, f.results, f.duplicates, f.lost, strings.Join(outs, " "),
		time.Since(r.start).Round(100*time.Millisecond))
	return f
}

func containsOutcome(list []events.Outcome, o events.Outcome) bool {
	for _, x := range list {
		if x == o {
			return true
		}
	}
	return false
}

func head(s []string, n int) string {
	if len(s) > n {
		return strings.Join(s[:n], ", ") + ", ..."
	}
	return strings.Join(s, ", ")
}

// recorder wraps the emulator and records every DELETE attempt: when it
// arrived, when and how it was answered.
type recorder struct {
	next     http.Handler
	mu       sync.Mutex
	attempts []attempt
}

type attempt struct {
	key        string
	arrived    time.Time
	answered   time.Time // when the status line was written; zero if never
	status     int
	retryAfter time.Duration // of a 429
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.URL.Path, emulator.BasePath+"/api_keys/")
	if r.Method != http.MethodDelete || !ok {
		rc.next.ServeHTTP(w, r)
		return
	}
	a := &attempt{key: strings.ToLower(key), arrived: time.Now()}
	rc.next.ServeHTTP(&recordingWriter{ResponseWriter: w, a: a}, r)
	rc.mu.Lock()
	rc.attempts = append(rc.attempts, *a)
	rc.mu.Unlock()
}

func (rc *recorder) all() []attempt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := append([]attempt(nil), rc.attempts...)
	sort.Slice(out, func(i, j int) bool { return out[i].arrived.Before(out[j].arrived) })
	return out
}

// recordingWriter notes the status; Unwrap keeps Hijack (lost responses)
// working through http.ResponseController.
type recordingWriter struct {
	http.ResponseWriter
	a *attempt
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.a.status == 0 {
		w.a.status, w.a.answered = code, time.Now()
		if code == http.StatusTooManyRequests {
			if s, err := strconv.Atoi(w.Header().Get("Retry-After")); err == nil {
				w.a.retryAfter = time.Duration(s) * time.Second
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.a.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// delayedAnswers lets next carry a request out, then holds its answer.
type delayedAnswers struct {
	next  http.Handler
	delay time.Duration
}

func (h delayedAnswers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	h.next.ServeHTTP(rec, r)
	t := time.NewTimer(h.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// logSink collects the worker's JSON log: the count of each message and
// the last lines, written to the test log if the test fails.
type logSink struct {
	mu     sync.Mutex
	counts map[string]int
	last   []string
}

func newLogSink(t testing.TB) *logSink {
	s := &logSink{counts: make(map[string]int)}
	t.Cleanup(func() {
		if t.Failed() {
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Logf("last %d worker log lines:\n%s", len(s.last), strings.Join(s.last, ""))
		}
	})
	return s
}

func (s *logSink) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(s, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func (s *logSink) Write(p []byte) (int, error) {
	var line struct {
		Msg string `json:"msg"`
	}
	_ = json.Unmarshal(p, &line)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[line.Msg]++
	if len(s.last) == 40 {
		s.last = s.last[1:]
	}
	s.last = append(s.last, string(bytes.Clone(p)))
	return len(p), nil
}

func (s *logSink) count(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[msg]
}

func contextTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
