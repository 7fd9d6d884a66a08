package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker/natstest"
)

// A peer on the fleet's subjects holding the worker's credentials (a
// compromised or broken replica: the shipped permissions cannot tell it
// from a real one) speaks the replicas' protocol with hostile content.
const (
	// hostileHolder announces deliveries and falls silent; its id is above
	// any replica's, so a real replica speaks for it.
	hostileHolder = "ffffffffffffffff"
	// hostileLister announces nothing held; its id is below any replica's,
	// so the replicas take it for the one that lists the account.
	hostileLister = "0"
	forgedName    = "forged-by-a-peer"
)

// TestHostileFleetPeerChangesNothing runs two `revoker run` replicas as the
// worker user of deploy/nats against its cluster, beside a peer with the
// worker's credentials that
//   - announces it holds subjects that are no acknowledgement of the shared
//     consumer (a results subject, a ledger key, a pause, another role's
//     inbox, the requests subject, a JetStream API call, a wildcard, another
//     stream's ack) beside one well-formed ack, then falls silent: the
//     replica that speaks for it NAKs the ack alone;
//   - then poses as the replica that lists the account and answers every
//     question with a listing naming keys not asked, an oversized one, or a
//     malformed one, each forging the asked keys' names: the replicas list
//     for themselves, and every result names the key as the account lists it.
//
// Nothing the peer named receives a message, the results stream holds only
// results, the ledger no entry it named, and no replica hits a permission.
func TestHostileFleetPeerChangesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts a cluster")
	}
	c := startNATSCluster(t)
	bin := buildRevoker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	emu := emulatortest.Start(t, emulator.Options{})
	key := emulatortest.Key()
	selfID := emu.AddKey("revoker", &key.PublicKey, "read", "write")
	keyPath := emulatortest.WritePEM(t, key)
	var listed []string
	names := map[string]string{}
	for i := range 300 { // listed before any listing: the replicas list each with its name
		name := fmt.Sprintf("fleet-key-%d", i)
		id := emu.AddKey(name, &emulatortest.OtherKey().PublicKey, "read")
		listed = append(listed, id)
		names[id] = name
	}
	bystander := emu.AddKey("bystander", &emulatortest.OtherKey().PublicKey, "read")

	// What the peer names must stay untouched: watch each from a role that
	// may read it.
	peer, peerErrs := c.connect(t, userWorker)
	fleet, err := peer.SubscribeSync("revoker.fleet.>")
	if err != nil {
		t.Fatal(err)
	}
	requester, requesterErrs := c.connect(t, userRequester)
	requesterInbox, err := requester.SubscribeSync(inboxPrefixes[userRequester] + ".forged.>")
	if err != nil {
		t.Fatal(err)
	}
	results, err := requester.SubscribeSync(resultsSubject + ".>")
	if err != nil {
		t.Fatal(err)
	}
	for _, nc := range []*nats.Conn{peer, requester} {
		if err := nc.FlushWithContext(ctx); err != nil {
			t.Fatal(err)
		}
	}

	replicas := []*fleetReplica{
		startFleetReplica(t, c, bin, emu.URL(), selfID, keyPath, "replica-1"),
		startFleetReplica(t, c, bin, emu.URL(), selfID, keyPath, "replica-2"),
	}

	// 1. A held announcement naming what no replica may NAK.
	ack := "$JS.ACK." + requestsStream + "." + consumerName + ".1.999999.999999.0.0"
	named := []string{
		resultsSubject + ".revoked",
		ledgerSubjects + "forged.nak",
		"revoker.fleet.pause." + consumerName,
		inboxPrefixes[userRequester] + ".forged.nak",
		requestsSubject,
		"$JS.API.STREAM.DELETE." + resultsStream,
		"$JS.ACK." + requestsStream + "." + consumerName + ".>",
		"$JS.ACK." + resultsStream + "." + consumerName + ".1.1.1.0.0",
		"$JS.ACK." + requestsStream + "." + consumerName + ".1 1.1.0.0",
	}
	// The replicas must have heard each other first, or each speaks for it.
	heard := map[string]bool{}
	natstest.WaitFor(t, 15*time.Second, "both replicas announcing what they hold", func() bool {
		hearIDs(fleet, heard)
		return len(heard) >= 2
	})
	beat, _ := json.Marshal(map[string]any{"id": hostileHolder, "held": append(named, ack)})
	if err := peer.Publish("revoker.fleet.held."+consumerName, beat); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 20*time.Second, "a replica speaking for the silent peer", func() bool {
		return len(replicas[0].spokeFor())+len(replicas[1].spokeFor()) > 0
	})
	for _, r := range replicas {
		for _, n := range r.spokeFor() {
			if n != 1 {
				t.Errorf("%s NAKed %d deliveries for the silent peer, want the one acknowledgement subject it named", r.name, n)
			}
		}
	}

	// 2. The peer poses as the lister and answers every question hostilely.
	kinds := []string{"keys not asked", "oversized", "malformed"}
	var mu sync.Mutex
	answered := map[string]int{}
	questions, err := peer.Subscribe("revoker.fleet.listing."+consumerName+"."+hostileLister, func(m *nats.Msg) {
		var q struct {
			Keys []string `json:"keys"`
		}
		if json.Unmarshal(m.Data, &q) != nil || m.Reply == "" {
			return
		}
		mu.Lock()
		n := 0
		for _, k := range kinds {
			n += answered[k]
		}
		kind := kinds[n%len(kinds)]
		answered[kind]++
		mu.Unlock()
		_ = m.Respond(hostileListing(kind, q.Keys, bystander))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = questions.Unsubscribe() }()
	beats, stopBeats := context.WithCancel(ctx)
	var beating sync.WaitGroup
	beating.Go(func() {
		b, _ := json.Marshal(map[string]any{"id": hostileLister, "held": []string{}})
		for {
			_ = peer.Publish("revoker.fleet.held."+consumerName, b)
			select {
			case <-beats.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	defer func() { stopBeats(); beating.Wait() }()

	// Requests one at a time, until each kind of answer was given (a replica
	// refused an answer lists for itself for a few seconds).
	requesterJS := newJetStream(t, requester)
	got := map[string]events.Result{}
	allKinds := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return answered[kinds[0]] > 0 && answered[kinds[1]] > 0 && answered[kinds[2]] > 0
	}
	sent := 0
	for ; sent < len(listed) && !allKinds(); sent++ {
		id := fmt.Sprintf("fleet-%d", sent)
		body, _ := json.Marshal(map[string]string{"id": id, "api_key_id": listed[sent], "reason": "hostile peer test"})
		if _, err := requesterJS.Publish(ctx, requestsSubject, body, jetstream.WithMsgID(id)); err != nil {
			t.Fatalf("requester: publish %s: %v", id, err)
		}
		for got[id].RequestID == "" {
			m, err := results.NextMsg(30 * time.Second)
			if err != nil {
				t.Fatalf("no result for %s within 30s: %v", id, err)
			}
			res, err := events.ParseResultMsg(m.Header, m.Data)
			if err != nil {
				t.Fatalf("a message on %s that is no result: %v: %q", m.Subject, err, m.Data)
			}
			got[res.RequestID] = res
		}
	}
	mu.Lock()
	t.Logf("%d requests; hostile listing answers given: %v", sent, answered)
	mu.Unlock()
	if !allKinds() {
		t.Fatalf("the replicas did not ask the peer posing as the lister for all %d requests' keys: %v", sent, answered)
	}
	for i := range sent {
		res, k := got[fmt.Sprintf("fleet-%d", i)], listed[i]
		if res.Outcome != events.Revoked || res.KeyName != names[k] || emu.HasKey(k) {
			t.Errorf("%s: %s, key name %q (listed as %q), still in the account: %v", res.RequestID, res.Outcome, res.KeyName, names[k], emu.HasKey(k))
		}
	}
	if !emu.HasKey(bystander) {
		t.Error("the bystander a hostile answer named was deleted")
	}

	// Nothing the peer named was touched.
	for _, r := range replicas {
		r.stop(t)
	}
	for {
		m, err := fleet.NextMsg(0)
		if err != nil {
			break
		}
		if bytes.Contains(m.Data, []byte("-NAK")) {
			t.Errorf("%s on the fleet's subjects: %q", m.Subject, m.Data)
		}
	}
	if m, err := requesterInbox.NextMsg(0); err == nil {
		t.Errorf("the requester's inbox got %q on %s", m.Data, m.Subject)
	}
	admin, _ := c.connect(t, userAdmin)
	adminJS := newJetStream(t, admin)
	if s, err := adminJS.Stream(ctx, resultsStream); err != nil {
		t.Errorf("results stream: %v", err)
	} else if n := s.CachedInfo().State.Msgs; n != uint64(sent) {
		t.Errorf("the results stream holds %d messages for %d requests", n, sent)
	}
	if kv, err := adminJS.KeyValue(ctx, ledgerBucket); err != nil {
		t.Errorf("ledger: %v", err)
	} else if _, err := kv.Get(ctx, "forged.nak"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the ledger entry the peer named: %v, want not found", err)
	}
	for who, errs := range map[string]<-chan error{"peer": peerErrs, "requester": requesterErrs} {
		select {
		case err := <-errs:
			t.Errorf("%s: unexpected asynchronous error: %v", who, err)
		default:
		}
	}
	for _, r := range replicas {
		if r.logged("ermissions violation") {
			t.Errorf("%s hit a permission it lacks:\n%s", r.name, r.log())
		}
	}
}

// hostileListing is the peer's answer to a question about keys: each forges
// the asked keys' names, and each is one a replica must refuse.
func hostileListing(kind string, asked []string, unasked string) []byte {
	var keys []kalshi.APIKey
	for _, k := range asked {
		keys = append(keys, kalshi.APIKey{ID: k, Name: forgedName, Scopes: []string{"read", "write"}})
	}
	doc := map[string]any{"listed": keys}
	switch kind {
	case "keys not asked":
		doc["listed"] = append(keys, kalshi.APIKey{ID: unasked, Name: forgedName, Scopes: []string{"read"}})
	case "oversized":
		doc["padding"] = strings.Repeat("x", 80<<10) // a field nobody reads: too big, not strange
	}
	b, _ := json.Marshal(doc)
	if kind == "malformed" {
		// Two documents: a decoder that stops after the first reads the
		// forged listing.
		b = append(b, `{"listed":[]}`...)
	}
	return b
}

// hearIDs adds to ids the replicas announcing what they hold among the
// messages sub has received since the last call.
func hearIDs(sub *nats.Subscription, ids map[string]bool) {
	for {
		m, err := sub.NextMsg(0)
		if err != nil {
			return
		}
		var b struct {
			ID string `json:"id"`
		}
		if strings.HasPrefix(m.Subject, "revoker.fleet.held.") && json.Unmarshal(m.Data, &b) == nil && b.ID != "" {
			ids[b.ID] = true
		}
	}
}

// fleetReplica is one `revoker run` as the worker user.
type fleetReplica struct {
	name   string
	cmd    *exec.Cmd
	exited chan error
	mu     sync.Mutex
	out    bytes.Buffer
}

func (r *fleetReplica) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.Write(p)
}

func (r *fleetReplica) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

func (r *fleetReplica) logged(s string) bool { return strings.Contains(r.log(), s) }

// spokeFor is how many deliveries each of the replica's NAK rounds on a
// silent replica's behalf named, from its log.
func (r *fleetReplica) spokeFor() []int {
	var out []int
	for _, line := range strings.Split(r.log(), "\n") {
		var e struct {
			Msg      string `json:"msg"`
			Requests int    `json:"requests"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "a replica fell silent; its requests are delivered again now" {
			out = append(out, e.Requests)
		}
	}
	return out
}

func startFleetReplica(t *testing.T, c *natsCluster, bin, kalshiURL, selfID, keyPath, name string) *fleetReplica {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	r := &fleetReplica{name: name, exited: make(chan error, 1)}
	r.cmd = exec.Command(bin, "run", "--no-provision")
	r.cmd.Env = []string{
		"NATS_URL=" + c.URL,
		"NATS_NKEY_SEED=" + c.SeedFile(t, userWorker),
		"KALSHI_BASE_URL=" + kalshiURL,
		"KALSHI_API_KEY_ID=" + selfID,
		"KALSHI_PRIVATE_KEY_PATH=" + keyPath,
		"REVOKER_HTTP_ADDR=" + httpAddr,
		"REVOKER_LOG_FORMAT=json",
	}
	r.cmd.Stdout, r.cmd.Stderr = r, r
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = r.cmd.Process.Kill() // this process only, by its PID
			<-r.exited
		}
	})
	natstest.WaitFor(t, 30*time.Second, name+" ready", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

// stop sends SIGTERM and waits for a clean exit.
func (r *fleetReplica) stop(t *testing.T) {
	t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.exited:
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", r.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s of SIGTERM", r.name)
	}
}
