package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// The users of deploy/nats/accounts.conf, by the variable users.conf sets for each.
const (
	userWorker    = "worker"
	userRequester = "requester"
	userAuditor   = "auditor"
	userAdmin     = "admin"
	userSystem    = "system"
)

// inboxPrefixes are the roles' reply inbox prefixes, the only inboxes accounts.conf
// lets each subscribe to (revoker's NATS_INBOX_PREFIX defaults).
var inboxPrefixes = map[string]string{
	userWorker:    "_INBOX.worker",
	userRequester: "_INBOX.requester",
	userAuditor:   "_INBOX.auditor",
	userAdmin:     "_INBOX.admin",
}

var userNkeyVars = map[string]string{
	userWorker:    "REVOKER_WORKER_NKEY",
	userRequester: "REVOKER_REQUESTER_NKEY",
	userAuditor:   "REVOKER_AUDITOR_NKEY",
	userAdmin:     "REVOKER_ADMIN_NKEY",
	userSystem:    "SYSTEM_NKEY",
}

// natsCluster is deploy/nats's three-node JetStream cluster running in-process on
// loopback, with the streams and consumer provisioned from deploy/nats/streams and
// deploy/nats/consumers by the admin user.
//
// To run revoker against it as the worker: NATS_URL=c.URL,
// NATS_NKEY_SEED=c.SeedFile(t, userWorker), and revoker run --no-provision (the worker
// may not create streams). c.PublicKey(t, userRequester) is the requester's public nkey
// for REVOKER_TRUSTED_SIGNERS, c.SeedFile(t, userRequester) its seed for
// NATS_NKEY_SEED/REVOKER_SIGNER_SEED of revoker revoke.
type natsCluster struct {
	URL     string // the three client URLs, comma-separated (NATS_URL)
	dir     string // the configuration files and, under jetstream-N, the nodes' stores
	servers []*server.Server
	users   map[string]nkeys.KeyPair
}

// startNATSCluster copies deploy/nats/*.conf into a temporary directory, replaces
// users.conf with freshly generated keys and overrides cluster-routes.conf the way
// cluster-routes.conf.example says (a route password, here loopback ports for the
// node names), starts the three nodes from nats-1.conf, nats-2.conf and nats-3.conf,
// waits for a JetStream meta leader and provisions the streams, the consumer and the
// ledger bucket.
//
// The nodes' JetStream encryption key, JS_KEY, is set in the environment for the test.
func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	return startNATSClusterWith(t, nil)
}

// startNATSClusterWith is startNATSCluster with each .conf file passed through edit
// (if not nil) before the nodes load it.
func startNATSClusterWith(t *testing.T, edit func(name, conf string) string) *natsCluster {
	t.Helper()
	t.Setenv(jsKeyEnv, randomHex(t, 32))
	dir := t.TempDir()
	for _, src := range glob(t, "nats/*.conf") {
		conf := string(readFile(t, src))
		if edit != nil {
			conf = edit(filepath.Base(src), conf)
		}
		writeConf(t, dir, filepath.Base(src), conf)
	}

	c := &natsCluster{users: map[string]nkeys.KeyPair{}, dir: dir}
	var users strings.Builder
	for user, variable := range userNkeyVars {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		c.users[user] = kp
		fmt.Fprintf(&users, "%s: %s\n", variable, pub)
	}
	writeConf(t, dir, "users.conf", users.String())

	routePorts := []int{natstest.FreePort(t), natstest.FreePort(t), natstest.FreePort(t)}
	routes := strings.ReplaceAll(string(readFile(t, "nats/cluster-routes.conf.example")), routePasswordPlaceholder, randomHex(t, 16))
	for i, p := range routePorts {
		node := fmt.Sprintf("@nats-%d:6222", i+1)
		if !strings.Contains(routes, node) {
			t.Fatalf("cluster-routes.conf.example has no route to %s", node[1:])
		}
		routes = strings.ReplaceAll(routes, node, fmt.Sprintf("@127.0.0.1:%d", p))
	}
	writeConf(t, dir, "cluster-routes.conf", routes)

	var urls []string
	for i := range 3 {
		opts, err := server.ProcessConfigFile(filepath.Join(dir, fmt.Sprintf("nats-%d.conf", i+1)))
		if err != nil {
			t.Fatalf("load nats-%d.conf: %v", i+1, err)
		}
		// Keep everything the files say except where to listen and store.
		opts.Host, opts.Port = "127.0.0.1", -1
		opts.HTTPHost, opts.HTTPPort = "127.0.0.1", 0
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", routePorts[i]
		opts.StoreDir = filepath.Join(dir, fmt.Sprintf("jetstream-%d", i+1))
		opts.NoSigs, opts.NoLog = true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("nats-%d: %v", i+1, err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-%d not ready for connections", i+1)
		}
		c.servers = append(c.servers, s)
		urls = append(urls, s.ClientURL())
	}
	c.URL = strings.Join(urls, ",")

	natstest.WaitFor(t, 30*time.Second, "JetStream meta leader", func() bool {
		leader := false
		for _, s := range c.servers {
			if !s.JetStreamIsCurrent() || s.NumRoutes() < 2 {
				return false
			}
			leader = leader || s.JetStreamIsLeader()
		}
		return leader
	})
	c.provision(t)
	return c
}

