package natstest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker/natstest"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func publishN(ctx context.Context, t *testing.T, js jetstream.JetStream, subject string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := js.Publish(ctx, subject, fmt.Appendf(nil, "msg-%d", i)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

func streamMsgs(ctx context.Context, t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info.State.Msgs
}

func TestStartRestartKeepsMessagesAndPort(t *testing.T) {
	ctx := testContext(t)
	srv := natstest.Start(t)

	if srv.Port() <= 0 || srv.URL() != fmt.Sprintf("nats://127.0.0.1:%d", srv.Port()) {
		t.Fatalf("URL %q, port %d", srv.URL(), srv.Port())
	}
	if !srv.Server().JetStreamEnabled() {
		t.Fatal("JetStream is not enabled")
	}

	nc := natstest.Connect(t, srv.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	publishN(ctx, t, js, "s.a", 0, 3)

	port, first := srv.Port(), srv.Server()
	reconnects := nc.Stats().Reconnects
	srv.Shutdown()
	if first.Running() || srv.Running() {
		t.Fatal("server still running after Shutdown")
	}
	srv.Restart(t)
	if srv.Port() != port || srv.Server() == first || !srv.Running() {
		t.Fatalf("after restart: port %d (was %d), new server %v, running %v",
			srv.Port(), port, srv.Server() != first, srv.Running())
	}
	// Until the client has noticed the old connection is gone, a request
	// can vanish into it: wait for the reconnect.
	waitReconnect(t, nc, reconnects)

	if got := streamMsgs(ctx, t, js, "S"); got != 3 {
		t.Fatalf("stream has %d messages after restart, want 3", got)
	}
	publishN(ctx, t, js, "s.a", 3, 5)
	if got := streamMsgs(ctx, t, js, "S"); got != 5 {
		t.Fatalf("stream has %d messages, want 5", got)
	}

	// Restart of a running server is a shutdown and a start.
	reconnects = nc.Stats().Reconnects
	srv.Restart(t)
	waitReconnect(t, nc, reconnects)
	if got := streamMsgs(ctx, t, js, "S"); got != 5 {
		t.Fatalf("stream has %d messages after second restart, want 5", got)
	}
}

func TestStoreDirSharedBetweenServers(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()

	a := natstest.Start(t, natstest.WithStoreDir(dir))
	js, err := jetstream.New(natstest.Connect(t, a.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Fatal(err)
	}
	publishN(ctx, t, js, "s", 0, 2)
	a.Shutdown()

	b := natstest.Start(t, natstest.WithStoreDir(dir))
	if b.StoreDir() != dir || b.Port() == 0 {
		t.Fatalf("store dir %q, port %d", b.StoreDir(), b.Port())
	}
	js, err = jetstream.New(natstest.Connect(t, b.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if got := streamMsgs(ctx, t, js, "S"); got != 2 {
		t.Fatalf("stream has %d messages in the second server, want 2", got)
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	// A deploy-style file: fixed ports and paths that a test must not use.
	err := os.WriteFile(conf, []byte(`
listen: 0.0.0.0:4222
http: 8222
jetstream { store_dir: "/nonexistent/jetstream" }
accounts {
  APP { jetstream: enabled, users: [ { user: app, password: secret } ] }
}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, natstest.WithConfigFile(conf))
	if srv.Port() == 4222 || srv.StoreDir() == "/nonexistent/jetstream" {
		t.Fatalf("port %d, store %q: the file's values were not replaced", srv.Port(), srv.StoreDir())
	}
	if mon := srv.Server().MonitorAddr(); mon == nil || mon.Port == 8222 || !mon.IP.IsLoopback() {
		t.Fatalf("monitor address %v, want a free loopback port", mon)
	}

	if _, err := nats.Connect(srv.URL()); err == nil {
		t.Fatal("connected without credentials to a server whose file requires them")
	}
	nc := natstest.Connect(t, srv.URL(), nats.UserInfo("app", "secret"))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Fatalf("create stream in the file's account: %v", err)
	}
}

func TestClusterStreamLeaderLoss(t *testing.T) {
	ctx := testContext(t)
	c := natstest.StartCluster(t, 3)
	if got := len(c.Servers()); got != 3 {
		t.Fatalf("%d servers, want 3", got)
	}

	nc := natstest.Connect(t, c.URLs())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "R3", Subjects: []string{"r3"}, Replicas: 3,
	}); err != nil {
		t.Fatalf("create R3 stream: %v", err)
	}
	publishN(ctx, t, js, "r3", 0, 5)

	old := c.WaitStreamLeader(t, server.DEFAULT_GLOBAL_ACCOUNT, "R3")
	start := time.Now()
	old.Shutdown()
	leader := c.WaitStreamLeader(t, server.DEFAULT_GLOBAL_ACCOUNT, "R3")
	if leader == old {
		t.Fatal("the shut down server is still the stream leader")
	}
	t.Logf("new stream leader after %v", time.Since(start))

	// The client may have been on the lost node (a request sent into the
	// dying connection gets no answer) and the new leader may need a moment
	// before it takes writes: retry with a short timeout per attempt and a
	// message id, so a retry of a stored publish is not counted twice.
	natstest.WaitFor(t, 20*time.Second, "a publish to R3 after the leader loss", func() bool {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(actx, "r3", []byte("after"), jetstream.WithMsgID("after"))
		return err == nil
	})
	if got := streamMsgs(ctx, t, js, "R3"); got != 6 {
		t.Fatalf("stream has %d messages after leader loss, want 6", got)
	}

	// The lost node comes back and catches up.
	old.Restart(t)
	c.WaitReady(t)
	natstest.WaitFor(t, 20*time.Second, "the restarted node to catch up with R3", func() bool {
		return old.Server().JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, "R3")
	})
}

// waitReconnect waits until nc has reconnected since it had reconnects.
func waitReconnect(t *testing.T, nc *nats.Conn, reconnects uint64) {
	t.Helper()
	natstest.WaitFor(t, 20*time.Second, "the client to reconnect", func() bool { return nc.Stats().Reconnects > reconnects && nc.IsConnected() })
}
