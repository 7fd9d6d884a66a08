package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// The previous main's provisioning, copied as it was (deploy/nats/streams,
// deploy/nats/consumers and the nats kv add commands of deploy/README.md, at
// one replica): no untrusted stream, a ledger without per-entry TTLs.
const (
	previousRequestsStream = `{"name":"KEY_REVOKE_REQUESTS","description":"revoker: revoke-key requests (work queue)",
		"subjects":["keys.revoke.requests"],"retention":"workqueue","storage":"file","num_replicas":1,
		"max_age":604800000000000,"max_msg_size":65536,"discard":"old","duplicate_window":3600000000000}`
	previousResultsStream = `{"name":"KEY_REVOKE_RESULTS","description":"revoker: one outcome per request (audit log)",
		"subjects":["keys.revoke.results.>"],"retention":"limits","storage":"file","num_replicas":1,
		"max_age":7776000000000000,"max_bytes":2147483648,"max_msg_size":10240,"discard":"old",
		"duplicate_window":4500000000000,"allow_direct":true}`
	previousConsumer = `{"durable_name":"revoker","description":"revoker workers (shared by all replicas)",
		"deliver_policy":"all","ack_policy":"explicit","ack_wait":10000000000,"max_deliver":-1,
		"max_ack_pending":1000,"filter_subject":"keys.revoke.requests"}`
)

var previousBuckets = []jetstream.KeyValueConfig{
	{Bucket: "REVOKER_LEDGER", Description: "revoker: request decisions and revoked keys (ledger)", History: 1,
		TTL: 2160 * time.Hour, MaxBytes: 1 << 30, MaxValueSize: 16 << 10, Storage: jetstream.FileStorage, Replicas: 1},
	{Bucket: "REVOKER_REPLICAS", Description: "revoker: replicas sharing the account's delete budget", History: 1,
		TTL: 10 * time.Second, MaxBytes: 8 << 20, MaxValueSize: 64 << 10, Storage: jetstream.FileStorage, Replicas: 1},
}

// previousDeployment is a running deployment of the previous main, its worker
// stopped (or crashed) in the middle of its work.
type previousDeployment struct {
	t      *testing.T
	js     jetstream.JetStream
	ledger jetstream.KeyValue
}

func provisionPrevious(t *testing.T, url string) *previousDeployment {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, doc := range []string{previousRequestsStream, previousResultsStream} {
		var sc jetstream.StreamConfig
		if err := json.Unmarshal([]byte(doc), &sc); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	var cc jetstream.ConsumerConfig
	if err := json.Unmarshal([]byte(previousConsumer), &cc); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "KEY_REVOKE_REQUESTS", cc); err != nil {
		t.Fatal(err)
	}
	d := &previousDeployment{t: t, js: js}
	for _, kc := range previousBuckets {
		kv, err := js.CreateKeyValue(ctx, kc)
		if err != nil {
			t.Fatal(err)
		}
		if kc.Bucket == ledger.Bucket {
			d.ledger = kv
		}
	}
	return d
}

// request stores a plain request and returns its sequence.
func (d *previousDeployment) request(id, body string) uint64 {
	d.t.Helper()
	m := nats.NewMsg("keys.revoke.requests")
	m.Data = []byte(body)
	if id != "" {
		m.Header.Set(jetstream.MsgIDHeader, id+"-"+fmt.Sprint(time.Now().UnixNano()))
	}
	ack, err := d.js.PublishMsg(d.t.Context(), m)
	if err != nil {
		d.t.Fatal(err)
	}
	return ack.Sequence
}

// result stores a result document as the previous main did: untrusted
// rejections too, in the results stream.
func (d *previousDeployment) result(msgID string, res events.Result) []byte {
	d.t.Helper()
	doc, err := res.MarshalEvent()
	if err != nil {
		d.t.Fatal(err)
	}
	m := nats.NewMsg(events.ResultSubject("keys.revoke.results", res.Outcome))
	m.Data = doc
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := d.js.PublishMsg(d.t.Context(), m); err != nil {
		d.t.Fatal(err)
	}
	return doc
}

// entry writes a ledger entry in the previous main's format and returns its
// revision.
func (d *previousDeployment) entry(key string, v any) uint64 {
	d.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		d.t.Fatal(err)
	}
	rev, err := d.ledger.Create(d.t.Context(), key, b)
	if err != nil {
		d.t.Fatal(err)
	}
	return rev
}