// provision creates the streams and consumer from their JSON files and the ledger
// bucket from its nats kv add command (deploy/README.md) as the admin user, retrying
// while the new cluster still lacks peers for R3 assets.
func (c *natsCluster) provision(t *testing.T) {
	t.Helper()
	nc, _ := c.connect(t, userAdmin)
	js := newJetStream(t, nc)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, f := range glob(t, "nats/streams/*.json") {
		cfg := streamConfig(t, f)
		retry(t, ctx, "create stream "+cfg.Name, func(ctx context.Context) error {
			_, err := js.CreateStream(ctx, cfg)
			return err
		})
	}
	cfg := consumerConfig(t, "nats/consumers/revoker.json")
	retry(t, ctx, "create consumer", func(ctx context.Context) error {
		_, err := js.CreateConsumer(ctx, requestsStream, cfg)
		return err
	})
	for _, kv := range []jetstream.KeyValueConfig{ledgerConfig(t), kvConfig(t, budget.ReplicasBucket)} {
		retry(t, ctx, "create bucket "+kv.Bucket, func(ctx context.Context) error {
			_, err := js.CreateKeyValue(ctx, kv)
			return err
		})
	}
}

// PublicKey is user's public nkey.
func (c *natsCluster) PublicKey(t *testing.T, user string) string {
	t.Helper()
	pub, err := c.users[user].PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// SeedFile writes user's nkey seed to a new 0600 file and returns its path
// (NATS_NKEY_SEED). The seed is never printed.
func (c *natsCluster) SeedFile(t *testing.T, user string) string {
	t.Helper()
	seed, err := c.users[user].Seed()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), user+".nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatalf("write seed file: %v", err)
	}
	return path
}

// connect opens a connection as user with its role's inbox prefix; asynchronous
// errors (permission violations) arrive on the returned channel. opts come last (a
// test may give another inbox prefix).
func (c *natsCluster) connect(t *testing.T, user string, opts ...nats.Option) (*nats.Conn, <-chan error) {
	t.Helper()
	kp := c.users[user]
	errs := make(chan error, 64)
	all := []nats.Option{
		nats.Name("deploy-test-" + user),
		nats.Nkey(c.PublicKey(t, user), kp.Sign),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}),
	}
	if prefix, ok := inboxPrefixes[user]; ok {
		all = append(all, nats.CustomInboxPrefix(prefix))
	}
	nc, err := nats.Connect(c.URL, append(all, opts...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

func newJetStream(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func writeConf(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// retry calls op every 100ms until it succeeds or ctx ends.
func retry(t *testing.T, ctx context.Context, what string, op func(context.Context) error) {
	t.Helper()
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := op(attempt)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func streamConfig(t *testing.T, name string) jetstream.StreamConfig {
	t.Helper()
	var cfg jetstream.StreamConfig
	decodeStrict(t, name, &cfg)
	return cfg
}

func consumerConfig(t *testing.T, name string) jetstream.ConsumerConfig {
	t.Helper()
	var cfg jetstream.ConsumerConfig
	decodeStrict(t, name, &cfg)
	return cfg
}

// decodeStrict decodes a JSON file, refusing fields the target does not know.
func decodeStrict(t *testing.T, name string, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(readFile(t, name)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
}

// expectDenied runs op and requires the server to refuse a publish or subscription
// on subject with a permissions violation within a few seconds. op is canceled once
// the violation arrives (a refused request would otherwise wait for its timeout);
// op succeeding is a failure.
func expectDenied(t *testing.T, errs <-chan error, subject string, op func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	want := fmt.Sprintf("to %q", subject)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				cancel()
				<-done
				return
			}
			t.Errorf("unexpected asynchronous error: %v", err)
		case err := <-done:
			if err == nil {
				t.Errorf("operation on %s succeeded, want a permissions violation", subject)
				return
			}
			done = nil // failed as expected: still wait for the violation as evidence
		case <-ctx.Done():
			t.Errorf("no permissions violation for %s within 5s", subject)
			return
		}
	}
}

// directGetBatch reads every message on subject from stream by batched direct
// gets ($JS.API.DIRECT.GET.<stream> with a batch), as revoker results does.
func directGetBatch(t *testing.T, nc *nats.Conn, stream, subject string) [][]byte {
	t.Helper()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	body := fmt.Sprintf(`{"seq":1,"next_by_subj":%q,"batch":100}`, subject)
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, []byte(body)); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("direct get of %s: %v", stream, err)
		}
		switch m.Header.Get("Status") {
		case "":
			got = append(got, m.Data)
		case "204", "404": // the end of the batch, or nothing
			return got
		default:
			t.Fatalf("direct get of %s: status %s %s", stream, m.Header.Get("Status"), m.Header.Get("Description"))
		}
	}
}

