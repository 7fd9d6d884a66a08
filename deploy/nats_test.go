package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
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

	"github.com/revoker/revoker/worker"
)

// The users of deploy/nats/accounts.conf, by the variable users.conf sets for each.
const (
	userWorker    = "worker"
	userRequester = "requester"
	userAuditor   = "auditor"
	userAdmin     = "admin"
	userSystem    = "system"
)

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
	servers []*server.Server
	users   map[string]nkeys.KeyPair
}

// startNATSCluster copies deploy/nats/*.conf into a temporary directory, replaces
// users.conf with freshly generated keys and writes cluster-routes.conf for loopback
// ports, starts the three nodes from nats-1.conf, nats-2.conf and nats-3.conf, waits
// for a JetStream meta leader and provisions the streams and consumer.
func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	dir := t.TempDir()
	for _, src := range glob(t, "nats/*.conf") {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(src)), readFile(t, src), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	c := &natsCluster{users: map[string]nkeys.KeyPair{}}
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

	routePorts := freePorts(t, 3)
	password := randomHex(t, 16)
	var routes strings.Builder
	fmt.Fprintf(&routes, "authorization { user: route, password: %q, timeout: 2 }\nroutes: [\n", password)
	for _, p := range routePorts {
		fmt.Fprintf(&routes, "  \"nats://route:%s@127.0.0.1:%d\"\n", password, p)
	}
	routes.WriteString("]\n")
	writeConf(t, dir, "cluster-routes.conf", routes.String())

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

	waitFor(t, 30*time.Second, "JetStream meta leader", func() bool {
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

// provision creates the streams and consumer from their JSON files as the admin user,
// retrying while the new cluster still lacks peers for R3 assets.
func (c *natsCluster) provision(t *testing.T) {
	t.Helper()
	nc, _ := c.connect(t, userAdmin)
	js := newJetStream(t, nc)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, f := range []string{"nats/streams/" + requestsStream + ".json", "nats/streams/" + resultsStream + ".json"} {
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

// connect opens a connection as user; asynchronous errors (permission violations)
// arrive on the returned channel.
func (c *natsCluster) connect(t *testing.T, user string) (*nats.Conn, <-chan error) {
	t.Helper()
	kp := c.users[user]
	errs := make(chan error, 64)
	nc, err := nats.Connect(c.URL,
		nats.Name("deploy-test-"+user),
		nats.Nkey(c.PublicKey(t, user), kp.Sign),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}),
	)
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

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		defer l.Close()
	}
	return ports
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// waitFor polls cond every 20ms until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

// TestNATSConfigLoadsAsCommitted loads every node's configuration as shipped (with
// the example users and route file), so a syntax error or an unknown field fails here.
func TestNATSConfigLoadsAsCommitted(t *testing.T) {
	dir := t.TempDir()
	for _, src := range glob(t, "nats/*.conf") {
		writeConf(t, dir, filepath.Base(src), string(readFile(t, src)))
	}
	writeConf(t, dir, "cluster-routes.conf", string(readFile(t, "nats/cluster-routes.conf.example")))
	for i := 1; i <= 3; i++ {
		opts, err := server.ProcessConfigFile(filepath.Join(dir, fmt.Sprintf("nats-%d.conf", i)))
		if err != nil {
			t.Fatalf("nats-%d.conf: %v", i, err)
		}
		if opts.ServerName != fmt.Sprintf("nats-%d", i) {
			t.Errorf("nats-%d.conf: server_name %q", i, opts.ServerName)
		}
		if !opts.JetStream || opts.Cluster.Name == "" || len(opts.Routes) != 3 || opts.Cluster.Username == "" {
			t.Errorf("nats-%d.conf: want JetStream, a named cluster, 3 authenticated routes; got jetstream=%v cluster=%q routes=%d route user=%q",
				i, opts.JetStream, opts.Cluster.Name, len(opts.Routes), opts.Cluster.Username)
		}
		if opts.SystemAccount != "SYS" {
			t.Errorf("nats-%d.conf: system account %q", i, opts.SystemAccount)
		}
		if len(opts.Nkeys) != len(userNkeyVars) || len(opts.Users) != 0 || opts.NoAuthUser != "" {
			t.Errorf("nats-%d.conf: want exactly %d nkey users and no password or anonymous users, got %d nkeys, %d users, no_auth_user %q",
				i, len(userNkeyVars), len(opts.Nkeys), len(opts.Users), opts.NoAuthUser)
		}
		for _, u := range opts.Nkeys {
			if u.Account == nil || u.Account.Name != "REVOKER" && u.Account.Name != "SYS" {
				t.Errorf("nats-%d.conf: user %s outside REVOKER and SYS", i, u.Nkey)
			}
			if u.Account != nil && u.Account.Name == "REVOKER" && u.Permissions == nil {
				t.Errorf("nats-%d.conf: REVOKER user %s without permissions", i, u.Nkey)
			}
		}
	}
}

// TestStreamFilesMatchProvisioning holds the JSON definitions to exactly what
// revoker run provisions (worker.RequestsStreamConfig and friends, with default
// settings) at three replicas, and to the delivery contract of design.md.
func TestStreamFilesMatchProvisioning(t *testing.T) {
	cfg := worker.Config{Replicas: 3}
	files := []struct {
		file      string
		got, want any
	}{
		{"nats/streams/" + requestsStream + ".json", streamConfig(t, "nats/streams/"+requestsStream+".json"), worker.RequestsStreamConfig(cfg)},
		{"nats/streams/" + resultsStream + ".json", streamConfig(t, "nats/streams/"+resultsStream+".json"), worker.ResultsStreamConfig(cfg)},
		{"nats/consumers/revoker.json", consumerConfig(t, "nats/consumers/revoker.json"), worker.ConsumerConfig(cfg)},
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
		{"consumer acks explicitly within at most 30s", con.AckPolicy == jetstream.AckExplicitPolicy && con.AckWait > 0 && con.AckWait <= 30*time.Second},
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

	for _, name := range []string{requestsStream, resultsStream} {
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
		{userAdmin, adminErrs, "publish a request", requestsSubject, publish(adminJS, requestsSubject)},
		{userAdmin, adminErrs, "forge a result", resultsSubject + ".revoked", publish(adminJS, resultsSubject+".revoked")},
	}
	for _, d := range denials {
		t.Run(d.user+" cannot "+d.what, func(t *testing.T) {
			expectDenied(t, d.errs, d.subject, d.op)
		})
	}

	// Nothing refused had an effect: both streams stand, the request left the work
	// queue when acknowledged, the one result is the worker's, the consumer unchanged.
	want := map[string]uint64{requestsStream: 0, resultsStream: 1}
	for name, msgs := range want {
		waitFor(t, 10*time.Second, name+" message count", func() bool {
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
