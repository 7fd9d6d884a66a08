package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker/natstest"
)

// The console's endpoints and which roles may call each (the names every engineer
// uses: requester plan, keys, status, health; auditor and admin keys, status, health).
var consoleGrants = map[string][]string{
	"plan":   {userRequester},
	"keys":   {userRequester, userAuditor, userAdmin},
	"status": {userRequester, userAuditor, userAdmin},
	"health": {userRequester, userAuditor, userAdmin},
}

// spy subscribes nc (user's connection) to subject and requires the server to refuse
// it; the subscription is kept, so that the test can show later that nothing
// reached it.
func spy(t *testing.T, user string, nc *nats.Conn, errs <-chan error, subject string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatalf("%s: subscribe %s: %v", user, subject, err)
	}
	expectDenied(t, errs, subject, untilRefused(nc))
	return sub
}

// untilRefused is an operation for expectDenied after a subscription or a core
// publish, whose refusal arrives asynchronously: it flushes and waits.
func untilRefused(nc *nats.Conn) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := nc.FlushWithContext(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}
}

// TestRolesCannotReadEachOther loads the shipped accounts.conf into a three-node
// cluster and shows that no role receives another's replies: every attempt to
// subscribe to all inboxes, to everything, or to another role's inbox prefix is
// refused, while the worker pulls a request carrying a leaked private key, reads and
// writes the ledger, answers the console and broadcasts to its fleet, and every role
// does its own work with its own prefix. Nothing the refused subscriptions asked for
// reaches them, and a caller's forged reply subject cannot turn the worker's console
// answer into a request or a JetStream API call. On an accounts.conf that lets every user subscribe to _INBOX.>, the
// requester, auditor and admin each read the pulled request, leaked key and all.
func TestRolesCannotReadEachOther(t *testing.T) {
	c := startNATSCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	users := []string{userWorker, userRequester, userAuditor, userAdmin}
	conns := map[string]*nats.Conn{}
	errs := map[string]<-chan error{}
	for _, u := range users {
		conns[u], errs[u] = c.connect(t, u)
	}

	// Every role tries to read every inbox, everything, and each other role's inbox.
	type spied struct {
		user, subject string
		sub           *nats.Subscription
	}
	var spies []spied
	for _, u := range users {
		subjects := []string{"_INBOX.>", ">", "_INBOX.*.>"}
		for _, other := range users {
			if other != u {
				subjects = append(subjects, inboxPrefixes[other]+".>")
			}
		}
		for _, subject := range subjects {
			t.Run(u+" cannot subscribe to "+subject, func(t *testing.T) {
				spies = append(spies, spied{u, subject, spy(t, u, conns[u], errs[u], subject)})
			})
		}
	}

	// The requester publishes a request carrying a leaked private key; its
	// acknowledgement comes back on _INBOX.requester.
	_, pemBytes := emulatortest.NewKeyPEM(t, emulatortest.PKCS8RSA)
	req, err := json.Marshal(map[string]string{"id": "inc-leak-1", "leaked_private_key": string(pemBytes), "reason": "roles test"})
	if err != nil {
		t.Fatal(err)
	}
	requesterJS := newJetStream(t, conns[userRequester])
	if _, err := requesterJS.Publish(ctx, requestsSubject, req, jetstream.WithMsgID("inc-leak-1")); err != nil {
		t.Fatalf("requester: publish the request: %v", err)
	}

	// The worker pulls it (the message is a reply to its _INBOX.worker), writes and
	// reads the ledger (direct gets answered on its inbox), stores a result and acks.
	workerJS := newJetStream(t, conns[userWorker])
	cons, err := workerJS.Consumer(ctx, requestsStream, consumerName)
	if err != nil {
		t.Fatalf("worker: consumer info: %v", err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("worker: fetch: %v", err)
	}
	var msg jetstream.Msg
	for m := range batch.Messages() {
		msg = m
	}
	if msg == nil || !bytes.Equal(msg.Data(), req) {
		t.Fatalf("worker: did not pull the request (%v)", batch.Error())
	}
	kv, err := workerJS.KeyValue(ctx, ledgerBucket)
	if err != nil {
		t.Fatalf("worker: bind to the ledger: %v", err)
	}
	if _, err := kv.Create(ctx, "req.aW5jLWxlYWstMQ", []byte(`{"key":"key-9"}`)); err != nil {
		t.Fatalf("worker: create a ledger entry: %v", err)
	}
	if _, err := kv.Put(ctx, "key.key-9", []byte(`{"request_id":"inc-leak-1"}`)); err != nil {
		t.Fatalf("worker: put a ledger entry: %v", err)
	}
	for _, key := range []string{"req.aW5jLWxlYWstMQ", "key.key-9"} {
		if _, err := kv.Get(ctx, key); err != nil {
			t.Errorf("worker: read ledger entry %s: %v", key, err)
		}
	}
	result := []byte(`{"specversion":"1.0","id":"inc-leak-1","source":"revoker","type":"revoker.key.revoked","data":{"request_id":"inc-leak-1","outcome":"revoked"}}`)
	if _, err := workerJS.Publish(ctx, resultsSubject+".revoked", result, jetstream.WithMsgID("inc-leak-1")); err != nil {
		t.Fatalf("worker: publish the result: %v", err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("worker: ack: %v", err)
	}

	// The auditor reads the audit log and a key's ledger entry; the requester waits
	// for a confirmation in the ledger; the admin inspects the streams: each on its
	// own inbox.
	auditorJS := newJetStream(t, conns[userAuditor])
	if s, err := auditorJS.Stream(ctx, resultsStream); err != nil {
		t.Errorf("auditor: results stream info: %v", err)
	} else if m, err := s.GetMsg(ctx, 1); err != nil || !bytes.Equal(m.Data, result) {
		t.Errorf("auditor: read the result: %v", err)
	}
	for user, js := range map[string]jetstream.JetStream{userAuditor: auditorJS, userRequester: requesterJS} {
		if kv, err := js.KeyValue(ctx, ledgerBucket); err != nil {
			t.Errorf("%s: bind to the ledger: %v", user, err)
		} else if _, err := kv.Get(ctx, "key.key-9"); err != nil {
			t.Errorf("%s: read a key's ledger entry: %v", user, err)
		}
	}
	adminJS := newJetStream(t, conns[userAdmin])
	for _, name := range []string{requestsStream, resultsStream, ledgerStream} {
		if _, err := adminJS.Stream(ctx, name); err != nil {
			t.Errorf("admin: stream info %s: %v", name, err)
		}
	}

	// The console: a micro service on the worker's connection, as the worker serves
	// it. Each role calls exactly its endpoints and gets the answer on its own inbox;
	// the worker may answer on their inboxes.
	svc, err := micro.AddService(conns[userWorker], micro.Config{Name: "revoker", Version: "1.0.0"})
	if err != nil {
		t.Fatalf("worker: add the console service: %v", err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	for endpoint := range consoleGrants {
		err := svc.AddEndpoint(endpoint, micro.HandlerFunc(func(r micro.Request) {
			_ = r.Respond([]byte(`{"endpoint":"` + endpoint + `"}`))
		}), micro.WithEndpointSubject("revoker.console."+endpoint))
		if err != nil {
			t.Fatalf("worker: console endpoint %s: %v", endpoint, err)
		}
	}
	if err := conns[userWorker].FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	for endpoint, allowed := range consoleGrants {
		subject := "revoker.console." + endpoint
		for _, u := range []string{userRequester, userAuditor, userAdmin} {
			t.Run(u+" console "+endpoint, func(t *testing.T) {
				op := func(ctx context.Context) error {
					m, err := conns[u].RequestWithContext(ctx, subject, nil)
					if err == nil && !strings.Contains(string(m.Data), endpoint) {
						t.Errorf("answer %q", m.Data)
					}
					return err
				}
				if !slices.Contains(allowed, u) {
					expectDenied(t, errs[u], subject, op)
					return
				}
				// The worker's interest reaches the cluster's other nodes
				// in its own time: until then the request has no
				// responders.
				rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				retry(t, rctx, subject, op)
			})
		}
	}
	// A caller picks the reply subject: one that is no inbox cannot make the
	// worker's answer a request or a JetStream API call (this stand-in console
	// answers every reply subject; the server refuses the worker's publish).
	for _, forged := range []string{requestsSubject, "$JS.API.STREAM.DELETE." + resultsStream} {
		t.Run("a forged reply subject "+forged+" is refused to the worker", func(t *testing.T) {
			if err := conns[userAuditor].PublishRequest("revoker.console.keys", forged, nil); err != nil {
				t.Fatal(err)
			}
			expectDenied(t, errs[userWorker], forged, untilRefused(conns[userAuditor]))
		})
	}
	natstest.WaitFor(t, 5*time.Second, "the streams as they were", func() bool {
		req, err1 := adminJS.Stream(ctx, requestsStream)
		res, err2 := adminJS.Stream(ctx, resultsStream)
		return err1 == nil && err2 == nil && req.CachedInfo().State.Msgs == 0 && res.CachedInfo().State.Msgs == 1
	})

	// nats micro ls, as the admin only.
	t.Run("admin finds the console", func(t *testing.T) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		m, err := conns[userAdmin].RequestWithContext(rctx, "$SRV.INFO.revoker", nil)
		if err != nil || !strings.Contains(string(m.Data), "revoker.console.plan") {
			t.Errorf("$SRV.INFO.revoker as the admin: %v", err)
		}
	})
	for _, u := range []string{userRequester, userAuditor} {
		t.Run(u+" cannot discover services", func(t *testing.T) {
			expectDenied(t, errs[u], "$SRV.INFO.revoker", func(ctx context.Context) error {
				_, err := conns[u].RequestWithContext(ctx, "$SRV.INFO.revoker", nil)
				return err
			})
		})
	}

	// The fleet: a second replica hears the first's broadcasts (the pause, what
	// it holds, a question to the replica that lists the account) and answers
	// the question on the asker's _INBOX.worker; nobody else may broadcast (a
	// forged pause would stop every replica, a forged announcement of held
	// deliveries would have them NAKed, a forged listing answer would say
	// which keys exist), listen, or answer a replica's question.
	replicaNC, replicaErrs := c.connect(t, userWorker)
	fleet, err := replicaNC.SubscribeSync("revoker.fleet.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := replicaNC.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	listingQuestion := "revoker.fleet.listing." + consumerName + ".0123456789abcdef"
	fleetSubjects := []string{"revoker.fleet.pause." + consumerName, "revoker.fleet.held." + consumerName, listingQuestion}
	for _, u := range []string{userRequester, userAuditor, userAdmin} {
		for _, subject := range append([]string{"revoker.fleet.>"}, fleetSubjects...) {
			t.Run(u+" cannot listen to "+subject, func(t *testing.T) {
				spies = append(spies, spied{u, subject, spy(t, u, conns[u], errs[u], subject)})
			})
		}
	}
	for _, subject := range fleetSubjects {
		if err := conns[userWorker].Publish(subject, []byte(`{"id":"0123456789abcdef"}`)); err != nil {
			t.Fatal(err)
		}
		if m, err := fleet.NextMsg(5 * time.Second); err != nil || m.Subject != subject {
			t.Errorf("replica: the fleet broadcast on %s: %v", subject, err)
		}
	}
	// The replica answers a question on the asker's inbox.
	answers := make(chan *nats.Msg, 1)
	inbox := conns[userWorker].NewRespInbox()
	go func() {
		m, err := fleet.NextMsg(5 * time.Second)
		if err == nil {
			answers <- m
		}
	}()
	answered := make(chan error, 1)
	go func() {
		_, err := conns[userWorker].RequestWithContext(ctx, listingQuestion, []byte(`{"keys":[]}`))
		answered <- err
	}()
	if q := <-answers; q == nil || !strings.HasPrefix(q.Reply, inboxPrefixes[userWorker]+".") {
		t.Errorf("replica: a listing question with a reply on %s: %v", inboxPrefixes[userWorker], q)
	} else {
		inbox = q.Reply
		if err := q.Respond([]byte(`{"listed":[]}`)); err != nil {
			t.Fatal(err)
		}
		if err := <-answered; err != nil {
			t.Errorf("worker: the listing answer: %v", err)
		}
	}
	for _, u := range []string{userRequester, userAuditor, userAdmin} {
		for _, subject := range append(fleetSubjects, inbox) {
			t.Run(u+" cannot publish on "+subject, func(t *testing.T) {
				if err := conns[u].Publish(subject, []byte(`{"id":"0","listed":[],"held":["$JS.ACK.`+requestsStream+`.`+consumerName+`.1.1.1.0.0"]}`)); err != nil {
					t.Fatal(err)
				}
				expectDenied(t, errs[u], subject, untilRefused(conns[u]))
			})
		}
	}

	// Untrusted rejections: the worker publishes them, the requester follows them
	// live, the worker and the auditor reach KEY_REVOKE_UNTRUSTED's API (an answer,
	// the stream's or "not found", is not a refusal).
	untrusted, err := conns[userRequester].SubscribeSync("keys.revoke.untrusted.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := conns[userRequester].FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conns[userWorker].Publish("keys.revoke.untrusted.bad_signature", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := untrusted.NextMsg(5 * time.Second); err != nil {
		t.Errorf("requester: live untrusted rejection: %v", err)
	}
	for user, subjects := range map[string][]string{
		userWorker:  {"$JS.API.STREAM.INFO.KEY_REVOKE_UNTRUSTED"},
		userAuditor: {"$JS.API.STREAM.INFO.KEY_REVOKE_UNTRUSTED", "$JS.API.STREAM.MSG.GET.KEY_REVOKE_UNTRUSTED", "$JS.API.DIRECT.GET.KEY_REVOKE_UNTRUSTED"},
	} {
		for _, subject := range subjects {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := conns[user].RequestWithContext(rctx, subject, []byte(`{"seq":1}`))
			cancel()
			// No stream: JetStream answers not found, but a direct get is
			// served only by a stream's peers: no responders.
			if err != nil && !(errors.Is(err, nats.ErrNoResponders) && strings.Contains(subject, "DIRECT")) {
				t.Errorf("%s: %s: %v", user, subject, err)
			}
		}
	}

	// None of the allowed work was refused, and nothing reached a refused
	// subscription: above all, not the request with its leaked key.
	for _, u := range append(users, "replica") {
		nc, ch := conns[u], errs[u]
		if u == "replica" {
			nc, ch = replicaNC, replicaErrs
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-ch:
			t.Errorf("%s: unexpected asynchronous error: %v", u, err)
		default:
		}
	}
	pemLine := strings.Split(strings.TrimSpace(string(pemBytes)), "\n")[1]
	for _, s := range spies {
		for {
			m, err := s.sub.NextMsg(0)
			if err != nil {
				break
			}
			leak := ""
			if bytes.Contains(m.Data, []byte(pemLine)) {
				leak = " (the leaked private key)"
			}
			t.Errorf("%s subscribed to %s received %s%s", s.user, s.subject, m.Subject, leak)
		}
	}
}