// TestStreamFilesMatchProvisioning holds the JSON definitions to exactly what
// revoker run provisions (provision.RequestsStreamConfig and friends, with default
// settings) at three replicas, and to the delivery contract of design.md.
func TestStreamFilesMatchProvisioning(t *testing.T) {
	cfg := worker.Config{Replicas: 3}
	files := []struct {
		file      string
		got, want any
	}{
		{"nats/streams/" + requestsStream + ".json", streamConfig(t, "nats/streams/"+requestsStream+".json"), provision.RequestsStreamConfig(cfg.Provisioning())},
		{"nats/streams/" + resultsStream + ".json", streamConfig(t, "nats/streams/"+resultsStream+".json"), provision.ResultsStreamConfig(cfg.Provisioning())},
		{"nats/consumers/revoker.json", consumerConfig(t, "nats/consumers/revoker.json"), provision.ConsumerConfig(cfg.Provisioning())},
	}
	for _, f := range files {
		if !reflect.DeepEqual(f.got, f.want) {
			got, _ := json.Marshal(f.got)
			want, _ := json.Marshal(f.want)
			t.Errorf("%s differs from what revoker run provisions:\n got %s\nwant %s", f.file, got, want)
		}
	}

	req := streamConfig(t, "nats/streams/"+requestsStream+".json")
	res := streamConfig(t, "nats/streams/"+resultsStream+".json")
	con := consumerConfig(t, "nats/consumers/revoker.json")
	checks := []struct {
		what string
		ok   bool
	}{
		{"requests stream is " + requestsStream + " on " + requestsSubject, req.Name == requestsStream && strings.Join(req.Subjects, ",") == requestsSubject},
		{"requests stream is a work queue", req.Retention == jetstream.WorkQueuePolicy},
		{"requests stream takes requests of up to 64 KiB", req.MaxMsgSize >= 64<<10},
		{"requests duplicates window is at least 1h", req.Duplicates >= time.Hour},
		{"results stream is " + resultsStream + " on " + resultsSubject + ".>", res.Name == resultsStream && strings.Join(res.Subjects, ",") == resultsSubject+".>"},
		{"results stream keeps everything (limits retention)", res.Retention == jetstream.LimitsPolicy},
		{"results duplicates window is at least REVOKER_MAX_RETRY (15m) + 1h", res.Duplicates >= 75*time.Minute},
		{"both streams are file-backed with 3 replicas", req.Storage == jetstream.FileStorage && res.Storage == jetstream.FileStorage && req.Replicas == 3 && res.Replicas == 3},
		{"consumer is the durable pull consumer " + consumerName, con.Durable == consumerName && con.DeliverSubject == ""},
		{"results stream takes a result of up to events.MaxResultSize with its headers", res.MaxMsgSize >= events.MaxResultSize+1<<10},
		{"results stream is bounded in bytes, the oldest results dropped first", res.MaxBytes > 0 && res.Discard == jetstream.DiscardOld},
		{"consumer acks explicitly, ack wait 10s", con.AckPolicy == jetstream.AckExplicitPolicy && con.AckWait == 10*time.Second},
		{"consumer reads all requests on " + requestsSubject, con.DeliverPolicy == jetstream.DeliverAllPolicy && con.FilterSubject == requestsSubject},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("contract: %s: not so", c.what)
		}
	}
}

