package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/worker/natstest"
)

// Every command connects with the inbox prefix of the role it acts in, the
// one deploy/nats lets that role read; the environment and the flag
// override it.
func TestInboxPrefixDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cmd  string
		args []string
		env  map[string]string
		want string
	}{
		{"run", nil, kalshiEnv(t), "_INBOX.worker"},
		{"sandbox", nil, nil, "_INBOX.worker"},
		{"revoke", []string{"k1"}, nil, "_INBOX.requester"},
		{"revoke", []string{"--dry-run", "k1"}, kalshiEnv(t), "_INBOX.requester"},
		{"revoke", []string{"--all"}, kalshiEnv(t), "_INBOX.requester"},
		{"results", nil, nil, "_INBOX.auditor"},
		{"status", []string{"k1"}, nil, "_INBOX.auditor"},
		{"keys", nil, kalshiEnv(t), "_INBOX.auditor"},
		{"check", nil, kalshiEnv(t), "_INBOX.worker"},
		{"run", nil, withEnv(kalshiEnv(t), map[string]string{"NATS_INBOX_PREFIX": "_INBOX.ops"}), "_INBOX.ops"},
		{"results", []string{"--nats-inbox-prefix", "_INBOX.admin"}, map[string]string{"NATS_INBOX_PREFIX": "_INBOX.ops"}, "_INBOX.admin"},
		{"revoke", []string{"--nats-inbox-prefix=replies.ir", "k1"}, nil, "replies.ir"},
	}
	for _, tt := range tests {
		t.Run(tt.cmd+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			cfg, _ := mustParse(t, tt.cmd, tt.args, tt.env)
			if cfg.NATSInboxPrefix != tt.want {
				t.Errorf("inbox prefix %q, want %q", cfg.NATSInboxPrefix, tt.want)
			}
		})
	}
	// check without the worker's Kalshi key only reads: the auditor's prefix.
	if got := defaultInboxPrefix("check", false); got != "_INBOX.auditor" {
		t.Errorf("check without Kalshi settings: %q, want _INBOX.auditor", got)
	}
}

// A prefix nats.go would refuse at connect time is a configuration error,
// reported with every other one.
func TestInboxPrefixInvalid(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"_INBOX.>", "_INBOX.*.x", "_INBOX.", "a..b", "has space"} {
		_, _, err := parseConfig("revoke", []string{"k1"}, getenv(map[string]string{"NATS_INBOX_PREFIX": bad, "NATS_URL": "http://x"}))
		var ce *configError
		if !errors.As(err, &ce) {
			t.Errorf("NATS_INBOX_PREFIX=%q: %v, want a configuration error", bad, err)
			continue
		}
		text := err.Error()
		if !strings.Contains(text, "NATS_INBOX_PREFIX (--nats-inbox-prefix)") || !strings.Contains(text, "NATS_URL") {
			t.Errorf("NATS_INBOX_PREFIX=%q: want it reported with the bad NATS_URL:\n%s", bad, text)
		}
	}
}

// The connection's replies arrive under the configured prefix (a JetStream
// call works through it), and a server that refuses that prefix to the user
// fails the connection at once, naming the setting, instead of letting each
// request wait for its timeout.
func TestInboxPrefixOnTheConnection(t *testing.T) {
	t.Parallel()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(`jetstream: enabled
authorization: { users: [ { nkey: `+pub+`, permissions: {
  publish: { allow: ["$JS.API.INFO"] }
  subscribe: { allow: ["_INBOX.auditor.>"] }
} } ] }
`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, natstest.WithConfigFile(conf))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	cfg, _ := mustParse(t, "results", nil, map[string]string{"NATS_URL": srv.URL(), "NATS_NKEY_SEED": seedFile})
	nc, err := connectNATS(ctx, cfg, "inbox-test", nil)
	if err != nil {
		t.Fatalf("connect as the auditor: %v", err)
	}
	defer nc.Close()
	if inbox := nc.NewInbox(); !strings.HasPrefix(inbox, "_INBOX.auditor.") {
		t.Errorf("inbox %q outside _INBOX.auditor.", inbox)
	}
	if _, err := nc.RequestWithContext(ctx, "$JS.API.INFO", nil); err != nil {
		t.Errorf("a request answered under _INBOX.auditor: %v", err)
	}

	for _, prefix := range []string{"_INBOX.requester", ""} {
		cfg, _ := mustParse(t, "results", nil, map[string]string{"NATS_URL": srv.URL(), "NATS_NKEY_SEED": seedFile, "NATS_INBOX_PREFIX": prefix})
		if prefix == "" {
			cfg.NATSInboxPrefix = "" // nats.go's own _INBOX
		}
		nc, err := connectNATS(ctx, cfg, "inbox-test", nil)
		if err == nil {
			nc.Close()
			t.Errorf("prefix %q: connected, want the refusal", prefix)
			continue
		}
		// The server's permissions violation, not a timeout: at once.
		if !strings.Contains(err.Error(), "NATS_INBOX_PREFIX") || !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("prefix %q: %v, want at once an error naming NATS_INBOX_PREFIX", prefix, err)
		}
	}
}