func requestLedgerKey(id string) string {
	return "req." + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// Upgrading a running deployment of the previous main: its streams and
// ledger as its provisioning made them, requests decided and stored, one
// rejection of junk in the results stream, and requests in flight (one
// attempted by a worker that then went away, one never delivered, a second
// copy of a decided request, a piece of junk). The new worker starts with
// provisioning on: it creates the untrusted stream and gives the ledger
// per-entry TTLs in place; every old entry and result stays readable by
// results and status; every request in flight ends with exactly one result,
// the junk's in the new stream.
func TestUpgradeFromThePreviousMain(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(3)
	d := provisionPrevious(t, w.nats.URL())
	ctx := t.Context()

	// Decided and stored before the upgrade: old-1 revoked keys[0].
	seq1 := d.request("old-1", `{"id":"old-1","api_key_id":"`+keys[0]+`","reason":"leaked"}`)
	cons, err := d.js.Consumer(ctx, "KEY_REVOKE_REQUESTS", "revoker")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	first := <-batch.Messages()
	if first == nil {
		t.Fatal("no delivery of old-1")
	}
	if !w.emu.RemoveKey(keys[0]) {
		t.Fatal("keys[0] not in the emulator")
	}
	done := time.Now().UTC()
	old1 := events.Result{RequestID: "old-1", RequestSeq: seq1, APIKeyID: keys[0], Outcome: events.Revoked, Attempts: 1,
		Deliveries: 1, HTTPStatus: 204, Reason: "leaked", ReceivedAt: done, CompletedAt: done}
	old1Doc := d.result("old-1", old1)
	reqRev := d.entry(requestLedgerKey("old-1"), map[string]any{"key": keys[0], "seq": seq1, "claimed_at": done,
		"attempted": true, "result": json.RawMessage(old1Doc)})
	keyRev := d.entry("key."+keys[0], map[string]any{"request_id": "old-1", "request_seq": seq1, "revoked_at": done, "reason": "leaked"})
	if err := first.Ack(); err != nil {
		t.Fatal(err)
	}
	// The previous main kept junk's rejections in the results stream.
	junkSeq := d.request("", `{"id":"junk-old",`)
	d.result(events.UntrustedMsgID("KEY_REVOKE_REQUESTS", junkSeq), events.Result{RequestID: "KEY_REVOKE_REQUESTS-" + fmt.Sprint(junkSeq),
		RequestSeq: junkSeq, Outcome: events.Rejected, ReceivedAt: done, CompletedAt: done,
		Error: &events.Error{Code: events.CodeInvalidRequest, Message: "invalid request: body is not valid JSON"}})
	if b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second)); err != nil {
		t.Fatal(err)
	} else if m := <-b.Messages(); m == nil || m.Term() != nil {
		t.Fatal("cannot settle the old junk")
	}

	// In flight: fly-1 was claimed and attempted by the old worker, whose
	// DELETE reached Kalshi, and handed back when it stopped; fly-2 was never
	// delivered; old-1 again (a retry by its publisher); new junk.
	seqFly1 := d.request("fly-1", `{"id":"fly-1","api_key_id":"`+keys[1]+`"}`)
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	fly1 := <-b.Messages()
	if fly1 == nil {
		t.Fatal("no delivery of fly-1")
	}
	d.entry(requestLedgerKey("fly-1"), map[string]any{"key": keys[1], "seq": seqFly1, "claimed_at": time.Now().UTC(), "attempted": true})
	w.emu.RemoveKey(keys[1])
	if err := fly1.Nak(); err != nil {
		t.Fatal(err)
	}
	d.request("fly-2", `{"id":"fly-2","api_key_id":"`+keys[2]+`"}`)
	d.request("old-1-again", `{"id":"old-1","api_key_id":"`+keys[0]+`","reason":"leaked"}`)
	d.request("", `{"id":"junk-new","api_key_id":"x y"}`) // invalid: its id is not trusted

	// Before the upgrade, check says what run will do, or, with
	// --no-provision, what the operator must.
	if out, _, code := w.run2("", "check", "--no-provision"); code == 0 || !strings.Contains(out, provision.UntrustedStream) {
		t.Errorf("check --no-provision of the previous main's deployment: exit %d\n%s", code, out)
	}
	if out, _, code := w.run2("", "check"); code != 0 || !strings.Contains(out, provision.UntrustedStream) {
		t.Errorf("check of the previous main's deployment: exit %d\n%s", code, out)
	}

	// The new worker, provisioning as run does by default.
	w.startRun()
	natstest.WaitFor(t, 20*time.Second, "the queue to be empty", func() bool {
		s, err := d.js.Stream(ctx, "KEY_REVOKE_REQUESTS")
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})

	// The shapes were upgraded in place.
	us, err := d.js.Stream(ctx, provision.UntrustedStream)
	if err != nil {
		t.Fatalf("the untrusted stream: %v", err)
	}
	if got, want := us.CachedInfo().Config, provision.UntrustedStreamConfig(worker.Config{}.Provisioning()); got.MaxBytes != want.MaxBytes || got.MaxAge != want.MaxAge || !slices.Equal(got.Subjects, want.Subjects) {
		t.Errorf("the untrusted stream as created: %+v", got)
	}
	ls, err := d.js.Stream(ctx, ledger.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := ls.CachedInfo().Config; !cfg.AllowMsgTTL || cfg.SubjectDeleteMarkerTTL != time.Minute || cfg.MaxAge != 2160*time.Hour {
		t.Errorf("the ledger after the upgrade: allow_msg_ttl %v, marker TTL %v, max age %v", cfg.AllowMsgTTL, cfg.SubjectDeleteMarkerTTL, cfg.MaxAge)
	}
	for key, rev := range map[string]uint64{requestLedgerKey("old-1"): reqRev, "key." + keys[0]: keyRev} {
		if e, err := d.ledger.Get(ctx, key); err != nil || e.Revision() != rev {
			t.Errorf("ledger entry %s after the upgrade: %v", key, err)
		}
	}
	if _, err := d.ledger.Create(ctx, "upgrade-probe", []byte("x"), jetstream.KeyTTL(time.Hour)); err != nil {
		t.Errorf("an entry with a TTL after the upgrade: %v", err)
	}

	// Exactly one result per request, each where it belongs.
	perID := map[string][]events.Result{}
	for _, r := range storedResults(t, w.nats.URL()) {
		perID[r.RequestID] = append(perID[r.RequestID], r)
	}
	for _, id := range []string{"old-1", "fly-1", "fly-2", "KEY_REVOKE_REQUESTS-" + fmt.Sprint(junkSeq)} {
		if len(perID[id]) != 1 {
			t.Errorf("%d results of %s in the results stream, want 1: %+v", len(perID[id]), id, perID[id])
		}
	}
	if len(perID) != 4 {
		t.Errorf("results of %d requests in the results stream, want 4: %v", len(perID), perID)
	}
	for id, key := range map[string]string{"fly-1": keys[1], "fly-2": keys[2]} {
		if rs := perID[id]; len(rs) == 1 && (!rs[0].Outcome.Succeeded() || rs[0].APIKeyID != key) {
			t.Errorf("%s: %+v, want %s revoked", id, rs[0], key)
		}
	}
	if r := perID["fly-2"]; len(r) == 1 && r[0].Outcome != events.Revoked {
		t.Errorf("fly-2: %s, want revoked", r[0].Outcome)
	}
	if w.emu.HasKey(keys[2]) {
		t.Error("fly-2's key is live")
	}
	if u := storedUntrusted(t, w.nats.URL()); len(u) != 1 || u[0].Error == nil || u[0].Error.Code != events.CodeInvalidRequest {
		t.Errorf("the untrusted stream holds %+v, want the new junk's rejection", u)
	}

	// results reads the old and the new in one log, oldest first.
	out, _, code := w.run2("", "results", "--json")
	var ids []string
	for _, l := range docLines(out) {
		r, err := events.ParseResult([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.RequestID)
	}
	oldJunk := "KEY_REVOKE_REQUESTS-" + fmt.Sprint(junkSeq)
	if code != 0 || len(ids) != 5 || ids[0] != "old-1" || ids[1] != oldJunk || !slices.Contains(ids[2:], "fly-1") ||
		!slices.Contains(ids[2:], "fly-2") || !slices.Contains(ids[2:], "junk-new") {
		t.Errorf("results --json after the upgrade: exit %d, %q", code, ids)
	}
	if !strings.Contains(out, string(old1Doc)) {
		t.Error("results does not show the old result as stored")
	}
	// status reads the old ledger's record.
	out, _, _ = w.run2("", "status", keys[0])
	if !strings.Contains(out, "by request old-1 (sequence "+fmt.Sprint(seq1)) || !strings.Contains(out, "reason        leaked") {
		t.Errorf("status of the key the previous main revoked:\n%s", out)
	}
	if _, _, code := w.run2("", "check"); code != 0 {
		t.Errorf("check after the upgrade: exit %d", code)
	}
}