// TestNATSPermissions runs one request through the cluster with each user doing its
// part, then checks that every user is refused what it must not do, and that the
// refused operations changed nothing.
func TestNATSPermissions(t *testing.T) {
	c := startNATSCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	adminNC, adminErrs := c.connect(t, userAdmin)
	adminJS := newJetStream(t, adminNC)
	workerNC, workerErrs := c.connect(t, userWorker)
	workerJS := newJetStream(t, workerNC)
	requesterNC, requesterErrs := c.connect(t, userRequester)
	requesterJS := newJetStream(t, requesterNC)
	auditorNC, auditorErrs := c.connect(t, userAuditor)
	auditorJS := newJetStream(t, auditorNC)

	for _, name := range []string{requestsStream, resultsStream, ledgerStream} {
		s, err := adminJS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("admin: stream %s: %v", name, err)
		}
		if got := len(s.CachedInfo().Cluster.Replicas) + 1; got != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, got)
		}
	}
	if ci, err := adminJS.Consumer(ctx, requestsStream, consumerName); err != nil {
		t.Fatalf("admin: consumer info: %v", err)
	} else if got := len(ci.CachedInfo().Cluster.Replicas) + 1; got != 3 {
		t.Errorf("consumer %s has %d replicas, want 3", consumerName, got)
	}

	// The requester and the auditor follow outcomes live.
	requesterSub, err := requesterNC.SubscribeSync(resultsSubject + ".>")
	if err != nil {
		t.Fatal(err)
	}
	auditorSub, err := auditorNC.SubscribeSync(resultsSubject + ".>")
	if err != nil {
		t.Fatal(err)
	}
	for _, nc := range []*nats.Conn{requesterNC, auditorNC} {
		if err := nc.FlushWithContext(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// The requester publishes a request.
	ack, err := requesterJS.Publish(ctx, requestsSubject, []byte(`{"id":"inc-1","api_key_id":"key-1"}`), jetstream.WithMsgID("inc-1"))
	if err != nil {
		t.Fatalf("requester: publish request: %v", err)
	}
	if ack.Stream != requestsStream {
		t.Errorf("request stored in %q, want %s", ack.Stream, requestsStream)
	}

	// The worker binds without provisioning, takes the request, publishes the result
	// and acknowledges the request.
	for _, name := range []string{requestsStream, resultsStream} {
		if _, err := workerJS.Stream(ctx, name); err != nil {
			t.Errorf("worker: stream info %s: %v", name, err)
		}
	}
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
	if msg == nil {
		t.Fatalf("worker: fetched no request (%v)", batch.Error())
	}
	if err := msg.InProgress(); err != nil {
		t.Errorf("worker: in progress: %v", err)
	}
	result := []byte(`{"specversion":"1.0","id":"inc-1","source":"revoker","type":"revoker.key.revoked","data":{"request_id":"inc-1","outcome":"revoked"}}`)
	if _, err := workerJS.Publish(ctx, resultsSubject+".revoked", result, jetstream.WithMsgID("inc-1")); err != nil {
		t.Fatalf("worker: publish result: %v", err)
	}
	ackCtx, ackCancel := context.WithTimeout(ctx, 5*time.Second)
	defer ackCancel()
	if err := msg.DoubleAck(ackCtx); err != nil {
		t.Fatalf("worker: ack: %v", err)
	}

	for name, sub := range map[string]*nats.Subscription{userRequester: requesterSub, userAuditor: auditorSub} {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: live result: %v", name, err)
		}
		if !bytes.Equal(m.Data, result) {
			t.Errorf("%s: live result %q", name, m.Data)
		}
	}

	// The auditor reads the audit log message by message.
	resultsAsAuditor, err := auditorJS.Stream(ctx, resultsStream)
	if err != nil {
		t.Fatalf("auditor: stream info: %v", err)
	}
	if raw, err := resultsAsAuditor.GetMsg(ctx, 1); err != nil || !bytes.Equal(raw.Data, result) {
		t.Errorf("auditor: get message 1: %v", err)
	}

	// The worker binds to the ledger and creates, reads, updates and puts entries,
	// compare-and-set included, as worker/ledger.go does; the admin reads one.
	workerKV, err := workerJS.KeyValue(ctx, ledgerBucket)
	if err != nil {
		t.Fatalf("worker: bind to the ledger: %v", err)
	}
	const reqEntry, keyEntry = "req.aW5jLTE", "key.key-1"
	rev, err := workerKV.Create(ctx, reqEntry, []byte(`{"key":"key-1"}`))
	if err != nil {
		t.Fatalf("worker: create a ledger entry: %v", err)
	}
	if _, err := workerKV.Create(ctx, reqEntry, []byte(`{"key":"key-2"}`)); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Errorf("worker: create an existing ledger entry: %v, want %v", err, jetstream.ErrKeyExists)
	}
	if e, err := workerKV.Get(ctx, reqEntry); err != nil {
		t.Fatalf("worker: get a ledger entry: %v", err)
	} else if e.Revision() != rev || string(e.Value()) != `{"key":"key-1"}` {
		t.Errorf("worker: ledger entry revision %d %q, want %d and what it created", e.Revision(), e.Value(), rev)
	}
	decided := `{"key":"key-1","attempted":true}`
	if _, err := workerKV.Update(ctx, reqEntry, []byte(decided), rev); err != nil {
		t.Fatalf("worker: update a ledger entry: %v", err)
	}
	if _, err := workerKV.Update(ctx, reqEntry, []byte(`{"key":"key-2"}`), rev); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Errorf("worker: update a ledger entry from a stale revision: %v, want %v", err, jetstream.ErrKeyRevisionMismatch)
	}
	if _, err := workerKV.Put(ctx, keyEntry, []byte(`{"request_id":"inc-1"}`)); err != nil {
		t.Fatalf("worker: put a ledger entry: %v", err)
	}
	if _, err := workerKV.Get(ctx, "key.unknown"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("worker: get a missing ledger entry: %v, want %v", err, jetstream.ErrKeyNotFound)
	}
	adminKV, err := adminJS.KeyValue(ctx, ledgerBucket)
	if err != nil {
		t.Fatalf("admin: bind to the ledger: %v", err)
	}
	if e, err := adminKV.Get(ctx, reqEntry); err != nil || string(e.Value()) != decided {
		t.Errorf("admin: get a ledger entry: %v", err)
	}

	// The auditor (revoker status) and the requester (revoker revoke, waiting
	// for confirmations) bind to the ledger and read key entries.
	for user, js := range map[string]jetstream.JetStream{userAuditor: auditorJS, userRequester: requesterJS} {
		kv, err := js.KeyValue(ctx, ledgerBucket)
		if err != nil {
			t.Fatalf("%s: bind to the ledger: %v", user, err)
		}
		if e, err := kv.Get(ctx, keyEntry); err != nil || string(e.Value()) != `{"request_id":"inc-1"}` {
			t.Errorf("%s: get a key's ledger entry: %v", user, err)
		}
		if _, err := kv.Get(ctx, "key.unknown"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("%s: get a missing key's ledger entry: %v, want %v", user, err, jetstream.ErrKeyNotFound)
		}
	}

	// The auditor (revoker results) reads the audit log by batched direct gets
	// once an operator allows them on the results stream.
	resultsCfg := resultsAsAuditor.CachedInfo().Config
	resultsCfg.AllowDirect = true
	if _, err := adminJS.UpdateStream(ctx, resultsCfg); err != nil {
		t.Fatalf("admin: allow direct gets on %s: %v", resultsStream, err)
	}
	if got := directGetBatch(t, auditorNC, resultsStream, resultsSubject+".>"); len(got) != 1 || !bytes.Equal(got[0], result) {
		t.Errorf("auditor: batched direct get of the results: %q", got)
	}

	// None of that was refused.
	for user, nc := range map[string]*nats.Conn{userAdmin: adminNC, userWorker: workerNC, userRequester: requesterNC, userAuditor: auditorNC} {
		if err := nc.FlushWithContext(ctx); err != nil {
			t.Fatal(err)
		}
		if err := nc.LastError(); err != nil {
			t.Errorf("%s: %v", user, err)
		}
	}

	// Everyone is refused the rest.
	publish := func(js jetstream.JetStream, subject string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := js.Publish(ctx, subject, []byte(`{"api_key_id":"key-2"}`))
			return err
		}
	}
	subscribe := func(nc *nats.Conn, subject string) func(context.Context) error {
		return func(ctx context.Context) error {
			sub, err := nc.SubscribeSync(subject)
			if err != nil {
				return err
			}
			defer sub.Unsubscribe()
			if err := nc.FlushWithContext(ctx); err != nil {
				return err
			}
			_, err = sub.NextMsgWithContext(ctx)
			return err
		}
	}
	deleteStream := func(js jetstream.JetStream, name string) func(context.Context) error {
		return func(ctx context.Context) error { return js.DeleteStream(ctx, name) }
	}
	createConsumer := func(js jetstream.JetStream, stream, name string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Name: name, AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}
	}
	rawRequest := func(nc *nats.Conn, subject string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, subject, []byte(`{"batch":1}`))
			return err
		}
	}
	const api = "$JS.API."
	denials := []struct {
		user    string
		errs    <-chan error
		what    string
		subject string
		op      func(context.Context) error
	}{
		{userWorker, workerErrs, "publish a request", requestsSubject, publish(workerJS, requestsSubject)},
		{userWorker, workerErrs, "delete the requests stream", api + "STREAM.DELETE." + requestsStream, deleteStream(workerJS, requestsStream)},
		{userWorker, workerErrs, "delete the results stream", api + "STREAM.DELETE." + resultsStream, deleteStream(workerJS, resultsStream)},
		{userWorker, workerErrs, "create a consumer on the results stream", api + "CONSUMER.CREATE." + resultsStream + ".snoop", createConsumer(workerJS, resultsStream, "snoop")},
		{userWorker, workerErrs, "change its own consumer", api + "CONSUMER.CREATE." + requestsStream + "." + consumerName, createConsumer(workerJS, requestsStream, consumerName)},
		{userWorker, workerErrs, "read the results stream", api + "STREAM.MSG.GET." + resultsStream, rawRequest(workerNC, api+"STREAM.MSG.GET."+resultsStream)},
		{userWorker, workerErrs, "subscribe to requests bypassing its consumer", requestsSubject, subscribe(workerNC, requestsSubject)},
		{userWorker, workerErrs, "subscribe to results", resultsSubject + ".>", subscribe(workerNC, resultsSubject+".>")},
		{userWorker, workerErrs, "delete the ledger bucket", api + "STREAM.DELETE." + ledgerStream, func(ctx context.Context) error {
			return workerJS.DeleteKeyValue(ctx, ledgerBucket)
		}},
		{userWorker, workerErrs, "purge the ledger bucket", api + "STREAM.PURGE." + ledgerStream, rawRequest(workerNC, api+"STREAM.PURGE."+ledgerStream)},
		{userWorker, workerErrs, "change the ledger bucket", api + "STREAM.UPDATE." + ledgerStream, rawRequest(workerNC, api+"STREAM.UPDATE."+ledgerStream)},
		{userWorker, workerErrs, "watch the ledger (a consumer on it)", api + "CONSUMER.CREATE." + ledgerStream + ".snoop", createConsumer(workerJS, ledgerStream, "snoop")},
		{userWorker, workerErrs, "read the ledger by sequence", api + "DIRECT.GET." + ledgerStream, rawRequest(workerNC, api+"DIRECT.GET."+ledgerStream)},
		{userWorker, workerErrs, "read the ledger's stream", api + "STREAM.MSG.GET." + ledgerStream, rawRequest(workerNC, api+"STREAM.MSG.GET."+ledgerStream)},
		{userWorker, workerErrs, "create another bucket", api + "STREAM.CREATE.KV_OTHER", rawRequest(workerNC, api+"STREAM.CREATE.KV_OTHER")},
		{userWorker, workerErrs, "bind to another bucket", api + "STREAM.INFO.KV_OTHER", func(ctx context.Context) error {
			_, err := workerJS.KeyValue(ctx, "OTHER")
			return err
		}},
		{userWorker, workerErrs, "read another bucket", api + "DIRECT.GET.KV_OTHER.$KV.OTHER." + keyEntry, rawRequest(workerNC, api+"DIRECT.GET.KV_OTHER.$KV.OTHER."+keyEntry)},
		{userWorker, workerErrs, "write another bucket", "$KV.OTHER." + keyEntry, publish(workerJS, "$KV.OTHER."+keyEntry)},
		{userRequester, requesterErrs, "read a ledger request entry", api + "DIRECT.GET." + ledgerStream + "." + ledgerSubjects + reqEntry, rawRequest(requesterNC, api+"DIRECT.GET."+ledgerStream+"."+ledgerSubjects+reqEntry)},
		{userRequester, requesterErrs, "read the ledger by sequence", api + "DIRECT.GET." + ledgerStream, rawRequest(requesterNC, api+"DIRECT.GET."+ledgerStream)},
		{userRequester, requesterErrs, "write a ledger entry", ledgerSubjects + "key.key-2", publish(requesterJS, ledgerSubjects+"key.key-2")},
		{userRequester, requesterErrs, "look up the worker's consumer", api + "CONSUMER.INFO." + requestsStream + "." + consumerName, func(ctx context.Context) error {
			_, err := requesterJS.Consumer(ctx, requestsStream, consumerName)
			return err
		}},
		{userRequester, requesterErrs, "fetch from the worker's consumer", api + "CONSUMER.MSG.NEXT." + requestsStream + "." + consumerName, rawRequest(requesterNC, api+"CONSUMER.MSG.NEXT."+requestsStream+"."+consumerName)},
		{userRequester, requesterErrs, "forge a result", resultsSubject + ".revoked", publish(requesterJS, resultsSubject+".revoked")},
		{userRequester, requesterErrs, "delete the requests stream", api + "STREAM.DELETE." + requestsStream, deleteStream(requesterJS, requestsStream)},
		{userRequester, requesterErrs, "create a consumer on the requests stream", api + "CONSUMER.CREATE." + requestsStream + ".snoop", createConsumer(requesterJS, requestsStream, "snoop")},
		{userAuditor, auditorErrs, "publish a request", requestsSubject, publish(auditorJS, requestsSubject)},
		{userAuditor, auditorErrs, "forge a result", resultsSubject + ".revoked", publish(auditorJS, resultsSubject+".revoked")},
		{userAuditor, auditorErrs, "create a consumer on the results stream (its deliver subject could replay results as requests)", api + "CONSUMER.CREATE." + resultsStream + ".replay", createConsumer(auditorJS, resultsStream, "replay")},
		{userAuditor, auditorErrs, "create a consumer on the requests stream", api + "CONSUMER.CREATE." + requestsStream + ".snoop", createConsumer(auditorJS, requestsStream, "snoop")},
		{userAuditor, auditorErrs, "fetch from the worker's consumer", api + "CONSUMER.MSG.NEXT." + requestsStream + "." + consumerName, rawRequest(auditorNC, api+"CONSUMER.MSG.NEXT."+requestsStream+"."+consumerName)},
		{userAuditor, auditorErrs, "delete the results stream", api + "STREAM.DELETE." + resultsStream, deleteStream(auditorJS, resultsStream)},
		{userAuditor, auditorErrs, "subscribe to requests", requestsSubject, subscribe(auditorNC, requestsSubject)},
		{userAuditor, auditorErrs, "read a ledger request entry", api + "DIRECT.GET." + ledgerStream + "." + ledgerSubjects + reqEntry, rawRequest(auditorNC, api+"DIRECT.GET."+ledgerStream+"."+ledgerSubjects+reqEntry)},
		{userAuditor, auditorErrs, "read the ledger by sequence", api + "DIRECT.GET." + ledgerStream, rawRequest(auditorNC, api+"DIRECT.GET."+ledgerStream)},
		{userAuditor, auditorErrs, "read the ledger's stream", api + "STREAM.MSG.GET." + ledgerStream, rawRequest(auditorNC, api+"STREAM.MSG.GET."+ledgerStream)},
		{userAuditor, auditorErrs, "watch the ledger (a consumer on it)", api + "CONSUMER.CREATE." + ledgerStream + ".snoop", createConsumer(auditorJS, ledgerStream, "snoop")},
		{userAuditor, auditorErrs, "change the ledger bucket", api + "STREAM.UPDATE." + ledgerStream, rawRequest(auditorNC, api+"STREAM.UPDATE."+ledgerStream)},
		{userAuditor, auditorErrs, "read the requests stream", api + "STREAM.MSG.GET." + requestsStream, rawRequest(auditorNC, api+"STREAM.MSG.GET."+requestsStream)},
		{userAuditor, auditorErrs, "read the requests stream by direct get", api + "DIRECT.GET." + requestsStream, rawRequest(auditorNC, api+"DIRECT.GET."+requestsStream)},
		{userAuditor, auditorErrs, "get the last result of a subject (a get it has no use for)", api + "DIRECT.GET." + resultsStream + "." + resultsSubject + ".revoked", rawRequest(auditorNC, api+"DIRECT.GET."+resultsStream+"."+resultsSubject+".revoked")},
		{userAuditor, auditorErrs, "purge the results stream", api + "STREAM.PURGE." + resultsStream, rawRequest(auditorNC, api+"STREAM.PURGE."+resultsStream)},
		{userAuditor, auditorErrs, "write a ledger entry", ledgerSubjects + "key.key-2", publish(auditorJS, ledgerSubjects+"key.key-2")},
		{userAdmin, adminErrs, "publish a request", requestsSubject, publish(adminJS, requestsSubject)},
		{userAdmin, adminErrs, "write a ledger entry", ledgerSubjects + "key.key-2", publish(adminJS, ledgerSubjects+"key.key-2")},
		{userAdmin, adminErrs, "forge a result", resultsSubject + ".revoked", publish(adminJS, resultsSubject+".revoked")},
	}
	for _, d := range denials {
		t.Run(d.user+" cannot "+d.what, func(t *testing.T) {
			expectDenied(t, d.errs, d.subject, d.op)
		})
	}

	// Nothing refused had an effect: the streams and the ledger stand, the request
	// left the work queue when acknowledged, the one result is the worker's, the
	// ledger holds the worker's two entries, the consumer and the bucket are unchanged.
	want := map[string]uint64{requestsStream: 0, resultsStream: 1, ledgerStream: 2}
	for name, msgs := range want {
		natstest.WaitFor(t, 10*time.Second, name+" message count", func() bool {
			s, err := adminJS.Stream(ctx, name)
			return err == nil && s.CachedInfo().State.Msgs == msgs
		})
	}
	ci, err := adminJS.Consumer(ctx, requestsStream, consumerName)
	if err != nil {
		t.Fatalf("admin: consumer info: %v", err)
	}
	if got, want := ci.CachedInfo().Config, consumerConfig(t, "nats/consumers/revoker.json"); got.MaxDeliver != want.MaxDeliver || got.AckWait != want.AckWait || got.FilterSubject != want.FilterSubject {
		t.Errorf("consumer config changed: %+v", got)
	}
	if st, err := adminKV.Status(ctx); err != nil {
		t.Errorf("admin: ledger status: %v", err)
	} else if st.History() != 1 || st.TTL() != ledgerConfig(t).TTL {
		t.Errorf("ledger bucket changed: history %d, ttl %v", st.History(), st.TTL())
	}
	if e, err := adminKV.Get(ctx, keyEntry); err != nil || string(e.Value()) != `{"request_id":"inc-1"}` {
		t.Errorf("admin: ledger entry %s after the refusals: %v", keyEntry, err)
	}
	if s, err := adminJS.Stream(ctx, ledgerStream); err != nil {
		t.Fatalf("admin: stream %s: %v", ledgerStream, err)
	} else if n := s.CachedInfo().State.Consumers; n != 0 {
		t.Errorf("the ledger has %d consumers, want none", n)
	}
	for _, name := range []string{requestsStream, resultsStream} {
		s, err := adminJS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("admin: stream %s: %v", name, err)
		}
		for info := range s.ListConsumers(ctx).Info() {
			if info.Name == "snoop" {
				t.Errorf("refused consumer %s exists on %s", info.Name, name)
			}
		}
	}

	// A client without a key of the account cannot connect at all.
	stranger, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := stranger.PublicKey()
	if nc, err := nats.Connect(c.URL, nats.Nkey(pub, stranger.Sign), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("unknown nkey connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("unknown nkey: %v, want an authorization violation", err)
	}
}
