package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// deployedNATS is a server loaded from deploy/nats/nats-1.conf, with the
// accounts and permissions of deploy/nats/accounts.conf and users.conf's
// variables bound to fresh keys, as one local node.
type deployedNATS struct {
	srv   *natstest.Server
	seeds map[string]string // user ("worker", "requester", "auditor", "admin") -> seed file
	keys  map[string]nkeys.KeyPair
}

func startDeployedNATS(t *testing.T) *deployedNATS {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob("../../deploy/nats/*.conf")
	if err != nil || len(files) == 0 {
		t.Fatalf("deploy/nats/*.conf: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(f) == "nats-common.conf" {
			// One node must hold what the account may reserve on each of three.
			data = []byte(strings.Replace(string(data), "max_file_store: 10GB", "max_file_store: 64GB", 1))
			// The encryption at rest's key, which a node reads from its
			// environment ($JS_KEY), is written in: a parallel test may not
			// set the process's environment.
			const fromEnv = "\n  key: $JS_KEY\n"
			if !strings.Contains(string(data), fromEnv) {
				t.Fatalf("%s no longer has %q", f, fromEnv)
			}
			data = []byte(strings.Replace(string(data), fromEnv, "\n  key: \"a-test-jetstream-encryption-key\"\n", 1))
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := &deployedNATS{seeds: map[string]string{}, keys: map[string]nkeys.KeyPair{}}
	var users strings.Builder
	for user, variable := range map[string]string{
		"worker": "REVOKER_WORKER_NKEY", "requester": "REVOKER_REQUESTER_NKEY",
		"auditor": "REVOKER_AUDITOR_NKEY", "admin": "REVOKER_ADMIN_NKEY", "system": "SYSTEM_NKEY",
	} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		d.keys[user] = kp
		d.seeds[user] = filepath.Join(dir, user+".nk")
		if err := os.WriteFile(d.seeds[user], seed, 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&users, "%s: %s\n", variable, pub)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.conf"), []byte(users.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	d.srv = natstest.Start(t, natstest.WithConfigFile(filepath.Join(dir, "nats-1.conf")))
	return d
}

// connect connects as user, on its role's inbox prefix.
func (d *deployedNATS) connect(t *testing.T, user string) *nats.Conn {
	t.Helper()
	pub, _ := d.keys[user].PublicKey()
	return natstest.Connect(t, d.srv.URL(), nats.Nkey(pub, d.keys[user].Sign), nats.CustomInboxPrefix("_INBOX."+user))
}

// provision creates the streams, the consumer and the ledger as the admin
// user, at one replica, as deploy/README.md has operators do.
func (d *deployedNATS) provision(t *testing.T) {
	t.Helper()
	js, err := jetstream.New(d.connect(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cfg := worker.Config{Replicas: 1}
	for _, sc := range []jetstream.StreamConfig{provision.RequestsStreamConfig(cfg.Provisioning()), provision.ResultsStreamConfig(cfg.Provisioning()), provision.UntrustedStreamConfig(cfg.Provisioning())} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatalf("admin: create stream %s: %v", sc.Name, err)
		}
	}
	if _, err := js.CreateConsumer(ctx, "KEY_REVOKE_REQUESTS", provision.ConsumerConfig(cfg.Provisioning())); err != nil {
		t.Fatalf("admin: create consumer: %v", err)
	}
	for _, kv := range []jetstream.KeyValueConfig{provision.LedgerConfig(cfg.Provisioning()), provision.ReplicasConfig(cfg.Provisioning())} {
		if _, err := js.CreateKeyValue(ctx, kv); err != nil {
			t.Fatalf("admin: create bucket %s: %v", kv.Bucket, err)
		}
	}
}

// Every command works with only the permissions deploy/nats/accounts.conf
// gives its user: revoke as the requester, results (by single gets, then by
// direct gets), results --follow and status as the auditor; neither may do
// the other's job.
func TestLeastPrivilegeUsers(t *testing.T) {
	t.Parallel()
	d := startDeployedNATS(t)
	d.provision(t)

	w := newWorld(t)
	keys := w.seed(2)
	kalshiEnv := map[string]string{}
	for _, k := range []string{"KALSHI_BASE_URL", "KALSHI_API_KEY_ID", "KALSHI_PRIVATE_KEY_PATH"} {
		kalshiEnv[k] = w.env[k]
	}
	as := func(user string, kalshi bool) *world {
		env := map[string]string{"NATS_URL": d.srv.URL(), "NATS_NKEY_SEED": d.seeds[user], "REVOKER_LOG_FORMAT": "json"}
		if kalshi {
			for k, v := range kalshiEnv {
				env[k] = v
			}
		}
		return &world{t: t, env: env, emu: w.emu, httpURL: w.httpURL}
	}

	runner := as("worker", true)
	runner.env["REVOKER_HTTP_ADDR"] = strings.TrimPrefix(w.httpURL, "http://")
	logs := &syncBuffer{}
	stop, _ := natstest.Go(t, 30*time.Second, "run did not stop", func(ctx context.Context) error {
		return run(ctx, []string{"run", "--no-provision"}, getenv(runner.env), nil, io.Discard, logs)
	})
	t.Cleanup(func() {
		if err := stop(); errors.Is(err, natstest.ErrStillRunning) {
			t.Error(err)
		}
	})
	natstest.WaitFor(t, 30*time.Second, "the worker ready", func() bool { return w.get("/readyz") == http.StatusOK })

	requester, auditor := as("requester", false), as("auditor", true)
	gone := "00000000-0000-4000-8000-000000000001"
	if _, stderr, code := requester.run2("", "revoke", "--reason", "least privilege", keys[0], gone); code != exitNotFound || stderr != "" {
		t.Fatalf("revoke as the requester: exit %d, stderr %q\nworker log:\n%s", code, stderr, logs)
	}

	check := func(mode string) {
		t.Helper()
		for _, c := range []struct {
			args []string
			want []string
		}{
			{[]string{"results"}, []string{keys[0] + "  revoked", gone + "  already_revoked"}},
			{[]string{"results", "--json", "--key", gone, "--since", "1h"}, []string{`"outcome":"already_revoked"`}},
			{[]string{"results", "--outcome", "revoked"}, []string{keys[0]}},
			{[]string{"status", keys[0], keys[1]}, []string{"by request revoker-cli-", "reason        least privilege", "does not list the key", "lists the key: it is live"}},
		} {
			out, stderr, code := auditor.run2("", c.args...)
			if code != 0 || stderr != "" {
				t.Errorf("%s: auditor: revoker %s: exit %d, stderr %q", mode, strings.Join(c.args, " "), code, stderr)
			}
			for _, want := range c.want {
				if !strings.Contains(out, want) {
					t.Errorf("%s: auditor: revoker %s lacks %q:\n%s", mode, strings.Join(c.args, " "), want, out)
				}
			}
		}

		// --follow prints a result stored while it runs.
		var out, errOut syncBuffer
		fctx, fcancel := context.WithCancel(context.Background())
		fdone := make(chan error, 1)
		go func() {
			fdone <- run(fctx, []string{"results", "--follow", "--outcome", "revoked", "--json"}, getenv(auditor.env), nil, &out, &errOut)
		}()
		natstest.WaitFor(t, 10*time.Second, "the follower's first result", func() bool { return strings.Contains(out.String(), keys[0]) })
		fresh := w.seed(1)[0]
		if _, _, code := requester.run2("", "revoke", fresh); code != 0 {
			t.Errorf("%s: revoke as the requester: exit %d", mode, code)
		}
		natstest.WaitFor(t, 10*time.Second, "the follower's new result", func() bool { return strings.Contains(out.String(), fresh) })
		fcancel()
		if err := <-fdone; err != nil || errOut.String() != "" {
			t.Errorf("%s: auditor: results --follow: %v, stderr %q", mode, err, errOut.String())
		}
	}
	check("direct gets") // as provisioned

	// An operator turns direct gets off; the auditor's grant covers single gets too.
	adminJS, err := jetstream.New(d.connect(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := adminJS.Stream(t.Context(), "KEY_REVOKE_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	sc.AllowDirect = false
	if _, err := adminJS.UpdateStream(t.Context(), sc); err != nil {
		t.Fatalf("admin: turn direct gets off: %v", err)
	}
	check("single gets")

	// Neither may do the other's job.
	if _, stderr, code := auditor.run2("", "revoke", keys[1]); code == 0 || !strings.Contains(stderr, "ermissions") {
		t.Errorf("revoke as the auditor: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := requester.run2("", "results"); code == 0 || !strings.Contains(stderr, "ermission") {
		t.Errorf("results as the requester: exit %d, stderr %q", code, stderr)
	}
	if !w.emu.HasKey(keys[1]) {
		t.Error("the auditor revoked a key")
	}
	if strings.Contains(strings.ToLower(logs.String()), "permissions violation") {
		t.Errorf("the worker hit a permission it lacks:\n%s", logs)
	}
}
